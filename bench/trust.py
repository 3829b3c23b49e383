"""The all-reduce guarantees side by side: plain float32, ReduceMode.EXACT, PRIVATE and
VERIFIED, and uint8-quantized, with the plain-socket ceiling, in one run.

Usage: python -m bench.trust [--world 2 4] [--sizes 1MiB 16MiB 64MiB] [all_reduce options]
       sudo python -m bench.trust --wan [wan_bench options]

On loopback bench/all_reduce.py does the measuring (see its docstring for how). With
--wan, bench/wan_bench.py's "modes" case: 4 peers on the WAN lab at 500 Mbit/s per
direction and RTT 50 ms (override with its own options), a 64 MiB and a 4 KiB all-reduce
in each mode.
"""

from __future__ import annotations

import sys

from bench import all_reduce

BACKENDS = ["pccl", "pccl-exact", "pccl-private", "pccl-verified", "pccl-uint8", "ceiling"]
WAN_DEFAULTS = {"--cases": ["modes"], "--world": ["4"], "--rate": ["500mbit"],
                "--rtt": ["50"], "--window": ["4MiB"], "--big": ["64MiB"]}


def main() -> int:
    argv = sys.argv[1:]
    if "--wan" in argv:
        from bench import wan_bench

        argv.remove("--wan")
        for option, value in WAN_DEFAULTS.items():
            if option not in argv:
                argv += [option, *value]
        return wan_bench.main(argv)
    if "--backends" not in argv:
        argv += ["--backends", *BACKENDS]
    if "--sizes" not in argv:
        argv += ["--sizes", "1MiB", "16MiB", "64MiB"]
    sys.argv = [sys.argv[0], *argv]
    return all_reduce.main()


if __name__ == "__main__":
    sys.exit(main())
