"""Shared pieces of the modular-kernel tests (test_kernels_modular.py, test_kernels_masks.py):
the moduli, the key, and generators of residues and wide values with their edge cases."""

from __future__ import annotations

import numpy as np
from conftest import LENGTHS

P_LARGE = 4294967291  # the largest prime below 2^32
P_MERSENNE = 2**31 - 1
PRIMES = [2, 3, 251, P_MERSENNE, P_LARGE]
SMALL_LENGTHS = [n for n in LENGTHS if n < 1 << 20]
BIG = max(LENGTHS)
U64_MAX = 2**64 - 1
KEY = bytes(range(32))


def residues(rng: np.random.Generator, p: int, n: int) -> np.ndarray:
    """n residues in [0, p) that include the edges 0, 1 and p - 1."""
    out = rng.integers(0, p, n, dtype=np.uint64).astype(np.uint32)
    edges = np.array([0, p - 1, 1 % p, p - 1], dtype=np.uint32)
    out[: min(n, 4)] = edges[: min(n, 4)]
    return out


def wide_values(rng: np.random.Generator, p: int, n: int) -> np.ndarray:
    """n uint64 values including 0, p - 1, p, multiples of p and values near 2^64 - 1."""
    out = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    top = U64_MAX - U64_MAX % p  # the largest multiple of p below 2^64
    edges = [U64_MAX, U64_MAX - 1, 0, p - 1, p, p + 1, 2 * p - 1, top, top - 1, 2**63, 2**32]
    edges = np.array([e & U64_MAX for e in edges], dtype=np.uint64)
    out[: min(n, len(edges))] = edges[: min(n, len(edges))]
    return out


def py_list(a: np.ndarray) -> list[int]:
    return [int(v) for v in a]
