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

Then the master itself (pccl only: Gloo's collectives do not use their rendezvous store
after set-up, and Gloo cannot lose a peer at all): the master runs as its own process, the
peers loop over all-reduces (retrying PeerLostError), and the driver SIGKILLs the master
and starts it again on the same address `--restart-after` seconds later, or SIGSTOPs it for
`--stop-s` seconds. Measured, over the peers:

  resumed: the master back (the new one listening, or SIGCONT) -> each peer's first
           successful all-reduce after the fault (max over peers): what the master's
           return costs the run beyond the outage itself
  outage:  each peer's last successful all-reduce before the fault -> its first after it

    python -m bench.faults [--world 4] [--mib 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
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


def _pccl_looper(conn: Connection, address: str, world: int, count: int, rank: int) -> None:
    """All-reduces until told to stop, retrying PeerLostError; reports the successes' end
    times and whether each result was exact."""
    import pccl

    with pccl.Communicator(address, p2p_connection_pool_size=4) as comm:
        comm.connect(timeout=60)
        comm.wait_for_world(world)
        conn.send("ready")
        x = np.empty(count, dtype=np.float32)
        done: list[float] = []
        wrong = 0
        while not conn.poll():
            x[:] = rank + 1
            try:
                comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, timeout=120)
            except pccl.PeerLostError:
                continue
            done.append(time.monotonic())
            wrong += int(x[0] != world * (world + 1) // 2 or x[-1] != x[0])
        conn.send({"done": done, "wrong": wrong})


def _start_master(address: str, heartbeat_timeout: float) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pccl.master", "--listen-address", address,
         "--heartbeat-timeout", str(heartbeat_timeout)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "pccl master listening on HOST:PORT"
    if "listening on" not in line:
        proc.kill()
        raise RuntimeError(f"the master did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def _start_peers(target: Any, head: tuple[Any, ...], tail: tuple[Any, ...], world: int,
                 conns: list[Connection], procs: list[Any], system: str) -> None:
    """Starts `world` processes `target(pipe, *head, rank, *tail)` (into `conns`, `procs`,
    for the caller to clean up) and waits until each says "ready"."""
    for rank in range(world):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=target, args=(child, *head, rank, *tail), daemon=True)
        p.start()
        conns.append(parent)
        procs.append(p)
    for c in conns:
        if not c.poll(120) or c.recv() != "ready":
            raise RuntimeError(f"{system}: a peer did not start")


def run_master_case(fault: str, args: argparse.Namespace) -> dict[str, Any]:
    count = args.mib * (1 << 20) // 4
    master, port = _start_master("127.0.0.1:0", args.heartbeat_timeout)
    address = f"127.0.0.1:{port}"
    conns: list[Connection] = []
    procs: list[Any] = []
    try:
        _start_peers(_pccl_looper, (address, args.world, count), (), args.world, conns, procs,
                     "pccl")
        time.sleep(1.0)  # a few all-reduces before the fault
        faulted_at = time.monotonic()
        if fault == "SIGKILL":
            master.kill()
            master.wait(timeout=10)
            time.sleep(args.restart_after)
            back_at = time.monotonic()
            master, _ = _start_master(address, args.heartbeat_timeout)
            listening_at = time.monotonic()
        else:
            master.send_signal(signal.SIGSTOP)
            time.sleep(args.stop_s)
            master.send_signal(signal.SIGCONT)
            back_at = listening_at = time.monotonic()
        time.sleep(max(2.0, args.restart_after))  # running again after the return
        for c in conns:
            c.send("stop")
        results: list[dict[str, Any]] = [
            c.recv() if c.poll(180) else {"done": [], "wrong": -1} for c in conns]
        after = [min((t for t in r["done"] if t > faulted_at), default=None) for r in results]
        before = [max((t for t in r["done"] if t < faulted_at), default=None) for r in results]
        resumed = [a - listening_at for a in after if a is not None]
        outage = [a - b for a, b in zip(after, before) if a is not None and b is not None]
        return {
            "system": "pccl", "fault": f"master {fault}", "world": args.world, "mib": args.mib,
            "down_s": (args.restart_after if fault == "SIGKILL" else args.stop_s),
            "start_s": listening_at - back_at,
            "resumed_s_max": max(resumed) if len(resumed) == len(results) else None,
            "outage_s_max": max(outage) if len(outage) == len(results) else None,
            "ops_after": min(sum(t > faulted_at for t in r["done"]) for r in results),
            "exact": all(r["wrong"] == 0 for r in results),
        }
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        if master.poll() is None:
            master.send_signal(signal.SIGCONT)
            master.terminate()
            master.wait(timeout=10)


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
    conns: list[Connection] = []
    procs: list[Any] = []
    try:
        _start_peers(target, (address, args.world, count), extra, args.world, conns, procs, system)
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
    parser.add_argument("--restart-after", type=float, default=3.0,
                        help="seconds between the master's SIGKILL and its restart (default 3)")
    parser.add_argument("--stop-s", type=float, default=10.0,
                        help="seconds the master stays SIGSTOPped (default 10)")
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
    master_rows = []
    if "pccl" in args.systems.split(","):
        for fault in ("SIGKILL", "SIGSTOP"):
            master_rows.append(run_master_case(fault, args))
            print(json.dumps(master_rows[-1]), flush=True)
    emit_json(rows + master_rows, args.json, indent=2, echo=False)

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
    if master_rows:
        print(f"\n{'fault':15} {'down s':>7} {'start s':>8} {'resumed s':>10} {'outage s':>9}  "
              f"ops after  exact")
    for r in master_rows:
        print(f"{r['fault']:15} {r['down_s']:7.1f} {fmt(r['start_s']):>8} "
              f"{fmt(r['resumed_s_max']):>10} {fmt(r['outage_s_max']):>9}  "
              f"{r['ops_after']:9d}  {r['exact']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
