"""Benchmark cases of the content hash kernels (used by bench.kernels).

`cases(n_bytes)` returns one dict per kernel: the one-shot hash64 over a float32 buffer
and the streaming Hasher fed in 1 MiB pieces (the way large tensors are hashed piecewise).
numpy has no hash, so there is no numpy equivalent. verify() checks the last digest against
the xxhash package when it is installed, and otherwise against an independent split of the
same input through the streaming hasher plus a fixed known answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pccl import kernels

_SEED = 0x9E3779B97F4A7C15
_PIECE = 1 << 20
# XXH64(b"abc", seed 0), as the xxhash package computes it.
_ABC_DIGEST = 0x44BC2CF5AD770999


def _reference(data: np.ndarray, seed: int) -> int:
    """XXH64 of `data` from the xxhash package, or from pccl itself split another way."""
    try:
        import xxhash
    except ImportError:
        if kernels.hash64(b"abc") != _ABC_DIGEST:
            return -1  # the kernel is wrong even on a known answer
        hasher = kernels.Hasher(seed)
        raw = data.reshape(-1).view(np.uint8)
        step = 12345  # cuts that fall inside stripes
        for lo in range(0, raw.size, step):
            hasher.update(raw[lo : lo + step])
        return hasher.digest()
    return xxhash.xxh64_intdigest(data, seed)


def cases(n_bytes: int) -> list[dict[str, Any]]:
    """Hash cases over `n_bytes` bytes of float32 data (rounded down to whole elements)."""
    elements = max(n_bytes // 4, 1)
    rng = np.random.default_rng(7)
    data = rng.standard_normal(elements).astype(np.float32)
    nbytes = data.nbytes
    expected: dict[str, int] = {}

    def reference() -> int:
        if "digest" not in expected:
            expected["digest"] = _reference(data, _SEED)
        return expected["digest"]

    one_shot: dict[str, int] = {}

    def run_hash64() -> None:
        one_shot["digest"] = kernels.hash64(data, _SEED)

    def verify_hash64() -> bool:
        return one_shot.get("digest") == reference()

    raw = data.view(np.uint8)
    pieces = [raw[lo : lo + _PIECE] for lo in range(0, raw.size, _PIECE)]
    streamed: dict[str, int] = {}

    def run_hasher() -> None:
        hasher = kernels.Hasher(_SEED)
        for piece in pieces:
            hasher.update(piece)
        streamed["digest"] = hasher.digest()

    def verify_hasher() -> bool:
        return streamed.get("digest") == reference()

    return [
        {
            "name": "hash64",
            "bytes": nbytes,
            "elements": elements,
            "run": run_hash64,
            "numpy": None,
            "verify": verify_hash64,
        },
        {
            "name": "hasher_1mib_pieces",
            "bytes": nbytes,
            "elements": elements,
            "run": run_hasher,
            "numpy": None,
            "verify": verify_hasher,
        },
    ]
