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
checks the last result (zeros stay zeros). With `--buckets K` each call splits the tensor
into K equal buckets and starts an async all-reduce of each before it waits for them all,
as DDP does with its gradient buckets (all_reduce_async; Gloo: async_op=True), e.g.
`--mib 2 --buckets 8` for eight buckets of 256 KiB. `send_recv`: every peer sends its buffer to the
next peer and receives the previous one's at once (send_async + recv_async), as a
pipeline's stages do; checks that the last buffer came from the previous peer. perf
follows the spawned peers. Prints each peer's loop time, and what the loop cost its
process (getrusage, every thread): CPU-milliseconds and context switches (voluntary and
involuntary) per call, the sums over the peers, and the switches per peer per call by
thread name (/proc/self/task: "pccl-link-tx", "pccl-worker"... as pccl names its threads).

`--backend gloo` runs the same loop over torch.distributed's Gloo instead (dist.all_reduce;
dist.isend + dist.irecv), for a side-by-side count:

    python -m bench.profile_all_reduce --op send_recv --peers 4 --mib 64 --calls 60 \
        [--backend gloo]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import resource
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from bench.lib.common import DTYPES, QUANTIZED, free_port, numpy_dtype, quantization
from bench.lib.loopback import start_gloo


def _usage() -> tuple[float, int]:
    """CPU-seconds and context switches of this process so far, every thread included."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime, u.ru_nvcsw + u.ru_nivcsw


def _switches_by_thread() -> dict[int, tuple[str, int]]:
    """Each live thread of this process: (its name, its context switches so far)."""
    threads = {}
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended while it was being read
            name = (task / "comm").read_text().strip()
            fields = dict(line.split(":", 1) for line in (task / "status").read_text().splitlines())
            threads[int(task.name)] = (name, int(fields["voluntary_ctxt_switches"]) +
                                       int(fields["nonvoluntary_ctxt_switches"]))
    return threads


def _timed(conn: Connection, calls: int, once: Callable[[], None],
           right: Callable[[], bool]) -> None:
    """One warm-up call, then `calls` timed ones; sends (seconds, right, CPU-s, switches,
    switches by thread name). The names are those pccl gives its threads ("pccl-link-rx"
    ...; Python's own keep the interpreter's); a thread that ended during the loop is not
    counted there, and one that began in it counts from 0."""
    once()
    cpu, switches = _usage()
    threads = _switches_by_thread()
    started = time.monotonic()
    for _ in range(calls):
        once()
    seconds = time.monotonic() - started
    cpu_after, switches_after = _usage()
    by_name: dict[str, int] = {}
    for tid, (name, count) in _switches_by_thread().items():
        by_name[name] = by_name.get(name, 0) + count - threads.get(tid, (name, 0))[1]
    conn.send((seconds, right(), cpu_after - cpu, switches_after - switches, by_name))


def _gloo_peer(conn: Connection, address: str, rank: int, args: argparse.Namespace) -> None:
    torch, dist = start_gloo(rank, args.peers, {"port": int(address.rsplit(":", 1)[1])})
    n = args.peers
    count = args.mib * (1 << 20) // numpy_dtype(args.dtype).itemsize
    dtype = getattr(torch, args.dtype)
    if args.op == "all_reduce":
        x = torch.zeros(count, dtype=dtype)
        buckets = x.chunk(args.buckets)

        def once() -> None:
            if args.buckets == 1:
                dist.all_reduce(x)
                return
            for work in [dist.all_reduce(b, async_op=True) for b in buckets]:
                work.wait()

        def right() -> bool:
            return not bool(x.any())
    else:
        send = torch.full((count,), rank, dtype=dtype)
        recv = torch.zeros(count, dtype=dtype)

        def once() -> None:
            sending = dist.isend(send, (rank + 1) % n)
            receiving = dist.irecv(recv, (rank - 1) % n)
            receiving.wait()
            sending.wait()

        def right() -> bool:
            return bool((recv == (rank - 1) % n).all())
    _timed(conn, args.calls, once, right)
    conn.recv()
    dist.destroy_process_group()


def _peer(conn: Connection, address: str, rank: int, args: argparse.Namespace) -> None:
    if args.backend == "gloo":
        _gloo_peer(conn, address, rank, args)
        return
    import pccl

    dtype = numpy_dtype(args.dtype)
    count = args.mib * (1 << 20) // dtype.itemsize
    quant = quantization(args.quantized)
    with pccl.Communicator(address, p2p_connection_pool_size=args.pool_size) as comm:
        comm.connect(timeout=60)
        comm.wait_for_world(args.peers, timeout=60)
        if args.op == "all_reduce":
            x = np.zeros(count, dtype)
            buckets = np.array_split(x, args.buckets)
            restore = not args.no_restore

            def once() -> None:
                if args.buckets == 1:
                    comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, restore_input=restore,
                                    quantization_options=quant)
                    return
                for handle in [comm.all_reduce_async(b, b, op=pccl.ReduceOp.SUM, tag=i,
                                                     restore_input=restore,
                                                     quantization_options=quant)
                               for i, b in enumerate(buckets)]:
                    handle.result()

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
        _timed(conn, args.calls, once, right)
        # Leave together: a peer that left while others still finish their last transfers
        # would change the ring under them, which fails those transfers ("retry").
        conn.recv()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--op", choices=("all_reduce", "send_recv"), default="all_reduce")
    parser.add_argument("--peers", type=int, default=2)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--buckets", type=int, default=1,
                        help="all_reduce: async all-reduces per call, each of 1/K of the tensor")
    parser.add_argument("--no-restore", action="store_true")
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    parser.add_argument("--quantized", default="none", choices=QUANTIZED)
    parser.add_argument("--pool-size", type=int, default=0,
                        help="connections per neighbour (0: the library default)")
    parser.add_argument("--backend", choices=("pccl", "gloo"), default="pccl")
    args = parser.parse_args()
    if args.op == "send_recv" and args.peers < 2:
        parser.error("send_recv needs --peers 2 or more")
    if args.buckets < 1 or (args.buckets > 1 and args.op != "all_reduce"):
        parser.error("--buckets is 1 or more, and for all_reduce only")
    if args.backend == "gloo" and (args.no_restore or args.quantized != "none"):
        parser.error("--no-restore and --quantized are pccl's")
    import pccl

    ctx = mp.get_context("spawn")
    with contextlib.ExitStack() as stack:
        if args.backend == "pccl":
            master = stack.enter_context(pccl.MasterNode("127.0.0.1:0", daemon=True))
            master.run()
            address = f"127.0.0.1:{master.port}"
        else:
            address = f"127.0.0.1:{free_port()}"
        conns, procs = [], []
        for rank in range(args.peers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_peer, daemon=True, args=(child, address, rank, args))
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
    per_call = 1e3 / args.calls
    by_name: dict[str, int] = {}
    for seconds, right, cpu, switches, threads in results:
        print(f"{args.calls} calls in {seconds:.2f} s ({seconds * per_call:.1f} ms/call), "
              f"{cpu * per_call:.1f} CPU-ms and {switches / args.calls:.0f} context switches "
              f"per call{'' if right else ', WRONG RESULT'}")
        for name, count in threads.items():
            by_name[name] = by_name.get(name, 0) + count
    print(f"all {args.peers} peers ({args.backend}): "
          f"{sum(r[2] for r in results) * per_call:.1f} CPU-ms and "
          f"{sum(r[3] for r in results) / args.calls:.0f} context switches per call")
    print("context switches per peer per call, by thread name: " + ", ".join(
        f"{name} {count / args.calls / args.peers:.1f}"
        for name, count in sorted(by_name.items(), key=lambda item: -item[1])))
    return 0 if all(r[1] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
