"""One peer of test_topology's shaped-network run, started inside a network namespace.

Usage: python topology_peer.py MASTER_ADDR WORLD NAME
Prints one JSON object per line: {"admitted": NAME, "peer_id": ...} once connected, then
{"name", "peer_id", "before", "after", "sum_ok", "seconds"} when done: the ring order
before and after optimize_topology(), whether an exact all-reduce on the new ring
was right, and how long the optimize call took.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

import pccl


def main() -> int:
    address, world, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    comm = pccl.Communicator(address, 0, 2)
    comm.connect(timeout=60)
    print(json.dumps({"admitted": name, "peer_id": comm.peer_id}), flush=True)
    deadline = time.monotonic() + 60
    while comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) < world:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the run did not reach {world} peers")
        if comm.are_peers_pending():
            comm.update_topology()
        else:
            time.sleep(0.01)
    before = comm.ring_order()
    started = time.monotonic()
    comm.optimize_topology(timeout=60)
    seconds = time.monotonic() - started
    after = comm.ring_order()
    # Integer-valued floats: the sum is exact whatever the ring order.
    x = np.arange(1 << 16, dtype=np.float32) % 97 + comm.peer_id % 1000
    expected = (np.arange(1 << 16, dtype=np.float32) % 97) * world
    comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, tag=1, timeout=60)
    ids = np.array(after, dtype=np.uint64) % 1000
    sum_ok = bool(np.array_equal(x, expected + float(ids.sum())))
    print(json.dumps({"name": name, "peer_id": comm.peer_id, "before": before, "after": after,
                      "sum_ok": sum_ok, "seconds": seconds}), flush=True)
    comm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
