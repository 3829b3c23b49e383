"""Tests of the modular-arithmetic kernels (pccl.kernels.modular) against exact references.

References are Python big integers, or numpy uint64 arithmetic where every intermediate
provably stays below 2^64 (sums of two residues, products of two residues plus one more).
The mask PRF is checked against the `cryptography` package's ChaCha20 and RFC 8439.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from conftest import ISAS, LENGTHS, unaligned
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from pccl import kernels
from pccl.kernels import modular

pytestmark = pytest.mark.timeout(60)

P_LARGE = 4294967291  # the largest prime below 2^32
P_MERSENNE = 2**31 - 1
PRIMES = [2, 3, 251, P_MERSENNE, P_LARGE]
SMALL_LENGTHS = [n for n in LENGTHS if n < 1 << 20]
BIG = max(LENGTHS)
U64_MAX = 2**64 - 1
KEY = bytes(range(32))


# --- helpers -------------------------------------------------------------------------------


def residues(rng: np.random.Generator, p: int, n: int) -> np.ndarray:
    """n residues in [0, p) that include the edges 0, 1 and p - 1."""
    out = rng.integers(0, p, n, dtype=np.uint64).astype(np.uint32)
    edges = np.array([0, p - 1, 1 % p, p - 1], dtype=np.uint32)
    out[: min(n, 4)] = edges[: min(n, 4)]
    return out


def wide_values(rng: np.random.Generator, p: int, n: int) -> np.ndarray:
    """n uint64 values including 0, p - 1, p, multiples of p and values near 2^64 - 1."""
    out = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    top = U64_MAX - U64_MAX % p  # the largest multiple of p below 2^64
    edges = [U64_MAX, U64_MAX - 1, 0, p - 1, p, p + 1, 2 * p - 1, top, top - 1, 2**63, 2**32]
    edges = np.array([e & U64_MAX for e in edges], dtype=np.uint64)
    out[: min(n, len(edges))] = edges[: min(n, len(edges))]
    return out


def py_list(a: np.ndarray) -> list[int]:
    return [int(v) for v in a]


def chacha_keystream(key: bytes, counter: int, nonce12: bytes, n_bytes: int) -> bytes:
    """RFC 8439 keystream from `cryptography` (counter must not wrap within n_bytes)."""
    assert counter + (n_bytes + 63) // 64 <= 2**32
    nonce16 = struct.pack("<I", counter) + nonce12
    enc = Cipher(algorithms.ChaCha20(key, nonce16), mode=None).encryptor()
    return enc.update(bytes(n_bytes))


def block_draws(key: bytes, stream: int, block: int) -> list[int]:
    """The 8 little-endian 64-bit draws of the mask stream's block with 64-bit counter."""
    nonce12 = struct.pack("<IQ", block >> 32, stream)
    return list(struct.unpack("<8Q", chacha_keystream(key, block & 0xFFFFFFFF, nonce12, 64)))


def reference_masks(
    key: bytes, stream: int, offset: int, n: int, p: int, max_accept: int | None = None
) -> list[int]:
    """Masks as modular.h defines them, computed with `cryptography`'s ChaCha20."""
    if max_accept is None:
        max_accept = U64_MAX - (2**64 % p)
    out = []
    cache: dict[int, list[int]] = {}
    for j in range(offset, offset + n):
        block = j // 8
        if block not in cache:
            cache[block] = block_draws(key, stream, block)
        draw = cache[block][j % 8]
        t = 0
        while draw > max_accept:  # fallback sequence of element j
            fallback = block_draws(key, stream, (1 << 63) | ((t // 8) << 56) | j)
            draw = fallback[t % 8]
            t += 1
        out.append(draw % p)
    return out


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


# --- ChaCha20 and masks ----------------------------------------------------------------------


def test_chacha20_rfc8439_vectors() -> None:
    # RFC 8439 section 2.3.2.
    block = kernels.chacha20_block(KEY, 1, bytes.fromhex("000000090000004a00000000"))
    assert block.hex() == (
        "10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e"
        "d2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e"
    )
    # RFC 8439 appendix A.1, test vector #1: all-zero key, nonce and counter.
    assert kernels.chacha20_block(bytes(32), 0, bytes(12)).hex() == (
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
        "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
    )


def test_chacha20_matches_cryptography(rng: np.random.Generator) -> None:
    for _ in range(20):
        key = rng.bytes(32)
        nonce = rng.bytes(12)
        counter = int(rng.integers(0, 2**32 - 1))
        assert kernels.chacha20_block(key, counter, nonce) == chacha_keystream(
            key, counter, nonce, 64
        )


@pytest.mark.parametrize("p", PRIMES + [2**32 - 1])
@pytest.mark.parametrize("offset, n", [(0, 0), (0, 1), (0, 300), (5, 123), (1000, 257)])
def test_mask_matches_reference(isa: str, p: int, offset: int, n: int) -> None:
    dst = np.empty(n, np.uint32)
    kernels.mask_generate(dst, p, key=KEY, stream_id=0x0123456789ABCDEF, offset=offset)
    assert py_list(dst) == reference_masks(KEY, 0x0123456789ABCDEF, offset, n, p)


def test_mask_high_offsets(isa: str) -> None:
    p = P_LARGE
    # Block counters beyond 2^32 (the high counter word is used) and the end of the range.
    for offset, n in [(2**35 - 13, 40), (2**56 - 21, 21)]:
        dst = unaligned(np.zeros(n, np.uint32), 2)
        kernels.mask_generate(dst, p, key=KEY, stream_id=7, offset=offset)
        assert py_list(dst) == reference_masks(KEY, 7, offset, n, p)
    with pytest.raises(ValueError, match="offset"):
        kernels.mask_generate(np.empty(22, np.uint32), p, key=KEY, stream_id=7, offset=2**56 - 21)


def test_mask_fallback_path(isa: str) -> None:
    # A small acceptance bound (5 * 2^61 - 1 of 2^64: ~37% of draws rejected) drives the
    # fallback sequence; the masks must still match the reference and stay uniform.
    p = 5
    bound = 5 * 2**61 - 1
    n = 400
    dst = np.empty(n, np.uint32)
    modular._mask_generate(dst, p, KEY, 3, 11, bound)
    assert py_list(dst) == reference_masks(KEY, 3, 11, n, p, max_accept=bound)
    # Same elements from a sub-range.
    part = np.empty(50, np.uint32)
    modular._mask_generate(part, p, KEY, 3, 111, bound)
    np.testing.assert_array_equal(part, dst[100:150])
    with pytest.raises(ValueError, match="acceptance bound"):
        modular._mask_generate(dst, p, KEY, 3, 0, 2**62 + 1)  # 2**62 + 2 is not k * 5


def chi_square(values: np.ndarray, bins: int) -> float:
    counts = np.bincount(values, minlength=bins)
    expected = values.size / bins
    return float(((counts - expected) ** 2 / expected).sum())


def test_mask_uniform(isa: str) -> None:
    # Deterministic (fixed key), so these bounds are not flaky: the 99.9% quantile of
    # chi-square with 6 df is 22.5, with 15 df 37.7.
    n = 200_000
    small = np.empty(n, np.uint32)
    kernels.mask_generate(small, 7, key=KEY, stream_id=1)
    assert small.max() < 7
    assert chi_square(small.astype(np.int64), 7) < 22.5
    big = np.empty(n, np.uint32)
    kernels.mask_generate(big, P_LARGE, key=KEY, stream_id=2)
    assert int(big.max()) < P_LARGE
    buckets = (big.astype(np.uint64) * np.uint64(16) // np.uint64(P_LARGE)).astype(np.int64)
    assert chi_square(buckets, 16) < 37.7
    # A biased generator (e.g. 32-bit draws mod p for p = 3 * 2^30) would fail this one:
    # the lower third of residues would be twice as likely.
    p = 3 * 2**30 + 1
    mid = np.empty(n, np.uint32)
    kernels.mask_generate(mid, p, key=KEY, stream_id=3)
    thirds = (mid.astype(np.uint64) * np.uint64(3) // np.uint64(p)).astype(np.int64)
    assert chi_square(thirds, 3) < 13.8


def test_mask_determinism_and_random_access(isa: str) -> None:
    p, n = P_LARGE, 5000
    full = np.empty(n, np.uint32)
    kernels.mask_generate(full, p, key=KEY, stream_id=42)
    again = np.empty(n, np.uint32)
    kernels.mask_generate(again, p, key=bytearray(KEY), stream_id=42)
    np.testing.assert_array_equal(full, again)
    for start, length in [(1, 7), (8, 8), (127, 130), (128, 1), (1000, 2345), (4999, 1)]:
        part = np.empty(length, np.uint32)
        kernels.mask_generate(part, p, key=KEY, stream_id=42, offset=start)
        np.testing.assert_array_equal(part, full[start : start + length])
    other_stream = np.empty(n, np.uint32)
    kernels.mask_generate(other_stream, p, key=KEY, stream_id=43)
    other_key = np.empty(n, np.uint32)
    kernels.mask_generate(other_key, p, key=bytes(32), stream_id=42)
    assert (other_stream != full).mean() > 0.99
    assert (other_key != full).mean() > 0.99


def test_masks_cancel(isa: str, rng: np.random.Generator) -> None:
    # Peer A adds the pairwise mask, peer B subtracts its own copy (same key and stream):
    # the sum of the masked contributions equals the sum of the plain ones.
    p, n = P_LARGE, 10_001
    a, b = residues(rng, p, n), residues(rng, p, n)
    mask_a, mask_b = np.empty(n, np.uint32), np.empty(n, np.uint32)
    kernels.mask_generate(mask_a, p, key=KEY, stream_id=5)
    kernels.mask_generate(mask_b, p, key=KEY, stream_id=5)
    masked_a, masked_b = a.copy(), b.copy()
    kernels.mod_add(masked_a, mask_a, p)
    kernels.mod_sub(masked_b, mask_b, p)
    assert (masked_a != a).mean() > 0.99
    total = masked_a.copy()
    kernels.mod_add(total, masked_b, p)
    plain = a.copy()
    kernels.mod_add(plain, b, p)
    np.testing.assert_array_equal(total, plain)
    kernels.mod_sub(masked_a, mask_b, p)
    np.testing.assert_array_equal(masked_a, a)


def test_mask_big(isa: str) -> None:
    full = np.empty(BIG, np.uint32)
    kernels.mask_generate(full, P_LARGE, key=KEY, stream_id=77)
    tail = np.empty(1000, np.uint32)
    kernels.mask_generate(tail, P_LARGE, key=KEY, stream_id=77, offset=BIG - 1000)
    np.testing.assert_array_equal(full[-1000:], tail)
    assert py_list(full[-3:]) == reference_masks(KEY, 77, BIG - 3, 3, P_LARGE)


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
    m = modular.Modulus(7)._native
    core = modular._k
    with pytest.raises(ValueError, match="dst has 4 elements but src has 3"):
        core.mod_add(m, u32(), u32(3))
    with pytest.raises(TypeError, match="src"):
        core.mod_reduce(m, u32(), u32())
    with pytest.raises(ValueError, match="key must be 32 bytes"):
        core.mask_generate(m, u32(), b"x", 0, 0, None)
    with pytest.raises(ValueError, match="frac_bits"):
        core.fixed_encode(m, u32(), np.zeros(4), int(modular.DataType.DOUBLE), 99, False)
    with pytest.raises(ValueError, match="float32 or float64"):
        core.fixed_decode(m, u32(), u32(), int(modular.DataType.UINT32), 3)
    with pytest.raises(ValueError, match="exceeds 2\\^56"):
        core.mask_generate(m, u32(), KEY, 0, 2**56 - 2, None)
    with pytest.raises(ValueError, match="modulus p"):
        core.Modulus(1)
