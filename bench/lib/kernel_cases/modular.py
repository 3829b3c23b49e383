"""Benchmark cases for the modular-arithmetic kernels (used by bench.kernels).

"bytes" counts the input bytes per call: n_bytes of uint64 for mod_reduce, of uint32
residues (one operand's worth) for the arithmetic, of float32 for encode / decode, of uint32
output for mask generation. "touched" counts every byte read or written. The modulus is
4294967291, the largest prime below 2^32. References are numpy uint64 arithmetic, exact
here (every intermediate stays below 2^64).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from pccl import kernels

P = 4294967291
P64 = np.uint64(P)
KEY = bytes(range(32))
FRAC_BITS = 16


def _case(
    name: str,
    n: int,
    nbytes: int,
    touched: int,
    run: Callable[[], None],
    numpy_run: Callable[[], Any] | None,
    verify: Callable[[], bool],
) -> dict[str, Any]:
    return {
        "name": name,
        "bytes": nbytes,
        "touched": touched,
        "elements": n,
        "run": run,
        "numpy": numpy_run,
        "verify": verify,
    }


def _reduce_case(n_bytes: int, modulus: kernels.Modulus) -> dict[str, Any]:
    n = n_bytes // 8
    x = np.random.default_rng(1).integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    dst = np.empty(n, np.uint32)
    tmp = np.empty(n, np.uint64)

    def verify() -> bool:
        out = np.empty(n, np.uint32)
        kernels.mod_reduce(out, x, modulus)
        return bool(np.array_equal(out, x % P64))

    return _case(
        "mod_reduce u64->u32",
        n,
        8 * n,
        12 * n,
        lambda: kernels.mod_reduce(dst, x, modulus),
        lambda: np.remainder(x, P64, out=tmp),
        verify,
    )


def _binary_case(
    name: str,
    kernel: Any,
    np_op: Any,
    ref: Callable[[np.ndarray, np.ndarray], np.ndarray],
    n_bytes: int,
    modulus: kernels.Modulus,
) -> dict[str, Any]:
    n = n_bytes // 4
    rng = np.random.default_rng(2)
    a = rng.integers(0, P, n, dtype=np.uint64).astype(np.uint32)
    b = rng.integers(0, P, n, dtype=np.uint64).astype(np.uint32)
    dst = a.copy()
    a64, b64 = a.astype(np.uint64), b.astype(np.uint64)
    tmp = np.empty(n, np.uint64)

    def verify() -> bool:
        out = a.copy()
        kernel(out, b, modulus)
        return bool(np.array_equal(out, ref(a64, b64)))

    def numpy_run() -> None:  # the op in uint64, then % p (sub wraps: timing only)
        np.remainder(np_op(a64, b64, out=tmp), P64, out=tmp)

    return _case(name, n, 4 * n, 12 * n, lambda: kernel(dst, b, modulus), numpy_run, verify)


def _mul_acc_case(n_bytes: int, modulus: kernels.Modulus) -> dict[str, Any]:
    n = n_bytes // 4
    rng = np.random.default_rng(3)
    a, b, c = (rng.integers(0, P, n, dtype=np.uint64).astype(np.uint32) for _ in range(3))
    acc = c.copy()
    a64, b64, c64 = a.astype(np.uint64), b.astype(np.uint64), c.astype(np.uint64)
    tmp = np.empty(n, np.uint64)

    def verify() -> bool:
        out = c.copy()
        kernels.mod_mul_acc(out, a, b, modulus)
        return bool(np.array_equal(out, (a64 * b64 + c64) % P64))

    def numpy_run() -> None:
        np.multiply(a64, b64, out=tmp)
        np.add(tmp, c64, out=tmp)
        np.remainder(tmp, P64, out=tmp)

    return _case(
        "mod_mul_acc u32",
        n,
        4 * n,
        16 * n,
        lambda: kernels.mod_mul_acc(acc, a, b, modulus),
        numpy_run,
        verify,
    )


def _fixed_cases(n_bytes: int, modulus: kernels.Modulus) -> list[dict[str, Any]]:
    n = n_bytes // 4
    x = (np.random.default_rng(4).standard_normal(n) * 100).astype(np.float32)
    encoded = np.empty(n, np.uint32)
    decoded = np.empty(n, np.float32)
    scale = 2.0**FRAC_BITS
    expected = (np.rint(x.astype(np.float64) * scale).astype(np.int64) % P).astype(np.uint32)
    tmp = np.empty(n, np.float64)

    def verify_encode() -> bool:
        out = np.empty(n, np.uint32)
        kernels.fixed_encode(out, x, modulus, frac_bits=FRAC_BITS)
        return bool(np.array_equal(out, expected))

    def verify_decode() -> bool:
        out = np.empty(n, np.float32)
        kernels.fixed_decode(out, expected, modulus, frac_bits=FRAC_BITS)
        return bool(
            np.array_equal(out, (np.rint(x.astype(np.float64) * scale) / scale).astype(np.float32))
        )

    def numpy_encode() -> None:
        np.multiply(x, scale, out=tmp)
        np.rint(tmp, out=tmp)
        encoded[...] = tmp.astype(np.int64) % P

    def numpy_decode() -> None:
        c = expected.astype(np.int64)
        c[c > P // 2] -= P
        np.multiply(c, 1.0 / scale, out=tmp)
        decoded[...] = tmp

    return [
        _case(
            "fixed_encode f32->u32",
            n,
            4 * n,
            8 * n,
            lambda: kernels.fixed_encode(encoded, x, modulus, frac_bits=FRAC_BITS),
            numpy_encode,
            verify_encode,
        ),
        _case(
            "fixed_decode u32->f32",
            n,
            4 * n,
            8 * n,
            lambda: kernels.fixed_decode(decoded, expected, modulus, frac_bits=FRAC_BITS),
            numpy_decode,
            verify_decode,
        ),
    ]


def _mask_case(n_bytes: int, modulus: kernels.Modulus) -> dict[str, Any]:
    n = n_bytes // 4
    dst = np.empty(n, np.uint32)

    def verify() -> bool:
        # Masks are < p, a sub-range regenerates identically, and they cancel.
        out = np.empty(n, np.uint32)
        kernels.mask_generate(out, modulus, key=KEY, stream_id=1)
        part = np.empty(min(n, 1000), np.uint32)
        kernels.mask_generate(part, modulus, key=KEY, stream_id=1, offset=n - part.size)
        zero = out.copy()
        kernels.mod_sub(zero, out, modulus)
        return bool(
            out.max(initial=0) < P and np.array_equal(part, out[n - part.size :]) and not zero.any()
        )

    return _case(
        "mask_generate u32",
        n,
        4 * n,
        4 * n,
        lambda: kernels.mask_generate(dst, modulus, key=KEY, stream_id=1),
        None,
        verify,
    )


def cases(n_bytes: int) -> list[dict[str, Any]]:
    m = kernels.Modulus(P)
    return [
        _reduce_case(n_bytes, m),
        _binary_case(
            "mod_add u32", kernels.mod_add, np.add, lambda a, b: (a + b) % P64, n_bytes, m
        ),
        _binary_case(
            "mod_sub u32",
            kernels.mod_sub,
            np.subtract,
            lambda a, b: (a + P64 - b) % P64,
            n_bytes,
            m,
        ),
        _binary_case(
            "mod_mul u32", kernels.mod_mul, np.multiply, lambda a, b: (a * b) % P64, n_bytes, m
        ),
        _mul_acc_case(n_bytes, m),
        *_fixed_cases(n_bytes, m),
        _mask_case(n_bytes, m),
    ]
