"""A member may only say what is its to say (docs/security.md, "a member").

Two honest peers (real processes) and one member written by hand on the raw wire
(raw_member.py), admitted by the honest ones, which then: reports a collective failed with
a status that would make the others believe they were kicked or lost the master; reports
thousands of collectives nobody else runs; claims a shared-state revision that would
wedge every later sync; advertises an address nobody should dial. Each time the honest
peers see an ordinary, retryable failure or nothing at all, and their run goes on.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator

import numpy as np
import pccl
import pytest
import wire
from cluster import Cluster, notify
from raw_member import RawMember
from wire import Kind

POOL = 1


def admit_pending(comm: pccl.Communicator, index: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if comm.are_peers_pending(timeout=30):
            comm.update_topology(timeout=30)
            return comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE)
        time.sleep(0.05)
    raise TimeoutError("nobody pending")


def one_all_reduce(comm: pccl.Communicator, index: int) -> str:
    """Starts an all-reduce that the raw member never feeds; says how it ended."""
    x = np.ones(1024, np.float32)
    notify("started", index)
    try:
        comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, tag=5, timeout=20)
        return "ok"
    except pccl.PCCLError as e:
        return type(e).__name__


def sum_of_ones(comm: pccl.Communicator, index: int, world: int) -> bool:
    """An all-reduce, retried as a training loop would when the ring changes under it."""
    for _ in range(3):
        x = np.ones(1 << 14, np.float32)
        try:
            comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, timeout=30)
        except pccl.PeerLostError:  # the member was dropped while this one started
            continue
        return bool(np.all(x == world))
    return False


@pytest.fixture
def run_with_raw_member() -> Iterator[tuple[Cluster, RawMember]]:
    with Cluster(2, pool_size=POOL) as c:
        assert c.master is not None
        raw = RawMember(c.master.port, pool_size=POOL)
        try:
            c.start(admit_pending)
            raw.join_ring()
            assert c.collect([0, 1]) == [3, 3]
            yield c, raw
        finally:
            raw.close()


@pytest.mark.parametrize("code", [wire.Code.KICKED, wire.Code.UNAVAILABLE, 11, 99])
def test_a_failure_report_fails_the_collective_for_a_retry(
        run_with_raw_member: tuple[Cluster, RawMember], code: int) -> None:
    c, raw = run_with_raw_member
    c.start(one_all_reduce)
    for _ in range(2):
        c.events.get(timeout=30)
    key = (raw.ring_epoch, 0, 5, 0)
    raw.send(Kind.OP_DONE, wire.op_done(key, ok=False, reason="evil", code=code))
    # PeerLostError: retry. Not KickedError, MasterUnavailableError or AuthenticationError.
    assert c.collect([0, 1]) == ["PeerLostError", "PeerLostError"]
    verdict = raw.wait_for(Kind.VERDICT)
    assert verdict["code"] == wire.Code.ABORTED


RETRY_TIMEOUT = 20.0  # the retry's deadline: far above the moment it takes when it fails early


def fail_then_retry(comm: pccl.Communicator, index: int) -> tuple[str, str, float]:
    """An all-reduce the raw member never feeds, then its retry: how each ended, and how
    long the retry took."""
    x = np.ones(1024, np.float32)
    notify("started", index)
    first = second = "ok"
    try:
        comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, tag=5, timeout=30)
    except pccl.PCCLError as e:
        first = type(e).__name__
    started = time.monotonic()
    try:
        comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, tag=5, timeout=RETRY_TIMEOUT)
    except pccl.PCCLError as e:
        second = f"{type(e).__name__}: {e}"
    return first, second, time.monotonic() - started


def test_a_verdict_that_comes_before_the_new_ring_fails_the_retry_at_once(
        run_with_raw_member: tuple[Cluster, RawMember]) -> None:
    """The raw member reports its ring link broken, so the master re-dials the ring; before
    it says its new links are ready, it reports the new ring's first collective failed.
    The honest peers get that verdict while their retry still waits for the new ring
    (an honest peer's early failure can reach a slow peer the same way: verdicts are
    handled on the master connection's reader thread, the new links installed on the
    thread that applies the topology). The retry must fail on that verdict as soon as it
    runs on the new ring, not wait until its deadline for data nobody sends."""
    c, raw = run_with_raw_member
    raw.keep_alive()  # else the master drops it after 3 s, which would end the retry too
    c.start(fail_then_retry)
    for _ in range(2):
        c.events.get(timeout=30)
    raw.send(Kind.LINK_BROKEN, wire.link_broken(raw.ring_epoch, raw.next_peer_id, "evil reset"))
    raw.build_ring()  # the re-dialled ring: a new ring epoch
    key = (raw.ring_epoch, 0, 5, 0)
    raw.send(Kind.OP_DONE, wire.op_done(key, ok=False, reason="failed early"))
    while not any(v["key"] == key for v in raw.verdicts):
        raw.recv()
    time.sleep(0.5)  # the honest peers take the verdict; their retries wait for the ring
    raw.links_ready()
    for first, second, seconds in c.collect([0, 1], timeout=RETRY_TIMEOUT + 30):
        assert first == "PeerLostError"
        assert second.startswith("PeerLostError") and "failed early" in second, second
        assert seconds < RETRY_TIMEOUT / 2, f"the retry waited {seconds:.1f} s for its deadline"


def retried_sum(comm: pccl.Communicator, index: int) -> str:
    """all_reduce_multiple_with_retry of ones with tag 5, as a DiLoCo outer step runs it."""
    x = np.ones(1024, np.float32)
    notify("started", index)
    try:
        descriptor = pccl.ReduceOpDescriptor.from_numpy(x, x, pccl.ReduceDescriptor(
            x.size, pccl.ReduceOp.SUM, 5, pccl.ReduceOperandDescriptor(pccl.DataType.FLOAT),
            pccl.QuantizationOptions(algorithm=pccl.QuantizationAlgorithm.NONE)))
        info = comm.all_reduce_multiple_with_retry([descriptor], timeout=60)
    except pccl.PCCLError as e:
        return f"{type(e).__name__}: {e}"
    return f"world {info.local_world_size}, sum {float(x[0])}"


def test_a_retry_that_fails_as_it_starts_is_retried_not_raised(
        run_with_raw_member: tuple[Cluster, RawMember]) -> None:
    """The raw member fails tag 5's next collective before the honest peers start it, so
    their all_reduce_multiple_with_retry fails as it launches (PeerLostError from the
    early verdict); then the member leaves. That failure is as retryable as any other:
    the call goes on and succeeds on the two that remain (it used to raise it)."""
    c, raw = run_with_raw_member
    key = (raw.ring_epoch, 0, 5, 0)
    raw.send(Kind.OP_DONE, wire.op_done(key, ok=False, reason="failed early"))
    while not any(v["key"] == key for v in raw.verdicts):
        raw.recv()
    time.sleep(0.5)  # the honest peers have the verdict before they launch
    c.start(retried_sum)
    for _ in range(2):
        c.events.get(timeout=30)
    time.sleep(0.5)  # their first launch took the verdict; the second waits for the member
    raw.close()
    assert c.collect([0, 1], timeout=90) == ["world 2, sum 2.0"] * 2


def test_made_up_collectives_get_the_member_dropped(
        run_with_raw_member: tuple[Cluster, RawMember]) -> None:
    c, raw = run_with_raw_member
    limit = 4096  # MembershipOptions::max_open_ops_per_peer
    for seq in range(limit + 1):
        raw.send(Kind.OP_DONE, wire.op_done((raw.ring_epoch, 0, 77, seq), ok=True))
    # The master drops it with Error(InvalidArgument) past the limit; what it reported
    # before stays undecided and is failed with its departure.
    msg = raw.recv()
    while msg["kind"] != Kind.ERROR:
        msg = raw.recv()
    assert msg["code"] == wire.Code.INVALID_ARGUMENT
    assert "no other member has reported" in msg["message"]
    assert raw.master.closed_by_peer()
    # The honest peers go on without it.
    assert c.run(sum_of_ones, 2) == [True, True]


def sync_once(comm: pccl.Communicator, index: int, revision: int) -> str:
    x = np.full(256, index, np.float32)
    state = pccl.SharedState([pccl.TensorInfo.from_numpy(x, "w")])
    state.revision = revision
    try:
        comm.sync_shared_state(state, timeout=20)
        return "ok"
    except pccl.PCCLError as e:
        return f"{type(e).__name__}: {e}"


def admit_pending_if_any(comm: pccl.Communicator, index: int) -> None:
    if comm.are_peers_pending(timeout=30):
        comm.update_topology(timeout=30)


def test_an_absurd_revision_cannot_wedge_shared_state(
        run_with_raw_member: tuple[Cluster, RawMember]) -> None:
    c, raw = run_with_raw_member
    c.start(sync_once, 1)
    # SyncState{call, revision, strategy, entries}; the entry: key "w", 1024 bytes,
    # float32 (10), a content hash, allow_content_inequality 0.
    entry = wire.string("w") + struct.pack("<QBQB", 1024, 10, 0x1234, 0)
    raw.send(Kind.SYNC_STATE, struct.pack("<QQBI", 1, 2**64 - 1, 0, 1) + entry)
    for result in c.collect([0, 1]):
        assert result.startswith("InvalidUsageError") and "below 2^63" in result, result
    raw.close()  # the liar leaves; the group's revision never moved
    c.run(admit_pending_if_any)
    assert c.run(sync_once, 1) == ["ok", "ok"]


@pytest.mark.parametrize("host", ["224.0.0.1", "0.0.0.0", "evil host;rm", "x" * 254])
def test_an_undialable_advertised_address_is_refused(host: str) -> None:
    node = pccl.MasterNode("127.0.0.1:0", daemon=True)
    node.run()
    try:
        with wire.Conn("127.0.0.1", node.port) as conn:
            conn.send(Kind.HELLO, wire.hello(advertise_host=host))
            error = conn.expect(Kind.ERROR)
            assert error["code"] == wire.Code.INVALID_ARGUMENT
            assert "advertised address refused" in error["message"]
            assert conn.closed_by_peer()
    finally:
        node.close()
