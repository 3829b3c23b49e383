"""A steady in-place all-reduce loop to profile: where does pccl's CPU time go?

    perf record -F 499 -g -o perf.data -- \
        python -m bench.profile_all_reduce [--peers 2] [--mib 64] [--calls 150] [--no-restore]
    perf report -i perf.data --no-children --sort dso,symbol -g none

A master in this process and `--peers` spawned peers, each running `--calls` in-place
float32 SUM all-reduces of `--mib` MiB after one warm-up (with the restore copy, pccl's
default, or without it: restore_input=False). perf follows the spawned peers. Prints each
peer's loop time; checks the last result (zeros stay zeros).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from multiprocessing.connection import Connection

import numpy as np


def _peer(conn: Connection, address: str, peers: int, count: int, calls: int,
          restore: bool) -> None:
    import pccl

    with pccl.Communicator(address) as comm:
        comm.connect(timeout=60)
        comm.wait_for_world(peers, timeout=60)
        x = np.zeros(count, np.float32)
        comm.all_reduce(x, x, op=pccl.ReduceOp.SUM)
        started = time.monotonic()
        for _ in range(calls):
            comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, restore_input=restore)
        conn.send((time.monotonic() - started, bool(not x.any())))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--peers", type=int, default=2)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--no-restore", action="store_true")
    args = parser.parse_args()
    import pccl

    ctx = mp.get_context("spawn")
    with pccl.MasterNode("127.0.0.1:0", daemon=True) as master:
        master.run()
        conns, procs = [], []
        for _ in range(args.peers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_peer, daemon=True,
                               args=(child, f"127.0.0.1:{master.port}", args.peers,
                                     args.mib * (1 << 20) // 4, args.calls,
                                     not args.no_restore))
            proc.start()
            conns.append(parent)
            procs.append(proc)
        try:
            results = []
            for conn in conns:
                if not conn.poll(600):
                    raise TimeoutError("a peer did not finish in 600 s")
                results.append(conn.recv())
        finally:
            for proc in procs:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
    for seconds, right in results:
        print(f"{args.calls} calls in {seconds:.2f} s ({seconds / args.calls * 1e3:.1f} ms/call)"
              f"{'' if right else ', WRONG RESULT'}")
    return 0 if all(right for _, right in results) else 1


if __name__ == "__main__":
    sys.exit(main())
