"""The core allocates nothing from the heap per call: a steady stream of collectives (each
kind, blocking and in the background) asks malloc for nothing in csrc/pccl once its pools
are warm (common/call_memory.h). Measured with heaptrack on a real 2-peer run
(bench/allocations.py): the allocations of 250 calls minus those of 50, per call.

An allocation made on every call counts 1.0 per call (before CallMemory, an all-reduce in
the background made 38); the bound leaves room for rare ones, which are not per call: a
worker thread started when all were busy, a verdict that came before its wait was
registered, a pool's first block of a size."""

from __future__ import annotations

import shutil

import pytest

from bench.allocations import KINDS, measure

pytestmark = pytest.mark.skipif(shutil.which("heaptrack") is None,
                                reason="needs heaptrack (CI installs it)")

RARE = 0.5  # per call: far below one allocation per call, above the rare ones


@pytest.mark.parametrize("kind", KINDS)
def test_a_steady_stream_of_calls_allocates_nothing_in_the_core(kind: str) -> None:
    row = measure(kind, (50, 250))
    assert row["per_call"]["core"] < RARE, row
