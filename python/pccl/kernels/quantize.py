"""Quantize kernels (csrc/pccl/kernels/quantize.h): floats to uint8/uint16 and back.

Floats (float16, bfloat16, float32, float64) are quantized block by block: every
`block_size` consecutive elements share one set of parameters, stored in a separate
byte buffer (`params`, see `quantized_params_bytes`). Algorithms, with B the bits of the
quantized dtype and all arithmetic in the parameter type P (float64 for float64 sources,
float32 otherwise), rounding to nearest even:

- MIN_MAX: scale = (max - min) / (2^B - 1); q = round((x - min) / scale);
  deq = min + q * scale. Parameters per block: (min, scale) as two P values.
- ZERO_POINT_SCALE: scale = max|x| / (2^(B-1) - 1); q = round(x / scale) + 2^(B-1);
  deq = (q - 2^(B-1)) * scale. Parameters per block: (scale,) as one P value. A constant
  block c takes scale = |c| instead, so that it reconstructs exactly.

Constant blocks reconstruct exactly on both algorithms (-0.0 comes back as +0.0). Per element,
|x - deq(q(x))| <= scale / 2 + 10 * u * max|x of the block| (u = 2^-24 for float32
parameters, 2^-53 for float64), before rounding to a narrower destination.

NaN or Inf input raises ValueError naming the element; the outputs then hold q = 0 and
NaN parameters, which the dequantize functions refuse.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pccl import _core
from pccl._enums import DataType, QuantizationAlgorithm, enum_arg
from pccl._tensors import as_array

_k = _core.kernels

__all__ = [
    "DEFAULT_QUANT_BLOCK_SIZE",
    "MAX_QUANT_BLOCK_SIZE",
    "dequantize_accumulate",
    "dequantize_set",
    "quantize",
    "quantized_params_bytes",
]

#: Elements per block of parameters unless a call says otherwise.
DEFAULT_QUANT_BLOCK_SIZE: int = int(_k.DEFAULT_QUANT_BLOCK_SIZE)
#: Largest accepted block size.
MAX_QUANT_BLOCK_SIZE: int = int(_k.MAX_QUANT_BLOCK_SIZE)

_FLOATS = (DataType.FLOAT16, DataType.BFLOAT16, DataType.FLOAT, DataType.DOUBLE)
_QUANTIZED = (DataType.UINT8, DataType.UINT16)


def _algorithm(algorithm: Any) -> QuantizationAlgorithm:
    alg = enum_arg(QuantizationAlgorithm, algorithm, "algorithm")
    if alg is QuantizationAlgorithm.NONE:
        raise ValueError("algorithm must be MIN_MAX or ZERO_POINT_SCALE, got NONE")
    return alg


def _block_size(block_size: Any) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)):
        raise TypeError(f"block_size must be an int, got {type(block_size).__name__}")
    if not 1 <= block_size <= MAX_QUANT_BLOCK_SIZE:
        raise ValueError(
            f"block_size must be in [1, {MAX_QUANT_BLOCK_SIZE}], got {int(block_size)}"
        )
    return int(block_size)


def _data_type(value: Any, name: str, allowed: tuple[DataType, ...]) -> DataType:
    dtype = enum_arg(DataType, value, name)
    _require(dtype, name, allowed)
    return dtype


def _require(dtype: DataType, name: str, allowed: tuple[DataType, ...]) -> None:
    if dtype not in allowed:
        names = ", ".join(d.name for d in allowed)
        raise TypeError(f"{name} must have dtype {names}; got {dtype.name}")


def _no_overlap(a: np.ndarray, a_name: str, b: np.ndarray, b_name: str) -> None:
    if a.size and b.size and np.may_share_memory(a, b):
        raise ValueError(f"{a_name} must not overlap {b_name}")


def _params(params: Any, expected: int, *, writable: bool) -> np.ndarray:
    p, pt = as_array(params, "params", writable=writable)
    if pt is not DataType.UINT8:
        raise TypeError(f"params must be a uint8 array of raw bytes, got {pt.name}")
    if p.size != expected:
        raise ValueError(f"params must have {expected} bytes, got {p.size}")
    return p


def quantized_params_bytes(
    count: int,
    source_dtype: DataType,
    *,
    algorithm: QuantizationAlgorithm = QuantizationAlgorithm.MIN_MAX,
    quantized_dtype: DataType = DataType.UINT8,
    block_size: int = DEFAULT_QUANT_BLOCK_SIZE,
) -> int:
    """Bytes of the parameters of `count` elements quantized from `source_dtype`.

    ceil(count / block_size) blocks x (2 for MIN_MAX, 1 for ZERO_POINT_SCALE) x the
    parameter size (8 for float64 sources, 4 otherwise).

    Raises:
        TypeError: an argument has the wrong type or dtype.
        ValueError: count is negative, or an option is out of range.
    """
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
        raise TypeError(f"count must be an int, got {type(count).__name__}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {int(count)}")
    src = _data_type(source_dtype, "source_dtype", _FLOATS)
    qdt = _data_type(quantized_dtype, "quantized_dtype", _QUANTIZED)
    return int(
        _k.quantized_params_bytes(
            int(count), _core.DataType(src), _core.QuantizationAlgorithm(_algorithm(algorithm)),
            _core.DataType(qdt), _block_size(block_size)
        )
    )


def quantize(
    src: Any,
    q: Any,
    params: Any,
    *,
    algorithm: QuantizationAlgorithm = QuantizationAlgorithm.MIN_MAX,
    block_size: int = DEFAULT_QUANT_BLOCK_SIZE,
) -> None:
    """Quantizes `src` into `q` (same length, uint8 or uint16) and `params` (uint8 bytes).

    Args:
        src: float16, bfloat16, float32 or float64 values.
        q: writable uint8 or uint16 array of src's length; its dtype picks the width.
        params: writable uint8 array of `quantized_params_bytes(...)` bytes.
        algorithm: MIN_MAX or ZERO_POINT_SCALE.
        block_size: elements per block of parameters.

    Raises:
        TypeError: wrong kinds or dtypes of arrays or options.
        ValueError: mismatched lengths or sizes, read-only or overlapping outputs, bad
            options, NaN/Inf in src (the message names the element; q is then all 0 and
            params all NaN), or a block whose range overflows the parameter type.
    """
    s, st = as_array(src, "src")
    _require(st, "src", _FLOATS)
    qa, qt = as_array(q, "q", writable=True)
    _require(qt, "q", _QUANTIZED)
    if qa.size != s.size:
        raise ValueError(f"q has {qa.size} elements but src has {s.size}")
    alg = _algorithm(algorithm)
    bs = _block_size(block_size)
    expected = int(_k.quantized_params_bytes(s.size, _core.DataType(st), _core.QuantizationAlgorithm(alg), _core.DataType(qt), bs))
    p = _params(params, expected, writable=True)
    _no_overlap(qa, "q", s, "src")
    _no_overlap(p, "params", s, "src")
    _no_overlap(p, "params", qa, "q")
    _k.quantize(s, qa, p, _core.DataType(st), _core.DataType(qt), _core.QuantizationAlgorithm(alg), bs)


def _dequantize(
    dst: Any,
    q: Any,
    params: Any,
    source_dtype: DataType,
    algorithm: QuantizationAlgorithm,
    block_size: int,
    accumulate: bool,
) -> None:
    d, dt = as_array(dst, "dst", writable=True)
    _require(dt, "dst", _FLOATS)
    qa, qt = as_array(q, "q")
    _require(qt, "q", _QUANTIZED)
    if qa.size != d.size:
        raise ValueError(f"dst has {d.size} elements but q has {qa.size}")
    src = _data_type(source_dtype, "source_dtype", _FLOATS)
    alg = _algorithm(algorithm)
    bs = _block_size(block_size)
    expected = int(_k.quantized_params_bytes(d.size, _core.DataType(src), _core.QuantizationAlgorithm(alg), _core.DataType(qt), bs))
    p = _params(params, expected, writable=False)
    _no_overlap(d, "dst", qa, "q")
    _no_overlap(d, "dst", p, "params")
    _k.dequantize(d, qa, p, _core.DataType(dt), _core.DataType(src), _core.DataType(qt), _core.QuantizationAlgorithm(alg), bs, accumulate)


def dequantize_set(
    dst: Any,
    q: Any,
    params: Any,
    *,
    source_dtype: DataType,
    algorithm: QuantizationAlgorithm = QuantizationAlgorithm.MIN_MAX,
    block_size: int = DEFAULT_QUANT_BLOCK_SIZE,
) -> None:
    """dst[i] = deq(q[i]), rounded once to dst's dtype (any of the four float dtypes).

    Args:
        dst: writable float16, bfloat16, float32 or float64 array of q's length.
        q, params: what `quantize` wrote.
        source_dtype: the dtype `quantize` read (it fixes the parameter type).
        algorithm, block_size: as given to `quantize`.

    Raises:
        TypeError, ValueError: as `quantize`; ValueError also for parameters that are not
            finite or have a negative scale (dst is then untouched).
    """
    _dequantize(dst, q, params, source_dtype, algorithm, block_size, False)


def dequantize_accumulate(
    dst: Any,
    q: Any,
    params: Any,
    *,
    source_dtype: DataType,
    algorithm: QuantizationAlgorithm = QuantizationAlgorithm.MIN_MAX,
    block_size: int = DEFAULT_QUANT_BLOCK_SIZE,
) -> None:
    """dst[i] += deq(q[i]), added in float (float64 for a float64 dst), rounded once.

    Arguments and errors as `dequantize_set`.
    """
    _dequantize(dst, q, params, source_dtype, algorithm, block_size, True)
