"""One pccl peer of a shaped-network benchmark, run inside its network namespace by
bench/lib/shaped.py's run_plan.

Usage: python -m bench.lib.shaped_peer MASTER_ADDR WORLD RANK PLAN_JSON

Connects, waits until WORLD peers are admitted, then runs PLAN_JSON, a list of steps:
  {"op": "ring"}                                  record the ring order (peer ids)
  {"op": "optimize"}                              optimize_topology(), timed
  {"op": "allreduce", "bytes": N, "iters": K,     K timed float32 SUM all-reduces of N bytes
   "quant": null | "uint8" | "uint16",            (quantized with MIN_MAX if "quant" is set)
   "label": "..."}
Prints one JSON line per step. Inputs are Gaussian, seeded by (rank, step), so every peer
can rebuild every input and check its result against the exact float64 sum: exact
all-reduces must match it to float32 rounding, quantized ones report their relative RMS
error. Each timed call is preceded by a tiny all-reduce, so the timings start together.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pccl


def gaussian(rank: int, step: int, count: int) -> np.ndarray:
    return np.random.default_rng([rank, step]).standard_normal(count, dtype=np.float32)


def main() -> int:
    address, world, rank, plan = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
    comm = pccl.Communicator(address, 0, 0)
    comm.connect(timeout=120)
    print(json.dumps({"admitted": rank, "peer_id": comm.peer_id}), flush=True)
    comm.wait_for_world(world, timeout=120)
    tiny = np.zeros(1, dtype=np.float32)
    for step, item in enumerate(plan):
        out: dict = {"step": step, "op": item["op"], "rank": rank}
        if item["op"] == "ring":
            out["ring"] = comm.ring_order()
        elif item["op"] == "optimize":
            started = time.monotonic()
            comm.optimize_topology(timeout=300)
            out["seconds"] = time.monotonic() - started
            out["ring"] = comm.ring_order()
        elif item["op"] == "allreduce":
            count = item["bytes"] // 4
            exact = sum(gaussian(r, step, count).astype(np.float64) for r in range(world))
            quant = None
            if item.get("quant"):
                dtype = {"uint8": pccl.DataType.UINT8, "uint16": pccl.DataType.UINT16}[item["quant"]]
                quant = pccl.QuantizationOptions(dtype, pccl.QuantizationAlgorithm.MIN_MAX)
            times, errors, tx = [], [], 0
            for _ in range(item["iters"]):
                x = gaussian(rank, step, count)
                comm.all_reduce(tiny, tiny, op=pccl.ReduceOp.SUM, tag=1, timeout=300)
                started = time.monotonic()
                info = comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, tag=2,
                                       quantization_options=quant, timeout=300)
                times.append(time.monotonic() - started)
                tx = info.tx_bytes
                errors.append(float(np.sqrt(np.mean((x - exact) ** 2)) / np.sqrt(np.mean(exact ** 2))))
            out.update(label=item.get("label", ""), bytes=item["bytes"], quant=item.get("quant"),
                       times=times, rel_rms_error=max(errors), tx_bytes=tx)
        print(json.dumps(out), flush=True)
    comm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
