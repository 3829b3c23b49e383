"""Content hash kernels (csrc/pccl/kernels/hash.h): XXH64 of a buffer's bytes.

Shared-state sync hashes every registered tensor with this function; peers compare the
digests, so they depend on the bytes alone: a float16 array and a uint16 view of it hash
the same. The digest equals `xxhash.xxh64_intdigest(bytes(data), seed)`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pccl import _core
from pccl._tensors import as_array

_k = _core.kernels

__all__ = ["Hasher", "hash64"]

_SEED_LIMIT = 1 << 64


def _seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    value = int(seed)
    if not 0 <= value < _SEED_LIMIT:
        raise ValueError(f"seed must be in [0, 2**64), got {value}")
    return value


def _as_bytes(obj: Any, name: str) -> Any:
    """A C-contiguous buffer of item size 1 over the memory of `obj` (no copy)."""
    if isinstance(obj, (bytes, bytearray)):
        return obj
    if isinstance(obj, memoryview):
        if not obj.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous")
        if obj.nbytes == 0:
            return b""
        return obj.cast("B")
    if isinstance(obj, np.ndarray) or type(obj).__module__.startswith("torch"):
        try:
            array, _ = as_array(obj, name)
        except TypeError as e:
            if str(e).startswith(name):
                raise
            # as_buffer's unsupported-dtype error does not name the argument.
            raise TypeError(f"{name}: {e}") from None
        return array.view(np.uint8)
    raise TypeError(
        f"{name} must be a numpy array, torch tensor, bytes, bytearray or memoryview, "
        f"got {type(obj).__name__}"
    )


def hash64(data: Any, seed: int = 0) -> int:
    """XXH64 of the bytes of `data`.

    Args:
        data: a C-contiguous numpy array (any dtype pccl supports, ml_dtypes.bfloat16
            included), a contiguous torch CPU tensor, or bytes / bytearray / memoryview.
        seed: the XXH64 seed, in [0, 2**64).

    Returns:
        The 64-bit digest as an int in [0, 2**64); equal to
        xxhash.xxh64_intdigest(data_bytes, seed).

    Raises:
        TypeError: `data` is of another type or dtype, or `seed` is not an int.
        ValueError: `data` is not contiguous (or not on the CPU), or `seed` is out of range.
    """
    s = _seed(seed)
    return int(_k.hash64(_as_bytes(data, "data"), s))


class Hasher:
    """Streaming XXH64: `update()` with consecutive pieces, then `digest()`.

    The digest equals hash64() of the concatenated pieces, whatever the split. digest()
    does not end the stream: more update() calls may follow. Safe to share between
    threads (calls on one object take turns).
    """

    def __init__(self, seed: int = 0) -> None:
        self._seed = _seed(seed)
        self._impl = _k.Hasher(self._seed)

    @property
    def seed(self) -> int:
        """The seed this hasher was created or last reset with."""
        return self._seed

    @property
    def total_bytes(self) -> int:
        """Bytes passed to update() since creation or the last reset()."""
        return int(self._impl.total_bytes)

    def update(self, data: Any) -> None:
        """Appends the bytes of `data` (accepted types as for hash64).

        Raises:
            TypeError: `data` is of another type or dtype.
            ValueError: `data` is not contiguous or not on the CPU.
        """
        self._impl.update(_as_bytes(data, "data"))

    def digest(self) -> int:
        """XXH64 of everything passed to update() so far, as an int in [0, 2**64)."""
        return int(self._impl.digest())

    def reset(self, seed: int = 0) -> None:
        """Forgets all input and starts over with `seed`."""
        s = _seed(seed)
        self._impl.reset(s)
        self._seed = s
