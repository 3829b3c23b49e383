"""Shared fixtures: every kernel test runs once per ISA path this CPU supports."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from pccl import kernels

ISAS = kernels.supported_isas()


@pytest.fixture(params=ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Forces the kernels onto one ISA path for the test, then restores the previous one."""
    previous = kernels.active_isa()
    kernels.set_isa(request.param)
    try:
        yield request.param
    finally:
        kernels.set_isa(previous)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def unaligned(array: np.ndarray, offset: int = 1) -> np.ndarray:
    """A copy of `array` whose data pointer is `offset` bytes off any natural alignment."""
    if array.nbytes == 0:
        return array.copy()  # numpy gives empty views their own pointer
    raw = np.empty(array.nbytes + 64 + offset, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64 + offset
    view = raw[start : start + array.nbytes].view(array.dtype).reshape(array.shape)
    view[...] = array
    assert view.ctypes.data % 64 == offset
    return view


# Lengths every kernel is tested with: empty, one, odd, around vector and block widths,
# and a few MiB.
LENGTHS = [0, 1, 7, 15, 16, 17, 1025, 3 * (1 << 20) + 5]
