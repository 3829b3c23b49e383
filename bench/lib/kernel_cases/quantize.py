"""Benchmark cases for the quantize kernels (used by bench.kernels).

"bytes" counts the bytes of float input per call: the source floats for quantize, the
float destination for dequantize. "touched" counts bytes read plus written (source, q,
params, and the destination read back for accumulate). Inputs are whole blocks of the
default block size. Each verify() makes a fresh call on its own buffers and checks it bit
for bit against a numpy rendering of the definitions in csrc/pccl/kernels/quantize.h.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
from pccl import DataType, QuantizationAlgorithm, kernels

BF16 = np.dtype(ml_dtypes.bfloat16)
MIN_MAX = QuantizationAlgorithm.MIN_MAX
ZPS = QuantizationAlgorithm.ZERO_POINT_SCALE
BLOCK = kernels.DEFAULT_QUANT_BLOCK_SIZE


def _numpy_quantize(
    x: np.ndarray, alg: QuantizationAlgorithm, qdtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """q and params of whole blocks, as quantize.h defines them (numpy: IEEE, no FMA)."""
    P = np.float64 if x.dtype == np.float64 else np.float32
    v = x.astype(P, copy=False).reshape(-1, BLOCK)
    lo = v.min(axis=1) + P(0)
    hi = v.max(axis=1) + P(0)
    bits = 8 * np.dtype(qdtype).itemsize
    if alg is MIN_MAX:
        scale = ((hi - lo) / P(2**bits - 1)).astype(P)
        d = np.where(scale > 0, scale, P(1)).astype(P)
        r = np.minimum(np.rint((v - lo[:, None]) / d[:, None]), P(2**bits - 1))
        params = np.stack([lo, scale], axis=1)
    else:
        h = P(2 ** (bits - 1) - 1)
        m = np.maximum(np.abs(lo), np.abs(hi))
        scale = np.where(lo == hi, m, m / h).astype(P)
        d = np.where(scale > 0, scale, P(1)).astype(P)
        r = np.clip(np.rint(v / d[:, None]), -h, h) + P(2 ** (bits - 1))
        params = scale
    return r.reshape(-1).astype(qdtype), params.astype(P).reshape(-1).view(np.uint8)


def _numpy_dequantize(q: np.ndarray, params: np.ndarray, alg: QuantizationAlgorithm,
                      P: type) -> np.ndarray:
    """deq(q) in P, whole blocks."""
    pv = params.view(P)
    q2 = q.reshape(-1, BLOCK)
    if alg is MIN_MAX:
        return (pv[0::2, None] + q2.astype(P) * pv[1::2, None]).reshape(-1)
    zp = 2 ** (8 * q.itemsize - 1)
    return ((q2.astype(np.int32) - zp).astype(P) * pv[:, None]).reshape(-1)


def _elements(n_bytes: int, itemsize: int) -> int:
    return max(BLOCK, n_bytes // itemsize // BLOCK * BLOCK)


def _src_dtype(dtype: np.dtype) -> DataType:
    return DataType.from_numpy_dtype(dtype)


def _quantize_case(name: str, dtype: Any, alg: QuantizationAlgorithm, qdtype: Any,
                   n_bytes: int) -> dict[str, Any]:
    dtype, qdtype = np.dtype(dtype), np.dtype(qdtype)
    n = _elements(n_bytes, dtype.itemsize)
    x = (np.random.default_rng(1).standard_normal(n) * 3).astype(dtype)
    src = _src_dtype(dtype)
    qdt = DataType.from_numpy_dtype(qdtype)
    nbytes = kernels.quantized_params_bytes(n, src, algorithm=alg, quantized_dtype=qdt)
    q = np.empty(n, qdtype)
    params = np.empty(nbytes, np.uint8)

    def run() -> None:
        kernels.quantize(x, q, params, algorithm=alg)

    def verify() -> bool:
        q2, p2 = np.empty_like(q), np.empty_like(params)
        kernels.quantize(x, q2, p2, algorithm=alg)
        want_q, want_p = _numpy_quantize(x, alg, qdtype)
        return bool(np.array_equal(q2, want_q) and np.array_equal(p2, want_p))

    def numpy_run() -> None:
        _numpy_quantize(x, alg, qdtype)

    return {"name": name, "bytes": n * dtype.itemsize,
            "touched": n * (dtype.itemsize + qdtype.itemsize) + nbytes,
            "elements": n, "run": run, "numpy": numpy_run, "verify": verify}


def _dequantize_case(name: str, src_dtype: Any, dst_dtype: Any, alg: QuantizationAlgorithm,
                     accumulate: bool, n_bytes: int) -> dict[str, Any]:
    src_dtype, dst_dtype = np.dtype(src_dtype), np.dtype(dst_dtype)
    n = _elements(n_bytes, dst_dtype.itemsize)
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(n) * 3).astype(src_dtype)
    src = _src_dtype(src_dtype)
    q, params = _numpy_quantize(x, alg, np.dtype(np.uint8))
    start = rng.standard_normal(n).astype(dst_dtype)
    dst = start.copy()
    fn = kernels.dequantize_accumulate if accumulate else kernels.dequantize_set
    P = np.float64 if src_dtype == np.float64 else np.float32
    A = np.float64 if dst_dtype == np.float64 else np.float32

    def run() -> None:
        fn(dst, q, params, source_dtype=src, algorithm=alg)

    def verify() -> bool:
        out = start.copy()
        fn(out, q, params, source_dtype=src, algorithm=alg)
        v = _numpy_dequantize(q, params, alg, P).astype(A)
        if accumulate:
            v = start.astype(A) + v
        return bool(np.array_equal(out.view(np.uint8), v.astype(dst_dtype).view(np.uint8)))

    numpy_run = None
    if dst_dtype == np.float32 and P is np.float32:
        np_dst = start.copy()
        if accumulate:
            def numpy_run() -> None:
                np_dst.reshape(-1, BLOCK)[...] += _numpy_dequantize(q, params, alg, P).reshape(
                    -1, BLOCK)
        else:
            def numpy_run() -> None:
                np_dst[...] = _numpy_dequantize(q, params, alg, P)
    return {"name": name, "bytes": n * dst_dtype.itemsize,
            "touched": n * (1 + dst_dtype.itemsize * (2 if accumulate else 1)) + params.size,
            "elements": n, "run": run, "numpy": numpy_run, "verify": verify}


def cases(n_bytes: int) -> list[dict[str, Any]]:
    return [
        _quantize_case("quantize f32->u8 MIN_MAX", np.float32, MIN_MAX, np.uint8, n_bytes),
        _quantize_case("quantize f32->u8 ZPS", np.float32, ZPS, np.uint8, n_bytes),
        _quantize_case("quantize f32->u16 MIN_MAX", np.float32, MIN_MAX, np.uint16, n_bytes),
        _quantize_case("quantize f64->u8 MIN_MAX", np.float64, MIN_MAX, np.uint8, n_bytes),
        _quantize_case("quantize bf16->u8 MIN_MAX", BF16, MIN_MAX, np.uint8, n_bytes),
        _quantize_case("quantize f16->u8 MIN_MAX", np.float16, MIN_MAX, np.uint8, n_bytes),
        _dequantize_case("deq-acc u8->f32 MIN_MAX", np.float32, np.float32, MIN_MAX, True,
                         n_bytes),
        _dequantize_case("deq-acc u8->f32 ZPS", np.float32, np.float32, ZPS, True, n_bytes),
        _dequantize_case("deq-set u8->f32 MIN_MAX", np.float32, np.float32, MIN_MAX, False,
                         n_bytes),
        _dequantize_case("deq-acc u8(f16)->f32 MIN_MAX", np.float16, np.float32, MIN_MAX, True,
                         n_bytes),
        _dequantize_case("deq-acc u8->bf16 MIN_MAX", BF16, BF16, MIN_MAX, True, n_bytes),
        _dequantize_case("deq-set u8->f16 MIN_MAX", np.float16, np.float16, MIN_MAX, False,
                         n_bytes),
    ]
