"""Enumerations of pccl's public API (names as in PCCL 1.0).

The core defines the values: DataType, ReduceOp and QuantizationAlgorithm take each
member's value from the enum of the same name that pccl._core exports (csrc/bindings/
enums.cc), and calls into the core pass the core's member, looked up in CORE_DTYPE,
CORE_OP and CORE_QUANT (made once: converting a member on every call costs more).
These classes add what Python users need on top: docs and conversions to numpy and torch.
DistributionHint and DeviceType are API-only: the core has no such notion.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

from pccl import _core

_D = _core.DataType
_R = _core.ReduceOp
_Q = _core.QuantizationAlgorithm


E = TypeVar("E", bound=enum.Enum)


def enum_arg(cls: type[E], value: Any, name: str) -> E:
    """`value` (a member of `cls` or its int value) as a member of `cls`: TypeError for
    anything else than an int (bools too), ValueError for an int that names no member."""
    if type(value) is cls:  # the common case, first
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a pccl.{cls.__name__}, got {type(value).__name__}")
    try:
        return cls(value)
    except ValueError:
        raise ValueError(f"{name} must be a pccl.{cls.__name__}, got {value!r}") from None


class DataType(enum.IntEnum):
    """Element type of a buffer."""

    UINT8 = _D.UINT8.value
    INT8 = _D.INT8.value
    UINT16 = _D.UINT16.value
    INT16 = _D.INT16.value
    UINT32 = _D.UINT32.value
    INT32 = _D.INT32.value
    UINT64 = _D.UINT64.value
    INT64 = _D.INT64.value
    FLOAT16 = _D.FLOAT16.value
    BFLOAT16 = _D.BFLOAT16.value
    FLOAT = _D.FLOAT.value
    DOUBLE = _D.DOUBLE.value

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return _ITEMSIZE[self]

    @classmethod
    def from_numpy_dtype(cls, dtype: object) -> DataType:
        """The DataType of a numpy dtype (ml_dtypes.bfloat16 maps to BFLOAT16).

        Raises:
            TypeError: numpy has no such dtype or pccl does not support it.
        """
        try:  # every call with a tensor asks this: dtypes seen before skip numpy's names
            return _FROM_NUMPY_DTYPE[dtype]
        except (KeyError, TypeError):  # TypeError: an unhashable argument
            pass
        import numpy as np

        try:
            np_dtype = np.dtype(dtype)  # type: ignore[call-overload]
        except TypeError as e:
            raise TypeError(f"dtype {dtype!r} is not a numpy dtype") from e
        if not np_dtype.isnative:  # its name would read as the native type's
            raise TypeError(f"pccl needs numpy data in this machine's byte order, got "
                            f"{np_dtype.name} as {np_dtype.str!r}")
        if np_dtype.name == "bfloat16":
            found = cls.BFLOAT16
        else:
            try:
                found = _FROM_NUMPY_NAME[np_dtype.name]
            except KeyError:
                raise TypeError(f"pccl does not support numpy dtype {np_dtype.name}") from None
        _FROM_NUMPY_DTYPE[np_dtype] = found
        return found

    def to_numpy_dtype(self) -> Any:
        """The numpy dtype (imports numpy); BFLOAT16 needs the ml_dtypes package."""
        import numpy as np

        if self is DataType.BFLOAT16:
            try:
                import ml_dtypes
            except ImportError as e:
                raise TypeError("numpy has no bfloat16; install ml_dtypes") from e
            return np.dtype(ml_dtypes.bfloat16)
        return np.dtype(_TO_NUMPY_NAME[self])

    @classmethod
    def from_torch_dtype(cls, dtype: object) -> DataType:
        """The DataType of a torch.dtype.

        Raises:
            TypeError: not a torch dtype pccl supports.
        """
        name = str(dtype).removeprefix("torch.")
        try:
            return _FROM_TORCH_NAME[name]
        except KeyError:
            raise TypeError(f"pccl does not support torch dtype {dtype}") from None

    def to_torch_dtype(self) -> object:
        """The torch.dtype (imports torch)."""
        import torch

        return getattr(torch, _TO_TORCH_NAME[self])


_TO_NUMPY_NAME = {
    DataType.UINT8: "uint8",
    DataType.INT8: "int8",
    DataType.UINT16: "uint16",
    DataType.INT16: "int16",
    DataType.UINT32: "uint32",
    DataType.INT32: "int32",
    DataType.UINT64: "uint64",
    DataType.INT64: "int64",
    DataType.FLOAT16: "float16",
    DataType.FLOAT: "float32",
    DataType.DOUBLE: "float64",
}
_FROM_NUMPY_NAME = {name: dt for dt, name in _TO_NUMPY_NAME.items()}
_FROM_NUMPY_DTYPE: dict[Any, DataType] = {}  # numpy dtype -> DataType, as looked up
_TO_TORCH_NAME = {**_TO_NUMPY_NAME, DataType.BFLOAT16: "bfloat16"}
_FROM_TORCH_NAME = {name: dt for dt, name in _TO_TORCH_NAME.items()}
_ITEMSIZE = {dt: 1 << (int(dt) // 2) for dt in DataType if dt < DataType.FLOAT16}
_ITEMSIZE.update({DataType.FLOAT16: 2, DataType.BFLOAT16: 2, DataType.FLOAT: 4,
                  DataType.DOUBLE: 8})


class ReduceOp(enum.IntEnum):
    """Reduction of an all-reduce."""

    SUM = _R.SUM.value
    AVG = _R.AVG.value
    PROD = _R.PROD.value
    MAX = _R.MAX.value
    MIN = _R.MIN.value


class ReduceMode(enum.IntFlag):
    """What an all-reduce guarantees beyond the default floating-point ring sum (SUM and
    AVG; docs/exact.md says how, and how precise).

    EXACT: inputs as fixed-point residues summed mod a prime, so that the result's bytes
    are the same whatever the ring order, membership history or retries.
    PRIVATE: EXACT, with every input masked pairwise so that no other single peer (nor the
    master) sees it; the same result bytes as EXACT.
    VERIFIED: EXACT, with linear hashes that catch a member falsifying what it reduces or
    forwards (IntegrityError on every peer, nobody applies the result). Combines with
    PRIVATE.
    """

    DEFAULT = 0
    EXACT = 1
    PRIVATE = 2
    VERIFIED = 4


class QuantizationAlgorithm(enum.IntEnum):
    """How floats are compressed on the wire."""

    NONE = _Q.NONE.value
    MIN_MAX = _Q.MIN_MAX.value
    ZERO_POINT_SCALE = _Q.ZERO_POINT_SCALE.value


# One dict per enum: IntEnum members of equal value are equal keys.
CORE_DTYPE = {m: _D(m) for m in DataType}
CORE_OP = {m: _R(m) for m in ReduceOp}
CORE_QUANT = {m: _Q(m) for m in QuantizationAlgorithm}


class DistributionHint(enum.IntEnum):
    """What the caller knows about the values' distribution (advisory)."""

    NONE = 0
    NORMAL = 1
    UNIFORM = 2


class DeviceType(enum.IntEnum):
    """Where a tensor lives."""

    CPU = 0
    CUDA = 1

    @classmethod
    def from_torch_device_type(cls, device_type: str) -> DeviceType | None:
        """The DeviceType of a torch device type ("cpu", "cuda"); None for others."""
        return {"cpu": cls.CPU, "cuda": cls.CUDA}.get(device_type)
