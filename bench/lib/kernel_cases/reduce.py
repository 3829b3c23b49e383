"""Benchmark cases for the reduce kernels (used by bench.kernels).

"bytes" counts the bytes of input data per call (n elements of the dtype); "touched" the
bytes read plus written (dst read, src read, dst written), which is what a memory copy of
the same data is compared against.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
from pccl import ReduceOp, kernels

BF16 = np.dtype(ml_dtypes.bfloat16)


def _reduce_case(name: str, dtype: Any, op: ReduceOp, n_bytes: int,
                 numpy_fn: Any) -> dict[str, Any]:
    dtype = np.dtype(dtype)
    n = n_bytes // dtype.itemsize
    rng = np.random.default_rng(1)
    src = rng.standard_normal(n).astype(dtype)
    start = rng.standard_normal(n).astype(dtype)
    dst = start.copy()

    def run() -> None:
        kernels.reduce(dst, src, op)

    def verify() -> bool:
        out = start.copy()
        kernels.reduce(out, src, op)
        wide = np.float32 if dtype.itemsize == 2 else dtype
        expected = numpy_fn(start.astype(wide), src.astype(wide)).astype(dtype)
        return bool(np.array_equal(out, expected))

    np_dst = start.astype(dtype) if dtype.itemsize > 2 else None
    numpy_run = (lambda: numpy_fn(np_dst, src, out=np_dst)) if np_dst is not None else None
    return {"name": name, "bytes": n * dtype.itemsize, "touched": 3 * n * dtype.itemsize,
            "elements": n, "run": run, "numpy": numpy_run, "verify": verify}


def _accumulate_half_case(n_bytes: int) -> dict[str, Any]:
    n = n_bytes // 4
    rng = np.random.default_rng(2)
    src = rng.standard_normal(n).astype(BF16)
    start = rng.standard_normal(n).astype(np.float32)
    acc = start.copy()

    def run() -> None:
        kernels.accumulate_half(acc, src, ReduceOp.SUM)

    def verify() -> bool:
        out = start.copy()
        kernels.accumulate_half(out, src, ReduceOp.SUM)
        return bool(np.array_equal(out, start + src.astype(np.float32)))

    return {"name": "accumulate bf16->f32 SUM", "bytes": n * 2, "touched": n * 10,
            "elements": n, "run": run, "numpy": None, "verify": verify}


def cases(n_bytes: int) -> list[dict[str, Any]]:
    return [
        _reduce_case("reduce f32 SUM", np.float32, ReduceOp.SUM, n_bytes, np.add),
        _reduce_case("reduce f32 MAX", np.float32, ReduceOp.MAX, n_bytes, np.maximum),
        _reduce_case("reduce f64 SUM", np.float64, ReduceOp.SUM, n_bytes, np.add),
        _reduce_case("reduce i32 SUM", np.int32, ReduceOp.SUM, n_bytes, np.add),
        _reduce_case("reduce bf16 SUM", BF16, ReduceOp.SUM, n_bytes, np.add),
        _reduce_case("reduce f16 SUM", np.float16, ReduceOp.SUM, n_bytes, np.add),
        _accumulate_half_case(n_bytes),
    ]
