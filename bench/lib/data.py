"""Data the benchmarks verify their results with.

All-reduce inputs (`fill_input` / `check_sum`): integer-valued float32 that differ per rank
and salt, so any sum over ranks is exact and is compared element by element.
Shared state (`make_state` / `digests`): distinct float32 tensors per seed, compared by
their XXH64 digests (pccl.kernels.hash64).
"""

from __future__ import annotations

import numpy as np

PATTERN = 256  # period of the all-reduce verification pattern, in elements
BLOCK = 1 << 20  # elements of random float32 that fill each shared-state tensor, tiled


# --- all-reduce inputs ----------------------------------------------------------------------

def _pattern_row() -> np.ndarray:
    return ((np.arange(PATTERN, dtype=np.int64) * 37) % 251 + 1).astype(np.float32)


def _blocks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    full = (x.size // PATTERN) * PATTERN
    return x[:full].reshape(-1, PATTERN), x[full:]


def fill_input(x: np.ndarray, rank: int, salt: int) -> None:
    """Integer-valued input of `rank`: pattern x (rank + 1 + salt); sums are exact."""
    row = _pattern_row() * np.float32(rank + 1 + salt)
    body, tail = _blocks(x)
    body[:] = row
    tail[:] = row[: tail.size]


def check_sum(x: np.ndarray, world: int, salt: int) -> bool:
    """Whether `x` is the sum of fill_input(rank, salt) over ranks 0..world-1, exactly."""
    coef = sum(r + 1 + salt for r in range(world))
    row = _pattern_row() * np.float32(coef)
    body, tail = _blocks(x)
    return bool((body == row).all() and (tail == row[: tail.size]).all())


# --- shared-state content -------------------------------------------------------------------

def make_state(seed: int, n_tensors: int, numel: int) -> list[np.ndarray]:
    """n_tensors float32 arrays, distinct from each other and from other seeds. Pages are
    touched (filled) here, outside any timing."""
    rng = np.random.default_rng(seed)
    block = rng.standard_normal(min(BLOCK, numel), dtype=np.float32)
    out = []
    for i in range(n_tensors):
        a = np.empty(numel, np.float32)
        reps = numel // block.size
        a[:reps * block.size].reshape(reps, block.size)[:] = block
        a[reps * block.size:] = block[:numel - reps * block.size]
        a[:64] = rng.standard_normal(64, dtype=np.float32) + i  # distinct per tensor
        out.append(a)
    return out


def digests(arrays: list[np.ndarray]) -> list[int]:
    import pccl

    return [pccl.kernels.hash64(a) for a in arrays]
