"""Tests of the content hash (pccl.kernels.hash64 / Hasher) against the xxhash package."""

from __future__ import annotations

import threading

import ml_dtypes
import numpy as np
import pytest
import xxhash
from conftest import ISAS, LENGTHS, unaligned
from pccl import kernels

# (input, seed, expected XXH64), written out so that a change of algorithm, byte order or
# seed handling is caught even if the reference package changed too. Cross-checked against
# xxhash.xxh64_intdigest in test_golden_values_match_reference.
_PATTERN_1MIB = bytes((i * 31 + 7) & 0xFF for i in range(1 << 20))
GOLDEN = [
    (b"", 0, 0xEF46DB3751D8E999),
    (b"a", 0, 0xD24EC4F1A98C6E5B),
    (b"abc", 0, 0x44BC2CF5AD770999),
    (b"Nobody inspects the spammish repetition", 0, 0xFBCEA83C8A378BF1),
    (bytes(range(256)), 0, 0x1FACBE8406CD904B),
    (b"0123456789abcdef" * 4, 0x9E3779B97F4A7C15, 0x1B42A1FFF1F95A2F),
    (b"xxhash", 2**64 - 1, 0xFC62C78A0DE54E15),
    (_PATTERN_1MIB, 12345, 0x13F70433E77A0099),
]


def _random_bytes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=n, dtype=np.uint8)


def _random_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63, dtype=np.int64)) * 2 + int(rng.integers(0, 2))


# --- the value -------------------------------------------------------------------------


@pytest.mark.parametrize("data,seed,expected", GOLDEN, ids=[f"golden{i}" for i in range(8)])
def test_golden_values(isa: str, data: bytes, seed: int, expected: int) -> None:
    assert kernels.hash64(data, seed) == expected
    assert kernels.hash64(np.frombuffer(data, dtype=np.uint8), seed=seed) == expected


@pytest.mark.parametrize("data,seed,expected", GOLDEN, ids=[f"golden{i}" for i in range(8)])
def test_golden_values_match_reference(data: bytes, seed: int, expected: int) -> None:
    assert xxhash.xxh64_intdigest(data, seed) == expected


def test_every_length_up_to_300_matches_xxhash(isa: str, rng: np.random.Generator) -> None:
    # Covers no stripe / one / several stripes, and every tail shape (8-byte words, a
    # 4-byte word, single bytes) in front of each.
    data = _random_bytes(rng, 300)
    seed = _random_seed(rng)
    for n in range(301):
        piece = data[:n]
        for s in (0, seed):
            assert kernels.hash64(piece, s) == xxhash.xxh64_intdigest(piece.tobytes(), s), (n, s)


@pytest.mark.parametrize("n", LENGTHS + [(1 << 20) + 31, 4096 * 1024])
def test_large_lengths_random_seeds_match_xxhash(
    isa: str, rng: np.random.Generator, n: int
) -> None:
    data = _random_bytes(rng, n)
    for seed in (0, 2**64 - 1, _random_seed(rng)):
        assert kernels.hash64(data, seed) == xxhash.xxh64_intdigest(data.tobytes(), seed)


def test_default_seed_is_zero(rng: np.random.Generator) -> None:
    data = _random_bytes(rng, 100)
    assert kernels.hash64(data) == xxhash.xxh64_intdigest(data.tobytes(), 0)
    assert kernels.hash64(data) != kernels.hash64(data, 1)


def test_seed_accepts_numpy_integers(rng: np.random.Generator) -> None:
    data = _random_bytes(rng, 50).tobytes()
    top = 2**64 - 1
    assert kernels.hash64(data, np.uint64(top)) == xxhash.xxh64_intdigest(data, top)
    assert kernels.hash64(data, np.int32(7)) == xxhash.xxh64_intdigest(data, 7)


def test_every_single_byte_change_changes_the_hash(rng: np.random.Generator) -> None:
    # 100 bytes: three stripes, then a tail of 8 + 4 + 1 bytes; every position matters.
    data = _random_bytes(rng, 100)
    base = kernels.hash64(data)
    for i in range(data.size):
        changed = data.copy()
        changed[i] ^= 0x01
        assert kernels.hash64(changed) != base, i


# --- alignment, layout, dtype ----------------------------------------------------------


# No empty input here: conftest.unaligned() cannot place a zero-byte array (numpy gives
# empty views their own pointer); empty inputs are covered by the length tests.
@pytest.mark.parametrize("offset", [1, 3, 4, 7, 8, 13])
@pytest.mark.parametrize("n", [1, 7, 31, 32, 33, 100, 1025])
def test_unaligned_pointers(isa: str, rng: np.random.Generator, offset: int, n: int) -> None:
    data = _random_bytes(rng, n)
    moved = unaligned(data, offset)
    assert kernels.hash64(moved, 5) == xxhash.xxh64_intdigest(data.tobytes(), 5)
    hasher = kernels.Hasher(5)
    hasher.update(moved)
    assert hasher.digest() == kernels.hash64(data, 5)


def test_unaligned_large(isa: str, rng: np.random.Generator) -> None:
    data = _random_bytes(rng, LENGTHS[-1])
    assert kernels.hash64(unaligned(data, 3)) == xxhash.xxh64_intdigest(data.tobytes())


NUMPY_DTYPES = [
    np.uint8, np.int8, np.uint16, np.int16, np.float16, ml_dtypes.bfloat16,
    np.uint32, np.int32, np.float32, np.uint64, np.int64, np.float64,
]


@pytest.mark.parametrize("dtype", NUMPY_DTYPES, ids=lambda d: np.dtype(d).name)
def test_hash_depends_on_bytes_not_dtype(rng: np.random.Generator, dtype: object) -> None:
    raw = _random_bytes(rng, 8 * 123)
    view = raw.view(dtype)
    expected = xxhash.xxh64_intdigest(raw.tobytes(), 99)
    assert kernels.hash64(view, 99) == expected
    assert kernels.hash64(view.reshape(3, -1), 99) == expected  # shape does not matter either
    if dtype is not ml_dtypes.bfloat16:  # numpy cannot export bfloat16 as a buffer
        assert kernels.hash64(memoryview(view), 99) == expected


def test_float16_and_uint16_views_hash_alike(rng: np.random.Generator) -> None:
    f16 = rng.standard_normal(1001).astype(np.float16)
    assert kernels.hash64(f16) == kernels.hash64(f16.view(np.uint16))
    bf16 = rng.standard_normal(1001).astype(ml_dtypes.bfloat16)
    assert kernels.hash64(bf16) == kernels.hash64(bf16.view(np.uint16))
    assert kernels.hash64(bf16) == kernels.hash64(bf16.view(np.int16))


def test_bytes_like_inputs(rng: np.random.Generator) -> None:
    raw = _random_bytes(rng, 77).tobytes()
    expected = xxhash.xxh64_intdigest(raw, 3)
    assert kernels.hash64(raw, 3) == expected
    assert kernels.hash64(bytearray(raw), 3) == expected
    assert kernels.hash64(memoryview(raw), 3) == expected
    assert kernels.hash64(memoryview(raw)[10:], 3) == xxhash.xxh64_intdigest(raw[10:], 3)
    assert kernels.hash64(memoryview(b""), 3) == xxhash.xxh64_intdigest(b"", 3)
    assert kernels.hash64(np.zeros((0, 4), np.float32), 3) == xxhash.xxh64_intdigest(b"", 3)


def test_read_only_and_zero_dim_arrays(rng: np.random.Generator) -> None:
    data = _random_bytes(rng, 64).view(np.float64)
    data.flags.writeable = False
    assert kernels.hash64(data) == xxhash.xxh64_intdigest(data.tobytes())
    scalar = np.array(1.5, dtype=np.float32)
    assert kernels.hash64(scalar) == xxhash.xxh64_intdigest(scalar.tobytes())


def test_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.uint8):
        t = (torch.randn(257, generator=gen) * 100).to(dtype)
        raw = t.view(torch.uint8).numpy().tobytes()
        assert kernels.hash64(t, 11) == xxhash.xxh64_intdigest(raw, 11), dtype
    bf = torch.randn(64, generator=gen).to(torch.bfloat16)
    assert kernels.hash64(bf) == kernels.hash64(bf.view(torch.int16))
    p = torch.nn.Parameter(torch.randn(33, generator=gen))
    assert kernels.hash64(p) == xxhash.xxh64_intdigest(p.detach().numpy().tobytes())
    with pytest.raises(ValueError, match="data"):
        kernels.hash64(torch.randn(8, 8, generator=gen).t())


# --- streaming -------------------------------------------------------------------------


def _split_points(rng: np.random.Generator, n: int, pieces: int) -> list[int]:
    cuts = np.sort(rng.integers(0, n + 1, size=pieces - 1))
    return [0, *cuts.tolist(), n]


def test_streaming_equals_one_shot_for_random_splits(
    isa: str, rng: np.random.Generator
) -> None:
    for n in (0, 1, 31, 32, 33, 95, 257, 1000, 4099):
        data = _random_bytes(rng, n)
        seed = _random_seed(rng)
        expected = kernels.hash64(data, seed)
        for pieces in (1, 2, 3, 7, 40):
            bounds = _split_points(rng, n, pieces)  # repeated cuts give empty pieces
            hasher = kernels.Hasher(seed)
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                hasher.update(data[lo:hi])
            assert hasher.digest() == expected, (n, bounds)
            assert hasher.total_bytes == n


def test_streaming_every_two_piece_split(rng: np.random.Generator) -> None:
    # Every cut position of a 100-byte input, inside and on stripe boundaries.
    data = _random_bytes(rng, 100).tobytes()
    expected = xxhash.xxh64_intdigest(data, 17)
    for cut in range(len(data) + 1):
        hasher = kernels.Hasher(17)
        hasher.update(data[:cut])
        hasher.update(data[cut:])
        assert hasher.digest() == expected, cut


def test_streaming_byte_at_a_time(rng: np.random.Generator) -> None:
    data = _random_bytes(rng, 133).tobytes()
    hasher = kernels.Hasher()
    for i in range(len(data)):
        hasher.update(data[i : i + 1])
        assert hasher.digest() == xxhash.xxh64_intdigest(data[: i + 1]), i


def test_streaming_large_in_odd_chunks(rng: np.random.Generator) -> None:
    data = _random_bytes(rng, LENGTHS[-1])
    hasher = kernels.Hasher(2**64 - 1)
    chunk = 65537  # odd, so most chunks start and end inside a stripe
    for lo in range(0, data.size, chunk):
        hasher.update(unaligned(data[lo : lo + chunk], lo % 8))
    assert hasher.digest() == xxhash.xxh64_intdigest(data.tobytes(), 2**64 - 1)


def test_digest_does_not_end_the_stream(rng: np.random.Generator) -> None:
    data = _random_bytes(rng, 90).tobytes()
    hasher = kernels.Hasher(4)
    hasher.update(data[:45])
    assert hasher.digest() == xxhash.xxh64_intdigest(data[:45], 4)
    assert hasher.digest() == xxhash.xxh64_intdigest(data[:45], 4)  # idempotent
    hasher.update(data[45:])
    assert hasher.digest() == xxhash.xxh64_intdigest(data, 4)


def test_hasher_mixed_input_types(rng: np.random.Generator) -> None:
    raw = _random_bytes(rng, 64 + 40 + 8)
    hasher = kernels.Hasher()
    hasher.update(raw[:64].view(np.float32))
    hasher.update(bytearray(raw[64:104].tobytes()))
    hasher.update(memoryview(raw[104:].tobytes()))
    assert hasher.digest() == xxhash.xxh64_intdigest(raw.tobytes())


def test_hasher_reset_and_seed(rng: np.random.Generator) -> None:
    data = _random_bytes(rng, 70).tobytes()
    hasher = kernels.Hasher(1)
    assert hasher.seed == 1
    assert hasher.digest() == xxhash.xxh64_intdigest(b"", 1)
    hasher.update(b"garbage that reset must forget")
    hasher.reset(2**64 - 2)
    assert hasher.seed == 2**64 - 2
    assert hasher.total_bytes == 0
    hasher.update(data)
    assert hasher.digest() == xxhash.xxh64_intdigest(data, 2**64 - 2)


def test_hasher_shared_between_threads() -> None:
    # Every piece holds the same bytes, so any interleaving gives the same stream; a race
    # on the partial-stripe buffer or the counters would change the digest.
    hasher = kernels.Hasher(9)
    piece = bytes([0xA5]) * 7
    threads, per_thread = 4, 500

    def work() -> None:
        for _ in range(per_thread):
            hasher.update(piece)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    total = piece * (threads * per_thread)
    assert hasher.total_bytes == len(total)
    assert hasher.digest() == xxhash.xxh64_intdigest(total, 9)


# --- ISA paths -------------------------------------------------------------------------


def test_all_isa_paths_agree(rng: np.random.Generator) -> None:
    # One portable path today; a future vectorised path must give the same bits.
    inputs = [_random_bytes(rng, n) for n in (1, 5, 32, 1000, (1 << 20) + 3)]
    previous = kernels.active_isa()
    results = {}
    try:
        for name in ISAS:
            kernels.set_isa(name)
            results[name] = [kernels.hash64(unaligned(d, 1), 77) for d in inputs]
    finally:
        kernels.set_isa(previous)
    expected = [xxhash.xxh64_intdigest(d.tobytes(), 77) for d in inputs]
    for name, got in results.items():
        assert got == expected, name


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, 3, "text", [1, 2, 3], 1.5, np.float32(1.0)])
def test_wrong_data_type_raises_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="data"):
        kernels.hash64(bad)
    with pytest.raises(TypeError, match="data"):
        kernels.Hasher().update(bad)


@pytest.mark.parametrize("dtype", [np.bool_, np.complex64, np.complex128, np.datetime64])
def test_unsupported_dtype_raises_type_error(dtype: object) -> None:
    with pytest.raises(TypeError, match="data"):
        kernels.hash64(np.zeros(4, dtype=dtype))


def test_non_contiguous_raises_value_error() -> None:
    grid = np.arange(64, dtype=np.float32).reshape(8, 8)
    for bad in (grid[:, ::2], grid.T, np.arange(10, dtype=np.uint8)[::2]):
        with pytest.raises(ValueError, match="data"):
            kernels.hash64(bad)
        with pytest.raises(ValueError, match="data"):
            kernels.hash64(memoryview(bad))
        with pytest.raises(ValueError, match="data"):
            kernels.Hasher().update(bad)
    with pytest.raises(ValueError, match="data"):
        kernels.hash64(memoryview(b"abcdef")[::2])


@pytest.mark.parametrize("seed", [-1, 2**64, 2**70, -(2**63)])
def test_seed_out_of_range_raises_value_error(seed: int) -> None:
    with pytest.raises(ValueError, match="seed"):
        kernels.hash64(b"x", seed)
    with pytest.raises(ValueError, match="seed"):
        kernels.Hasher(seed)
    hasher = kernels.Hasher(3)
    with pytest.raises(ValueError, match="seed"):
        hasher.reset(seed)
    assert hasher.seed == 3


@pytest.mark.parametrize("seed", [1.0, "1", None, True, b"\x01"])
def test_seed_wrong_type_raises_type_error(seed: object) -> None:
    with pytest.raises(TypeError, match="seed"):
        kernels.hash64(b"x", seed)
    with pytest.raises(TypeError, match="seed"):
        kernels.Hasher(seed)
