"""Reduce kernels against numpy references, on every ISA path, length and alignment."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pccl
import pytest
from conftest import ISAS, LENGTHS, unaligned
from pccl import DataType, ReduceOp, kernels

BF16 = np.dtype(ml_dtypes.bfloat16)
INT_DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64]
FLOAT_DTYPES = [np.float16, BF16, np.float32, np.float64]
ALL_DTYPES = [np.dtype(d) for d in INT_DTYPES + FLOAT_DTYPES]
OPS = [ReduceOp.SUM, ReduceOp.AVG, ReduceOp.PROD, ReduceOp.MIN, ReduceOp.MAX]
SMALL_LENGTHS = [n for n in LENGTHS if n < 1 << 20]


def random_array(rng: np.random.Generator, dtype: np.dtype, n: int) -> np.ndarray:
    """Values spanning the type: full-range integers, floats of mixed sign and magnitude."""
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=n, dtype=dtype, endpoint=True)
    values = rng.standard_normal(n) * np.exp2(rng.integers(-8, 8, size=n))
    return values.astype(dtype)


def reference(op: ReduceOp, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """What pccl must compute: integers wrap; 16-bit floats compute in float32, round once."""
    wide = a.dtype in (np.float16, BF16)
    x, y = (a.astype(np.float32), b.astype(np.float32)) if wide else (a, b)
    with np.errstate(over="ignore", invalid="ignore"):
        if op in (ReduceOp.SUM, ReduceOp.AVG):
            r = x + y
        elif op is ReduceOp.PROD:
            r = x * y
        elif op is ReduceOp.MIN:
            r = np.minimum(x, y)
        else:
            r = np.maximum(x, y)
    return r.astype(a.dtype) if wide else r


def assert_same_values(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal values, NaN where expected has NaN (-0.0 equals +0.0)."""
    if actual.dtype == BF16:
        actual, expected = actual.astype(np.float32), expected.astype(np.float32)
    np.testing.assert_array_equal(actual, expected, strict=True)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
@pytest.mark.parametrize("n", SMALL_LENGTHS)
def test_reduce_matches_numpy(isa: str, rng: np.random.Generator, dtype: np.dtype,
                              op: ReduceOp, n: int) -> None:
    a = random_array(rng, dtype, n)
    b = random_array(rng, dtype, n)
    expected = reference(op, a, b)
    kernels.reduce(a, b, op)
    assert_same_values(a, expected)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_reduce_large_unaligned(isa: str, rng: np.random.Generator, dtype: np.dtype) -> None:
    n = LENGTHS[-1]
    a = unaligned(random_array(rng, dtype, n), offset=1)
    b = unaligned(random_array(rng, dtype, n), offset=3)
    expected = reference(ReduceOp.SUM, a, b)
    kernels.reduce(a, b, ReduceOp.SUM)
    assert_same_values(a, expected)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
def test_paths_bit_identical(rng: np.random.Generator, dtype: np.dtype, op: ReduceOp) -> None:
    """Every ISA path gives the same bytes, NaN payloads and signed zeros included."""
    n = 4099
    a = random_array(rng, dtype, n)
    b = random_array(rng, dtype, n)
    if dtype.kind == "f":
        specials = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-45, 6e-8])
        a[: len(specials)] = specials.astype(dtype)
        b[3 : 3 + len(specials)] = specials.astype(dtype)
    results = []
    previous = kernels.active_isa()
    try:
        for isa_name in ISAS:
            kernels.set_isa(isa_name)
            out = a.copy()
            kernels.reduce(out, b, op)
            results.append(out.view(np.uint8).tobytes())
    finally:
        kernels.set_isa(previous)
    assert all(r == results[0] for r in results), f"paths differ: {ISAS}"


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=lambda d: np.dtype(d).name)
def test_integer_overflow_wraps(isa: str, dtype: type) -> None:
    info = np.iinfo(dtype)
    bits = np.dtype(dtype).itemsize * 8
    a = np.array([info.max, info.min, info.max, info.max], dtype=dtype)
    b = np.array([1, info.min if info.min else 1, info.max, 2], dtype=dtype)
    expected = [(int(x) + int(y)) % (1 << bits) for x, y in zip(a, b)]
    products = [(int(x) * int(y)) % (1 << bits) for x, y in zip(a, b)]
    s = a.copy()
    kernels.reduce(s, b, ReduceOp.SUM)
    p = a.copy()
    kernels.reduce(p, b, ReduceOp.PROD)
    unsigned = np.dtype(f"u{bits // 8}")
    assert s.view(unsigned).tolist() == expected
    assert p.view(unsigned).tolist() == products


@pytest.mark.parametrize("dtype", [np.float16, BF16, np.float32, np.float64], ids=str)
def test_min_max_nan_and_signed_zero(isa: str, dtype: np.dtype) -> None:
    a = np.array([np.nan, 1.0, -0.0, 0.0, 2.0, np.nan], dtype=dtype)
    b = np.array([1.0, np.nan, 0.0, -0.0, 2.0, np.nan], dtype=dtype)
    for op in (ReduceOp.MIN, ReduceOp.MAX):
        out = a.copy()
        kernels.reduce(out, b, op)
        as_f = out.astype(np.float64)
        assert np.isnan(as_f[0]) and np.isnan(as_f[1]) and np.isnan(as_f[5])
        # Ties keep dst: the sign of zero comes from dst.
        assert np.signbit(as_f[2]) and not np.signbit(as_f[3])
        assert as_f[4] == 2.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
def test_subnormals_are_not_flushed(isa: str, dtype: type) -> None:
    tiny = np.finfo(dtype).smallest_subnormal
    a = np.array([tiny, tiny * 3, -tiny], dtype=dtype)
    b = np.array([tiny, -tiny, -tiny], dtype=dtype)
    kernels.reduce(a, b, ReduceOp.SUM)
    np.testing.assert_array_equal(a, np.array([2 * tiny, 2 * tiny, -2 * tiny], dtype=dtype))


def test_in_place_same_buffer(isa: str, rng: np.random.Generator) -> None:
    a = rng.standard_normal(1025).astype(np.float32)
    expected = a + a
    kernels.reduce(a, a, ReduceOp.SUM)
    np.testing.assert_array_equal(a, expected)


def test_float16_all_bit_patterns_widen_exactly(isa: str) -> None:
    bits = np.arange(1 << 16, dtype=np.uint16)
    halves = bits.view(np.float16)
    acc = np.empty(bits.size, dtype=np.float32)
    kernels.widen_half(acc, halves)
    expected = halves.astype(np.float32)
    nan = np.isnan(expected)
    np.testing.assert_array_equal(acc[~nan].view(np.uint32), expected[~nan].view(np.uint32))
    assert np.isnan(acc[nan]).all()


@pytest.mark.parametrize("half", [np.float16, BF16], ids=str)
def test_narrow_rounds_to_nearest_even(isa: str, rng: np.random.Generator, half: np.dtype) -> None:
    # Random float bit patterns over the whole range, plus exact halfway points.
    raw = rng.integers(0, 1 << 32, size=200_000, dtype=np.uint64).astype(np.uint32)
    values = raw.view(np.float32)
    if np.dtype(half) == np.float16:
        grid = np.arange(-70000, 70000, dtype=np.float32)
        halfway = np.float16(np.arange(1, 2049)).astype(np.float32) + np.float32(0.5)
        subnormal = np.float32(2.0**-24) * (np.arange(0, 2048, dtype=np.float32) + 0.5)
        values = np.concatenate([values, grid, halfway, subnormal, -subnormal])
    out = np.empty(values.size, dtype=half)
    kernels.narrow_half(out, values)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = values.astype(half)
    nan = np.isnan(values)
    assert np.isnan(out[nan].astype(np.float32)).all()
    np.testing.assert_array_equal(out[~nan].view(np.uint16), expected[~nan].view(np.uint16))


@pytest.mark.parametrize("half", [np.float16, BF16], ids=str)
@pytest.mark.parametrize("op", OPS, ids=lambda o: o.name)
def test_accumulate_half_rounds_once(isa: str, rng: np.random.Generator, half: np.dtype,
                                     op: ReduceOp) -> None:
    n, peers = 1031, 5
    inputs = [rng.standard_normal(n).astype(half) for _ in range(peers)]
    acc = np.empty(n, dtype=np.float32)
    kernels.widen_half(acc, inputs[0])
    expected = inputs[0].astype(np.float32)
    for x in inputs[1:]:
        kernels.accumulate_half(acc, x, op)
        expected = reference(op, expected, x.astype(np.float32))
    divisor = peers if op is ReduceOp.AVG else 1
    out = np.empty(n, dtype=half)
    kernels.narrow_half(out, acc, divisor)
    np.testing.assert_array_equal(acc, expected)
    np.testing.assert_array_equal(out.view(np.uint16),
                                  (expected / np.float32(divisor)).astype(half).view(np.uint16))


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_divide_by(isa: str, rng: np.random.Generator, dtype: np.dtype) -> None:
    n, divisor = 1025, 3
    a = random_array(rng, dtype, n)
    if dtype.kind in "ui":
        expected = np.array([int(x / divisor) if abs(int(x)) < 2**52 else
                             (abs(int(x)) // divisor) * (1 if x >= 0 else -1) for x in a.tolist()],
                            dtype=object).astype(dtype)
    elif dtype in (np.float16, BF16):
        expected = (a.astype(np.float32) / np.float32(divisor)).astype(dtype)
    else:
        expected = a / dtype.type(divisor)
    kernels.divide_by(a, divisor)
    assert_same_values(a, expected)


def test_every_datatype_maps_to_numpy_with_matching_item_size() -> None:
    for dt in DataType:
        array = np.zeros(3, dtype=dt.to_numpy_dtype())
        assert DataType.from_numpy_dtype(array.dtype) is dt
        assert array.itemsize == dt.itemsize
        kernels.reduce(array, array.copy(), ReduceOp.SUM)  # the core agrees on the item size


def test_torch_tensors(isa: str) -> None:
    torch = pytest.importorskip("torch")
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.int64):
        a = torch.arange(100).to(dtype)
        b = torch.ones(100).to(dtype)
        kernels.reduce(a, b, ReduceOp.SUM)
        assert torch.equal(a, (torch.arange(100) + 1).to(dtype))


class TestBadInput:
    def test_mismatched_lengths_name_both(self) -> None:
        with pytest.raises(ValueError, match="dst has 3 elements but src has 4"):
            kernels.reduce(np.zeros(3, np.float32), np.zeros(4, np.float32), ReduceOp.SUM)

    def test_mismatched_dtypes(self) -> None:
        with pytest.raises(TypeError, match="dst has dtype FLOAT but src has dtype DOUBLE"):
            kernels.reduce(np.zeros(3, np.float32), np.zeros(3, np.float64), ReduceOp.SUM)

    def test_read_only_output(self) -> None:
        dst = np.zeros(3, np.float32)
        dst.flags.writeable = False
        with pytest.raises(ValueError, match="dst must be writable"):
            kernels.reduce(dst, np.zeros(3, np.float32), ReduceOp.SUM)

    def test_non_contiguous(self) -> None:
        with pytest.raises(ValueError, match="src must be C-contiguous"):
            kernels.reduce(np.zeros(3, np.float32), np.zeros(6, np.float32)[::2], ReduceOp.SUM)

    def test_not_an_array(self) -> None:
        with pytest.raises(TypeError, match="dst must be a numpy array or torch tensor, got list"):
            kernels.reduce([1.0], np.zeros(1, np.float32), ReduceOp.SUM)

    def test_unsupported_dtype(self) -> None:
        with pytest.raises(TypeError, match="complex64"):
            kernels.reduce(np.zeros(3, np.complex64), np.zeros(3, np.complex64), ReduceOp.SUM)

    def test_foreign_byte_order_is_refused_not_misread(self) -> None:
        swapped = np.dtype(np.float32).newbyteorder()
        with pytest.raises(TypeError, match="src: pccl needs numpy data in this machine's "
                                            "byte order, got float32"):
            kernels.reduce(np.zeros(3, np.float32), np.zeros(3, swapped), ReduceOp.SUM)
        # A native dtype looked up before (and cached) still maps, and a foreign one after it
        # is still refused.
        assert DataType.from_numpy_dtype(np.dtype(np.float32)) is DataType.FLOAT
        with pytest.raises(TypeError, match="byte order"):
            DataType.from_numpy_dtype(swapped)

    def test_bad_op(self) -> None:
        with pytest.raises(ValueError, match="op must be a pccl.ReduceOp"):
            kernels.reduce(np.zeros(3, np.float32), np.zeros(3, np.float32), 17)
        with pytest.raises(TypeError, match="op must be a pccl.ReduceOp"):
            kernels.reduce(np.zeros(3, np.float32), np.zeros(3, np.float32), "sum")

    def test_divisor(self) -> None:
        with pytest.raises(ValueError, match="divisor must be positive"):
            kernels.divide_by(np.zeros(3, np.float32), 0)
        with pytest.raises(TypeError, match="divisor must be an int"):
            kernels.divide_by(np.zeros(3, np.float32), 2.0)

    def test_half_kernels_need_half_and_float32(self) -> None:
        with pytest.raises(TypeError, match="acc must be float32"):
            kernels.widen_half(np.zeros(3, np.float64), np.zeros(3, np.float16))
        with pytest.raises(ValueError, match="expected float16 or bfloat16, got float32"):
            kernels.widen_half(np.zeros(3, np.float32), np.zeros(3, np.float32))

    def test_raw_core_checks_item_size(self) -> None:
        from pccl import _core

        core = pccl.kernels._k
        with pytest.raises(TypeError, match="dst has items of 4 bytes, but dtype float64 needs 8"):
            core.reduce(np.zeros(3, np.float32), np.zeros(3, np.float64), _core.DataType.DOUBLE,
                        _core.ReduceOp.SUM)
        with pytest.raises(TypeError, match="src must support the buffer protocol"):
            core.reduce(np.zeros(3, np.float32), 5, _core.DataType.FLOAT, _core.ReduceOp.SUM)

    def test_raw_core_takes_only_its_own_enums(self) -> None:
        # The binding's argument types are the core's enums: an int (or pccl's public
        # IntEnum) is refused by pybind11 before any memory is touched.
        from pccl import _core

        core = pccl.kernels._k
        x = np.zeros(3, np.float32)
        with pytest.raises(TypeError):
            core.reduce(x, x, 10, 0)
        with pytest.raises(TypeError):
            core.reduce(x, x, DataType.FLOAT, _core.ReduceOp.SUM)
        core.reduce(x, x, _core.DataType.FLOAT, _core.ReduceOp.SUM)

    def test_unknown_isa(self) -> None:
        with pytest.raises(ValueError, match="isa must be one of"):
            kernels.set_isa("sse9")
