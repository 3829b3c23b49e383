"""ReduceMode.EXACT (issue 17, first slice: pccl/_exact.py), 4 peers in real processes.

The same four inputs (float32 spanning six orders of magnitude, both signs) are reduced
in two runs that put them at different ring positions: the EXACT results are the same
bytes on every peer and in both runs, within the documented bound of the exact sum; AVG
too. Out-of-range and non-finite inputs are refused on every peer, and the run goes on.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pccl
import pytest
from cluster import Cluster
from pccl import ReduceMode, ReduceOp

WORLD = 4
COUNT = 50_000


def logical_input(k: int) -> np.ndarray:
    """Input number k: magnitudes from 1e-3 to 1e3, random signs."""
    rng = np.random.default_rng(1000 + k)
    magnitude = 10.0 ** rng.uniform(-3, 3, COUNT)
    return (magnitude * rng.choice([-1.0, 1.0], COUNT)).astype(np.float32)


def exact_reduce(comm: pccl.Communicator, index: int, order: list[int],
                 op: int) -> bytes:
    x = logical_input(order[index])
    out = np.empty_like(x)
    info = comm.all_reduce(x, out, op=ReduceOp(op), mode=ReduceMode.EXACT, timeout=60)
    assert info.world_size == WORLD
    assert np.array_equal(x, logical_input(order[index]))  # out of place: input untouched
    return out.tobytes()


def refused(comm: pccl.Communicator, index: int, value: float) -> str:
    x = np.full(8, 1.0, dtype=np.float32)
    if index == 0:
        x[3] = value
    try:
        comm.all_reduce(x, x, op=ReduceOp.SUM, mode=ReduceMode.EXACT, timeout=60)
    except pccl.InvalidUsageError as e:
        # The run goes on: the next collective works.
        y = np.ones(4, dtype=np.float32)
        comm.all_reduce(y, y, op=ReduceOp.SUM, timeout=60)
        assert np.all(y == WORLD)
        return str(e)
    return "not refused"


def reference(order: list[int]) -> np.ndarray:
    """The exact sum of the inputs, element by element (rational arithmetic), as float64."""
    inputs = [logical_input(k) for k in order]
    return np.array([float(sum(Fraction(float(v[i])) for v in inputs)) for i in range(COUNT)])


@pytest.mark.timeout(240)
def test_exact_sums_are_the_same_bytes_whatever_the_ring_order() -> None:
    results: dict[str, list[bytes]] = {}
    for name, order in (("forward", [0, 1, 2, 3]), ("backward", [3, 2, 1, 0])):
        with Cluster(WORLD) as c:
            results[name] = c.run(exact_reduce, order, int(ReduceOp.SUM))
            results[name + "-avg"] = c.run(exact_reduce, order, int(ReduceOp.AVG))
    for name, per_peer in results.items():
        assert len(set(per_peer)) == 1, f"{name}: peers disagree"
    assert results["forward"][0] == results["backward"][0]
    assert results["forward-avg"][0] == results["backward-avg"][0]
    got = np.frombuffer(results["forward"][0], dtype=np.float32).astype(np.float64)
    exact = reference([0, 1, 2, 3])
    largest = max(float(np.max(np.abs(logical_input(k)))) for k in range(WORLD))
    # The documented bound, n^2 M / (p - 1), plus the final rounding to float32.
    bound = WORLD**2 * largest / (4294967291 - 1) + np.abs(exact) * 2.0**-24
    assert np.all(np.abs(got - exact) <= bound)
    assert float(np.max(np.abs(got - exact))) <= 1e-6 * float(np.max(np.abs(exact)))
    avg = np.frombuffer(results["forward-avg"][0], dtype=np.float32)
    assert np.array_equal(avg, (got / WORLD).astype(np.float32))


@pytest.mark.timeout(120)
def test_out_of_range_and_non_finite_inputs_are_refused_on_every_peer() -> None:
    with Cluster(WORLD) as c:
        for value, message in ((3e9, "does not fit the fixed-point range"),
                               (math.inf, "NaN or infinity"), (math.nan, "NaN or infinity")):
            answers: list[Any] = c.run(refused, value)
            assert all(message in a for a in answers), answers


def test_exact_refuses_what_it_does_not_reduce() -> None:
    with pccl.Communicator("127.0.0.1:9") as comm:
        x = np.zeros(4, dtype=np.int32)
        with pytest.raises(pccl.InvalidUsageError, match="float32 and float64"):
            comm.all_reduce(x, x, op=ReduceOp.SUM, mode=ReduceMode.EXACT)
        y = np.zeros(4, dtype=np.float32)
        with pytest.raises(pccl.InvalidUsageError, match="SUM and AVG"):
            comm.all_reduce(y, y, op=ReduceOp.MAX, mode=ReduceMode.EXACT)
        with pytest.raises(TypeError, match="mode must be a pccl.ReduceMode"):
            comm.all_reduce(y, y, op=ReduceOp.SUM, mode="exact")  # type: ignore[arg-type]
