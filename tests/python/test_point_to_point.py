"""send/recv between real peer processes on loopback.

Every ordered pair of a group of three (so also the pairs that are not ring neighbours in
that direction) moves several dtypes and sizes, checked byte for byte, with the bytes each
end counted. Tags match the n-th send to the n-th recv of the same tag, whatever order the
receiver posts them in. A recv from any source takes each sender's transfer and names it.
Two ends that disagree on the size both fail, and so do both ends of a send nobody
receives in time; a bad peer fails at once; a SIGKILLed receiver fails its sender with the
data intact, and the sender then reaches the survivor.

The receiver decides a transfer (comm/point_to_point.cc), so the two ends must agree under
faults without a verdict for every transfer: a sender whose ack never came learns through
the master that its receiver committed; a stream of transfers, each retried until it
succeeds, arrives exactly once and in order through a SIGKILLed or departing third peer
(a ring change: the transfers in flight fail and are retried on the new ring),
a reset of every connection and a restarted master; a receiver SIGSTOPped mid-transfer while
its sender gives up ends the same way as its sender.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import numpy as np
import pccl
import pytest
from cluster import Cluster, notify
from test_links import _ss_kill_available, p2p_port, reset
from test_ring_collectives import BF16, BIG_COUNT, data, my_id

DTYPES = [np.dtype(np.float32), BF16, np.dtype(np.int64), np.dtype(np.uint8)]
COUNTS = [0, 1, 300_007]  # 300007 is prime: a last segment of odd length


# --- functions that run inside the peers ------------------------------------------------------


def every_pair(comm: pccl.Communicator, index: int, ids: list[int], dtype_name: str,
               count: int) -> list[tuple[int, int, bool, int]]:
    """Every ordered pair (a, b) in turn: a sends, b receives. Per transfer this peer took
    part in: (from, to, its buffer right, bytes it counted)."""
    dtype = BF16 if dtype_name == "bfloat16" else np.dtype(dtype_name)
    me = comm.peer_id
    out = []
    for a in ids:
        for b in ids:
            if a == b or me not in (a, b):
                continue
            salt = 10 * ids.index(a) + ids.index(b)
            if me == a:
                sent = data(dtype, count, salt)
                info = comm.send(sent, b, tag=5, timeout=60)
                out.append((a, b, bool(np.array_equal(sent, data(dtype, count, salt))),
                            info.tx_bytes))
            else:
                got = np.full(count, 99, dtype)
                info = comm.recv(got, a, tag=5, timeout=60)
                out.append((a, b, bool(np.array_equal(got, data(dtype, count, salt))),
                            info.rx_bytes))
    return out


def tagged(comm: pccl.Communicator, index: int, ids: list[int]) -> Any:
    """Peer 0 sends (tag 1: A), (tag 2: B), (tag 1: C) and then swaps with peer 1 at once;
    peer 1 posts the recv of tag 2 first, then the two of tag 1."""
    other = ids[1 - index]
    if index == 0:
        for tag, value in ((1, 1.0), (2, 2.0), (1, 3.0)):
            comm.send_async(np.full(8, value, np.float32), other, tag=tag, timeout=60).result()
    else:
        b = np.zeros(8, np.float32)
        second = comm.recv_async(b, other, tag=2, timeout=60)
        a, c = np.zeros(8, np.float32), np.zeros(8, np.float32)
        comm.recv(a, other, tag=1, timeout=60)
        comm.recv(c, other, tag=1, timeout=60)
        second.result()
        got = [float(a[0]), float(b[0]), float(c[0])]
    # Both send before either receives: the async calls let the two transfers cross.
    mine, theirs = np.full(3, index, np.int64), np.full(3, -1, np.int64)
    sending = comm.send_async(mine, other, tag=7, timeout=60)
    receiving = comm.recv_async(theirs, other, tag=7, timeout=60)
    sending.result()
    receiving.result()
    swapped = theirs.tolist() == [1 - index] * 3
    return (got, swapped) if index == 1 else swapped


def any_source(comm: pccl.Communicator, index: int, ids: list[int],
               count: int) -> list[tuple[int, bool]] | None:
    """Peers 1 and 2 each send once to peer 0 (tag 4), which receives from any source
    twice: (sender, its data right) per recv; then one recv from any source that nobody
    serves must time out."""
    if index != 0:
        comm.send(data(np.dtype(np.int64), count, index), ids[0], tag=4, timeout=60)
        return None
    out = []
    for _ in range(2):
        got = np.full(count, -1, np.int64)
        handle = comm.recv_async(got, None, tag=4, timeout=60)
        sender = handle.peer
        out.append((sender, bool(np.array_equal(got, data(np.dtype(np.int64), count,
                                                           ids.index(sender))))))
    try:
        comm.recv(np.zeros(1, np.int64), None, tag=4, timeout=1)
        out.append((0, False))
    except pccl.PCCLTimeoutError:
        out.append((0, True))
    return out


def then_one_that_agrees(comm: pccl.Communicator, index: int, other: int) -> bool:
    """Peer 0 sends 0..999 to peer 1; whether this end's buffer holds them after."""
    expected = np.arange(1000, dtype=np.float32)
    buf = expected.copy() if index == 0 else np.zeros(1000, np.float32)
    if index == 0:
        comm.send(buf, other, timeout=30)
    else:
        comm.recv(buf, other, timeout=30)
    return bool(np.array_equal(buf, expected))


def mismatched(comm: pccl.Communicator, index: int, ids: list[int]) -> dict[str, Any]:
    """Peer 0 sends 10 float32, peer 1 expects 12; then a transfer that agrees."""
    other = ids[1 - index]
    out: dict[str, Any] = {}
    try:
        if index == 0:
            comm.send(np.ones(10, np.float32), other, timeout=30)
        else:
            comm.recv(np.zeros(12, np.float32), other, timeout=30)
        out["first"] = "no error"
    except pccl.PCCLError as e:
        out["first"], out["message"] = type(e).__name__, str(e)
    out["then_right"] = then_one_that_agrees(comm, index, other)
    return out


def unmatched(comm: pccl.Communicator, index: int, ids: list[int]) -> dict[str, Any]:
    """Peer 0 sends with a 1 s timeout while peer 1 is busy; peer 1's recv of that transfer
    then fails too (one verdict for both), and the next transfer works."""
    other = ids[1 - index]
    out: dict[str, Any] = {}
    try:
        if index == 0:
            comm.send(np.ones(1000, np.float32), other, timeout=1)
        else:
            time.sleep(3)  # busy past the sender's timeout
            comm.recv(np.zeros(1000, np.float32), other, timeout=30)
        out["first"] = "no error"
    except pccl.PCCLError as e:
        out["first"] = type(e).__name__
    out["then_right"] = then_one_that_agrees(comm, index, other)
    return out


def bad_arguments(comm: pccl.Communicator, index: int, ids: list[int]) -> dict[str, str]:
    out = {}
    calls = {
        "self": lambda: comm.send(np.ones(4, np.float32), comm.peer_id),
        "stranger": lambda: comm.recv(np.ones(4, np.float32), max(ids) + 12345),
        "zero": lambda: comm.send(np.ones(4, np.float32), 0),
        "bool": lambda: comm.send(np.ones(4, np.float32), True),
        "read_only": lambda: comm.recv(np.frombuffer(b"\0" * 16, np.float32), ids[1 - index]),
    }
    for name, call in calls.items():
        try:
            call()
            out[name] = "no error"
        except Exception as e:  # noqa: BLE001 - recorded for the test to judge
            out[name] = f"{type(e).__name__}: {e}"
    return out


def big_send(comm: pccl.Communicator, index: int, ids: list[int]) -> dict[str, Any]:
    """Peer 0 sends 64 MiB to peer 1 (killed meanwhile), then to peer 2."""
    sent = data(np.dtype(np.float32), BIG_COUNT, 3)
    before = sent.copy()
    handle = comm.send_async(sent, ids[1], timeout=60)
    notify("sending", index)
    out: dict[str, Any] = {}
    try:
        handle.result()
        out["first"] = "no error"
    except pccl.PCCLError as e:
        out["first"] = type(e).__name__
    out["intact"] = bool(np.array_equal(sent, before))
    info = comm.send(sent, ids[2], timeout=60)
    out["world"] = info.local_world_size
    return out


def send_to_a_stopped_peer(comm: pccl.Communicator, index: int, ids: list[int]) -> dict[str, Any]:
    """Peer 0 sends to peer 1 (SIGSTOPped before it, so the pair's links are dialled to a
    peer whose kernel accepts and who never answers), then to peer 2."""
    sent = data(np.dtype(np.float32), 1000, 4)
    out: dict[str, Any] = {}
    started = time.monotonic()
    try:
        comm.send(sent, ids[1], timeout=60)
        out["first"] = "no error"
    except pccl.PCCLError as e:
        out["first"] = type(e).__name__
        out["message"] = str(e)
    out["took"] = time.monotonic() - started
    info = comm.send(sent, ids[2], timeout=60)
    out["world"] = info.local_world_size
    return out


def stalled_recv(comm: pccl.Communicator, index: int, ids: list[int]) -> None:
    notify("receiving", index)
    time.sleep(60)  # killed meanwhile, before it posts the recv


def receive_from_peer_0(comm: pccl.Communicator, index: int, ids: list[int], count: int,
                        salt: int) -> tuple[bool, int]:
    """(the data is right, attempts): a recv posted before peer 1 was lost (killed, or
    stopped and dropped) may be bound to the ring that loss ends; it then fails as
    PeerLostError and the retry runs on the new one."""
    got = np.zeros(count, np.float32)
    for attempt in (1, 2):
        try:
            comm.recv(got, ids[0], timeout=60)
            break
        except pccl.PeerLostError:
            if attempt == 2:
                raise
    return bool(np.array_equal(got, data(np.dtype(np.float32), count, salt))), attempt


def lost_answer(comm: pccl.Communicator, index: int, ids: list[int]) -> dict[str, Any]:
    """Peer 0 sends to peer 1, whose first receive commits silently (no ack to the sender, no
    report to the master: PCCL_TEST_SILENT_RECEIVES=1); then a transfer that agrees."""
    other = ids[1 - index]
    payload = data(np.dtype(np.float32), 300_007, 7)
    out: dict[str, Any] = {}
    if index == 0:
        try:
            info = comm.send(payload, other, timeout=2)
            out["first"] = ("ok", info.tx_bytes)
        except pccl.PCCLError as e:
            out["first"] = (type(e).__name__, str(e))
    else:
        got = np.zeros_like(payload)
        info = comm.recv(got, other, timeout=30)
        out["first"] = ("ok", info.rx_bytes)
        out["right"] = bool(np.array_equal(got, payload))
    out["then_right"] = then_one_that_agrees(comm, index, other)
    return out


def stream(comm: pccl.Communicator, index: int, ids: list[int], count: int,
           transfers: int) -> dict[str, Any]:
    """Peer 0 sends transfers 0 .. n-1 to peer 1 (transfer i: `count` int32 of value i), each
    retried until it succeeds, and notifies ("sent", i); peer 1 receives until it has the
    last one and returns what it got in order."""
    failures: dict[str, int] = {}

    def failed(e: pccl.PCCLError) -> None:
        failures[type(e).__name__] = failures.get(type(e).__name__, 0) + 1
        if sum(failures.values()) > 50:
            raise RuntimeError(f"50 failures: {failures}") from e

    if index == 0:
        for i in range(transfers):
            while True:
                try:
                    comm.send(np.full(count, i, np.int32), ids[1], tag=9, timeout=30)
                    break
                except pccl.PCCLError as e:
                    failed(e)
            notify("sent", i)
        return {"failures": failures}
    got: list[int] = []
    whole = True
    buf = np.empty(count, np.int32)
    while not got or got[-1] != transfers - 1:
        buf.fill(-1)
        try:
            comm.recv(buf, ids[0], tag=9, timeout=30)
        except pccl.PCCLError as e:
            failed(e)
            continue
        got.append(int(buf[0]))
        whole &= bool(np.all(buf == buf[0]))
    return {"got": got, "whole": whole, "failures": failures}


def leave(comm: pccl.Communicator, index: int) -> None:
    comm.close()


def send_nobody_receives(comm: pccl.Communicator, index: int, ids: list[int]) -> dict[str, Any]:
    """Peer 0 sends to peer 1, which posts no recv: only a failure can end the send."""
    started = time.monotonic()
    handle = comm.send_async(np.ones(1000, np.float32), ids[1], tag=3, timeout=60)
    notify("sending")
    try:
        handle.result()
        outcome, message = "sent", ""
    except pccl.PCCLError as e:
        outcome, message = type(e).__name__, str(e)
    return {"outcome": outcome, "message": message, "took": time.monotonic() - started}


def one_transfer(comm: pccl.Communicator, index: int, ids: list[int]) -> bool:
    """Peer 0 sends 0..999 to peer 1 (then_one_that_agrees), which dials the pair's links."""
    return then_one_that_agrees(comm, index, ids[1 - index])


def post_big_recv(comm: pccl.Communicator, index: int, other: int) -> dict[str, Any]:
    """Posts a 64 MiB recv from `other`, notifies ("receiving",), and waits for it; then a
    transfer that agrees."""
    got = np.zeros(BIG_COUNT, np.float32)
    posted = time.monotonic()
    handle = comm.recv_async(got, other, timeout=60)
    notify("receiving")
    out: dict[str, Any] = {}
    try:
        handle.result()
        out["first"] = "ok"
        out["right"] = bool(np.array_equal(got, data(np.dtype(np.float32), BIG_COUNT, 5)))
    except pccl.PCCLError as e:
        out["first"] = type(e).__name__
    out["took"] = time.monotonic() - posted
    out["then_right"] = then_one_that_agrees(comm, 1, other)
    return out


def impatient_big_send(comm: pccl.Communicator, index: int, other: int) -> dict[str, Any]:
    """Sends 64 MiB to `other` with a 1 s timeout; then a transfer that agrees."""
    sent = data(np.dtype(np.float32), BIG_COUNT, 5)
    out: dict[str, Any] = {}
    try:
        comm.send(sent, other, timeout=1)
        out["first"] = "ok"
    except pccl.PCCLError as e:
        out["first"] = type(e).__name__
    out["intact"] = bool(np.array_equal(sent, data(np.dtype(np.float32), BIG_COUNT, 5)))
    out["then_right"] = then_one_that_agrees(comm, 0, other)
    return out


# --- tests --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trio():
    with Cluster(3, pool_size=2) as c:
        c.ids = c.run(my_id)  # type: ignore[attr-defined]
        yield c


@pytest.mark.timeout(120)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("count", COUNTS)
def test_every_pair_moves_exact_bytes(trio: Cluster, dtype: np.dtype, count: int) -> None:
    ids = trio.ids  # type: ignore[attr-defined]
    results = trio.run(every_pair, ids, dtype.name, count)
    for index, transfers in enumerate(results):
        assert len(transfers) == 4, transfers  # 2 sends and 2 recvs per peer
        for a, b, right, counted in transfers:
            assert right, (index, a, b)
            assert counted == count * dtype.itemsize, (index, a, b, counted)


@pytest.mark.timeout(120)
def test_tags_match_in_send_order_and_crossing_transfers_complete(trio: Cluster) -> None:
    ids = trio.ids  # type: ignore[attr-defined]
    swapped0, (got, swapped1) = trio.run(tagged, ids, peers=[0, 1])
    assert got == [1.0, 2.0, 3.0]  # tag 1 in send order, tag 2 apart
    assert swapped0 and swapped1


@pytest.mark.timeout(120)
@pytest.mark.parametrize("count", [0, 100_003])
def test_recv_from_any_source_takes_each_sender_once_and_names_it(trio: Cluster,
                                                                   count: int) -> None:
    ids = trio.ids  # type: ignore[attr-defined]
    received = trio.run(any_source, ids, count)[0]
    assert sorted(sender for sender, _ in received[:2]) == sorted(ids[1:])
    assert all(right for _, right in received[:2]), received
    assert received[2] == (0, True), "a recv from any source nobody serves must time out"


@pytest.mark.timeout(120)
def test_mismatched_sizes_fail_on_both_ends_then_next_transfer_works(trio: Cluster) -> None:
    ids = trio.ids  # type: ignore[attr-defined]
    for r in trio.run(mismatched, ids, peers=[0, 1]):
        assert r["first"] == "InvalidUsageError", r
        assert r["then_right"], r


@pytest.mark.timeout(120)
def test_unreceived_send_times_out_and_its_recv_fails_alike(trio: Cluster) -> None:
    ids = trio.ids  # type: ignore[attr-defined]
    sender, receiver = trio.run(unmatched, ids, peers=[0, 1])
    assert sender["first"] == "PCCLTimeoutError", sender
    # The receiver's recv of that transfer gets the same verdict, not a later send's data.
    assert receiver["first"] == "PCCLTimeoutError", receiver
    assert sender["then_right"] and receiver["then_right"]


@pytest.mark.timeout(120)
def test_bad_peers_and_buffers_fail_at_once(trio: Cluster) -> None:
    ids = trio.ids  # type: ignore[attr-defined]
    out = trio.run(bad_arguments, ids, peers=[0])[0]
    assert out["self"].startswith("InvalidUsageError") and "this peer" in out["self"], out
    assert out["stranger"].startswith("InvalidUsageError"), out
    assert "not a member of group" in out["stranger"], out
    assert out["zero"].startswith("ValueError") and out["bool"].startswith("ValueError"), out
    assert out["read_only"] != "no error", out
    # Nothing was bound: the next transfer between 0 and 1 lines up.
    results = trio.run(every_pair, ids, "float32", 5)
    assert all(right for transfers in results for _, _, right, _ in transfers)


@pytest.mark.timeout(120)
def test_encrypted_run_moves_exact_bytes_between_every_pair() -> None:
    # Pair links open with the same mutual handshake as ring links (purpose PairHello),
    # then carry sealed records.
    with Cluster(3, pool_size=2, secret="p2p-test-secret-0123456789",
                 transport="encrypted") as c:
        ids = c.run(my_id)
        for transfers in c.run(every_pair, ids, "float32", 300_007):
            assert len(transfers) == 4 and all(right for _, _, right, _ in transfers)


@pytest.mark.timeout(180)
def test_sigkilled_receiver_fails_its_sender_with_data_intact() -> None:
    with Cluster(3, pool_size=2) as c:
        ids = c.run(my_id)
        c.start(stalled_recv, ids, peers=[1])
        assert c.events.get(timeout=60)[0] == "receiving"
        c.start(big_send, ids, peers=[0])
        c.start(receive_from_peer_0, ids, BIG_COUNT, 3, peers=[2])
        assert c.events.get(timeout=60)[0] == "sending"
        c.kill(1, signal.SIGKILL)
        sender, receiver = c.collect([0, 2], timeout=120)
        assert sender["first"] == "PeerLostError", sender
        assert sender["intact"] and sender["world"] == 2, sender
        assert receiver[0], receiver


@pytest.mark.timeout(180)
def test_a_send_to_a_stopped_peer_fails_once_the_master_drops_it_not_at_its_deadline() -> None:
    # Peer 1 is stopped before any transfer: the sender's dial to it connects (its kernel
    # accepts) and its hello is never answered. Once the master has dropped peer 1 (1.5 s
    # of silent heartbeats) and pushed the new ring, the dial is called off: the send fails
    # then, not at its 60 s deadline, and the next send runs on the survivors.
    with Cluster(3, pool_size=2, heartbeat_timeout=1.5) as c:
        ids = c.run(my_id)
        c.kill(1, signal.SIGSTOP)
        sending = c.start(send_to_a_stopped_peer, ids, peers=[0])
        receiving = c.start(receive_from_peer_0, ids, 1000, 4, peers=[2])
        sender = c.collect(sending, timeout=120)[0]
        receiver = c.collect(receiving, timeout=120)[0]
        c.kill(1, signal.SIGKILL)
    print(f"\n[p2p] send to a stopped peer failed after {sender['took']:.2f} s: {sender}")
    assert sender["first"] == "PeerLostError", sender  # retried on the new ring, it works
    assert sender["took"] < 30, sender  # the master dropped peer 1 within seconds
    assert sender["world"] == 2, sender
    assert receiver[0], receiver


@pytest.mark.timeout(120)
def test_a_sender_that_lost_the_ack_learns_that_its_receiver_committed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Peer 1's first receive neither answers its sender nor reports to the master, as if a
    # link reset took the ack and the report was lost: the send runs into its deadline,
    # reports the failure, and the master asks the receiver (PairQuery), which answers that
    # it committed. So the send succeeds, as the recv did.
    monkeypatch.setenv("PCCL_TEST_SILENT_RECEIVES", "1")
    with Cluster(2, pool_size=2) as c:
        ids = c.run(my_id)
        sender, receiver = c.run(lost_answer, ids)
    assert sender["first"] == ("ok", 300_007 * 4), sender
    assert receiver["first"] == ("ok", 300_007 * 4) and receiver["right"], receiver
    assert sender["then_right"] and receiver["then_right"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("fault", ["sigkill_third_peer", "third_peer_leaves",
                                   "reset_every_connection", "restart_master"])
def test_a_retried_stream_arrives_exactly_once_through_faults(fault: str) -> None:
    if fault == "reset_every_connection" and _ss_kill_available() is not None:
        pytest.skip(str(_ss_kill_available()))
    transfers = 300
    with Cluster(3, pool_size=2, master_process=fault == "restart_master") as c:
        ids = c.run(my_id)
        ports = c.run(p2p_port)
        running = c.start(stream, ids, 1 << 20, transfers, peers=[0, 1])  # 4 MiB each
        while c.events.get(timeout=60) != ("sent", 20):
            pass
        if fault == "sigkill_third_peer":  # the group's ring changes under the stream
            c.kill(2, signal.SIGKILL)
        elif fault == "third_peer_leaves":  # the same change, announced: close() leaves
            c.run(leave, peers=[2])
        elif fault == "reset_every_connection":  # ring and pair links; the master re-dials
            assert reset(ports) > 0, "ss -K destroyed no socket: the test would prove nothing"
        else:  # the peers resume with a new master process, in a new ring epoch
            c.kill_master(signal.SIGKILL)
            c.restart_master()
        sender, receiver = c.collect(running, timeout=180)
    # Each transfer is retried until its sender sees it succeed, so the receiver must hold
    # every one exactly once, in order: a transfer the receiver committed while its sender
    # saw a failure would come twice, one the sender took for done while the receiver had
    # not would be missing. (Whether a transfer was in flight at the fault depends on
    # timing; the failures each end saw are in the message, not asserted.)
    assert receiver["got"] == list(range(transfers)), (sender, receiver["failures"])
    assert receiver["whole"], receiver["failures"]


@pytest.mark.timeout(120)
def test_a_transfer_in_flight_when_a_third_peer_leaves_fails_saying_the_ring_changed() -> None:
    # The send waits for a recv that never comes; peer 2's close() changes the ring, which
    # ends the send at once, with an error that says so (and that a retry is the answer).
    with Cluster(3, pool_size=2) as c:
        ids = c.run(my_id)
        running = c.start(send_nobody_receives, ids, peers=[0])
        assert c.events.get(timeout=60)[0] == "sending"
        c.run(leave, peers=[2])
        sender = c.collect(running, timeout=60)[0]
    assert sender["outcome"] == "PeerLostError", sender
    assert "the ring changed" in sender["message"] and "retry" in sender["message"], sender
    assert sender["took"] < 30, sender  # the change ended it, not its 60 s deadline


@pytest.mark.timeout(180)
@pytest.mark.parametrize("links", ["dialled_first", "dialled_by_the_transfer"])
def test_a_receiver_stopped_mid_transfer_ends_as_its_impatient_sender(links: str) -> None:
    # The receiver is SIGSTOPped with a 64 MiB recv posted; its sender gives up after 1 s,
    # reports the failure and waits, and the master's question to the receiver waits in its
    # socket. Resumed, the receiver either still commits (the last segments came first) or
    # fails its receipt on the question; both are right as long as the two ends agree,
    # so the test demands agreement, not one of them. With the pair's links dialled by an
    # earlier transfer, the sender gives up in the middle of a frame, which breaks the link
    # and makes the master re-dial the ring under the transfer; without, the receipt is
    # still connecting when the question comes, and gives up on it.
    with Cluster(2, pool_size=2, heartbeat_timeout=15.0) as c:
        ids = c.run(my_id)
        if links == "dialled_first":
            assert all(c.run(one_transfer, ids))
        receiving = c.start(post_big_recv, ids[0], peers=[1])
        assert c.events.get(timeout=60) == ("receiving",)
        c.kill(1, signal.SIGSTOP)
        sending = c.start(impatient_big_send, ids[1], peers=[0])
        time.sleep(3)  # past the sender's 1 s deadline, well within the heartbeat timeout
        c.kill(1, signal.SIGCONT)
        sender = c.collect(sending, timeout=120)[0]
        receiver = c.collect(receiving, timeout=120)[0]
    assert sender["first"] == receiver["first"], (sender, receiver)
    if receiver["first"] == "ok":
        assert receiver["right"], receiver
    else:  # failed on the master's question, not at its own deadline (60 s)
        assert receiver["took"] < 30, receiver
    assert sender["intact"], sender
    assert sender["then_right"] and receiver["then_right"], (sender, receiver)
