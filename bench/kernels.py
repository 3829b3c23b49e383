"""Kernel throughput per ISA path, next to numpy and a plain memory copy, in one run.

Usage: python -m bench.kernels [--mib 16] [--isa avx512 ...] [--json out.json]

Each case (bench/lib/kernel_cases/) runs its pccl kernel and, where one exists, the numpy
equivalent on the same preallocated buffers; the best of --repeat timed calls counts. Every
case is verified first (its output checked against a reference); a failed check makes the
script exit non-zero. GB/s is input bytes per second; "touched" GB/s counts every
byte read or written and is the figure to hold against the copy bandwidth. Single thread.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pccl import kernels

from bench.lib.common import dash, emit_json

FAMILIES = ["reduce", "quantize", "modular", "hash"]


def best_time(fn: Callable[[], Any], repeat: int, min_seconds: float = 0.2) -> float:
    """Best wall time of one call, over at least `repeat` calls and `min_seconds`."""
    fn()  # warm up: page faults, caches
    best = float("inf")
    calls = 0
    start = time.perf_counter()
    while calls < repeat or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        calls += 1
    return best


def copy_bandwidth(n_bytes: int, repeat: int) -> float:
    """Touched GB/s of a plain copy (read n + write n bytes), the ceiling for streaming."""
    src = np.random.default_rng(0).integers(0, 255, n_bytes, dtype=np.uint8)
    dst = np.empty_like(src)
    t = best_time(lambda: np.copyto(dst, src), repeat)
    return 2 * n_bytes / t / 1e9


def load_cases(n_bytes: int, families: list[str]) -> list[dict[str, Any]]:
    out = []
    for family in families:
        try:
            module = importlib.import_module(f"bench.lib.kernel_cases.{family}")
        except ModuleNotFoundError:
            continue
        for case in module.cases(n_bytes):
            case["family"] = family
            out.append(case)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=16.0, help="input size per case")
    parser.add_argument("--isa", nargs="*", default=None, help="ISA paths (default: all)")
    parser.add_argument("--family", nargs="*", default=FAMILIES, choices=FAMILIES)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write JSON here")
    args = parser.parse_args()

    n_bytes = int(args.mib * (1 << 20))
    isas = args.isa or kernels.supported_isas()
    copy_gbps = copy_bandwidth(n_bytes, args.repeat)
    cases = load_cases(n_bytes, args.family)
    rows: list[dict[str, Any]] = []
    failures = 0
    original = kernels.active_isa()
    try:
        for isa in isas:
            kernels.set_isa(isa)
            for case in cases:
                case["run"]()  # some cases verify the output of the latest run
                ok = bool(case["verify"]())
                failures += not ok
                t = best_time(case["run"], args.repeat)
                row = {
                    "family": case["family"], "case": case["name"], "isa": isa,
                    "verified": ok, "seconds": t,
                    "gbps": case["bytes"] / t / 1e9,
                    "gelems_per_s": case["elements"] / t / 1e9,
                }
                if "touched" in case:
                    row["touched_gbps"] = case["touched"] / t / 1e9
                    row["fraction_of_copy"] = row["touched_gbps"] / copy_gbps
                if case.get("numpy") is not None and isa == isas[-1]:
                    tn = best_time(case["numpy"], args.repeat)
                    row["numpy_gbps"] = case["bytes"] / tn / 1e9
                    row["speedup_vs_numpy"] = tn / t
                rows.append(row)
    finally:
        kernels.set_isa(original)

    print(f"input {args.mib:g} MiB per case; memcpy {copy_gbps:.2f} GB/s touched; 1 thread")
    header = (f"{'case':34} {'isa':8} {'GB/s':>7} {'Gel/s':>7} {'touched':>8} "
              f"{'of copy':>8} {'numpy':>7} {'vs np':>6} ok")
    print(header)
    def fmt(r: dict[str, Any], key: str, spec: str) -> str:
        return dash(r.get(key), spec)

    for r in rows:
        print(f"{r['case']:34} {r['isa']:8} {r['gbps']:7.2f} {r['gelems_per_s']:7.2f} "
              f"{fmt(r, 'touched_gbps', '8.2f'):>8} {fmt(r, 'fraction_of_copy', '8.0%'):>8} "
              f"{fmt(r, 'numpy_gbps', '7.2f'):>7} {fmt(r, 'speedup_vs_numpy', '6.2f'):>6} "
              f"{'yes' if r['verified'] else 'NO'}")
    result = {"mib": args.mib, "copy_touched_gbps": copy_gbps, "rows": rows}
    emit_json(result, args.json)
    if failures:
        print(f"{failures} case(s) failed verification", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
