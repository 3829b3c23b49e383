"""The one place where Python objects become buffers for the core.

Accepts numpy arrays (ml_dtypes.bfloat16 included) and torch CPU tensors; both must be
C-contiguous. What the core receives is a `Buffer`: the address of the first element,
the element count and the DataType, plus the object that owns the memory, which the
caller keeps alive while the core uses the address. Errors name the argument: TypeError
for a wrong kind or dtype, ValueError for a wrong layout, device or writability.

Neither numpy nor torch is imported here: an object can only be a numpy array if numpy
is already imported, and likewise for torch, so `import pccl` works with either alone.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pccl._enums import DataType

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Buffer:
    """Contiguous host memory the core may read (and write, if asked for writable)."""

    ptr: int
    count: int
    dtype: DataType
    owner: Any  # the numpy array or torch tensor that owns the memory

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize


def is_torch_tensor(obj: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def is_numpy_array(obj: object) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray)


def _named(name: str, convert: Any, dtype: Any) -> DataType:
    try:
        return convert(dtype)  # type: ignore[no-any-return]
    except TypeError as e:
        raise TypeError(f"{name}: {e}") from None


def as_buffer(obj: Any, name: str, *, writable: bool = False) -> Buffer:
    """Describes `obj`'s memory for the core, without copying it.

    Raises:
        TypeError: `obj` is not a numpy array or torch tensor, or has an unsupported dtype.
        ValueError: `obj` is not contiguous, lives on a non-CPU device, or is read-only
            while `writable` is requested.
    """
    if is_torch_tensor(obj):
        if obj.device.type != "cpu":
            raise ValueError(f"{name} must be a CPU tensor, got device {obj.device}")
        if not obj.is_contiguous():
            raise ValueError(f"{name} must be contiguous")
        dtype = _named(name, DataType.from_torch_dtype, obj.dtype)
        return Buffer(int(obj.data_ptr()), int(obj.numel()), dtype, obj)
    if is_numpy_array(obj):
        dtype = _named(name, DataType.from_numpy_dtype, obj.dtype)
        if not obj.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous")
        if writable and not obj.flags.writeable:
            raise ValueError(f"{name} must be writable, got a read-only array")
        return Buffer(int(obj.__array_interface__["data"][0]), int(obj.size), dtype, obj)
    raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(obj).__name__}")


def as_array(obj: Any, name: str, *, writable: bool = False) -> tuple[np.ndarray, DataType]:
    """`as_buffer`, then a flat numpy view of the same memory (for pccl.kernels, whose API
    is numpy's). bfloat16 data comes back as a uint16 view (numpy has no bfloat16).

    Raises:
        as `as_buffer`.
    """
    import numpy as np

    buffer = as_buffer(obj, name, writable=writable)
    if is_torch_tensor(obj):
        t = obj.detach()
        if buffer.dtype is DataType.BFLOAT16:
            import torch

            t = t.view(torch.int16)
        array = t.numpy()
    else:
        array = obj
    flat: np.ndarray = array.reshape(-1)
    if buffer.dtype is DataType.BFLOAT16:
        flat = flat.view(np.uint16)
    return flat, buffer.dtype
