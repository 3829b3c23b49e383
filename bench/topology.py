"""All-reduce time on a two-region network before and after optimize_topology().

Usage: sudo python -m bench.topology [--per-region 2] [--inter-mbit 100] [--size 16MiB]
                                     [--iters 3] [--json out.json]

Two regions of peers behind one narrow shared link (bench/lib/shaped.py: namespaces, veth,
tc htb; needs root). Peers join alternating regions (a1, b1, a2, b2, ...), so the join-order
ring crosses the narrow link at every hop; optimize_topology() should reorder the ring so
it crosses only twice (once each way). Prints the ring's crossings, the median time of a
float32 SUM all-reduce before and after, the optimize call's duration, and checks every
result against the exact sum.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from bench.lib.common import emit_json, parse_size
from bench.lib.shaped import ShapedNetwork, run_plan, slowest, unavailable_reason


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-region", type=int, default=2)
    parser.add_argument("--inter-mbit", type=float, default=100)
    parser.add_argument("--size", type=parse_size, default=16 << 20)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"topology bench skipped: {reason}", file=sys.stderr)
        return 2
    a = [f"a{i}" for i in range(args.per_region)]
    b = [f"b{i}" for i in range(args.per_region)]
    hosts = [h for pair in zip(a, b) for h in pair]
    region = {h: h[0] for h in hosts}
    step = {"op": "allreduce", "bytes": args.size, "iters": args.iters}
    plan = [{"op": "ring"}, dict(step, label="before"), {"op": "optimize"},
            dict(step, label="after")]
    with ShapedNetwork({"A": a, "B": b}, inter_region_mbit=args.inter_mbit) as net:
        outputs = run_plan(net, hosts, plan)
    rings = [lines[0]["ring"] for lines in outputs]
    optimized = [lines[2]["ring"] for lines in outputs]
    assert all(r == rings[0] for r in rings) and all(r == optimized[0] for r in optimized)
    # The peers joined in `hosts` order, so the join-order ring lists them in that order.
    peer_host = dict(zip(rings[0], hosts))

    def crossings(ring: list[int]) -> int:
        return sum(region[peer_host[x]] != region[peer_host[y]]
                   for x, y in zip(ring, ring[1:] + ring[:1]))

    before = slowest(outputs, 1)
    after = slowest(outputs, 3)
    errors = [lines[s]["rel_rms_error"] for lines in outputs for s in (1, 3)]
    result = {
        "peers": len(hosts), "inter_region_mbit": args.inter_mbit, "bytes": args.size,
        "crossings_before": crossings(rings[0]), "crossings_after": crossings(optimized[0]),
        "seconds_before": before, "seconds_after": after,
        "optimize_seconds": max(lines[2]["seconds"] for lines in outputs),
        "max_rel_error": max(errors),
    }
    print(f"{len(hosts)} peers in 2 regions, narrow link {args.inter_mbit:g} Mbit/s, "
          f"{args.size >> 20} MiB float32 SUM")
    print(f"  join order : ring crosses {result['crossings_before']}x, "
          f"median {statistics.median(before):.2f} s")
    print(f"  optimized  : ring crosses {result['crossings_after']}x, "
          f"median {statistics.median(after):.2f} s "
          f"(speed-up {statistics.median(before) / statistics.median(after):.2f}x); "
          f"optimize_topology() took {result['optimize_seconds']:.2f} s")
    ok = result["max_rel_error"] < 1e-6
    print(f"  results    : max relative RMS error vs float64 {result['max_rel_error']:.1e} "
          f"({'ok' if ok else 'WRONG'})")
    emit_json(result, args.json, indent=2, echo=False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
