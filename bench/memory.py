"""Memory of an in-place all-reduce: pccl (default pool cap, and PCCL_POOL_KEEP_BYTES=0;
in place without the restore copy, restore_input=False; out of place into a second tensor
allocated before the measurement) next to torch.distributed's Gloo, same machine, same run.

Each of `--world` peers allocates `--mib` MiB of `--dtype` (float32, or bfloat16 / float16,
whose partial sums pccl keeps in a float32 workspace of at most 32 MiB; touched), then runs
`--calls` in-place SUM all-reduces, checking every result (integer-valued inputs: the sum
is exact). `--quantized uint8` (or uint16) runs pccl's calls quantized (MIN_MAX), whose wire
slots (and, for float16/bfloat16, float32 accumulators) take scratch per window, in place
with the restore copy mostly in the backup (Gloo's row stays unquantized).
Reported per system, the largest over the peers, from /proc/self/status:

  peak extra:  VmHWM after the calls - VmRSS before them (what the calls needed at most)
  kept extra:  VmRSS after the calls - VmRSS before them (what stays until the next call)

    python -m bench.memory [--world 2] [--mib 256] [--calls 4] [--dtype float32]
                           [--quantized none] [--json out.json]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from bench.lib.common import DTYPES, QUANTIZED, emit_json, free_port, numpy_dtype, quantization
from bench.lib.procs import ctx

MIB = 1 << 20


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _fill(x: np.ndarray, value: float) -> None:
    """x[:] = value, through the bits (numpy's generic path for bfloat16 is slow)."""
    bits = f"u{x.itemsize}"
    x.view(bits)[:] = np.array([value], x.dtype).view(bits)[0]


def _peer(conn: Connection, system: str, address: str, world: int, rank: int, count: int,
          calls: int, env: dict[str, str], how: str, dtype_name: str,
          quantized: str) -> None:
    os.environ.update(env)
    expected = float(world * (world + 1) // 2)
    if system == "gloo":
        import torch
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"tcp://{address}", rank=rank,
                                world_size=world, timeout=datetime.timedelta(seconds=120))
        x = torch.full((count,), float(rank + 1), dtype=getattr(torch, dtype_name))
        before = _status_kib("VmRSS")
        for _ in range(calls):
            x.fill_(rank + 1)
            dist.all_reduce(x)
            assert float(x[0]) == expected and float(x[-1]) == expected
        dist.destroy_process_group()
    else:
        import pccl

        with pccl.Communicator(address, p2p_connection_pool_size=4) as comm:
            comm.connect(timeout=60)
            comm.wait_for_world(world)
            x = np.empty(count, dtype=numpy_dtype(dtype_name))
            _fill(x, rank + 1)
            out = np.ones_like(x) if how == "out of place" else x  # touched: resident
            quant = quantization(quantized)
            before = _status_kib("VmRSS")
            for _ in range(calls):
                _fill(x, rank + 1)
                comm.all_reduce(x, out, op=pccl.ReduceOp.SUM, timeout=120,
                                restore_input=how != "no restore", quantization_options=quant)
                tolerance = 0.0 if quant is None else 0.1  # constant blocks: MIN_MAX keeps them
                assert abs(float(out[0]) - expected) <= tolerance
                assert abs(float(out[-1]) - expected) <= tolerance
            after = _status_kib("VmRSS")
            peak = _status_kib("VmHWM")
            conn.send((peak - before, after - before))
            conn.recv()  # every peer measured: close together
            return
    conn.send((_status_kib("VmHWM") - before, _status_kib("VmRSS") - before))
    conn.recv()


def run(system: str, label: str, env: dict[str, str], how: str,
        args: argparse.Namespace) -> dict[str, Any]:
    count = args.mib * MIB // numpy_dtype(args.dtype).itemsize
    master = None
    if system == "pccl":
        import pccl

        master = pccl.MasterNode("127.0.0.1:0", daemon=True)
        master.run()
        address = f"127.0.0.1:{master.port}"
    else:
        address = f"127.0.0.1:{free_port()}"
    conns, procs = [], []
    try:
        for rank in range(args.world):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_peer, args=(child, system, address, args.world, rank, count,
                                                args.calls, env, how, args.dtype,
                                                args.quantized),
                            daemon=True)
            p.start()
            conns.append(parent)
            procs.append(p)
        results = []
        for c in conns:
            if not c.poll(600):
                raise RuntimeError(f"{label}: a peer did not finish")
            results.append(c.recv())
        for c in conns:
            c.send("done")
        for p in procs:
            p.join(timeout=60)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        if master is not None:
            master.close()
    return {"system": label, "world": args.world, "mib": args.mib, "dtype": args.dtype,
            "quantized": args.quantized if system == "pccl" else "none",
            "calls": args.calls,
            "peak_extra_mib": max(r[0] for r in results) / 1024,
            "kept_extra_mib": max(r[1] for r in results) / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    parser.add_argument("--quantized", default="none", choices=QUANTIZED)
    parser.add_argument("--json", help="write the rows to this file")
    args = parser.parse_args()
    cases = [("pccl", "pccl", {}, "in place"),
             ("pccl", "pccl, PCCL_POOL_KEEP_BYTES=0", {"PCCL_POOL_KEEP_BYTES": "0"}, "in place"),
             ("pccl", "pccl, restore_input=False", {}, "no restore"),
             ("pccl", "pccl, out of place", {}, "out of place")]
    try:
        import torch.distributed  # noqa: F401
        cases.append(("gloo", "gloo", {}, "in place"))
    except ImportError:
        print("torch not installed: skipping Gloo", file=sys.stderr)
    rows = [run(system, label, env, how, args) for system, label, env, how in cases]
    emit_json(rows, args.json, indent=2, echo=False)
    print(f"{'system':32} {'peak extra MiB':>15} {'kept extra MiB':>15}")
    for r in rows:
        print(f"{r['system']:32} {r['peak_extra_mib']:15.0f} {r['kept_extra_mib']:15.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
