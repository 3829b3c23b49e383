"""The all-reduce guarantees side by side on loopback: plain float32, ReduceMode.EXACT,
PRIVATE and VERIFIED, and uint8-quantized, with the plain-socket ceiling, in one run
(bench/all_reduce.py does the measuring; see its docstring for how).

Usage: python -m bench.trust [--world 2 4] [--sizes 1MiB 16MiB 64MiB] [all_reduce options]
"""

from __future__ import annotations

import sys

from bench import all_reduce

BACKENDS = ["pccl", "pccl-exact", "pccl-private", "pccl-verified", "pccl-uint8", "ceiling"]


def main() -> int:
    argv = sys.argv[1:]
    if "--backends" not in argv:
        argv += ["--backends", *BACKENDS]
    if "--sizes" not in argv:
        argv += ["--sizes", "1MiB", "16MiB", "64MiB"]
    sys.argv = [sys.argv[0], *argv]
    return all_reduce.main()


if __name__ == "__main__":
    sys.exit(main())
