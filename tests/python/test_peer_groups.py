"""Peer groups: collectives and shared state run per group, membership stays global, and a
failure in one group does not stop another group's collectives."""

from __future__ import annotations

import signal
import time

import numpy as np
import pccl
import pytest
from cluster import Cluster, notify

A = pccl.Attribute


def attributes(comm: pccl.Communicator) -> dict[str, int]:
    return {name: comm.get_attribute(getattr(A, name))
            for name in ("GLOBAL_WORLD_SIZE", "LOCAL_WORLD_SIZE", "NUM_DISTINCT_PEER_GROUPS",
                         "LARGEST_PEER_GROUP_WORLD_SIZE")}


def group_work(comm: pccl.Communicator, index: int, group: int) -> dict:
    """Group 0 sums float32 vectors; group 1 takes the MAX of int32 vectors of another
    length, with the same tag at the same time. Then each group syncs its own shared state
    (different keys and sizes), where the group's first peer holds a newer revision."""
    out: dict = {"attributes": attributes(comm)}
    if group == 0:
        x = np.full(1000, index + 1, dtype=np.float32)
        comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, tag=5)
        out["reduced"] = x.tolist()[:3]
    else:
        x = np.arange(777, dtype=np.int32) * (index + 1)
        comm.all_reduce(x, x, op=pccl.ReduceOp.MAX, tag=5)
        out["reduced"] = x.tolist()[:3]
    leader = index in (0, 1)  # the first peer of each group (indices 0..3 alternate groups)
    size = 64 if group == 0 else 300
    weights = np.full(size, 7.0 if leader else 0.0, dtype=np.float32)
    state = pccl.SharedState([pccl.TensorInfo.from_numpy(weights, f"group{group}.weights")])
    state.revision = 1 if leader else 0
    info = comm.sync_shared_state(state)
    out["weights"] = float(weights[0])
    out["rx_bytes"] = info.rx_bytes
    return out


@pytest.mark.timeout(90)
def test_two_groups_run_different_all_reduces_and_shared_states_at_once() -> None:
    groups = [0, 1, 0, 1]
    with Cluster(4, peer_groups=groups) as c:
        results = c.run(group_work_by_index, groups)
    for index, r in enumerate(results):
        assert r["attributes"] == {"GLOBAL_WORLD_SIZE": 4, "LOCAL_WORLD_SIZE": 2,
                                   "NUM_DISTINCT_PEER_GROUPS": 2,
                                   "LARGEST_PEER_GROUP_WORLD_SIZE": 2}
        if groups[index] == 0:
            assert r["reduced"] == [1 + 3] * 3  # peers 0 and 2 contribute 1 and 3
        else:
            assert r["reduced"] == [0, 4, 8]  # max of i*2 and i*4
        assert r["weights"] == 7.0
    # Only the non-leaders received their group's tensor, each its own size.
    assert [r["rx_bytes"] for r in results] == [0, 0, 64 * 4, 300 * 4]


def group_work_by_index(comm: pccl.Communicator, index: int, groups: list[int]) -> dict:
    return group_work(comm, index, groups[index])


def attributes_after_join(comm: pccl.Communicator, index: int, world: int) -> dict[str, int]:
    comm.wait_for_world(world, timeout=30)
    return attributes(comm)


@pytest.mark.timeout(90)
def test_attributes_follow_joins_and_departures() -> None:
    with Cluster(3, peer_groups=[0, 0, 1]) as c:
        for r in c.run(lambda_attributes):
            assert r["GLOBAL_WORLD_SIZE"] == 3 and r["NUM_DISTINCT_PEER_GROUPS"] == 2
            assert r["LARGEST_PEER_GROUP_WORLD_SIZE"] == 2
        joiner = c.add_peer(3, 2, 2, wait_world=False)  # a third group
        c.start(attributes_after_join, 4, peers=[0, 1, 2])
        c.expect_ready(joiner, timeout=60)  # its connect() returns once admitted
        results = c.collect([0, 1, 2], timeout=60) + c.run(lambda_attributes, peers=[joiner])
        assert [r["LOCAL_WORLD_SIZE"] for r in results] == [2, 2, 1, 1]
        assert all(r["NUM_DISTINCT_PEER_GROUPS"] == 3 and r["GLOBAL_WORLD_SIZE"] == 4
                   for r in results)
        c.kill(0, signal.SIGKILL)
        results = c.run(attributes_after_departure, 3, peers=[1, 2, joiner])
        assert [r["LOCAL_WORLD_SIZE"] for r in results] == [1, 1, 1]
        assert all(r["GLOBAL_WORLD_SIZE"] == 3 and r["LARGEST_PEER_GROUP_WORLD_SIZE"] == 1
                   for r in results)


def lambda_attributes(comm: pccl.Communicator, index: int) -> dict[str, int]:
    return attributes(comm)


def attributes_after_departure(comm: pccl.Communicator, index: int, world: int) -> dict[str, int]:
    # The master pushes the new epoch and the topology watcher applies it in the background;
    # attributes show it from this peer's next call on, or, as here, once refreshed.
    deadline = time.monotonic() + 30
    while comm.get_attribute(A.GLOBAL_WORLD_SIZE) != world:
        assert time.monotonic() < deadline, "the departure was not noticed"
        time.sleep(0.01)
        comm._refresh_attributes()
    return attributes(comm)


STEPS = 40


def steady_steps(comm: pccl.Communicator, index: int, steps: int) -> dict:
    """Runs `steps` exact all-reduces, retrying a step that fails (a peer died), and
    notifies each completed step. Returns the results and the failures seen."""
    failures = 0
    sums = []
    for step in range(steps):
        while True:
            x = np.full(4096, float(step + 1), dtype=np.float32)
            try:
                comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, tag=1, timeout=30)
                break
            except pccl.PCCLError:
                failures += 1
                if failures > 20:
                    raise
        world = comm.get_attribute(A.LOCAL_WORLD_SIZE)
        sums.append(bool(np.all(x == (step + 1) * world)))
        notify("step", index, step)
    return {"exact": all(sums), "failures": failures,
            "world": comm.get_attribute(A.LOCAL_WORLD_SIZE)}


@pytest.mark.timeout(120)
def test_a_peer_hung_in_one_group_does_not_stop_the_other_group() -> None:
    # Group 0: peers 0, 1, 2; group 1: peers 3, 4. The heartbeat timeout is long, so that
    # peer 2 stays a hung member (not kicked) for all of group 1's run.
    with Cluster(5, peer_groups=[0, 0, 0, 1, 1], heartbeat_timeout=20) as c:
        c.start(steady_steps, STEPS, peers=[0, 1, 2])
        seen = 0
        while seen < 3:  # group 0 is under way
            if c.events.get(timeout=30)[0] == "step":
                seen += 1
        c.kill(2, signal.SIGSTOP)
        group1 = c.run(steady_steps, STEPS, peers=[3, 4], timeout=60)
        # Group 1 finished every step while group 0 is stuck on its hung peer.
        assert not c.conns[0].poll(0) and not c.conns[1].poll(0)
        c.kill(2, signal.SIGKILL)
        group0 = c.collect([0, 1], timeout=90)
    assert all(r["exact"] and r["failures"] == 0 for r in group1)
    # Group 0's survivors failed (the dead peer), retried and finished on their own.
    assert all(r["exact"] and r["failures"] >= 1 for r in group0)


@pytest.mark.timeout(120)
def test_a_peer_killed_in_one_group_while_the_other_keeps_going() -> None:
    with Cluster(5, peer_groups=[0, 0, 0, 1, 1], heartbeat_timeout=2) as c:
        c.start(steady_steps, STEPS, peers=[3, 4])
        c.start(steady_steps, STEPS, peers=[0, 1, 2])
        seen = 0
        while seen < 6:
            if c.events.get(timeout=30)[0] == "step":
                seen += 1
        c.kill(2, signal.SIGKILL)
        group1 = c.collect([3, 4], timeout=90)
        group0 = c.collect([0, 1], timeout=90)
    # Every step of both groups is exact; the new epoch kept group 1's ring, so none of
    # its collectives failed; group 0's survivors finished on their own (an operation in
    # flight at the kill failed and was retried).
    assert all(r["exact"] for r in group1 + group0)
    assert all(r["failures"] == 0 for r in group1)
    assert [r["world"] for r in group0] == [2, 2]
