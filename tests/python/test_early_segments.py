"""Segments that come before their operation starts here (link/ring_links.h, "Early
segments"): on loopback, a near link, they wait unread in their sockets while no operation
runs on the links, and land where the operation declares them; as soon as another
operation opens here they are read aside, so that one started in another order than the
neighbour's still gets the segments queued behind them.

Two real peer processes on loopback; peer 1 starts late, after peer 0's first segment
reached it (its ring link's received-bytes counter moved)."""

from __future__ import annotations

import time

import ml_dtypes
import numpy as np
import pccl
import pytest
from cluster import Cluster, notify, status_kib

COUNT = 16 << 20  # 64 MiB of float32: half of it is peer 0's first chunk to peer 1
SUM = pccl.ReduceOp.SUM


def _received(comm: pccl.Communicator) -> int:
    return comm.stats().links[1].bytes  # the "prev" link: frames read from peer 0


def _await_first_segment(comm: pccl.Communicator, before: int) -> None:
    deadline = time.monotonic() + 30
    while _received(comm) == before:
        assert time.monotonic() < deadline, "peer 0's segments never came"
        time.sleep(0.005)


def early_sender(comm: pccl.Communicator, index: int, tags: list[int]) -> bool:
    """Starts an in-place all-reduce per tag, in this order, and checks the sums."""
    xs = [np.full(COUNT, index + 1, np.float32) for _ in tags]
    handles = [comm.all_reduce_async(x, x, op=SUM, tag=tag, timeout=60)
               for x, tag in zip(xs, tags)]
    for handle in handles:
        handle.wait()
    return all(bool(np.all(x == 3)) for x in xs)


def late_receiver(comm: pccl.Communicator, index: int, tags: list[int],
                  watch_s: float) -> tuple[bool, int, int]:
    """Waits until peer 0's first segment is here, watches this process's resident memory
    for `watch_s`, then runs the all-reduces of `tags` one after the other, in this order.
    Returns whether the sums are right, how much the memory grew while watched (KiB) and
    how many bytes from peer 0 were read aside before their call here declared them."""
    before = _received(comm)
    early_before = comm.stats().links[1].early_bytes  # the links outlive each test
    notify("ready")
    _await_first_segment(comm, before)
    rss = status_kib("VmRSS")
    # A negative check needs a wait: a receiver that reads early segments ahead takes
    # peer 0's 32 MiB chunk within tens of milliseconds on loopback.
    time.sleep(watch_s)
    grew = status_kib("VmRSS") - rss
    xs = [np.full(COUNT, index + 1, np.float32) for _ in tags]
    for x, tag in zip(xs, tags):
        comm.all_reduce(x, x, op=SUM, tag=tag, timeout=60)
    early = comm.stats().links[1].early_bytes - early_before
    return all(bool(np.all(x == 3)) for x in xs), grew, early


@pytest.fixture(scope="module")
def pair():
    with Cluster(2, pool_size=2) as c:
        yield c


def _run(c: Cluster, sender_tags: list[int], receiver_tags: list[int],
         watch_s: float) -> tuple[bool, bool, int, int]:
    c.start(late_receiver, receiver_tags, watch_s, peers=[1])
    assert c.events.get(timeout=30)[0] == "ready"
    c.start(early_sender, sender_tags, peers=[0])
    (sent_ok,) = c.collect([0], timeout=90)
    ((received_ok, grew_kib, early_bytes),) = c.collect([1], timeout=90)
    return sent_ok, received_ok, grew_kib, early_bytes


@pytest.mark.timeout(120)
def test_a_late_peers_early_segments_wait_in_their_sockets(pair: Cluster) -> None:
    sent_ok, received_ok, grew_kib, early_bytes = _run(pair, [7], [7], watch_s=0.5)
    assert sent_ok and received_ok
    # Read ahead, peer 0's first chunk would take 32 MiB here; held, a few pages at most.
    assert grew_kib < 8 << 10, f"resident memory grew by {grew_kib} KiB before the call"
    # And they landed straight where the call declared them: none was read aside, not even
    # while peer 1's call was open but had not declared them yet (its first declaration
    # used to wake the receivers holding the others, which then read them into blocks).
    assert early_bytes == 0, f"{early_bytes} bytes were read aside"


@pytest.mark.timeout(120)
def test_an_operation_opened_in_another_order_releases_the_held_segments(pair: Cluster) -> None:
    # Peer 0 starts tag 11, then tag 12, whose segments queue behind tag 11's on the same
    # connections. Peer 1 holds tag 11's first segment, then runs tag 12 to its end before
    # it starts tag 11: tag 12's data can only come once the held segments are read aside.
    # Without that, tag 12 would fail at its 60 s deadline on both peers.
    sent_ok, received_ok, _, early_bytes = _run(pair, [11, 12], [12, 11], watch_s=0.0)
    assert sent_ok and received_ok
    assert early_bytes > 0, "tag 11's held segments were never read aside"


def windowed_sums(comm: pccl.Communicator, index: int, world: int) -> tuple[bool, int]:
    """Two in-place bfloat16 SUMs of 20 Mi elements among 3 peers: each runs in 3 windows
    (algo::kWindowElements), one ring pass after the other. Returns whether both sums are
    exact and how many bytes were read aside from every link meanwhile."""
    bf16 = np.dtype(ml_dtypes.bfloat16)
    early_before = sum(link.early_bytes for link in comm.stats().links)
    ok = True
    for _ in range(2):
        x = np.full(20 << 20, index + 1, bf16)
        comm.all_reduce(x, x, op=SUM, timeout=60)
        ok = ok and bool(np.all(x == world * (world + 1) // 2))
    return ok, sum(link.early_bytes for link in comm.stats().links) - early_before


@pytest.mark.timeout(120)
def test_the_next_windows_segments_wait_in_their_sockets_while_this_one_runs() -> None:
    # The previous peer starts the next window as soon as its sends of this one are out,
    # while this peer still waits for the rest of this window. Those segments used to be
    # read aside into blocks (10-15 MiB above the workspace with 3 and 4 peers); nothing
    # this window needs can stand behind them on their connection, so they now wait in
    # their sockets and land where the next window declares them.
    with Cluster(3, pool_size=2) as c:
        results = c.run(windowed_sums, 3, timeout=90)
    assert all(ok for ok, _ in results), results
    assert all(early == 0 for _, early in results), results
