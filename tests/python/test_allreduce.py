"""Ring all-reduce between real peer processes on loopback, against numpy references."""

from __future__ import annotations

import gc
import multiprocessing as mp
import socket
import struct
import threading
import time

import ml_dtypes
import numpy as np
import pccl
import pytest
from cluster import Cluster, notify, status_kib, wait_for_world
from pccl import DataType, ReduceOp

BF16 = np.dtype(ml_dtypes.bfloat16)
SMALL_COUNTS = [1, 2, 1025, 7919]  # 7919 is prime
BIG_COUNT = 16 << 20  # 64 MiB of float32


# --- inputs and references (used in the peers and in the test process) --------------------

def make_input(dtype: DataType, op: ReduceOp, count: int, index: int, seed: int) -> np.ndarray:
    """Peer `index`'s input. Floats are small integers so that every sum, product and
    average the ring computes is exact before its single final rounding."""
    rng = np.random.default_rng([seed, index, int(dtype), int(op), count])
    np_dtype = dtype.to_numpy_dtype()
    if np_dtype.kind in "ui":
        info = np.iinfo(np_dtype)
        return rng.integers(info.min, info.max, size=count, dtype=np_dtype, endpoint=True)
    return rng.integers(-8, 9, size=count).astype(np_dtype)


def reference(dtype: DataType, op: ReduceOp, inputs: list[np.ndarray]) -> np.ndarray:
    np_dtype = inputs[0].dtype
    world = len(inputs)
    if np_dtype.kind in "ui":
        bits = np_dtype.itemsize * 8
        as_int = [x.astype(object) for x in inputs]
        if op in (ReduceOp.MIN, ReduceOp.MAX):
            f = np.minimum if op is ReduceOp.MIN else np.maximum
            out = inputs[0]
            for x in inputs[1:]:
                out = f(out, x)
            return out
        acc = as_int[0]
        for x in as_int[1:]:
            acc = acc * x if op is ReduceOp.PROD else acc + x
        wrapped = np.array([v % (1 << bits) for v in acc], dtype=object)
        if np_dtype.kind == "i":
            wrapped = np.array([v - (1 << bits) if v >= 1 << (bits - 1) else v for v in wrapped],
                               dtype=object)
        if op is ReduceOp.AVG:
            wrapped = np.array([abs(v) // world * (1 if v >= 0 else -1) for v in wrapped],
                               dtype=object)
        return wrapped.astype(np_dtype)
    exact = [x.astype(np.float64) for x in inputs]
    if op in (ReduceOp.SUM, ReduceOp.AVG):
        r = sum(exact[1:], exact[0])
    elif op is ReduceOp.PROD:
        r = exact[0]
        for x in exact[1:]:
            r = r * x
    else:
        f = np.minimum if op is ReduceOp.MIN else np.maximum
        r = exact[0]
        for x in exact[1:]:
            r = f(r, x)
    if op is ReduceOp.AVG:
        wide = np.float64 if np_dtype == np.float64 else np.float32
        return (r.astype(wide) / wide(world)).astype(np_dtype)
    return r.astype(np_dtype)


def as_bytes(a: np.ndarray) -> bytes:
    return a.view(np.uint8).tobytes()


# --- functions that run inside the peers ----------------------------------------------------

def every_dtype_and_op(comm: pccl.Communicator, index: int, counts: list[int],
                       seed: int) -> dict[tuple[int, int, int, str], bytes]:
    out = {}
    for dtype in DataType:
        for op in ReduceOp:
            for count in counts:
                x = make_input(dtype, op, count, index, seed)
                original = x.copy()
                recv = np.empty_like(x)
                info = comm.all_reduce(x, recv, op=op)
                assert info.local_world_size == comm.get_attribute(pccl.Attribute.LOCAL_WORLD_SIZE)
                assert as_bytes(x) == as_bytes(original), "out-of-place input changed"
                out[(int(dtype), int(op), count, "out of place")] = as_bytes(recv)
                comm.all_reduce(x, x, op=op, tag=1)
                out[(int(dtype), int(op), count, "in place")] = as_bytes(x)
                x = original.copy()
                comm.all_reduce(x, x, op=op, tag=2, restore_input=False)
                out[(int(dtype), int(op), count, "in place, no restore")] = as_bytes(x)
    return out


def big_sum(comm: pccl.Communicator, index: int, world: int, count: int) -> tuple[bool, int]:
    """A 64 MiB float32 SUM whose exact result every peer checks, in place."""
    def contribution(i: int) -> np.ndarray:
        return np.random.default_rng(i).integers(-1000, 1000, size=count).astype(np.float32)

    x = contribution(index)
    info = comm.all_reduce(x, x, op=ReduceOp.SUM)
    expected = sum((contribution(i) for i in range(world)), np.zeros(count, np.float32))
    tx_ok = info.tx_bytes >= 2 * (world - 1) * count * 4 // world - 8 * world
    return bool(np.array_equal(x, expected)) and tx_ok, pccl.kernels.hash64(x)


def big_half_sums(comm: pccl.Communicator, index: int, world: int,
                  count: int) -> dict[tuple[str, str], tuple[bool, int, int]]:
    """float16 and bfloat16 SUMs of `count` elements, more than one window of the float32
    workspace (algo/ring_allreduce.h: 4 Mi elements), in place and out of place. Small
    integers: the exact sum is the only right answer, whatever the order of summation.
    Each result: exact, its hash, the bytes this peer sent."""
    out = {}
    for dtype in (np.dtype(np.float16), BF16):
        def contribution(i: int, dtype: np.dtype = dtype) -> np.ndarray:
            return np.random.default_rng(i).integers(-8, 9, size=count).astype(dtype)

        expected = sum((contribution(i).astype(np.float32) for i in range(world)),
                       np.zeros(count, np.float32)).astype(dtype)
        for how in ("in place", "out of place"):
            x = contribution(index)
            y = x if how == "in place" else np.empty_like(x)
            info = comm.all_reduce(x, y, op=ReduceOp.SUM)
            out[(dtype.name, how)] = (bool(np.array_equal(y.view(np.uint16),
                                                          expected.view(np.uint16))),
                                      pccl.kernels.hash64(y), info.tx_bytes)
    return out


def half_scratch_growth(comm: pccl.Communicator, index: int, count: int) -> float:
    """MiB the peak resident memory grew by over two in-place bfloat16 SUMs of `count`
    elements without the restore copy (the input allocated and touched before)."""
    x = np.ones(count, BF16)
    before = status_kib("VmRSS")
    for _ in range(2):
        x.view(np.uint16)[:] = np.ones(1, BF16).view(np.uint16)[0]
        comm.all_reduce(x, x, op=ReduceOp.SUM, restore_input=False)
        assert float(x[0]) == 2.0 and float(x[-1]) == 2.0
    return (status_kib("VmHWM") - before) / 1024


def random_floats(comm: pccl.Communicator, index: int, dtype_value: int) -> int:
    """Random (inexact) float data: returns the hash of the result."""
    dtype = DataType(dtype_value)
    x = np.random.default_rng(100 + index).standard_normal(100_003).astype(dtype.to_numpy_dtype())
    comm.all_reduce(x, x, op=ReduceOp.AVG, tag=7)
    return pccl.kernels.hash64(x)


def concurrent_tags(comm: pccl.Communicator, index: int, world: int) -> list[bool]:
    """Four all-reduces with distinct tags, dtypes and ops in flight at once."""
    specs = [(DataType.FLOAT, ReduceOp.SUM, 300_001), (DataType.INT32, ReduceOp.MAX, 5_000),
             (DataType.BFLOAT16, ReduceOp.AVG, 70_000), (DataType.UINT8, ReduceOp.MIN, 1 << 20)]
    handles, results = [], []
    for tag, (dtype, op, count) in enumerate(specs, start=10):
        x = make_input(dtype, op, count, index, seed=tag)
        recv = np.empty_like(x)
        handles.append(comm.all_reduce_async(x, recv, op=op, tag=tag))
        results.append((dtype, op, count, recv))
    ok = []
    for handle, (dtype, op, count, recv) in zip(handles, results):
        is_success, status, info = handle.wait()
        inputs = [make_input(dtype, op, count, i, seed=10 + len(ok)) for i in range(world)]
        ok.append(is_success and status == 0 and info.local_world_size == world and
                  as_bytes(recv) == as_bytes(reference(dtype, op, inputs)))
    return ok


def mismatched_count(comm: pccl.Communicator, index: int) -> str:
    x = np.ones(1000 + index, dtype=np.float32)  # every peer a different count
    try:
        comm.all_reduce(x, x, op=ReduceOp.SUM, tag=99, timeout=20)
    except pccl.InvalidUsageError as e:
        return f"InvalidUsageError: {e}"
    except pccl.PCCLError as e:
        return f"{type(e).__name__}: {e}"
    return "no error"


def mismatched_dtype(comm: pccl.Communicator, index: int) -> str:
    x = np.ones(1000, dtype=np.float32 if index == 0 else np.int32)
    try:
        comm.all_reduce(x, x, op=ReduceOp.SUM, tag=98, timeout=20)
    except pccl.PCCLError as e:
        return type(e).__name__
    return "no error"


def sum_of_indices(comm: pccl.Communicator, index: int, count: int) -> float:
    x = np.full(count, index + 1, dtype=np.float64)
    comm.all_reduce(x, x, op=ReduceOp.SUM)
    return float(x[0])


def torch_tensors(comm: pccl.Communicator, index: int) -> list[bool]:
    """torch CPU tensors, in place and out of place, float32 and bfloat16, sync and async."""
    import torch

    ok = []
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.full((1000,), float(index + 1), dtype=dtype)
        out = torch.empty_like(x)
        comm.all_reduce(x, out, op=ReduceOp.SUM, tag=20)
        handle = comm.all_reduce_async(x, x, op=ReduceOp.MAX, tag=21)
        info = handle.result()
        world = info.local_world_size
        ok.append(bool(torch.all(out == world * (world + 1) / 2)) and bool(torch.all(x == world)))
    return ok


def attributes(comm: pccl.Communicator, index: int) -> list[int]:
    return [comm.get_attribute(a) for a in pccl.Attribute]


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=[(2, 1), (3, 4), (4, 2)], ids=lambda p: f"world{p[0]}-pool{p[1]}")
def cluster(request: pytest.FixtureRequest):
    world, pool = request.param
    with Cluster(world, pool_size=pool) as c:
        yield c


# --- tests --------------------------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_every_dtype_and_op_matches_numpy(cluster: Cluster) -> None:
    seed = 2024
    results = cluster.run(every_dtype_and_op, SMALL_COUNTS, seed, timeout=240)
    for dtype in DataType:
        for op in ReduceOp:
            for count in SMALL_COUNTS:
                inputs = [make_input(dtype, op, count, i, seed) for i in range(cluster.world)]
                expected = as_bytes(reference(dtype, op, inputs))
                for how in ("out of place", "in place", "in place, no restore"):
                    for index, got in enumerate(results):
                        assert got[(int(dtype), int(op), count, how)] == expected, (
                            f"{dtype.name} {op.name} count={count} {how} peer {index}")


@pytest.mark.timeout(300)
def test_64_mib_sum_is_exact_and_identical(cluster: Cluster) -> None:
    results = cluster.run(big_sum, cluster.world, BIG_COUNT, timeout=240)
    assert all(ok for ok, _ in results)
    assert len({h for _, h in results}) == 1


@pytest.mark.timeout(300)
def test_half_precision_beyond_one_workspace_window_is_exact(cluster: Cluster) -> None:
    count, n = 9_000_001, cluster.world
    results = cluster.run(big_half_sums, n, count, timeout=240)
    for key in results[0]:
        assert all(r[key][0] for r in results), f"{key}: a peer's sum is not exact"
        assert len({r[key][1] for r in results}) == 1, f"{key}: peers differ"
        # Every chunk leaves one peer per step: at step 0 as an input (2 bytes an element),
        # at the later reduce-scatter steps as a float32 sum, in the all-gather as a result.
        assert sum(r[key][2] for r in results) == count * (2 + 4 * (n - 2) + 2 * (n - 1)), key


@pytest.mark.timeout(120)
def test_half_precision_scratch_is_one_window_not_the_tensor() -> None:
    # 128 MiB of bfloat16: its float32 partial sums would take 256 MiB; one window of them
    # (algo::kWindowElements) takes 32 MiB, plus segments of the next window that come
    # early (fresh processes: the peak is this call's).
    count = 64 << 20
    with Cluster(2) as c:
        growth = c.run(half_scratch_growth, count, timeout=100)
    assert max(growth) < 96, growth


@pytest.mark.parametrize("dtype", [DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16,
                                   DataType.BFLOAT16], ids=lambda d: d.name)
def test_random_floats_bit_identical_on_every_peer(cluster: Cluster, dtype: DataType) -> None:
    hashes = cluster.run(random_floats, int(dtype))
    assert len(set(hashes)) == 1


def test_concurrent_tags_with_different_ops(cluster: Cluster) -> None:
    for ok in cluster.run(concurrent_tags, cluster.world, timeout=120):
        assert ok == [True, True, True, True]


def test_torch_tensors(cluster: Cluster) -> None:
    pytest.importorskip("torch")
    assert cluster.run(torch_tensors) == [[True, True]] * cluster.world


def test_attributes(cluster: Cluster) -> None:
    for values in cluster.run(attributes):
        assert values == [cluster.world, cluster.world, 1, cluster.world]


def test_disagreeing_count_raises_on_every_peer(cluster: Cluster) -> None:
    outcomes = cluster.run(mismatched_count, timeout=60)
    for outcome in outcomes:
        assert outcome.startswith("InvalidUsageError"), outcome
    # The run still works afterwards.
    assert cluster.run(sum_of_indices, 10) == [cluster.world * (cluster.world + 1) / 2] * cluster.world


def test_disagreeing_dtype_raises_on_every_peer(cluster: Cluster) -> None:
    assert cluster.run(mismatched_dtype, timeout=60) == ["InvalidUsageError"] * cluster.world


# --- membership -------------------------------------------------------------------------------

def loop_until_world(comm: pccl.Communicator, index: int, target: int, extra: int,
                     joined: bool = False) -> list[int]:
    """All-reduces every step, admitting pending peers, until the world is `target`, then
    `extra` more steps. Returns the world size seen at each step. A peer that `joined` a
    running loop skips the joint are_peers_pending() of its first step (PCCL 1.0's idiom):
    the members that admitted it have passed theirs."""
    seen = []
    while True:
        if not (joined and not seen) and comm.are_peers_pending():
            comm.update_topology()
        world = comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE)
        x = np.ones(4096, dtype=np.float32)
        comm.all_reduce(x, x, op=ReduceOp.SUM)
        assert x[0] == world, (x[0], world)
        seen.append(world)
        if len(seen) == 1 and not joined:
            notify("first step", index)
        if world >= target:
            extra -= 1
            if extra == 0:
                return seen


@pytest.mark.timeout(120)
def test_joiner_admitted_while_others_all_reduce() -> None:
    with Cluster(2) as c:
        running = c.start(loop_until_world, 3, 5)
        for _ in running:  # the joiner arrives once the run is under way
            assert c.events.get(timeout=30)[0] == "first step"
        joiner = c.add_peer(2, 2, 0, wait_world=False)
        c.expect_ready(joiner, timeout=60)  # connect() returned: admitted
        joined = c.start(loop_until_world, 3, 5, True, peers=[joiner])
        before = c.collect(running)
        after = c.collect(joined)
        for seen in before:
            assert seen[0] == 2 and seen[-1] == 3
        assert after[0] == [3] * 5
        for values in c.run(attributes):
            assert values == [3, 3, 1, 3]


def async_loop_until_world(comm: pccl.Communicator, index: int, target: int,
                           extra: int, joined: bool = False) -> list[int]:
    """As loop_until_world, but the all-reduce is still in flight when the peer checks for
    joiners and calls update_topology(): every member started it, so it completes on the
    old ring before the joiner is admitted. Here a joiner does not skip are_peers_pending()
    in its first step: the members launch their next all-reduce before their next call, as
    it does."""
    seen = []
    while True:
        world = comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE)
        x = np.ones(1 << 18, dtype=np.float32)
        handle = comm.all_reduce_async(x, x, op=ReduceOp.SUM, tag=3)
        if comm.are_peers_pending():
            comm.update_topology()
        info = handle.result()
        assert x[0] == info.local_world_size == world, (x[0], info.local_world_size, world)
        seen.append(world)
        if len(seen) == 1 and not joined:
            notify("first step", index)
        if world >= target:  # count only the all-reduces that ran in the full world
            extra -= 1
            if extra == 0:
                return seen


@pytest.mark.timeout(120)
def test_joiner_admitted_while_others_have_async_ops_in_flight() -> None:
    with Cluster(2) as c:
        running = c.start(async_loop_until_world, 3, 4)
        for _ in running:  # the joiner arrives once the run is under way
            assert c.events.get(timeout=30)[0] == "first step"
        joiner = c.add_peer(2, 2, 0, wait_world=False)
        c.expect_ready(joiner, timeout=60)
        joined = c.start(async_loop_until_world, 3, 4, True, peers=[joiner])
        for seen in c.collect(running):
            assert seen[0] == 2 and seen[-4:] == [3] * 4
        assert c.collect(joined)[0] == [3] * 4


def first_step_update(comm: pccl.Communicator, index: int) -> float:
    comm.update_topology()  # a joiner's first iteration: must not block
    return sum_of_indices(comm, index, 3)


def vote_with_a_lone_collective_in_flight(comm: pccl.Communicator, index: int) -> tuple:
    """Peer 0 starts an all-reduce that peer 1 never starts, then both admit the joiner:
    the all-reduce can never complete, so the admission fails it at once (inputs intact)
    instead of letting it wait for its deadline."""
    x = np.full(1 << 12, index + 1.0, dtype=np.float32)
    # A deadline far beyond the test's: only the admission can end this all-reduce in time.
    handle = comm.all_reduce_async(x, x, op=ReduceOp.SUM, tag=7, timeout=600) if index == 0 \
        else None
    while not comm.are_peers_pending(timeout=30):  # joint: both peers loop alike
        time.sleep(0.01)
    comm.update_topology(timeout=30)
    outcome = "none"
    if handle is not None:
        try:
            handle.result()
            outcome = "completed"
        except pccl.PCCLError as e:
            outcome = type(e).__name__
    return (outcome, bool(np.all(x == index + 1.0)),
            comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE))


@pytest.mark.timeout(120)
def test_admission_fails_collectives_not_every_member_started_at_once() -> None:
    with Cluster(2) as c:
        joiner = c.add_peer(2, 2, 0, wait_world=False)
        results = c.run(vote_with_a_lone_collective_in_flight, peers=[0, 1], timeout=60)
        c.expect_ready(joiner, timeout=60)
        (outcome, intact, world), (_, _, world_1) = results
        assert outcome == "PeerLostError" and intact, results
        assert world == world_1 == 3
        assert c.run(sum_of_indices, 5) == [6.0] * 3


def test_update_topology_without_pending_peers_returns_at_once() -> None:
    with Cluster(2) as c:
        assert c.run(first_step_update, timeout=30) == [3.0, 3.0]


def alone(comm: pccl.Communicator, index: int) -> str:
    x = np.ones(4, dtype=np.float32)
    try:
        comm.all_reduce(x, x, op=ReduceOp.SUM)
    except pccl.TooFewPeersError:
        return "too few peers" if x[0] == 1 else "input changed"
    return "no error"


def test_alone_raises_too_few_peers() -> None:
    with Cluster(1) as c:
        assert c.run(alone) == ["too few peers"]


@pytest.mark.parametrize("host", ["localhost", "[::1]"])
def test_hostname_and_ipv6_master_address(host: str) -> None:
    with Cluster(2, master_address="[::]:0" if host == "[::1]" else "127.0.0.1:0",
                 connect_host=host) as c:
        assert c.run(sum_of_indices, 5) == [3.0, 3.0]


# --- garbage on the ports ---------------------------------------------------------------------

def p2p_port(comm: pccl.Communicator, index: int) -> int:
    return int(comm._core.p2p_port)


def _send_garbage(port: int, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            s.recv(1024)  # the peer answers or closes; either is fine
        except OSError:
            pass  # it may already have dropped us: that is the point


GARBAGE = [
    b"\x00" * 3,  # truncated header
    bytes(range(256)) * 4,  # random bytes
    struct.pack("<IHHQ", 0x4C434350, 99, 32, 0),  # wrong protocol version
    struct.pack("<IHHQ", 0x4C434350, 1, 32, 1 << 40),  # oversized length
    struct.pack("<IHHQ", 0x4C434350, 1, 34, 64) + b"\x01" * 64,  # data before any hello
    struct.pack("<IHHQ", 0x4C434350, 1, 32, 28) + struct.pack("<QQQI", 1, 2, 3, 0),  # wrong peer
]


def test_garbage_to_peer_and_master_ports_disturbs_nobody() -> None:
    with Cluster(2) as c:
        ports = c.run(p2p_port) + [c.master.port]
        for port in ports:
            for payload in GARBAGE:
                _send_garbage(port, payload)
        assert c.run(sum_of_indices, 1000) == [3.0, 3.0]


def test_bad_arguments_raise_before_anything_is_sent() -> None:
    with Cluster(2) as c:
        messages = c.run(bad_arguments)
        for m in messages:
            assert m == ["TypeError", "ValueError", "TypeError", "ValueError", "ValueError",
                         "InvalidUsageError"], m
        assert c.run(sum_of_indices, 10) == [3.0, 3.0]


def bad_arguments(comm: pccl.Communicator, index: int) -> list[str]:
    x = np.ones(8, dtype=np.float32)
    calls = [
        lambda: comm.all_reduce(x, np.ones(8, np.float64), op=ReduceOp.SUM),
        lambda: comm.all_reduce(x, np.ones(9, np.float32), op=ReduceOp.SUM),
        lambda: comm.all_reduce(x, x, op="sum"),
        lambda: comm.all_reduce(x, x, op=ReduceOp.SUM, tag=-1),
        lambda: comm.all_reduce(x, np.ones(16, np.float32)[::2], op=ReduceOp.SUM),
        lambda: comm.all_reduce(x, x, op=ReduceOp.MAX,
                                quantization_options=pccl.QuantizationOptions()),
    ]
    names = []
    for call in calls:
        try:
            call()
            names.append("no error")
        except Exception as e:  # noqa: BLE001 - the class name is the assertion
            names.append(type(e).__name__)
    return names



def _advertised_peer(address: str, index: int, queue: object) -> None:
    # Listens on the IPv4 loopback only and tells the others to dial "localhost": the ring
    # works only if the master hands out the advertised name, not the observed address.
    with pccl.Communicator(address, listen_address="127.0.0.1",
                           advertise_address="localhost") as comm:
        comm.connect(timeout=60)
        wait_for_world(comm, 2, time.monotonic() + 60)
        x = np.full(10, index + 1.0, dtype=np.float32)
        comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=30)
        queue.put(float(x[0]))


@pytest.mark.timeout(120)
def test_advertise_address_is_what_peers_dial() -> None:
    ctx = mp.get_context("spawn")
    with pccl.MasterNode("127.0.0.1:0") as master:
        queue = ctx.Queue()
        procs = [ctx.Process(target=_advertised_peer, args=(f"127.0.0.1:{master.port}", i, queue))
                 for i in range(2)]
        for p in procs:
            p.start()
        try:
            assert sorted(queue.get(timeout=90) for _ in procs) == [3.0, 3.0]
        finally:
            for p in procs:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()


@pytest.mark.timeout(120)
def test_an_async_all_reduce_outlives_the_last_reference_to_its_communicator() -> None:
    """The operation's thread uses the communicator, so the handle keeps it alive: an
    all-reduce in flight when the program drops its communicator still finishes with the
    right sum, and the communicator goes (and leaves the run) only with the handle."""
    with pccl.MasterNode("127.0.0.1:0") as master:
        comms = [pccl.Communicator(f"127.0.0.1:{master.port}") for _ in range(2)]
        try:
            deadline = time.monotonic() + 60
            joining = [threading.Thread(target=lambda c=c: (c.connect(timeout=60),
                                                            wait_for_world(c, 2, deadline)))
                       for c in comms]
            for t in joining:
                t.start()
            for t in joining:
                t.join(timeout=90)
            assert all(c.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) == 2 for c in comms)
            x = np.full(4096, 1.0, dtype=np.float32)
            handle = comms[0].all_reduce_async(x, x, op=ReduceOp.SUM, timeout=30)
            dropped = comms.pop(0)
            dropped._closed = True  # else its finaliser would close it: only drop it here
            del dropped
            gc.collect()
            other = comms[0]
            y = np.full(4096, 2.0, dtype=np.float32)
            other.all_reduce(y, y, op=ReduceOp.SUM, timeout=30)  # the dropped one takes part
            assert handle.result().local_world_size == 2
            assert (x == 3.0).all() and (y == 3.0).all()
            del handle
            gc.collect()  # the last reference: the communicator closes and leaves the run
            while other.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) != 1:
                assert time.monotonic() < deadline + 30, "the dropped peer never left"
                other.update_topology(timeout=5)
                time.sleep(0.05)
        finally:
            for c in comms:
                c.close()
