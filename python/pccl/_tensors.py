"""The one place where Python objects become (buffer, DataType) pairs for the core.

Accepts numpy arrays (ml_dtypes.bfloat16 included) and torch CPU tensors; both must be
C-contiguous. Errors name the argument: TypeError for a wrong kind or dtype, ValueError
for a wrong layout, size or writability.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pccl._enums import DataType


def _is_torch_tensor(obj: object) -> bool:
    mod = type(obj).__module__
    return mod.startswith("torch") and type(obj).__name__ in ("Tensor", "Parameter")


def _named(name: str, convert: Any, dtype: Any) -> DataType:
    try:
        return convert(dtype)
    except TypeError as e:
        raise TypeError(f"{name}: {e}") from None


def as_buffer(obj: Any, name: str, *, writable: bool = False) -> tuple[np.ndarray, DataType]:
    """Returns a contiguous numpy view of `obj` sharing its memory, and its DataType.

    bfloat16 data is returned as a uint16 view (numpy has no native bfloat16).

    Raises:
        TypeError: `obj` is not a numpy array or torch tensor, or has an unsupported dtype.
        ValueError: `obj` is not contiguous, lives on a non-CPU device, or is read-only
            while `writable` is requested.
    """
    if _is_torch_tensor(obj):
        if obj.device.type != "cpu":
            raise ValueError(f"{name} must be a CPU tensor, got device {obj.device}")
        if not obj.is_contiguous():
            raise ValueError(f"{name} must be contiguous")
        dtype = _named(name, DataType.from_torch_dtype, obj.dtype)
        t = obj.detach()
        if dtype is DataType.BFLOAT16:
            import torch

            t = t.view(torch.int16)
        array = t.numpy()
        if dtype is DataType.BFLOAT16:
            array = array.view(np.uint16)
        return array.reshape(-1), dtype
    if not isinstance(obj, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(obj).__name__}")
    dtype = _named(name, DataType.from_numpy_dtype, obj.dtype)
    if not obj.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if writable and not obj.flags.writeable:
        raise ValueError(f"{name} must be writable, got a read-only array")
    array = obj.reshape(-1)
    if dtype is DataType.BFLOAT16:
        array = array.view(np.uint16)
    return array, dtype
