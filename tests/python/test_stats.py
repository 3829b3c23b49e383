"""Communicator.stats(): what a peer moved over its ring links and how its operations went,
in a live 3-peer run (real processes)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pccl
import pytest
from cluster import Cluster
from pccl import ReduceOp

WORLD = 3
COUNT = 1 << 18  # 1 MiB of float32
CALLS = 5


def run_and_report(comm: pccl.Communicator, index: int) -> dict[str, Any]:
    before = comm.stats()
    x = np.ones(COUNT, dtype=np.float32)
    sent = received = 0
    for _ in range(CALLS):
        info = comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=60)
        sent, received = sent + info.tx_bytes, received + info.rx_bytes
    # Peers that disagree on the count: one failed all-reduce on every peer.
    y = np.ones(100 + index, dtype=np.float32)
    try:
        comm.all_reduce(y, y, op=ReduceOp.SUM, timeout=60)
    except pccl.InvalidUsageError:
        pass
    comm.update_topology(timeout=60)
    state = pccl.SharedState([pccl.TensorInfo.from_numpy(np.zeros(16, np.float32), "w")])
    state.revision = 1
    comm.sync_shared_state(state, timeout=60)
    return {"before": before, "after": comm.stats(), "sent": sent, "received": received}


POOL = 4  # more connections than a loopback link stripes over


@pytest.mark.timeout(120)
def test_stats_count_bytes_round_trips_and_operations() -> None:
    with Cluster(WORLD, pool_size=POOL) as c:
        reports = c.run(run_and_report, timeout=90)
    for r in reports:
        before, after = r["before"], r["after"]
        next_link, prev_link = after.links
        assert (next_link.direction, prev_link.direction) == ("next", "prev")
        # Counted since the ring was built, frame headers included: at least the payload
        # these all-reduces reported. (Not the difference to `before`: a neighbour that
        # starts first sends frames this peer counts before its own call begins.)
        assert next_link.bytes >= r["sent"] > 0 and prev_link.bytes >= r["received"] > 0
        assert next_link.bytes > before.links[0].bytes
        for link in after.links:
            assert 0 < link.rtt_s < 1.0 and link.retransmits >= 0
        # Loopback's RTT is microseconds: the segments go over 2 of the 4 connections
        # (test_wan.py checks that a 40 ms link stripes over all of them).
        assert (next_link.stripes, prev_link.stripes) == (2, 0)
        ops, earlier = after.operations, before.operations  # earlier: the cluster's set-up

        def calls(kind: str) -> tuple[int, int]:
            return (ops[kind].succeeded - earlier[kind].succeeded,
                    ops[kind].failed - earlier[kind].failed)

        assert calls("all_reduce") == (CALLS, 1)
        assert calls("update_topology") == (1, 0)
        assert calls("sync_shared_state") == (1, 0)
        assert calls("optimize_topology") == (0, 0)
        for op in ops.values():
            total = op.succeeded + op.failed
            assert sum(n for _, n in op.latency_buckets) == total
            assert (op.max_seconds > 0) == (total > 0) and op.total_seconds >= op.max_seconds


def thread_names(comm: pccl.Communicator, index: int) -> set[str]:
    x = np.ones(COUNT, dtype=np.float32)
    comm.all_reduce_async(x, x, op=ReduceOp.SUM, timeout=60).wait()  # on a pool worker
    names = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            names.add((task / "comm").read_text().strip())
    return names


@pytest.mark.timeout(120)
def test_threads_are_named_by_their_role() -> None:
    """top -H, profilers and bench.profile_all_reduce's per-thread counts tell pccl's threads
    apart by name."""
    with Cluster(2) as c:
        names = c.run(thread_names, timeout=90)
    for peer in names:
        assert {"pccl-link-tx", "pccl-link-rx", "pccl-master-rx", "pccl-heartbeat",
                "pccl-topology", "pccl-worker"} <= peer
