"""pccl.kernels ChaCha20 and the masks of secure aggregation: the RFC 8439 vectors, the
`cryptography` package's ChaCha20 as the reference, mask uniformity, random access and
cancellation, on every ISA path."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from conftest import unaligned
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from modular_support import BIG, KEY, P_LARGE, PRIMES, U64_MAX, py_list, residues
from pccl import kernels
from pccl.kernels import modular

pytestmark = pytest.mark.timeout(60)


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


