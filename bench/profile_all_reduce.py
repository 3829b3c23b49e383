"""A steady loop of one collective to profile: where does pccl's CPU time go?

    perf record -F 499 -g -o perf.data -- \
        python -m bench.profile_all_reduce [--peers 2] [--mib 64] [--calls 150] [--no-restore]
                                           [--dtype float32] [--quantized none]
    perf record -F 999 -g -o perf.data -- \
        python -m bench.profile_all_reduce --op send_recv --peers 3 --mib 64 --calls 100
    perf report -i perf.data --no-children --sort dso,symbol -g none

A master in this process and `--peers` spawned peers, each running `--calls` operations of
`--mib` MiB of `--dtype` (float32, bfloat16, float16) after one warm-up. `all_reduce`
(default): in-place SUM all-reduces, optionally `--quantized` (uint8 or uint16, MIN_MAX),
with the restore copy (pccl's default) or without it (--no-restore, restore_input=False);
checks the last result (zeros stay zeros). `send_recv`: every peer sends its buffer to the
next peer and receives the previous one's at once (send_async + recv_async), as a
pipeline's stages do; checks that the last buffer came from the previous peer. perf
follows the spawned peers. Prints each peer's loop time.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from multiprocessing.connection import Connection

import numpy as np

from bench.lib.common import DTYPES, QUANTIZED, numpy_dtype, quantization


def _peer(conn: Connection, address: str, args: argparse.Namespace) -> None:
    import pccl

    dtype = numpy_dtype(args.dtype)
    count = args.mib * (1 << 20) // dtype.itemsize
    quant = quantization(args.quantized)
    with pccl.Communicator(address, p2p_connection_pool_size=args.pool_size) as comm:
        comm.connect(timeout=60)
        comm.wait_for_world(args.peers, timeout=60)
        if args.op == "all_reduce":
            x = np.zeros(count, dtype)

            def once() -> None:
                comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, restore_input=not args.no_restore,
                                quantization_options=quant)

            def right() -> bool:
                return not x.view(f"u{x.itemsize}").any()
        else:
            ids = sorted(comm.ring_order())
            rank, n = ids.index(comm.peer_id), len(ids)
            send = np.full(count, rank, dtype)
            recv = np.zeros(count, dtype)

            def once() -> None:
                sending = comm.send_async(send, ids[(rank + 1) % n])
                receiving = comm.recv_async(recv, ids[(rank - 1) % n])
                receiving.result()
                sending.result()

            def right() -> bool:
                return bool(np.all(recv == (rank - 1) % n))
        once()
        started = time.monotonic()
        for _ in range(args.calls):
            once()
        conn.send((time.monotonic() - started, right()))
        # Leave together: a peer that left while others still finish their last transfers
        # would change the ring under them, which fails those transfers ("retry").
        conn.recv()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--op", choices=("all_reduce", "send_recv"), default="all_reduce")
    parser.add_argument("--peers", type=int, default=2)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--no-restore", action="store_true")
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    parser.add_argument("--quantized", default="none", choices=QUANTIZED)
    parser.add_argument("--pool-size", type=int, default=0,
                        help="connections per neighbour (0: the library default)")
    args = parser.parse_args()
    if args.op == "send_recv" and args.peers < 2:
        parser.error("send_recv needs --peers 2 or more")
    import pccl

    ctx = mp.get_context("spawn")
    with pccl.MasterNode("127.0.0.1:0", daemon=True) as master:
        master.run()
        conns, procs = [], []
        for _ in range(args.peers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_peer, daemon=True,
                               args=(child, f"127.0.0.1:{master.port}", args))
            proc.start()
            conns.append(parent)
            procs.append(proc)
        try:
            results = []
            for conn in conns:
                if not conn.poll(600):
                    raise TimeoutError("a peer did not finish in 600 s")
                results.append(conn.recv())
            for conn in conns:
                conn.send("done")
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
