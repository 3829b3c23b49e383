"""Broadcast, all-gather and reduce-scatter between real peer processes on loopback.

Each result is checked against a numpy reference; the bytes each peer sent against the
ring algorithm's figure; bad arguments against a clear error on every peer; and a peer
SIGKILLed mid-operation against what the survivors see: PeerLostError, their buffers as
they were, and a retry over the survivors that is right.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import ml_dtypes
import numpy as np
import pccl
import pytest
from cluster import Cluster, notify
from pccl import ReduceOp

BF16 = np.dtype(ml_dtypes.bfloat16)
F32 = np.dtype(np.float32)
# 300007 is prime: uneven blocks and segments (tests/cpp/ring_collectives_test.cc covers
# small blocks in many segments, and worlds up to 6).
COUNTS = [1, 300_007]
BIG_COUNT = 16 << 20  # 64 MiB of float32
DTYPES = [np.dtype(np.float32), np.dtype(np.float16), BF16, np.dtype(np.int64),
          np.dtype(np.uint8)]


def dt(name: str) -> np.dtype:
    return BF16 if name == "bfloat16" else np.dtype(name)


def data(dtype: np.dtype, count: int, salt: int) -> np.ndarray:
    """Small integers (exact in every dtype, sums too) that vary along the array."""
    values = (np.arange(count, dtype=np.int64) * 7 + salt * 13) % 17
    return values.astype(dtype)


# --- functions that run inside the peers ------------------------------------------------------

def my_id(comm: pccl.Communicator, index: int) -> int:
    return comm.peer_id


def broadcast_each_root(comm: pccl.Communicator, index: int, ids: list[int], dtype: str,
                        count: int) -> list[tuple[bool, int]]:
    """Every peer's turn as the root; per turn: (buffer equals the root's data, bytes sent)."""
    out = []
    for turn, root in enumerate(ids):
        mine = data(dt(dtype), count, salt=ids.index(comm.peer_id) + 10 * turn)
        buf = mine.copy()
        info = comm.broadcast(buf, root=root, tag=turn)
        expected = data(dt(dtype), count, salt=ids.index(root) + 10 * turn)
        again = mine.copy()  # and with the receivers' restore copy
        comm.broadcast(again, root=root, tag=100 + turn, restore_input=True)
        out.append((bool(np.array_equal(buf.view(np.uint8), expected.view(np.uint8))) and
                    bool(np.array_equal(again.view(np.uint8), expected.view(np.uint8))),
                    info.tx_bytes))
    return out


def gather(comm: pccl.Communicator, index: int, ids: list[int], dtype: str, count: int,
           order: list[int] | None, in_place: bool) -> tuple[bytes, int]:
    blocks = order or ids
    recv = np.zeros(count * len(ids), dtype=dt(dtype))
    send = data(dt(dtype), count, salt=ids.index(comm.peer_id))
    if in_place:  # the input is this peer's own block of the output
        own = blocks.index(comm.peer_id)
        recv[own * count:(own + 1) * count] = send
        send = recv[own * count:(own + 1) * count]
    info = comm.all_gather(send, recv, order=order)
    return recv.tobytes(), info.tx_bytes


def scatter_reduce(comm: pccl.Communicator, index: int, ids: list[int], dtype: str,
                   count: int, op: ReduceOp, order: list[int] | None) -> tuple[bytes, int]:
    send = data(dt(dtype), count * len(ids), salt=ids.index(comm.peer_id))
    before = send.copy()
    recv = np.zeros(count, dtype=dt(dtype))
    info = comm.reduce_scatter(send, recv, op=op, order=order)
    assert np.array_equal(send, before), "reduce_scatter wrote its input"
    return recv.tobytes(), info.tx_bytes


def routed(comm: pccl.Communicator, index: int, ids: list[int], dtype: str, count: int,
           order: list[int] | None) -> list[tuple[str, bytes, int]]:
    """Gather and scatter from every root, then an all-to-all: (what, result, bytes sent)."""
    me = ids.index(comm.peer_id)
    n = len(ids)
    out = []
    for turn, root in enumerate(ids):
        send = data(dt(dtype), count, salt=me + 10 * turn)
        recv = np.zeros(count * n, dt(dtype)) if comm.peer_id == root else None
        info = comm.gather(send, recv, root=root, order=order, tag=turn)
        out.append((f"gather to {turn}", b"" if recv is None else recv.tobytes(), info.tx_bytes))
        whole = data(dt(dtype), count * n, salt=20 + turn) if comm.peer_id == root else None
        mine = np.zeros(count, dt(dtype))
        info = comm.scatter(whole, mine, root=root, order=order, tag=100 + turn)
        out.append((f"scatter from {turn}", mine.tobytes(), info.tx_bytes))
    send = np.concatenate([data(dt(dtype), count, salt=100 * me + b) for b in range(n)])
    recv = np.zeros_like(send)
    info = comm.all_to_all(send, recv, order=order, tag=200)
    out.append(("all_to_all", recv.tobytes(), info.tx_bytes))
    assert np.array_equal(send, np.concatenate(
        [data(dt(dtype), count, salt=100 * me + b) for b in range(n)])), "all_to_all wrote send"
    return out


def expect_error(comm: pccl.Communicator, index: int, call: str,
                 ids: list[int]) -> tuple[str, float]:
    """Runs one bad call on every peer; returns the error it raised (type: message) and
    the seconds it took."""
    n = len(ids)
    started = time.monotonic()
    try:
        if call == "recv_size":  # every peer sized recv for one peer too many
            comm.all_gather(np.ones(4, np.float32), np.zeros(4 * (n + 1), np.float32))
        elif call == "recv_size_one_peer":  # only the first peer in `ids` is wrong
            size = n + 1 if comm.peer_id == ids[0] else n
            comm.all_gather(np.ones(4, np.float32), np.zeros(4 * size, np.float32))
        elif call == "order":
            comm.reduce_scatter(np.ones(4 * n, np.float32), np.zeros(4, np.float32),
                                op=ReduceOp.SUM, order=ids[:-1] + [12345])
        elif call == "root":
            comm.broadcast(np.ones(4, np.float32), root=12345)
        elif call == "gather_root":
            comm.gather(np.ones(4, np.float32), None, root=12345)
        elif call == "gather_no_output":  # the root passes no output
            comm.gather(np.ones(4, np.float32), None, root=ids[0])
        elif call == "all_to_all_size":
            comm.all_to_all(np.ones(4 * n + 1, np.float32), np.zeros(4 * n + 1, np.float32))
        elif call == "indivisible":
            comm.reduce_scatter(np.ones(4 * n + 1, np.float32), np.zeros(4, np.float32),
                                op=ReduceOp.SUM)
        else:
            raise AssertionError(call)
    except pccl.PCCLError as e:
        return f"{type(e).__name__}: {e}", time.monotonic() - started
    return "no error", time.monotonic() - started


def bad_all_to_all_rounds(comm: pccl.Communicator, index: int, ids: list[int], rounds: int,
                          block: int) -> tuple[bool, list[str], bool]:
    """A right all-to-all (every pair's links get built), then `rounds` in which ids[0]
    passes buffers that do not split into blocks, half a second late (the others have
    sent it their blocks; it fails before it opens anything), then a right one. Returns whether the first right
    one was, the bad rounds' errors, and whether the last was right."""
    n = len(ids)
    me = ids.index(comm.peer_id)

    def right() -> bool:
        send = np.concatenate([data(F32, block, 100 * me + b) for b in range(n)])
        recv = np.zeros_like(send)
        comm.all_to_all(send, recv, timeout=20)
        return all(np.array_equal(recv[s * block:(s + 1) * block], data(F32, block, 100 * s + me))
                   for s in range(n))

    first = right()
    errors = []
    for _ in range(rounds):
        size = block * n + (1 if comm.peer_id == ids[0] else 0)
        if comm.peer_id == ids[0]:
            time.sleep(0.5)  # the others' blocks are here before this call fails
        try:
            comm.all_to_all(np.ones(size, F32), np.zeros(size, F32), timeout=20)
            errors.append("no error")
        except pccl.PCCLError as e:
            errors.append(type(e).__name__)
    return first, errors, right()


def then_all_gather(comm: pccl.Communicator, index: int, ids: list[int]) -> bool:
    recv = np.zeros(len(ids), np.int64)
    comm.all_gather(np.array([comm.peer_id % 1000], np.int64), recv, timeout=30)
    return recv.tolist() == [i % 1000 for i in ids]


def interrupted(comm: pccl.Communicator, index: int, kind: str, ids: list[int], root: int,
                survivors: list[int], victim_stall: float,
                written_first: bool = False) -> dict[str, Any]:
    """A big collective that a SIGKILL interrupts, then the retry over the survivors.

    A survivor starts its operation (bound to the ring at once) before it says "starting",
    so the kill lands while the operation waits on the victim; the victim says "starting"
    and stalls before joining, so the survivors cannot finish first. `written_first`: the
    survivor waits (10 s at most) until the operation wrote into its buffer before it says
    "starting", so that a failure must put the buffer back (a broadcast's receiver)."""
    n = len(ids)
    count = BIG_COUNT // n
    salt = ids.index(comm.peer_id)
    if kind == "broadcast":
        send = recv = data(np.dtype(np.float32), BIG_COUNT, salt)
    elif kind == "all_gather":
        send, recv = data(np.dtype(np.float32), count, salt), np.full(count * n, -1, np.float32)
    elif kind == "all_to_all":
        send = np.concatenate([data(F32, count, 100 * salt + b) for b in range(n)])
        recv = np.full(count * n, -1, np.float32)
    elif kind == "scatter":  # the root's blocks go straight to each peer (pair links)
        send = data(F32, count * n, 20) if comm.peer_id == root else np.zeros(0, np.float32)
        recv = np.full(count, -1, np.float32)
    else:
        send, recv = data(np.dtype(np.float32), count * n, salt), np.full(count, -1, np.float32)
    before = (send.copy(), recv.copy())
    written = True  # unless it waits for it and it does not happen
    if victim_stall > 0:
        notify("starting", index)
        time.sleep(victim_stall)  # killed meanwhile
    try:
        if kind == "broadcast":
            handle = comm.broadcast_async(recv, root=root, timeout=30, restore_input=True)
        elif kind == "all_gather":
            handle = comm.all_gather_async(send, recv, timeout=30)
        elif kind == "all_to_all":
            handle = comm.all_to_all_async(send, recv, timeout=30)
        elif kind == "scatter":
            handle = comm.scatter_async(send if comm.peer_id == root else None, recv,
                                        root=root, timeout=30)
        else:
            handle = comm.reduce_scatter_async(send, recv, op=ReduceOp.SUM, timeout=30)
        if written_first:
            # Polled while the operation writes (a benign race for a test; there is no event
            # to wait on): the first element lands with the first segment.
            until = time.monotonic() + 10
            while recv[0] == before[1][0] and time.monotonic() < until:
                time.sleep(0.001)
            written = bool(recv[0] != before[1][0])
        if victim_stall == 0:
            notify("starting", index)
        handle.result()
        return {"first": "no error"}
    except pccl.PCCLError as e:
        first = type(e).__name__
    out: dict[str, Any] = {"first": first, "written": written,
                           "send_intact": bool(np.array_equal(send, before[0]))}
    if kind == "broadcast":  # the buffer is the input of the root, the output elsewhere
        out["recv_intact"] = bool(np.array_equal(recv, before[1]))
    m = len(survivors)
    if kind == "broadcast":
        info = comm.broadcast(recv, root=root, timeout=30)
        out["retry_right"] = bool(np.array_equal(
            recv, data(np.dtype(np.float32), BIG_COUNT, ids.index(root))))
    elif kind == "all_gather":
        recv = np.zeros(count * m, np.float32)
        info = comm.all_gather(send, recv, timeout=30)
        out["retry_right"] = all(
            np.array_equal(recv[k * count:(k + 1) * count],
                           data(np.dtype(np.float32), count, ids.index(p)))
            for k, p in enumerate(survivors))
    elif kind == "all_to_all":
        k = survivors.index(comm.peer_id)
        send = np.concatenate([data(F32, count, 100 * salt + b) for b in range(m)])
        recv = np.zeros(count * m, np.float32)
        info = comm.all_to_all(send, recv, timeout=30)
        out["retry_right"] = all(
            np.array_equal(recv[s * count:(s + 1) * count],
                           data(F32, count, 100 * ids.index(p) + k))
            for s, p in enumerate(survivors))
    elif kind == "scatter":
        k = survivors.index(comm.peer_id)
        whole = data(F32, count * m, 30) if comm.peer_id == root else None
        recv = np.zeros(count, np.float32)
        info = comm.scatter(whole, recv, root=root, timeout=30)
        out["retry_right"] = bool(np.array_equal(
            recv, data(F32, count * m, 30)[k * count:(k + 1) * count]))
    else:
        block = count * n // m
        send = data(np.dtype(np.float32), block * m, salt)
        recv = np.zeros(block, np.float32)
        info = comm.reduce_scatter(send, recv, op=ReduceOp.SUM, timeout=30)
        k = survivors.index(comm.peer_id)
        total = sum(data(np.dtype(np.float32), block * m, ids.index(p)) for p in survivors)
        out["retry_right"] = bool(np.array_equal(recv, total[k * block:(k + 1) * block]))
    out["world"] = info.local_world_size
    return out


# --- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=[2, 3], ids=lambda w: f"world{w}")
def cluster(request: pytest.FixtureRequest):
    with Cluster(request.param, pool_size=2) as c:
        c.ids = sorted(c.run(my_id))  # type: ignore[attr-defined]
        yield c


# --- tests --------------------------------------------------------------------------------------

@pytest.mark.timeout(120)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("count", COUNTS)
def test_broadcast_from_every_root(cluster: Cluster, dtype: np.dtype, count: int) -> None:
    ids = cluster.ids  # type: ignore[attr-defined]
    n = len(ids)
    ring = cluster.run(lambda_ring_order)[0]
    results = cluster.run(broadcast_each_root, ids, dtype.name, count)
    size = count * dtype.itemsize
    for index, turns in enumerate(results):
        assert all(right for right, _ in turns), f"peer {index}: {turns}"
    # Each byte crosses each link once: the root and every peer but the one before the
    # root in the ring send the buffer once; that one sends nothing.
    my_ids = cluster.run(my_id)
    for turn, root in enumerate(ids):
        last = ring[(ring.index(root) - 1) % n]
        for index, turns in enumerate(results):
            assert turns[turn][1] == (0 if my_ids[index] == last else size), (turn, index)


def lambda_ring_order(comm: pccl.Communicator, index: int) -> list[int]:
    return comm.ring_order()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("layout", ["ids", "reversed", "in_place"])
def test_all_gather(cluster: Cluster, dtype: np.dtype, count: int, layout: str) -> None:
    ids = cluster.ids  # type: ignore[attr-defined]
    order = list(reversed(ids)) if layout == "reversed" else None
    results = cluster.run(gather, ids, dtype.name, count, order, layout == "in_place")
    expected = np.concatenate([data(dtype, count, ids.index(p)) for p in (order or ids)])
    for index, (gathered, tx) in enumerate(results):
        assert gathered == expected.tobytes(), f"peer {index}"
        assert tx == (len(ids) - 1) * count * dtype.itemsize  # the ring's figure, exactly


@pytest.mark.timeout(120)
@pytest.mark.parametrize("dtype", [np.dtype(np.float32), BF16, np.dtype(np.int8)],
                         ids=lambda d: d.name)
@pytest.mark.parametrize("count", [0] + COUNTS)  # 0: nothing moves, no pair links needed
@pytest.mark.parametrize("layout", ["ids", "reversed"])
def test_gather_scatter_all_to_all(cluster: Cluster, dtype: np.dtype, count: int,
                                   layout: str) -> None:
    ids = cluster.ids  # type: ignore[attr-defined]
    n = len(ids)
    order = list(reversed(ids)) if layout == "reversed" else None
    blocks = order or ids
    results = cluster.run(routed, ids, dtype.name, count, order)
    my_ids = cluster.run(my_id)
    size = count * dtype.itemsize
    for index, got in enumerate(results):
        me = my_ids[index]
        for turn, root in enumerate(ids):
            what, gathered, tx = got[2 * turn]
            if me == root:
                expected = np.concatenate([data(dtype, count, ids.index(p) + 10 * turn)
                                           for p in blocks])
                assert gathered == expected.tobytes(), (what, index)
            # Two peers: the ring is direct. Three or more: each block goes straight to
            # its destination (pair links), so every peer but the root sends its own
            # block once; the root none.
            assert tx == (0 if me == root else size), (what, index, tx)
            what, mine, tx = got[2 * turn + 1]
            whole = data(dtype, count * n, 20 + turn)
            k = blocks.index(me)
            assert mine == whole[k * count:(k + 1) * count].tobytes(), (what, index)
            # The root sends n - 1 blocks, straight to their peers; the others none.
            assert tx == (n - 1 if me == root else 0) * size, (what, index, tx)
        what, exchanged, tx = got[-1]
        k = blocks.index(me)
        expected = np.concatenate([data(dtype, count, 100 * ids.index(p) + k) for p in blocks])
        assert exchanged == expected.tobytes(), (what, index)
        assert tx == (n - 1) * size, (what, index, tx)  # each block once, to its peer


REDUCE_CASES = [("float32", ReduceOp.SUM), ("float32", ReduceOp.AVG), ("float32", ReduceOp.MAX),
                ("float16", ReduceOp.SUM), ("bfloat16", ReduceOp.AVG), ("int32", ReduceOp.SUM),
                ("int64", ReduceOp.MIN), ("uint8", ReduceOp.PROD)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("dtype_name,op", REDUCE_CASES, ids=lambda v: getattr(v, "name", v))
@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("layout", ["ids", "reversed"])
def test_reduce_scatter(cluster: Cluster, dtype_name: str, op: ReduceOp, count: int,
                        layout: str) -> None:
    ids = cluster.ids  # type: ignore[attr-defined]
    n = len(ids)
    dtype = dt(dtype_name)
    order = list(reversed(ids)) if layout == "reversed" else None
    results = cluster.run(scatter_reduce, ids, dtype.name, count, op, order)
    inputs = np.stack([data(dtype, count * n, k).astype(np.float64) for k in range(n)])
    reduce = {ReduceOp.SUM: np.sum, ReduceOp.AVG: np.mean, ReduceOp.MAX: np.max,
              ReduceOp.MIN: np.min, ReduceOp.PROD: np.prod}[op]
    total = reduce(inputs, axis=0)
    if dtype.kind in "ui":  # integers wrap as the dtype does
        stacked = np.stack([data(dtype, count * n, k) for k in range(n)])
        total = (reduce(stacked, axis=0, dtype=dtype) if op in (ReduceOp.SUM, ReduceOp.PROD)
                 else reduce(stacked, axis=0))
    my_ids = cluster.run(my_id)
    half = dtype.itemsize == 2 and dtype.kind == "f" or dtype == BF16
    for index, (reduced, tx) in enumerate(results):
        k = (order or ids).index(my_ids[index])
        want = np.asarray(total[k * count:(k + 1) * count]).astype(dtype)
        got = np.frombuffer(reduced, dtype=dtype)
        assert np.array_equal(got, want), f"peer {index}: {got[:8]} != {want[:8]}"
        # (world - 1) blocks. float16/bfloat16: the first is this peer's input, as it is;
        # the later ones are partial sums, which travel as float32.
        if half:
            assert tx == count * (dtype.itemsize + (n - 2) * 4), (index, tx)
        else:
            assert tx == (n - 1) * count * dtype.itemsize, (index, tx)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("call,message", [
    ("recv_size", "needs an output of"),
    ("recv_size_one_peer", "needs an output of"),
    ("order", "is not in `order`"),
    ("root", "is not in this group"),
    ("indivisible", "do not split into"),
    ("gather_root", "is not in this group"),
    ("gather_no_output", "needs an output of"),
    ("all_to_all_size", "do not split into"),
])
def test_bad_arguments_fail_on_every_peer_and_the_next_call_works(
        cluster: Cluster, call: str, message: str) -> None:
    ids = cluster.ids  # type: ignore[attr-defined]
    results = cluster.run(expect_error, call, ids, timeout=90)
    my_ids = cluster.run(my_id)
    for index, (error, seconds) in enumerate(results):
        # The calls' deadline is the default 60 s. A peer whose call was right learns of
        # the bad one from the verdict, even while it waits for that peer to connect
        # (a gather's pair links): waiting out the deadline would be the bug.
        assert seconds < 30, (error, seconds)
        if call in ("recv_size_one_peer", "gather_no_output") and my_ids[index] != ids[0]:
            # The peers whose buffers were right fail by the verdict of the one that was
            # not, and say whose failure it was.
            assert error.startswith("InvalidUsageError") or error.startswith("PeerLostError"), \
                error
            assert message in error or "failed" in error, error
        else:
            assert error.startswith("InvalidUsageError") and message in error, error
    assert cluster.run(then_all_gather, ids, timeout=60) == [True] * len(ids)


@pytest.mark.timeout(120)
def test_blocks_sent_to_a_member_that_failed_first_are_let_go(monkeypatch: Any) -> None:
    # A member that fails an all-to-all before it opens it never takes the blocks its
    # partners send it over their pair links. The verdict must fail that operation there
    # too, freeing what arrived early (PCCL_EARLY_BUDGET_BYTES, 4 MiB here, against 3 MiB
    # blocks) and draining the rest: else the second bad round fills the budget and the
    # pair's connections stall for good, and the last all-to-all times out.
    monkeypatch.setenv("PCCL_EARLY_BUDGET_BYTES", str(4 << 20))
    with Cluster(3, pool_size=2) as c:
        ids = sorted(c.run(my_id))
        results = c.run(bad_all_to_all_rounds, ids, 3, (3 << 20) // 4, timeout=100)
        for index, (first, errors, last) in enumerate(results):
            assert first, index
            assert all(e in ("InvalidUsageError", "PeerLostError") for e in errors), errors
            assert last, index


def test_bad_arguments_refused_before_anything_is_sent() -> None:
    comm = pccl.Communicator("127.0.0.1:1")
    with pytest.raises(ValueError, match="root must be a peer id"):
        comm.broadcast(np.ones(4, np.float32), root=-1)
    with pytest.raises(ValueError, match="order names a peer twice"):
        comm.all_gather(np.ones(4, np.float32), np.ones(8, np.float32), order=[5, 5])
    with pytest.raises(TypeError, match="dtype"):
        comm.all_gather(np.ones(4, np.float32), np.ones(8, np.float64))
    with pytest.raises(TypeError, match="recv must be a numpy array or torch tensor"):
        comm.all_to_all(np.ones(4, np.float32), None)
    comm.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["broadcast", "all_gather", "reduce_scatter", "all_to_all",
                                  "scatter"])
def test_sigkill_mid_collective_fails_survivors_with_inputs_intact_and_retry_is_right(
        kind: str) -> None:
    with Cluster(4, pool_size=2) as c:
        my_ids = c.run(my_id)
        ids = sorted(my_ids)
        # The victim is two hops after the root on the ring: the peer between them receives
        # the root's data while the victim stalls, so its buffer must be put back.
        ring = c.run(lambda_ring_order)[0]
        root = my_ids[0]
        victim = my_ids.index(ring[(ring.index(root) + 2) % len(ring)])
        survivors = [i for i in range(4) if i != victim]
        alive = sorted(my_ids[i] for i in survivors)
        # The peer between the root and the victim: a broadcast reaches its buffer.
        written = my_ids.index(ring[(ring.index(root) + 1) % len(ring)])
        c.start(interrupted, kind, ids, root, alive, 0.0, peers=[i for i in survivors
                                                                if i != written])
        c.start(interrupted, kind, ids, root, alive, 0.0, kind == "broadcast",
                peers=[written])
        c.start(interrupted, kind, ids, root, alive, 5.0, peers=[victim])
        for _ in range(4):
            assert c.events.get(timeout=60)[0] == "starting"
        c.kill(victim, signal.SIGKILL)
        results = c.collect(survivors, timeout=120)
        for r in results:
            assert r["first"] == "PeerLostError", r
            assert r["written"], "the broadcast never reached the peer after the root"
            assert r["send_intact"], r
            assert r.get("recv_intact", True), "a failed broadcast changed a buffer"
            assert r["world"] == 3 and r["retry_right"], r
