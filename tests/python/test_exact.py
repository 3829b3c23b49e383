"""ReduceMode.EXACT and PRIVATE (csrc/pccl/comm/exact_allreduce.cc), 4 peers in real processes.

The same four inputs (float32 spanning six orders of magnitude, both signs) are reduced
in two runs whose peers join in opposite orders, so every input sits at another ring
position under other peer ids. Within each run they are reduced by every entry point
(all_reduce, all_reduce_async, a descriptor of all_reduce_multiple_with_retry, again after
optimize_topology()) and in both modes: every result is the same bytes, on every peer, in
both runs, within the documented bound of the exact sum. Other dtypes sum exactly
(integers) or within the bound. A peer SIGKILLed mid-operation leaves survivors whose
retried result is byte for byte that of a fresh run of the survivors alone. Out-of-range
and non-finite inputs are refused on every peer, and the run goes on.
"""

from __future__ import annotations

import math
import os
import time
from fractions import Fraction
from typing import Any

import numpy as np
import pccl
import pytest
from cluster import Cluster, notify, wait_for_world
from pccl import ReduceMode, ReduceOp

WORLD = 4
COUNT = 50_000
P = 4294967291  # the modulus of the exact all-reduce


def logical_input(k: int, count: int = COUNT) -> np.ndarray:
    """Input number k: magnitudes from 1e-3 to 1e3, random signs."""
    rng = np.random.default_rng(1000 + k)
    magnitude = 10.0 ** rng.uniform(-3, 3, count)
    return (magnitude * rng.choice([-1.0, 1.0], count)).astype(np.float32)


def descriptor(x: np.ndarray, op: ReduceOp, tag: int,
               mode: ReduceMode) -> pccl.ReduceOpDescriptor:
    return pccl.ReduceOpDescriptor.from_numpy(
        x, x, pccl.ReduceDescriptor(x.size, op, tag,
                                    pccl.ReduceOperandDescriptor(pccl.DataType.FLOAT),
                                    pccl.QuantizationOptions(
                                        algorithm=pccl.QuantizationAlgorithm.NONE), mode=mode))


def every_entry_point(comm: pccl.Communicator, index: int, order: list[int],
                      op: int) -> dict[str, bytes]:
    """The input order[index] reduced by every entry point and mode: name -> result bytes."""
    x = logical_input(order[index])
    results = {}
    for mode in (ReduceMode.EXACT, ReduceMode.PRIVATE):
        out = np.empty_like(x)
        info = comm.all_reduce(x, out, op=ReduceOp(op), mode=mode, timeout=60)
        assert info.world_size == WORLD
        assert np.array_equal(x, logical_input(order[index]))  # out of place: input untouched
        results[f"all_reduce {mode.name}"] = out.tobytes()

        out = np.empty_like(x)
        comm.all_reduce_async(x, out, op=ReduceOp(op), tag=7, mode=mode, timeout=60).wait()
        results[f"all_reduce_async {mode.name}"] = out.tobytes()

        in_place = x.copy()
        comm.all_reduce_multiple_with_retry([descriptor(in_place, ReduceOp(op), 3, mode)],
                                            timeout=60)
        results[f"multiple_with_retry {mode.name}"] = in_place.tobytes()

    comm.optimize_topology(timeout=60)
    out = np.empty_like(x)
    comm.all_reduce(x, out, op=ReduceOp(op), mode=ReduceMode.EXACT, timeout=60)
    results["after optimize_topology"] = out.tobytes()
    return results


def reference(order: list[int]) -> np.ndarray:
    """The exact sum of the inputs, element by element (rational arithmetic), as float64."""
    inputs = [logical_input(k) for k in order]
    return np.array([float(sum(Fraction(float(v[i])) for v in inputs)) for i in range(COUNT)])


@pytest.mark.timeout(300)
def test_exact_sums_are_the_same_bytes_whatever_the_ring_order_entry_point_and_mode() -> None:
    runs: dict[str, list[dict[str, bytes]]] = {}
    for name, order in (("forward", [0, 1, 2, 3]), ("backward", [3, 2, 1, 0])):
        with Cluster(WORLD) as c:
            runs[name] = c.run(every_entry_point, order, int(ReduceOp.SUM), timeout=120)
            runs[name + "-avg"] = c.run(every_entry_point, order, int(ReduceOp.AVG), timeout=120)
    for op in ("", "-avg"):
        distinct = {result for run in ("forward", "backward") for per_peer in runs[run + op]
                    for result in per_peer.values()}
        assert len(distinct) == 1, f"SUM{op}: {len(distinct)} different results"
    got = np.frombuffer(runs["forward"][0]["all_reduce EXACT"], dtype=np.float32)
    exact = reference([0, 1, 2, 3])
    largest = max(float(np.max(np.abs(logical_input(k)))) for k in range(WORLD))
    # The documented bound, 2 n^2 M / (p - 1), plus the final rounding to float32.
    bound = 2 * WORLD**2 * largest / (P - 1) + np.abs(exact) * 2.0**-24
    assert np.all(np.abs(got.astype(np.float64) - exact) <= bound)
    assert float(np.max(np.abs(got - exact))) <= 1e-6 * float(np.max(np.abs(exact)))
    avg = np.frombuffer(runs["forward-avg"][0]["all_reduce EXACT"], dtype=np.float32)
    assert np.array_equal(avg, got / np.float32(WORLD))  # a power of two: exact division


def dtype_inputs(index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(index)
    return {
        "float64": rng.standard_normal(10_000) * 10.0 ** rng.uniform(-3, 3, 10_000),
        "float16": rng.standard_normal(10_000).astype(np.float16),
        "int32": rng.integers(-2**28, 2**28, 10_000, dtype=np.int32),
        "int64": rng.integers(-2**28, 2**28, 10_000, dtype=np.int64),
        "uint8": rng.integers(0, 64, 10_000, dtype=np.uint8),  # sums fit: 4 * 63 < 256
    }


def bfloat16_input(index: int) -> Any:
    import torch
    return torch.from_numpy(dtype_inputs(index)["float64"]).to(torch.bfloat16)


def other_dtypes(comm: pccl.Communicator, index: int) -> dict[str, bytes]:
    results = {}
    for name, x in dtype_inputs(index).items():
        for op in (ReduceOp.SUM, ReduceOp.AVG):
            out = np.empty_like(x)
            comm.all_reduce(x, out, op=op, mode=ReduceMode.PRIVATE, timeout=60)
            results[f"{name} {op.name}"] = out.tobytes()
    try:
        import torch
    except ImportError:  # torch is optional; CI installs it, so there bfloat16 is checked
        return results
    t = bfloat16_input(index)
    out = torch.empty_like(t)
    comm.all_reduce(t, out, op=ReduceOp.SUM, mode=ReduceMode.EXACT, timeout=60)
    results["bfloat16 SUM"] = out.view(torch.int16).numpy().tobytes()
    return results


@pytest.mark.timeout(120)
def test_exact_sums_of_integers_halves_and_doubles() -> None:
    with Cluster(WORLD) as c:
        per_peer = c.run(other_dtypes, timeout=90)
    for key in per_peer[0]:
        assert len({p[key] for p in per_peer}) == 1, f"{key}: peers disagree"
    got = per_peer[0]
    drawn = [dtype_inputs(i) for i in range(WORLD)]
    for name in ("int32", "int64", "uint8"):
        total = sum(d[name].astype(np.int64) for d in drawn)
        dtype = drawn[0][name].dtype
        assert np.array_equal(np.frombuffer(got[f"{name} SUM"], dtype=dtype),
                              total.astype(dtype)), name
        # AVG truncates toward zero, as the default mode's integer AVG does.
        assert np.array_equal(np.frombuffer(got[f"{name} AVG"], dtype=dtype),
                              np.trunc(total / WORLD).astype(dtype)), name
    for name, eps in (("float64", 2.0**-53), ("float16", 2.0**-11)):
        exact = sum(d[name].astype(np.float64) for d in drawn)
        largest = max(float(np.max(np.abs(d[name]))) for d in drawn)
        result = np.frombuffer(got[f"{name} SUM"], dtype=drawn[0][name].dtype)
        bound = 2 * WORLD**2 * largest / (P - 1) + np.abs(exact) * eps
        assert np.all(np.abs(result.astype(np.float64) - exact) <= bound), name
    if "bfloat16 SUM" in got:
        import torch
        inputs = [bfloat16_input(i).double().numpy() for i in range(WORLD)]
        exact = sum(inputs)
        result = torch.frombuffer(bytearray(got["bfloat16 SUM"]), dtype=torch.bfloat16)
        largest = max(float(np.max(np.abs(i))) for i in inputs)
        bound = 2 * WORLD**2 * largest / (P - 1) + np.abs(exact) * 2.0**-8
        assert np.all(np.abs(result.double().numpy() - exact) <= bound)


# --- a peer lost mid-operation ---------------------------------------------------------------

KILL_COUNT = 1 << 21  # 8 MiB of float32 per tag: the victim dies long before the sum is done
KILL_TAGS = 4


def kill_inputs(index: int) -> list[np.ndarray]:
    return [logical_input(10 * index + tag, KILL_COUNT) for tag in range(KILL_TAGS)]


def exact_with_retry(comm: pccl.Communicator, index: int) -> list[bytes]:
    """The inputs of `index` reduced with retries, alternating EXACT and PRIVATE by tag."""
    tensors = kill_inputs(index)
    modes = [ReduceMode.EXACT, ReduceMode.PRIVATE]
    notify("starting", index)
    comm.all_reduce_multiple_with_retry(
        [descriptor(t, ReduceOp.SUM, tag, modes[tag % 2]) for tag, t in enumerate(tensors)],
        max_in_flight=2, timeout=90)
    return [t.tobytes() for t in tensors]


@pytest.mark.timeout(300)
def test_a_retry_after_a_sigkill_is_byte_for_byte_a_fresh_run_of_the_survivors() -> None:
    with Cluster(WORLD) as c:
        c.start(exact_with_retry)
        for _ in range(WORLD):
            assert c.events.get(timeout=60)[0] == "starting"
        c.kill(WORLD - 1)
        retried = c.collect(list(range(WORLD - 1)), timeout=150)
    with Cluster(WORLD - 1) as c:
        fresh = c.run(exact_with_retry, timeout=150)
        for _ in range(WORLD - 1):
            c.events.get(timeout=10)
    assert all(r == fresh[0] for r in retried + fresh)
    # ... and it is the survivors' sum (not one that still holds the victim's input).
    exact = sum(kill_inputs(i)[0].astype(np.float64) for i in range(WORLD - 1))
    got = np.frombuffer(fresh[0][0], dtype=np.float32)
    assert float(np.max(np.abs(got - exact))) <= 1e-6 * float(np.max(np.abs(exact)))


# --- refusals ----------------------------------------------------------------------------------

def refused(comm: pccl.Communicator, index: int, value: float, dtype: str) -> str:
    x = np.full(8, 1, dtype=dtype)
    if index == 0:
        x[3] = value
    try:
        comm.all_reduce(x, x, op=ReduceOp.SUM, mode=ReduceMode.EXACT, timeout=60)
    except pccl.InvalidUsageError as e:
        assert x[0] == 1  # nothing was written
        the_run_goes_on(comm, tries=1)
        return str(e)
    return "not refused"


def the_run_goes_on(comm: pccl.Communicator, tries: int) -> None:
    """A plain all-reduce works within `tries` calls (the others failing as PeerLostError)."""
    y = np.ones(4, dtype=np.float32)
    for attempt in range(tries):
        try:
            comm.all_reduce(y, y, op=ReduceOp.SUM, timeout=30)
            break
        except pccl.PeerLostError:
            if attempt == tries - 1:
                raise
    assert np.all(y == WORLD)


@pytest.mark.timeout(120)
def test_out_of_range_and_non_finite_inputs_are_refused_on_every_peer() -> None:
    with Cluster(WORLD) as c:
        for value, dtype, message in (
                (3e9, "float32", "does not fit the fixed-point range"),
                (2**30, "int64", "does not fit the fixed-point range"),
                (254, "uint8", "does not fit uint8"),  # 254 + 3: fits Z_p, not uint8
                (math.inf, "float32", "NaN or infinity"),
                (math.nan, "float64", "NaN or infinity")):
            answers: list[Any] = c.run(refused, value, dtype)
            assert all(message in a for a in answers), answers


def mixed_modes(comm: pccl.Communicator, index: int) -> str:
    """Peer 0 asks for EXACT, the others for the default: every peer must learn that they
    disagree (not wait for data that never comes), and the run goes on."""
    x = np.ones(100_000, dtype=np.float32)
    try:
        comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=30,
                        mode=ReduceMode.EXACT if index == 0 else ReduceMode.DEFAULT)
    except pccl.InvalidUsageError as e:
        assert np.all(x == 1)
        # The EXACT call took more sequence numbers than the default ones: the peers that
        # took fewer fail their next call once (the EXACT peer reported those numbers
        # failed), then every peer is on the same keys again.
        the_run_goes_on(comm, tries=3)
        return str(e)
    return "no error"


@pytest.mark.timeout(120)
def test_peers_in_different_modes_fail_the_call_at_once() -> None:
    with Cluster(WORLD) as c:
        answers = c.run(mixed_modes, timeout=90)
    assert all("reduce mode differ" in a for a in answers), answers


def test_exact_refuses_what_it_does_not_reduce() -> None:
    with pccl.Communicator("127.0.0.1:9") as comm:
        y = np.zeros(4, dtype=np.float32)
        with pytest.raises(pccl.InvalidUsageError, match="SUM and AVG"):
            comm.all_reduce(y, y, op=ReduceOp.MAX, mode=ReduceMode.EXACT)
        with pytest.raises(pccl.InvalidUsageError, match="neither quantized"):
            comm.all_reduce(y, y, op=ReduceOp.SUM, mode=ReduceMode.PRIVATE,
                            quantization_options=pccl.QuantizationOptions(
                                algorithm=pccl.QuantizationAlgorithm.MIN_MAX))
        with pytest.raises(pccl.InvalidUsageError, match="unknown reduce mode"):
            comm.all_reduce(y, y, op=ReduceOp.SUM, mode=ReduceMode(64))
        with pytest.raises(TypeError, match="mode must be a pccl.ReduceMode"):
            comm.all_reduce(y, y, op=ReduceOp.SUM, mode="exact")  # type: ignore[arg-type]


# --- what PRIVATE hides ------------------------------------------------------------------------

HIDE_COUNT = 200_000
TAPPED = 0  # the peer whose received reduce-scatter partials the test reads


def tap_received(index: int) -> None:
    """Peer prelude: peer TAPPED writes what it receives in every VERIFIED sum to a file
    (the test-only switch PCCL_TEST_DUMP_RECEIVED)."""
    if index == TAPPED:
        os.environ["PCCL_TEST_DUMP_RECEIVED"] = os.environ["TEST_EXACT_DUMP"]


def received_partials(comm: pccl.Communicator, index: int, scale_prev: float,
                      private: bool) -> np.ndarray | None:
    """One VERIFIED sum (with PRIVATE or without); peer TAPPED returns the residues it
    received in the reduce-scatter (its own chunk, which it never receives, left out).
    `scale_prev` multiplies the input of TAPPED's ring predecessor."""
    me = comm.ring_order().index(comm.peer_id)
    x = logical_input(index, HIDE_COUNT)
    # Every peer learns the tapped peer's predecessor from a MAX exchange of its rank.
    rank = np.array([float(me) if index == TAPPED else -1.0])
    comm.all_reduce(rank, rank, op=ReduceOp.MAX, timeout=60)
    if me == (int(rank[0]) - 1) % WORLD:
        x = x * np.float32(scale_prev)
    mode = ReduceMode.VERIFIED | (ReduceMode.PRIVATE if private else ReduceMode.EXACT)
    out = np.empty_like(x)
    comm.all_reduce(x, out, op=ReduceOp.SUM, mode=mode, timeout=60)
    if index != TAPPED:
        return None
    got = np.fromfile(os.environ["PCCL_TEST_DUMP_RECEIVED"], dtype=np.uint32)
    base, extra = divmod(HIDE_COUNT, WORLD)
    begin = me * base + min(me, extra)
    end = begin + base + (1 if me < extra else 0)
    return np.concatenate([got[:begin], got[end:]])


def chi_square_uniform(residues: np.ndarray) -> float:
    """Chi-square of the residues' top 8 bits against uniform (255 degrees of freedom:
    mean 255, standard deviation 22.6)."""
    counts = np.bincount(residues >> 24, minlength=256).astype(np.float64)
    expected = residues.size / 256
    return float(np.sum((counts - expected) ** 2 / expected))


def chi_square_same(a: np.ndarray, b: np.ndarray) -> float:
    """Chi-square that two samples of residues share their top-8-bit distribution."""
    ca = np.bincount(a >> 24, minlength=256).astype(np.float64)
    cb = np.bincount(b >> 24, minlength=256).astype(np.float64)
    total = ca + cb
    ea, eb = total * a.size / (a.size + b.size), total * b.size / (a.size + b.size)
    keep = total > 0
    return float(np.sum((ca[keep] - ea[keep]) ** 2 / ea[keep] +
                        (cb[keep] - eb[keep]) ** 2 / eb[keep]))


# 255 degrees of freedom: above 400 is more than 6 standard deviations out (p < 1e-9).
CHI_SQUARE_LIMIT = 400.0


@pytest.mark.timeout(180)
def test_what_a_peer_receives_under_private_is_uniform_whatever_its_neighbour_holds(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_EXACT_DUMP", str(tmp_path / "received.u32"))
    with Cluster(WORLD, peer_prelude=tap_received) as c:
        plain = c.run(received_partials, 1.0, False, timeout=90)[TAPPED]
        plain_big_neighbour = c.run(received_partials, 1000.0, False, timeout=90)[TAPPED]
        masked = c.run(received_partials, 1.0, True, timeout=90)[TAPPED]
        masked_big_neighbour = c.run(received_partials, 1000.0, True, timeout=90)[TAPPED]
    assert plain.size == masked.size == HIDE_COUNT - HIDE_COUNT // WORLD
    # Without masks the partials are sums of the inputs: far from uniform, and they follow
    # the neighbour's input (so both checks below can fail).
    assert chi_square_uniform(plain) > 10 * CHI_SQUARE_LIMIT
    assert chi_square_same(plain, plain_big_neighbour) > 10 * CHI_SQUARE_LIMIT
    # With them: uniform, and alike whatever the neighbour's input.
    assert chi_square_uniform(masked) < CHI_SQUARE_LIMIT
    assert chi_square_uniform(masked_big_neighbour) < CHI_SQUARE_LIMIT
    assert chi_square_same(masked, masked_big_neighbour) < CHI_SQUARE_LIMIT


# --- a failed call leaves no sequence number undecided --------------------------------------

def refused_verified(comm: pccl.Communicator, index: int) -> str:
    """Refused after its scale: its sum and check are reported failed, never run."""
    x = np.full(8, np.nan, dtype=np.float32)
    try:
        comm.all_reduce(x, x, op=ReduceOp.SUM, mode=ReduceMode.VERIFIED, timeout=30)
    except pccl.InvalidUsageError:
        return "refused"
    return "not refused"


def admit_and_sum(comm: pccl.Communicator, index: int, world: int) -> tuple[int, float]:
    wait_for_world(comm, world, time.monotonic() + 30)
    x = np.full(8, index + 1, dtype=np.float64)
    info = comm.all_reduce(x, x, op=ReduceOp.SUM, mode=ReduceMode.EXACT, timeout=30)
    return info.local_world_size, float(x[0])


@pytest.mark.timeout(120)
def test_a_refused_call_does_not_hold_up_the_next_admission() -> None:
    # update_topology() admits a joiner once every collective the members started is
    # decided: the steps a refused call skipped must be decided too.
    with Cluster(2) as c:
        assert c.run(refused_verified) == ["refused"] * 2
        joiner = c.add_peer(2, 2, 0, wait_world=False)
        c.start(admit_and_sum, 3, peers=[0, 1])
        c.expect_ready(joiner, timeout=60)
        c.start(admit_and_sum, 3, peers=[joiner])
        assert c.collect([0, 1, joiner], timeout=60) == [(3, 6.0)] * 3
