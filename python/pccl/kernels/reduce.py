"""Reduction kernels (csrc/pccl/kernels/reduce.h): dst = op(dst, src) element-wise."""

from __future__ import annotations

from typing import Any

from pccl import _core
from pccl._enums import DataType, ReduceOp, enum_arg
from pccl._tensors import as_array

_k = _core.kernels

__all__ = ["accumulate_half", "divide_by", "narrow_half", "reduce", "widen_half"]


def _op(op: Any, name: str = "op") -> ReduceOp:
    return enum_arg(ReduceOp, op, name)


def _same_dtype(a_name: str, a: DataType, b_name: str, b: DataType) -> None:
    if a is not b:
        raise TypeError(f"{a_name} has dtype {a.name} but {b_name} has dtype {b.name}")


def reduce(dst: Any, src: Any, op: ReduceOp) -> None:
    """dst[i] = op(dst[i], src[i]) in place. AVG reduces as SUM (finalise with divide_by).

    Integers wrap on overflow; float16/bfloat16 compute in float and round once.
    """
    d, dt = as_array(dst, "dst", writable=True)
    s, st = as_array(src, "src")
    _same_dtype("dst", dt, "src", st)
    _k.reduce(d, s, _core.DataType(dt), _core.ReduceOp(_op(op)))


def divide_by(data: Any, divisor: int) -> None:
    """data[i] /= divisor in place (integers truncate toward zero)."""
    d, dt = as_array(data, "data", writable=True)
    if isinstance(divisor, bool) or not isinstance(divisor, int):
        raise TypeError(f"divisor must be an int, got {type(divisor).__name__}")
    if divisor <= 0:
        raise ValueError(f"divisor must be positive, got {divisor}")
    _k.divide_by(d, _core.DataType(dt), divisor)


def widen_half(acc: Any, src: Any) -> None:
    """acc[i] = float(src[i]) for float16/bfloat16 src and a float32 acc."""
    a, at = as_array(acc, "acc", writable=True)
    s, st = as_array(src, "src")
    _require_float32_acc(at)
    _k.widen_half(a, s, _core.DataType(st))


def accumulate_half(acc: Any, src: Any, op: ReduceOp) -> None:
    """acc[i] = op(acc[i], float(src[i])) for float16/bfloat16 src and a float32 acc."""
    a, at = as_array(acc, "acc", writable=True)
    s, st = as_array(src, "src")
    _require_float32_acc(at)
    _k.accumulate_half(a, s, _core.DataType(st), _core.ReduceOp(_op(op)))


def narrow_half(dst: Any, acc: Any, divisor: int = 1) -> None:
    """dst[i] = round_to_nearest_even(acc[i] / divisor) for float16/bfloat16 dst."""
    d, dt = as_array(dst, "dst", writable=True)
    a, at = as_array(acc, "acc")
    _require_float32_acc(at)
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor <= 0:
        raise ValueError(f"divisor must be a positive int, got {divisor!r}")
    _k.narrow_half(d, a, _core.DataType(dt), divisor)


def _require_float32_acc(dtype: DataType) -> None:
    if dtype is not DataType.FLOAT:
        raise TypeError(f"acc must be float32, got {dtype.name}")
