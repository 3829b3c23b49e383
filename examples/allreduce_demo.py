"""A local pccl run: a master and several peer processes doing verified all-reduces.

Three peers start together; a fourth joins while they work and is admitted by their
update_topology() calls. Every step all-reduces float32 tensors of several sizes, checks
the exact result on every peer, and prints the throughput peer 0 saw.

    python examples/allreduce_demo.py [--peers 3] [--steps 6]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import sys
import time

import numpy as np
import pccl

SIZES = [1 << 10, 1 << 20, 16 << 20]  # float32 elements: 4 KiB, 4 MiB, 64 MiB


def peer(address: str, index: int, steps: int, results: mp.Queue) -> None:
    with pccl.Communicator(address, p2p_connection_pool_size=4) as comm:
        comm.connect(timeout=120)
        done = 0
        first = True
        while done < steps:
            # are_peers_pending() is a joint call of every member. A peer that was just
            # admitted skips it once: the members that admitted it are past theirs.
            if not first and comm.are_peers_pending():
                comm.update_topology()
            first = False
            world = comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE)
            if world < 2:
                time.sleep(0.05)  # alone: wait for another peer
                continue
            for n in SIZES:
                # Every peer contributes 1, so the sum is the world size everywhere.
                x = np.ones(n, dtype=np.float32)
                start = time.perf_counter()
                try:
                    info = comm.all_reduce(x, x, op=pccl.ReduceOp.SUM)
                except pccl.PeerLostError:
                    break  # the ring changed under us: retry next step
                except pccl.TooFewPeersError:
                    return  # everyone else has finished and left
                seconds = time.perf_counter() - start
                if not np.all(x == info.local_world_size):
                    raise SystemExit(f"peer {index}: wrong result")
                busbw = n * 4 / seconds * 2 * (world - 1) / world / 1e9
                results.put((index, done, world, n * 4, seconds, busbw))
            done += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    results: mp.Queue = ctx.Queue()
    with pccl.MasterNode("127.0.0.1:0") as master:
        address = f"127.0.0.1:{master.port}"
        print(f"master on {address}; {args.peers} peers, one more joins later")
        procs = [ctx.Process(target=peer, args=(address, i, args.steps, results))
                 for i in range(args.peers)]
        for p in procs:
            p.start()
        joined = False
        deadline = time.monotonic() + 600
        print(f"{'peer':>4} {'step':>4} {'world':>5} {'bytes':>10} {'ms':>8} {'busbw GB/s':>10}")
        while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
            try:
                index, step, world, nbytes, seconds, busbw = results.get(timeout=1)
            except queue.Empty:
                continue
            if index == 0:
                print(f"{index:>4} {step:>4} {world:>5} {nbytes:>10} {seconds * 1e3:>8.2f} "
                      f"{busbw:>10.3f}")
            if not joined and step == 1:
                joined = True
                late = ctx.Process(target=peer, args=(address, args.peers, args.steps, results))
                late.start()
                procs.append(late)
        for p in procs:
            p.join(timeout=60)
        failed = [p.exitcode for p in procs if p.exitcode != 0]
    print("all peers verified every result" if not failed else f"peers failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
