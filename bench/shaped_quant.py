"""Quantized vs float32 all-reduce on bandwidth-limited links (bench/all_reduce.py --quant).

Usage: sudo python bench/all_reduce.py --quant [--peers 3] [--uplink-mbit 500]
                                       [--size 32MiB] [--iters 3] [--json out.json]

Every peer sits in its own network namespace behind one router, with its uplink capped
by tc htb (bench/netns.py; needs root), as on a home or cloud link. The same Gaussian
float32 tensors are all-reduced (SUM) as plain float32, and quantized to uint16 and
uint8 (MIN_MAX); the script prints the slowest peer's median time, the speed-up over
float32, the bytes each peer sent, and the relative RMS error against the exact float64
sum (float32 must be exact to rounding).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from netns import ShapedNetwork, unavailable_reason
from shaped_run import parse_size, run_plan, slowest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quant", action="store_true", help="(selects this benchmark)")
    parser.add_argument("--peers", type=int, default=3)
    parser.add_argument("--uplink-mbit", type=float, default=500)
    parser.add_argument("--size", type=parse_size, default=32 << 20)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"quantized bench skipped: {reason}", file=sys.stderr)
        return 2
    hosts = [f"p{i}" for i in range(args.peers)]
    kinds = [None, "uint16", "uint8"]
    plan = [{"op": "allreduce", "bytes": args.size, "iters": args.iters, "quant": q} for q in kinds]
    with ShapedNetwork({"R": hosts}, inter_region_mbit=None, uplink_mbit=args.uplink_mbit) as net:
        outputs = run_plan(net, hosts, plan)
    rows = []
    for step, kind in enumerate(kinds):
        times = slowest(outputs, step)
        rows.append({"wire": kind or "float32", "median_s": statistics.median(times),
                     "times": times, "tx_bytes": max(o[step]["tx_bytes"] for o in outputs),
                     "rel_rms_error": max(o[step]["rel_rms_error"] for o in outputs)})
    base = rows[0]["median_s"]
    print(f"{args.peers} peers, uplinks capped at {args.uplink_mbit:g} Mbit/s, "
          f"{args.size >> 20} MiB float32 SUM, MIN_MAX quantization")
    print(f"{'wire':>8} {'median s':>9} {'speed-up':>9} {'MiB sent/peer':>14} {'rel RMS err':>12}")
    for r in rows:
        r["speedup"] = base / r["median_s"]
        print(f"{r['wire']:>8} {r['median_s']:9.3f} {r['speedup']:8.2f}x "
              f"{r['tx_bytes'] / (1 << 20):14.1f} {r['rel_rms_error']:12.2e}")
    ok = rows[0]["rel_rms_error"] < 1e-6 and all(r["rel_rms_error"] < 0.05 for r in rows)
    if not ok:
        print("RESULT CHECK FAILED", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"peers": args.peers, "uplink_mbit": args.uplink_mbit,
                                         "bytes": args.size, "rows": rows}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
