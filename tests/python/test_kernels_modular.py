"""Tests of the modular-arithmetic kernels (pccl.kernels.modular) against exact references.

References are Python big integers, or numpy uint64 arithmetic where every intermediate
provably stays below 2^64 (sums of two residues, products of two residues plus one more).
The mask PRF is tested in test_kernels_masks.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ISAS, unaligned
from modular_support import (
    BIG,
    KEY,
    P_LARGE,
    P_MERSENNE,
    PRIMES,
    SMALL_LENGTHS,
    U64_MAX,
    py_list,
    residues,
    wide_values,
)
from pccl import kernels
from pccl.kernels import modular

pytestmark = pytest.mark.timeout(60)

# --- Modulus -------------------------------------------------------------------------------


@pytest.mark.parametrize("p", PRIMES + [4, 2**31, 2**32 - 1, 65536])
def test_modulus_constants(p: int) -> None:
    m = modular.Modulus(p)
    assert (m.p, m.mu, m.half) == (p, 2**64 // p, (p - 1) // 2)
    assert m.max_accept == 2**64 - 1 - (2**64 % p)
    assert (m.max_accept + 1) % p == 0
    for x in [0, 1, p - 1, p, 2 * p - 1, U64_MAX, U64_MAX - 1, 2**63, 2**64 - p, 12345678901]:
        assert m.reduce(x) == x % p, x


@pytest.mark.parametrize(
    "p, exc",
    [
        (0, ValueError),
        (1, ValueError),
        (2**32, ValueError),
        (-7, ValueError),
        (True, TypeError),
        (7.0, TypeError),
        ("7", TypeError),
    ],
)
def test_modulus_rejects_bad_p(p: object, exc: type) -> None:
    with pytest.raises(exc, match="p must"):
        modular.Modulus(p)  # type: ignore[arg-type]
    with pytest.raises(exc, match="modulus|p must"):
        kernels.mod_add(np.zeros(1, np.uint32), np.zeros(1, np.uint32), p)  # type: ignore[arg-type]


def test_modulus_value_semantics() -> None:
    assert modular.Modulus(7) == modular.Modulus(7) != modular.Modulus(11)
    assert len({modular.Modulus(7), modular.Modulus(7)}) == 1
    assert repr(modular.Modulus(7)) == "Modulus(7)"
    assert modular.Modulus(np.int64(7)).p == 7  # numpy integers are ints too
    dst = np.array([5], np.uint32)
    kernels.mod_add(dst, np.array([4], np.uint32), np.uint32(7))
    assert dst[0] == 2
    with pytest.raises(TypeError, match="modulus must be a Modulus or an int"):
        kernels.mod_add(dst, dst, 7.0)  # type: ignore[arg-type]


# --- arithmetic ----------------------------------------------------------------------------


@pytest.mark.parametrize("p", PRIMES)
@pytest.mark.parametrize("n", SMALL_LENGTHS)
def test_mod_reduce(isa: str, p: int, n: int, rng: np.random.Generator) -> None:
    x = wide_values(rng, p, n)
    dst = np.full(n, 0xDEADBEEF, dtype=np.uint32)
    kernels.mod_reduce(dst, x, modular.Modulus(p))
    assert py_list(dst) == [v % p for v in py_list(x)]


@pytest.mark.parametrize("p", PRIMES)
@pytest.mark.parametrize("n", SMALL_LENGTHS)
def test_add_sub_mul_mul_acc(isa: str, p: int, n: int, rng: np.random.Generator) -> None:
    a, b, c = residues(rng, p, n), residues(rng, p, n)[::-1].copy(), residues(rng, p, n)
    ai, bi, ci = py_list(a), py_list(b), py_list(c)
    for kernel, expect in [
        (kernels.mod_add, [(x + y) % p for x, y in zip(ai, bi)]),
        (kernels.mod_sub, [(x - y) % p for x, y in zip(ai, bi)]),
        (kernels.mod_mul, [(x * y) % p for x, y in zip(ai, bi)]),
    ]:
        dst = a.copy()
        kernel(dst, b, p)
        assert py_list(dst) == expect, kernel.__name__
    acc = c.copy()
    kernels.mod_mul_acc(acc, a, b, p)
    assert py_list(acc) == [(z + x * y) % p for x, y, z in zip(ai, bi, ci)]


@pytest.mark.parametrize("p", [P_LARGE, P_MERSENNE])
def test_big_arrays_against_numpy(isa: str, p: int, rng: np.random.Generator) -> None:
    # uint64 numpy is exact here: sums < 2^33, products of residues + one residue < 2^64.
    x = wide_values(rng, p, BIG)
    dst = np.empty(BIG, np.uint32)
    kernels.mod_reduce(dst, x, p)
    np.testing.assert_array_equal(dst, x % np.uint64(p))
    a, b, c = residues(rng, p, BIG), residues(rng, p, BIG), residues(rng, p, BIG)
    a64, b64, c64, p64 = (
        a.astype(np.uint64),
        b.astype(np.uint64),
        c.astype(np.uint64),
        np.uint64(p),
    )
    dst = a.copy()
    kernels.mod_add(dst, b, p)
    np.testing.assert_array_equal(dst, (a64 + b64) % p64)
    dst = a.copy()
    kernels.mod_sub(dst, b, p)
    np.testing.assert_array_equal(dst, (a64 + p64 - b64) % p64)
    dst = a.copy()
    kernels.mod_mul(dst, b, p)
    np.testing.assert_array_equal(dst, (a64 * b64) % p64)
    kernels.mod_mul_acc(c, a, b, p)
    np.testing.assert_array_equal(c, (a64 * b64 + c64) % p64)


def test_unaligned_buffers(isa: str, rng: np.random.Generator) -> None:
    p, n = P_LARGE, 1029
    x = unaligned(wide_values(rng, p, n), 4)
    a, b = unaligned(residues(rng, p, n), 1), unaligned(residues(rng, p, n), 2)
    dst = unaligned(np.zeros(n, np.uint32), 3)
    kernels.mod_reduce(dst, x, p)
    assert py_list(dst) == [v % p for v in py_list(x)]
    ai, bi = py_list(a), py_list(b)
    kernels.mod_mul_acc(dst, a, b, p)
    assert py_list(dst) == [(v % p + s * t) % p for v, s, t in zip(py_list(x), ai, bi)]
    kernels.mod_sub(a, b, p)
    assert py_list(a) == [(s - t) % p for s, t in zip(ai, bi)]


def test_in_place_aliasing(isa: str, rng: np.random.Generator) -> None:
    p, n = P_LARGE, 1000
    a = residues(rng, p, n)
    ai = py_list(a)
    x = a.copy()
    kernels.mod_add(x, x, p)
    assert py_list(x) == [2 * v % p for v in ai]
    x = a.copy()
    kernels.mod_mul(x, x, p)
    assert py_list(x) == [v * v % p for v in ai]
    x = a.copy()
    kernels.mod_mul_acc(x, x, x, p)
    assert py_list(x) == [(v + v * v) % p for v in ai]
    x = a.copy()
    kernels.mod_sub(x, x, p)
    assert not x.any()


def test_paths_bit_identical(rng: np.random.Generator) -> None:
    p, n = P_LARGE, 4099
    x = wide_values(rng, p, n)
    a, b = residues(rng, p, n), residues(rng, p, n)
    floats = (rng.standard_normal(n) * 1000).astype(np.float64)
    outputs = {}
    previous = kernels.active_isa()
    try:
        for isa in ISAS:
            kernels.set_isa(isa)
            red, acc = np.empty(n, np.uint32), a.copy()
            kernels.mod_reduce(red, x, p)
            kernels.mod_mul_acc(acc, a, b, p)
            enc = np.empty(n, np.uint32)
            kernels.fixed_encode(enc, floats, p, frac_bits=16)
            dec = np.empty(n, np.float32)
            kernels.fixed_decode(dec, a, p, frac_bits=7)
            mask = np.empty(n, np.uint32)
            kernels.mask_generate(mask, p, key=KEY, stream_id=9, offset=3)
            outputs[isa] = [o.tobytes() for o in (red, acc, enc, dec, mask)]
    finally:
        kernels.set_isa(previous)
    first = outputs[ISAS[0]]
    for isa in ISAS[1:]:
        assert outputs[isa] == first, isa


# --- fixed point ---------------------------------------------------------------------------


def reference_encode(x: np.ndarray, p: int, frac_bits: int, saturate: bool) -> list[int]:
    half = (p - 1) // 2
    out = []
    for v in x.astype(np.float64).tolist():
        r = round(v * 2.0**frac_bits)  # Python rounds floats half to even, exactly
        if saturate:
            r = max(-half, min(half, r))
        assert abs(r) <= half
        out.append(r % p)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "p, frac_bits",
    [(P_LARGE, 16), (P_MERSENNE, 8), (P_LARGE, 0), (P_MERSENNE, 30), (3, 0), (251, 2)],
)
@pytest.mark.parametrize("n", [0, 1, 17, 1025, 5000])
def test_fixed_encode_decode(
    isa: str, dtype: type, p: int, frac_bits: int, n: int, rng: np.random.Generator
) -> None:
    half = (p - 1) // 2
    bound = (half / 2.0**frac_bits) * 0.999
    x = (rng.uniform(-bound, bound, n)).astype(dtype)
    x[: min(n, 3)] = np.array([0.0, -0.0, bound], dtype=dtype)[: min(n, 3)]
    dst = np.empty(n, np.uint32)
    kernels.fixed_encode(dst, x, p, frac_bits=frac_bits)
    assert py_list(dst) == reference_encode(x, p, frac_bits, False)
    out = np.empty(n, dtype)
    kernels.fixed_decode(out, dst, p, frac_bits=frac_bits)
    centred = np.array([r - p if r > half else r for r in py_list(dst)], dtype=np.float64)
    expect = (centred * 2.0**-frac_bits).astype(dtype)
    np.testing.assert_array_equal(out, expect)
    # The encoding error bound of modular.h, checked in float64.
    err = np.abs(centred * 2.0**-frac_bits - x.astype(np.float64))
    assert (err <= 2.0 ** -(frac_bits + 1)).all()


def test_fixed_encode_rounds_half_to_even(isa: str) -> None:
    p = P_LARGE
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.25, 0.75, -0.75], np.float64)
    dst = np.empty(x.size, np.uint32)
    kernels.fixed_encode(dst, x, p, frac_bits=0)
    assert py_list(dst) == [0, 2, 2, 0, p - 2, p - 2, 0, 1, p - 1]
    kernels.fixed_encode(dst, x, p, frac_bits=1)
    assert py_list(dst) == [1, 3, 5, p - 1, p - 3, p - 5, 0, 2, p - 2]  # 0.25 * 2 = 0.5 -> 0 (even)


def test_fixed_range_boundaries(isa: str) -> None:
    # H = (p - 1) / 2 = 2^30 - 1 for p = 2^31 - 1. H + 0.5 rounds to the even 2^30: too big.
    p, half = P_MERSENNE, 2**30 - 1
    ok = np.array([half, -half, half + 0.4999, half - 0.5, -(half + 0.25)], np.float64)
    dst = np.empty(ok.size, np.uint32)
    kernels.fixed_encode(dst, ok, p, frac_bits=0)
    assert py_list(dst) == [half, p - half, half, half - 1, p - half]
    for bad in [half + 0.5, half + 1.0, -(half + 0.5), 1e300, -1e300]:
        x = np.array([0.0, 1.0, bad, 2.0], np.float64)
        with pytest.raises(ValueError, match="index 2"):
            kernels.fixed_encode(dst[:4], x, p, frac_bits=0)
        kernels.fixed_encode(dst[:4], x, p, frac_bits=0, saturate=True)
        assert py_list(dst[:4]) == [0, 1, half if bad > 0 else p - half, 2]


def test_fixed_encode_huge_scale_is_out_of_range(isa: str) -> None:
    # x * 2^64 overflows to Inf in double: an out-of-range value, not a non-finite input.
    x = np.array([1e300], np.float64)
    with pytest.raises(ValueError, match="does not fit"):
        kernels.fixed_encode(np.empty(1, np.uint32), x, P_LARGE, frac_bits=64)
    tiny = np.array([5e-324, -5e-324, 2.0**-70], np.float64)
    dst = np.empty(3, np.uint32)
    kernels.fixed_encode(dst, tiny, P_LARGE, frac_bits=64)
    assert py_list(dst) == [0, 0, 0]  # 2^-70 * 2^64 = 2^-6 rounds to 0


@pytest.mark.parametrize("saturate", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fixed_encode_rejects_non_finite(isa: str, saturate: bool, bad: float, dtype: type) -> None:
    x = np.zeros(5000, dtype)
    x[3001] = bad
    x[4000] = bad
    x[3500] = 1e30  # out of range, but after the first non-finite value
    with pytest.raises(ValueError, match="non-finite.*index 3001"):
        kernels.fixed_encode(
            np.empty(x.size, np.uint32), x, P_LARGE, frac_bits=16, saturate=saturate
        )


def test_fixed_encode_reports_first_out_of_range_index(isa: str) -> None:
    x = np.zeros(5000, np.float32)
    x[2049] = -1e9
    x[2050] = np.nan
    with pytest.raises(ValueError, match="index 2049"):
        kernels.fixed_encode(np.empty(x.size, np.uint32), x, P_MERSENNE, frac_bits=8)
    # Saturating, the first failure is the NaN.
    with pytest.raises(ValueError, match="non-finite.*index 2050"):
        kernels.fixed_encode(np.empty(x.size, np.uint32), x, P_MERSENNE, frac_bits=8, saturate=True)


def test_exact_order_independent_sum(isa: str, rng: np.random.Generator) -> None:
    # Eight peers' encoded values summed mod p in two different orders give the same bits,
    # and decode to the exact sum of the rounded values.
    p, frac_bits, n, peers = P_LARGE, 16, 3000, 8
    values = [rng.standard_normal(n).astype(np.float32) * 100 for _ in range(peers)]
    encoded = []
    for v in values:
        e = np.empty(n, np.uint32)
        kernels.fixed_encode(e, v, p, frac_bits=frac_bits)
        encoded.append(e)
    totals = []
    for order in (range(peers), reversed(range(peers))):
        total = np.zeros(n, np.uint32)
        for i in order:
            kernels.mod_add(total, encoded[i], p)
        totals.append(total)
    np.testing.assert_array_equal(totals[0], totals[1])
    out = np.empty(n, np.float64)
    kernels.fixed_decode(out, totals[0], p, frac_bits=frac_bits)
    exact = sum(np.rint(v.astype(np.float64) * 2.0**frac_bits) for v in values)
    np.testing.assert_array_equal(out, exact * 2.0**-frac_bits)


def test_fixed_unaligned(isa: str, rng: np.random.Generator) -> None:
    n, p = 1031, P_LARGE
    x = unaligned((rng.standard_normal(n) * 10).astype(np.float64), 3)
    dst = unaligned(np.zeros(n, np.uint32), 1)
    kernels.fixed_encode(dst, x, p, frac_bits=12)
    assert py_list(dst) == reference_encode(x, p, 12, False)
    out = unaligned(np.zeros(n, np.float32), 2)
    kernels.fixed_decode(out, dst, p, frac_bits=12)
    np.testing.assert_array_equal(out, (np.rint(x * 4096.0) / 4096.0).astype(np.float32))


# --- bad input -----------------------------------------------------------------------------


def u32(n: int = 4) -> np.ndarray:
    return np.zeros(n, np.uint32)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: kernels.mod_add(u32().astype(np.int32), u32(), 7), TypeError, "dst"),
        (lambda: kernels.mod_add(u32(), u32().astype(np.float32), 7), TypeError, "src"),
        (lambda: kernels.mod_add(u32(), u32().astype(np.uint64), 7), TypeError, "src"),
        (lambda: kernels.mod_sub(u32(), u32(5), 7), ValueError, "dst has 4.*src has 5"),
        (lambda: kernels.mod_mul(u32()[::2], u32(2), 7), ValueError, "dst.*contiguous"),
        (lambda: kernels.mod_mul([0, 1], u32(2), 7), TypeError, "dst"),
        (lambda: kernels.mod_reduce(u32(), u32(), 7), TypeError, "src must be uint64"),
        (lambda: kernels.mod_reduce(u32(), np.zeros(3, np.uint64), 7), ValueError, "src"),
        (lambda: kernels.mod_mul_acc(u32(), u32(), u32(3), 7), ValueError, "b has 3"),
        (lambda: kernels.mod_mul_acc(u32(), u32(3), u32(), 7), ValueError, "a has 3"),
        (lambda: kernels.mod_mul_acc(u32(), u32().view(np.int32), u32(), 7), TypeError, "a "),
        (lambda: kernels.mod_add(u32(), u32(), 2**32), ValueError, "p must"),
        (lambda: kernels.fixed_encode(u32(), u32(), 7, frac_bits=1), TypeError, "src"),
        (
            lambda: kernels.fixed_encode(u32(), np.zeros(4), 7, frac_bits=-1),
            ValueError,
            "frac_bits",
        ),
        (
            lambda: kernels.fixed_encode(u32(), np.zeros(4), 7, frac_bits=65),
            ValueError,
            "frac_bits",
        ),
        (
            lambda: kernels.fixed_encode(u32(), np.zeros(4), 7, frac_bits=1.5),
            TypeError,
            "frac_bits",
        ),
        (
            lambda: kernels.fixed_encode(u32(), np.zeros(4), 7, frac_bits=1, saturate="yes"),
            TypeError,
            "saturate",
        ),
        (lambda: kernels.fixed_encode(u32(), np.zeros(5), 7, frac_bits=1), ValueError, "src"),
        (
            lambda: kernels.fixed_encode(np.zeros(4, np.int64), np.zeros(4), 7, frac_bits=1),
            TypeError,
            "dst",
        ),
        (
            lambda: kernels.fixed_decode(np.zeros(4, np.float16), u32(), 7, frac_bits=1),
            TypeError,
            "dst",
        ),
        (lambda: kernels.fixed_decode(np.zeros(4), np.zeros(4), 7, frac_bits=1), TypeError, "src"),
        (
            lambda: kernels.mask_generate(u32(), 7, key=b"short", stream_id=0),
            ValueError,
            "key must be 32 bytes",
        ),
        (lambda: kernels.mask_generate(u32(), 7, key="k" * 32, stream_id=0), TypeError, "key"),
        (lambda: kernels.mask_generate(u32(), 7, key=KEY, stream_id=-1), ValueError, "stream_id"),
        (
            lambda: kernels.mask_generate(u32(), 7, key=KEY, stream_id=2**64),
            ValueError,
            "stream_id",
        ),
        (
            lambda: kernels.mask_generate(u32(), 7, key=KEY, stream_id=0, offset=-1),
            ValueError,
            "offset",
        ),
        (
            lambda: kernels.mask_generate(u32().astype(np.int32), 7, key=KEY, stream_id=0),
            TypeError,
            "dst",
        ),
        (lambda: kernels.chacha20_block(KEY, 2**32, bytes(12)), ValueError, "counter"),
        (lambda: kernels.chacha20_block(KEY, 0, bytes(8)), ValueError, "nonce"),
    ],
)
def test_bad_arguments(call, exc: type, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(exc, match=match):
        call()


def test_read_only_outputs() -> None:
    ro = u32()
    ro.flags.writeable = False
    for call in [
        lambda: kernels.mod_add(ro, u32(), 7),
        lambda: kernels.mod_reduce(ro, np.zeros(4, np.uint64), 7),
        lambda: kernels.mod_mul_acc(ro, u32(), u32(), 7),
        lambda: kernels.fixed_encode(ro, np.zeros(4), 7, frac_bits=1),
        lambda: kernels.mask_generate(ro, 7, key=KEY, stream_id=0),
    ]:
        with pytest.raises(ValueError, match="writable"):
            call()
    ro_f = np.zeros(4)
    ro_f.flags.writeable = False
    with pytest.raises(ValueError, match="dst must be writable"):
        kernels.fixed_decode(ro_f, u32(), 7, frac_bits=1)


def test_core_rejects_bad_buffers_directly() -> None:
    # The binding checks on its own too (never a crash when called without the wrapper).
    from pccl import _core

    m = modular.Modulus(7)._native
    core = modular._k
    with pytest.raises(ValueError, match="dst has 4 elements but src has 3"):
        core.mod_add(m, u32(), u32(3))
    with pytest.raises(TypeError, match="src"):
        core.mod_reduce(m, u32(), u32())
    with pytest.raises(ValueError, match="key must be 32 bytes"):
        core.mask_generate(m, u32(), b"x", 0, 0, None)
    with pytest.raises(ValueError, match="frac_bits"):
        core.fixed_encode(m, u32(), np.zeros(4), _core.DataType.DOUBLE, 99, False)
    with pytest.raises(ValueError, match="float32 or float64"):
        core.fixed_decode(m, u32(), u32(), _core.DataType.UINT32, 3)
    with pytest.raises(ValueError, match="exceeds 2\\^56"):
        core.mask_generate(m, u32(), KEY, 0, 2**56 - 2, None)
    with pytest.raises(ValueError, match="modulus p"):
        core.Modulus(1)
