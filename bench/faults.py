"""Failure detection and recovery: pccl vs torch.distributed Gloo, same machine, same run.

A master (pccl only) and `--world` peer processes loop over in-place SUM all-reduces of
`--mib` MiB of float32. Once every peer has started, the driver SIGKILLs (or SIGSTOPs) one
peer and measures, with time.monotonic() (one clock for every process):

  error:  signal -> each survivor's all-reduce raises (max and min over the survivors)
  retry:  signal -> each survivor's first successful all-reduce after the error (pccl
          retries over the survivors; Gloo has no recovery, so "n/a")

pccl detects a hung peer by heartbeats (`--heartbeat-timeout`, the master's default 3 s);
Gloo only by its collective timeout (`--gloo-timeout`): without one it would hang forever.
Every successful result is checked (the sum of integer-valued inputs is exact).

    python -m bench.faults [--world 4] [--mib 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from bench.lib.common import dash, emit_json, free_port
from bench.lib.procs import ctx

# --- peers --------------------------------------------------------------------------------------

def _pccl_peer(conn: Connection, address: str, world: int, count: int, rank: int) -> None:
    import pccl

    with pccl.Communicator(address, p2p_connection_pool_size=4) as comm:
        comm.connect(timeout=60)
        comm.wait_for_world(world)
        conn.send("ready")
        conn.recv()  # go
        x = np.full(count, rank + 1, dtype=np.float32)
        conn.send("starting")
        out: dict[str, Any] = {}
        for _ in range(10_000):
            try:
                comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, timeout=60)
            except pccl.PCCLError as e:
                out.update(error_at=time.monotonic(), error=type(e).__name__)
                break
            x[:] = rank + 1
        for _ in range(20 if "error_at" in out else 0):  # retry over the survivors
            try:
                info = comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, timeout=60)
            except pccl.PeerLostError:
                continue
            except pccl.PCCLError as e:
                out["retry"] = f"{type(e).__name__}: {str(e)[:100]}"
                break
            out.update(retry="ok", retry_at=time.monotonic(), retry_world=info.local_world_size,
                       retry_value=float(x[0]))
            break
        conn.send(out)
        conn.recv()  # stop


def _gloo_peer(conn: Connection, address: str, world: int, count: int, rank: int,
               timeout_s: float) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://{address}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    x = torch.full((count,), float(rank + 1))
    dist.all_reduce(x)  # warm up: every connection made
    conn.send("ready")
    conn.recv()
    conn.send("starting")
    out: dict[str, Any] = {}
    for _ in range(10_000):
        try:
            x.fill_(rank + 1)
            dist.all_reduce(x)
        except Exception as e:  # noqa: BLE001 - Gloo raises RuntimeError / DistBackendError
            out.update(error_at=time.monotonic(), error=type(e).__name__,
                       message=str(e).splitlines()[0][:120], retry="n/a (no recovery)")
            break
    conn.send(out)
    conn.recv()
    os._exit(0)  # the process group cannot be torn down cleanly with a dead peer


# --- driver --------------------------------------------------------------------------------------

def run_case(system: str, sig: int, args: argparse.Namespace) -> dict[str, Any]:
    count = args.mib * (1 << 20) // 4
    master = None
    if system == "pccl":
        import pccl

        master = pccl.MasterNode("127.0.0.1:0", heartbeat_timeout=args.heartbeat_timeout,
                                   daemon=True)
        master.run()
        address = f"127.0.0.1:{master.port}"
        target, extra = _pccl_peer, ()
    else:
        address = f"127.0.0.1:{free_port()}"
        target, extra = _gloo_peer, (args.gloo_timeout,)
    conns, procs = [], []
    try:
        for rank in range(args.world):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=target, args=(child, address, args.world, count, rank) + extra,
                             daemon=True)
            p.start()
            conns.append(parent)
            procs.append(p)
        for c in conns:
            if not c.poll(120) or c.recv() != "ready":
                raise RuntimeError(f"{system}: a peer did not start")
        for c in conns:
            c.send("go")
        for c in conns:
            if not c.poll(60) or c.recv() != "starting":
                raise RuntimeError(f"{system}: a peer did not start its loop")
        victim = args.world - 1
        signalled_at = time.monotonic()
        os.kill(procs[victim].pid, sig)
        survivors = [r for r in range(args.world) if r != victim]
        wait = (args.gloo_timeout if system == "gloo" else args.heartbeat_timeout) + 60
        results = []
        for r in survivors:
            if not conns[r].poll(wait):
                results.append({"error": "hang", "retry": "n/a"})
                continue
            results.append(conns[r].recv())
        errors = [res["error_at"] - signalled_at for res in results if "error_at" in res]
        retries = [res["retry_at"] - signalled_at for res in results if "retry_at" in res]
        exact = all(res.get("retry_value") == sum(range(1, args.world)) for res in results
                    if "retry_value" in res)
        row = {
            "system": system, "signal": signal.Signals(sig).name, "world": args.world,
            "mib": args.mib, "errors": sorted({res.get("error", "?") for res in results}),
            "error_s_min": min(errors) if errors else None,
            "error_s_max": max(errors) if errors else None,
            "retry_s_max": max(retries) if len(retries) == len(survivors) else None,
            "retry": sorted({str(res.get("retry")) for res in results}),
            "retry_exact": exact if retries else None,
            "timeout_s": args.gloo_timeout if system == "gloo" else args.heartbeat_timeout,
        }
        if system == "gloo":
            row["message"] = results[0].get("message", "")
        return row
    finally:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGCONT)
        for c in conns:
            try:
                c.send("stop")
            except OSError:
                pass
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        if master is not None:
            master.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=4)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--heartbeat-timeout", type=float, default=3.0,
                        help="pccl master's heartbeat timeout, seconds (default 3, its default)")
    parser.add_argument("--gloo-timeout", type=float, default=10.0,
                        help="torch.distributed timeout for Gloo, seconds (default 10)")
    parser.add_argument("--systems", default="pccl,gloo")
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    rows = []
    for system in args.systems.split(","):
        if system == "gloo":
            try:
                import torch.distributed  # noqa: F401
            except ImportError:
                print("torch not installed: skipping Gloo", file=sys.stderr)
                continue
        for sig in (signal.SIGKILL, signal.SIGSTOP):
            rows.append(run_case(system, sig, args))
            print(json.dumps(rows[-1]), flush=True)
    emit_json(rows, args.json, indent=2, echo=False)

    def fmt(v: Any) -> str:
        return dash(v, ".3f")

    print(f"\n{'system':6} {'signal':8} {'error (min..max) s':>20} {'retry ok s':>11}  "
          f"detector  errors / retry")
    for r in rows:
        detector = (f"heartbeat {r['timeout_s']:g} s" if r["system"] == "pccl"
                    else f"timeout {r['timeout_s']:g} s")
        print(f"{r['system']:6} {r['signal']:8} "
              f"{fmt(r['error_s_min']) + '..' + fmt(r['error_s_max']):>20} "
              f"{fmt(r['retry_s_max']):>11}  {detector:9} {','.join(r['errors'])} / "
              f"{','.join(r['retry'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
