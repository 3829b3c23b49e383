"""Quantize kernels against a numpy reference of quantize.h's definitions, on every ISA path."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from conftest import ISAS, LENGTHS, unaligned
from pccl import DataType, QuantizationAlgorithm, kernels

MIN_MAX = QuantizationAlgorithm.MIN_MAX
ZPS = QuantizationAlgorithm.ZERO_POINT_SCALE
ALGORITHMS = [MIN_MAX, ZPS]
FLOATS = {
    DataType.FLOAT16: np.dtype(np.float16),
    DataType.BFLOAT16: np.dtype(ml_dtypes.bfloat16),
    DataType.FLOAT: np.dtype(np.float32),
    DataType.DOUBLE: np.dtype(np.float64),
}
QUANTIZED = {DataType.UINT8: np.dtype(np.uint8), DataType.UINT16: np.dtype(np.uint16)}
SMALL_LENGTHS = [n for n in LENGTHS if n < (1 << 20)]
BIG = max(LENGTHS)


# --- reference ---------------------------------------------------------------------------


def param_type(src: DataType) -> type:
    return np.float64 if src is DataType.DOUBLE else np.float32


def bits_of(qdt: DataType) -> int:
    return 8 * QUANTIZED[qdt].itemsize


def ref_quantize(
    x: np.ndarray, alg: QuantizationAlgorithm, qdt: DataType, bs: int
) -> tuple[np.ndarray, np.ndarray]:
    """q and params (as P values) per quantize.h, in P arithmetic (numpy: IEEE, no FMA)."""
    src = DataType.from_numpy_dtype(x.dtype)
    P = param_type(src)
    v = x.astype(P)  # exact
    n = v.size
    if n == 0:
        return np.empty(0, QUANTIZED[qdt]), np.empty(0, P)
    nb = -(-n // bs)
    # Padding with the last element leaves the last block's min and max as they are.
    v2 = np.concatenate([v, np.full(nb * bs - n, v[-1], P)]).reshape(nb, bs)
    lo = v2.min(axis=1) + P(0)
    hi = v2.max(axis=1) + P(0)
    bits = bits_of(qdt)
    if alg is MIN_MAX:
        qmax = P(2**bits - 1)
        scale = ((hi - lo) / qmax).astype(P)
        d = np.where(scale > 0, scale, P(1)).astype(P)
        r = np.minimum(np.rint((v2 - lo[:, None]) / d[:, None]), qmax)
        params = np.stack([lo, scale], axis=1).reshape(-1)
    else:
        h = P(2 ** (bits - 1) - 1)
        m = np.maximum(np.abs(lo), np.abs(hi))
        scale = np.where(lo == hi, m, m / h).astype(P)
        d = np.where(scale > 0, scale, P(1)).astype(P)
        r = np.clip(np.rint(v2 / d[:, None]), -h, h) + P(2 ** (bits - 1))
        params = scale
    return r.reshape(-1)[:n].astype(QUANTIZED[qdt]), params.astype(P)


def ref_dequantize(
    q: np.ndarray, params: np.ndarray, src: DataType, alg: QuantizationAlgorithm, bs: int
) -> np.ndarray:
    """deq(q) in P."""
    P = param_type(src)
    block = np.arange(q.size) // bs
    if alg is MIN_MAX:
        return (params[0::2][block] + q.astype(P) * params[1::2][block]).astype(P)
    zp = 2 ** (8 * q.itemsize - 1)
    return ((q.astype(np.int64) - zp).astype(P) * params[block]).astype(P)


def ref_store(before: np.ndarray, deq: np.ndarray, accumulate: bool) -> np.ndarray:
    """What dst holds after DequantizeSet / DequantizeAccumulate, per quantize.h."""
    A = np.float64 if before.dtype == np.float64 else np.float32
    v = deq.astype(A)
    if accumulate:
        v = before.astype(A) + v
    return v.astype(before.dtype)


# --- helpers -----------------------------------------------------------------------------


def make_input(n: int, dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """Values whose character changes every 300 elements: centred, offset, all-negative,
    constant, wide."""
    x = rng.standard_normal(n)
    seg = (np.arange(n) // 300) % 5
    x = np.where(seg == 1, 1000.0 + x, x)
    x = np.where(seg == 2, -3.0 - np.abs(x) * 2, x)
    x = np.where(seg == 3, -1.25, x)
    x = np.where(seg == 4, x * 200.0, x)
    return x.astype(dtype)


def params_bytes(n: int, src: DataType, alg: QuantizationAlgorithm, qdt: DataType, bs: int) -> int:
    return kernels.quantized_params_bytes(
        n, src, algorithm=alg, quantized_dtype=qdt, block_size=bs
    )


def run_quantize(
    x: np.ndarray, alg: QuantizationAlgorithm, qdt: DataType, bs: int, *, offset: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    src = DataType.from_numpy_dtype(x.dtype)
    q = np.empty(x.size, QUANTIZED[qdt])
    p = np.empty(params_bytes(x.size, src, alg, qdt, bs), np.uint8)
    if offset:
        x, q, p = unaligned(x, offset), unaligned(q, offset), unaligned(p, offset)
    kernels.quantize(x, q, p, algorithm=alg, block_size=bs)
    return q, p


def deq_float64(
    q: np.ndarray, p: np.ndarray, src: DataType, alg: QuantizationAlgorithm, bs: int
) -> np.ndarray:
    out = np.empty(q.size, np.float64)
    kernels.dequantize_set(out, q, p, source_dtype=src, algorithm=alg, block_size=bs)
    return out


def as_bytes(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a).view(np.uint8).tobytes()


# --- quantize and dequantize against the reference ---------------------------------------


@pytest.mark.parametrize("bs", [1024, 2500, 7])
@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("qdt", list(QUANTIZED))
@pytest.mark.parametrize("src", list(FLOATS))
def test_quantize_matches_reference(isa, rng, src, qdt, alg, bs):
    for i, n in enumerate(SMALL_LENGTHS):
        x = make_input(n, FLOATS[src], rng)
        q, p = run_quantize(x, alg, qdt, bs, offset=i % 3)
        rq, rp = ref_quantize(x, alg, qdt, bs)
        assert np.array_equal(q, rq), f"q differs at n={n}"
        assert as_bytes(p) == as_bytes(rp), f"params differ at n={n}"
        deq = deq_float64(q, p, src, alg, bs)
        assert np.array_equal(deq, ref_dequantize(rq, rp, src, alg, bs).astype(np.float64))


@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("dst", list(FLOATS))
@pytest.mark.parametrize("src", list(FLOATS))
def test_dequantize_into_every_dtype(isa, rng, src, dst, accumulate):
    for alg in ALGORITHMS:
        for qdt in QUANTIZED:
            for n, bs in [(3001, 1024), (3001, 2500), (17, 4)]:
                x = make_input(n, FLOATS[src], rng)
                q, p = run_quantize(x, alg, qdt, bs)
                before = (rng.standard_normal(n) * 4).astype(FLOATS[dst])
                out = unaligned(before, 3)
                fn = kernels.dequantize_accumulate if accumulate else kernels.dequantize_set
                fn(out, unaligned(q, 1), unaligned(p, 2),
                   source_dtype=src, algorithm=alg, block_size=bs)
                want = ref_store(before, ref_dequantize(q, p.view(param_type(src)), src, alg, bs),
                                 accumulate)
                assert as_bytes(out) == as_bytes(want), (alg, qdt, n, bs)


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("src", [DataType.FLOAT, DataType.BFLOAT16])
def test_multi_mib_input_matches_reference_and_paths_agree(rng, src, alg):
    x = make_input(BIG, FLOATS[src], rng)
    rq, rp = ref_quantize(x, alg, DataType.UINT8, 1024)
    acc0 = rng.standard_normal(BIG).astype(np.float32)
    results = {}
    previous = kernels.active_isa()
    try:
        for isa in ISAS:
            kernels.set_isa(isa)
            q, p = run_quantize(x, alg, DataType.UINT8, 1024, offset=1)
            acc = acc0.copy()
            kernels.dequantize_accumulate(acc, q, p, source_dtype=src, algorithm=alg)
            results[isa] = (as_bytes(q), as_bytes(p), as_bytes(acc))
    finally:
        kernels.set_isa(previous)
    assert results[ISAS[0]][0] == as_bytes(rq)
    assert results[ISAS[0]][1] == as_bytes(rp)
    want = ref_store(acc0, ref_dequantize(rq, rp, src, alg, 1024), True)
    assert results[ISAS[0]][2] == as_bytes(want)
    for isa in ISAS[1:]:
        assert results[isa] == results[ISAS[0]], f"{isa} differs from {ISAS[0]}"


def test_every_path_writes_identical_bytes(rng):
    """All kernels, all dtype combinations: the ISA paths agree bit for bit."""
    n = 5003
    cases = []
    for src in FLOATS:
        x = make_input(n, FLOATS[src], rng)
        x[::97] = (x[::97] * 1e-3).astype(x.dtype)
        for alg in ALGORITHMS:
            for qdt in QUANTIZED:
                cases.append((x, src, alg, qdt))
    befores = {dst: (rng.standard_normal(n) * 3).astype(FLOATS[dst]) for dst in FLOATS}
    results: dict[str, list[bytes]] = {}
    previous = kernels.active_isa()
    try:
        for isa in ISAS:
            kernels.set_isa(isa)
            out: list[bytes] = []
            for x, src, alg, qdt in cases:
                for bs in (1024, 1500):
                    q, p = run_quantize(x, alg, qdt, bs)
                    out += [as_bytes(q), as_bytes(p)]
                    for before in befores.values():
                        for fn in (kernels.dequantize_set, kernels.dequantize_accumulate):
                            d = before.copy()
                            fn(d, q, p, source_dtype=src, algorithm=alg, block_size=bs)
                            out.append(as_bytes(d))
            results[isa] = out
    finally:
        kernels.set_isa(previous)
    for isa in ISAS[1:]:
        assert results[isa] == results[ISAS[0]], f"{isa} differs from {ISAS[0]}"


# --- error bound, rounding, edge values --------------------------------------------------


def bound_input(dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """Blocks of 256 at many magnitudes, down to subnormal ranges and up to max / 10."""
    fi = ml_dtypes.finfo(dtype) if dtype == ml_dtypes.bfloat16 else np.finfo(dtype)
    tiny_sub = float(fi.smallest_subnormal)
    scales = [1.0, 1e-3, float(fi.tiny) * 40, tiny_sub * 100, tiny_sub * 3, float(fi.max) / 1e4]
    parts = []
    for s in scales:
        parts.append(rng.standard_normal(256) * s)
        parts.append(1000.0 * s + rng.uniform(0, s, 256))  # offset: few significant bits
        parts.append(-rng.uniform(s, 2 * s, 256))  # all negative
    return np.concatenate(parts).astype(dtype)


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("qdt", list(QUANTIZED))
@pytest.mark.parametrize("src", list(FLOATS))
def test_error_bound(rng, src, qdt, alg):
    x = bound_input(FLOATS[src], rng)
    assert np.all(np.isfinite(x.astype(np.float64)))
    bs = 256
    q, p = run_quantize(x, alg, qdt, bs)
    P = param_type(src)
    pv = p.view(P).astype(np.float64)
    scale = (pv[1::2] if alg is MIN_MAX else pv)[np.arange(x.size) // bs]
    xs = x.astype(np.float64)
    m = np.repeat(np.abs(xs).reshape(-1, bs).max(axis=1), bs)
    u = 2.0**-53 if P is np.float64 else 2.0**-24
    tiny = float(np.finfo(P).smallest_subnormal)
    bound = scale / 2 + 10 * u * m + 2 ** bits_of(qdt) * tiny
    err = np.abs(xs - deq_float64(q, p, src, alg, bs))
    worst = int(np.argmax(err - bound))
    assert np.all(err <= bound), f"element {worst}: error {err[worst]} > bound {bound[worst]}"
    # The scale is what the header says it is (so the bound is not vacuous).
    lo = xs.reshape(-1, bs).min(axis=1)
    hi = xs.reshape(-1, bs).max(axis=1)
    m_block = np.maximum(np.abs(lo), np.abs(hi))
    if alg is MIN_MAX:
        want = (hi - lo) / (2 ** bits_of(qdt) - 1)
    else:  # a constant block takes scale |c|
        want = np.where(lo == hi, m_block, m_block / (2 ** (bits_of(qdt) - 1) - 1))
    got = pv[1::2] if alg is MIN_MAX else pv
    normal = want > float(np.finfo(P).tiny)
    assert np.allclose(got[normal], want[normal], rtol=4 * u, atol=0)


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("qdt", list(QUANTIZED))
@pytest.mark.parametrize("src", list(FLOATS))
def test_constant_blocks_reconstruct_exactly(isa, src, qdt, alg):
    dtype = FLOATS[src]
    values = [0.0, -0.0, 3.5, -2.75, 1.0 / 3.0, -1e-3, 1000.1, 60000.0, -60000.0]
    x = np.repeat(np.array(values, dtype=np.float64), 64).astype(dtype)
    q, p = run_quantize(x, alg, qdt, 64)
    assert np.all(np.isfinite(p.view(param_type(src))))
    assert np.array_equal(deq_float64(q, p, src, alg, 64), x.astype(np.float64))


@pytest.mark.parametrize("src", list(FLOATS))
def test_all_negative_block_uses_its_own_min_and_max(isa, src):
    x = np.array([-9.0, -1.0, -5.0, -3.0, -7.0, -2.0], dtype=FLOATS[src])
    q, p = run_quantize(x, MIN_MAX, DataType.UINT8, 6)
    P = param_type(src)
    lo, scale = p.view(P)
    assert lo == -9.0
    assert scale == P(8.0) / P(255.0)
    assert q[0] == 0 and q[1] == 255
    zq, zp = run_quantize(x, ZPS, DataType.UINT8, 6)
    assert zp.view(P)[0] == P(9.0) / P(127.0)
    assert zq[0] == 1  # -9 -> -127 + 128
    assert np.all(zq < 128)


@pytest.mark.parametrize("src", list(FLOATS))
def test_rounds_to_nearest_even(isa, src):
    # scale 1 exactly: q is the rounded offset from lo (MIN_MAX) or from 0 (ZPS).
    x = np.array([0, 255, 10.25, 10.75, 10.5, 11.5, 0.5, 254.5], dtype=FLOATS[src])
    q, _ = run_quantize(x, MIN_MAX, DataType.UINT8, x.size)
    assert q.tolist() == [0, 255, 10, 11, 10, 12, 0, 254]
    z = np.array([-127, 127, 3.25, 3.75, -3.75, -2.5, 2.5, 0], dtype=FLOATS[src])
    zq, _ = run_quantize(z, ZPS, DataType.UINT8, z.size)
    assert (zq.astype(int) - 128).tolist() == [-127, 127, 3, 4, -4, -2, 2, 0]


def test_uint16_is_finer_than_uint8(rng):
    x = rng.standard_normal(4096).astype(np.float32)
    errs = []
    for qdt in QUANTIZED:
        q, p = run_quantize(x, MIN_MAX, qdt, 1024)
        errs.append(np.abs(deq_float64(q, p, DataType.FLOAT, MIN_MAX, 1024) - x).max())
    assert errs[1] < errs[0] / 100


# --- refused input -----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("src", list(FLOATS))
def test_non_finite_input_is_refused_and_output_poisoned(isa, rng, src, alg, bad):
    for n, bs, index in [(5000, 1024, 3077), (5000, 2500, 4900), (1, 1024, 0)]:
        x = make_input(n, FLOATS[src], rng)
        x[index] = bad
        q = np.full(n, 7, np.uint8)
        p = np.zeros(params_bytes(n, src, alg, DataType.UINT8, bs), np.uint8)
        with pytest.raises(ValueError, match=rf"element {index} \(block {index // bs}\)"):
            kernels.quantize(x, q, p, algorithm=alg, block_size=bs)
        assert not q.any()
        assert np.all(np.isnan(p.view(param_type(src))))
        # Poisoned parameters are refused and leave dst alone.
        dst = np.ones(n, np.float32)
        with pytest.raises(ValueError, match="block 0"):
            kernels.dequantize_accumulate(dst, q, p, source_dtype=src, algorithm=alg,
                                          block_size=bs)
        assert np.all(dst == 1)


@pytest.mark.parametrize("src", [DataType.FLOAT, DataType.BFLOAT16, DataType.DOUBLE])
def test_range_overflow_is_refused(isa, src):
    big = 1e308 if src is DataType.DOUBLE else 3e38
    x = np.array([1, 2, -big, big, 3], dtype=FLOATS[src])
    q = np.empty(5, np.uint8)
    p = np.empty(params_bytes(5, src, MIN_MAX, DataType.UINT8, 2), np.uint8)
    with pytest.raises(ValueError, match="range of block 1 overflows"):
        kernels.quantize(x, q, p, algorithm=MIN_MAX, block_size=2)
    assert np.all(np.isnan(p.view(param_type(src))))


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_dequantize_refuses_bad_params(isa, alg):
    n, bs = 3000, 1024
    x = np.linspace(-1, 1, n, dtype=np.float32)
    q, p = run_quantize(x, alg, DataType.UINT8, bs)
    pv = p.view(np.float32)
    scale_index = 2 * 2 + 1 if alg is MIN_MAX else 2
    for value in [np.nan, np.inf, -1.0]:
        bad = pv.copy()
        bad[scale_index] = value
        dst = np.full(n, 5, np.float32)
        with pytest.raises(ValueError, match="params of block 2"):
            kernels.dequantize_set(dst, q, bad.view(np.uint8), source_dtype=DataType.FLOAT,
                                   algorithm=alg, block_size=bs)
        assert np.all(dst == 5)
    if alg is MIN_MAX:
        bad = pv.copy()
        bad[2] = -np.inf
        with pytest.raises(ValueError, match="params of block 1"):
            kernels.dequantize_set(np.empty(n, np.float32), q, bad.view(np.uint8),
                                   source_dtype=DataType.FLOAT, algorithm=alg, block_size=bs)


def test_params_bytes():
    f32, f64, u8, u16 = DataType.FLOAT, DataType.DOUBLE, DataType.UINT8, DataType.UINT16
    assert kernels.DEFAULT_QUANT_BLOCK_SIZE == 1024
    assert params_bytes(0, f32, MIN_MAX, u8, 1024) == 0
    assert params_bytes(1, f32, MIN_MAX, u8, 1024) == 8
    assert params_bytes(1024, f32, MIN_MAX, u8, 1024) == 8
    assert params_bytes(1025, f32, MIN_MAX, u16, 1024) == 16
    assert params_bytes(1025, f32, ZPS, u8, 1024) == 8
    assert params_bytes(1025, f64, MIN_MAX, u8, 1024) == 32
    assert params_bytes(1025, f64, ZPS, u8, 1024) == 16
    assert params_bytes(10, DataType.FLOAT16, MIN_MAX, u8, 3) == 32
    assert kernels.quantized_params_bytes(3000, DataType.BFLOAT16) == 3 * 8


def test_bad_arguments_raise_naming_the_argument():
    n = 100
    x = np.zeros(n, np.float32)
    q = np.zeros(n, np.uint8)
    p = np.zeros(params_bytes(n, DataType.FLOAT, MIN_MAX, DataType.UINT8, 1024), np.uint8)
    dst = np.zeros(n, np.float32)
    f32 = DataType.FLOAT

    def quantize(**kw):
        args = {"src": x, "q": q, "params": p, **kw}
        kernels.quantize(args.pop("src"), args.pop("q"), args.pop("params"), **args)

    def deq(**kw):
        args = {"dst": dst, "q": q, "params": p, "source_dtype": f32, **kw}
        kernels.dequantize_set(args.pop("dst"), args.pop("q"), args.pop("params"), **args)

    cases = [
        (quantize, {"src": x[:50]}, ValueError, "q has 100 elements but src has 50"),
        (quantize, {"src": x.astype(np.int32)}, TypeError, "src must have dtype"),
        (quantize, {"src": [1.0, 2.0]}, TypeError, "src must be a numpy array"),
        (quantize, {"q": q.astype(np.int8)}, TypeError, "q must have dtype"),
        (quantize, {"q": q.astype(np.float32)}, TypeError, "q must have dtype"),
        (quantize, {"params": p.view(np.float32)}, TypeError, "params must be a uint8"),
        (quantize, {"params": p[:-1]}, ValueError, "params must have 8 bytes, got 7"),
        (quantize, {"params": np.zeros(16, np.uint8)}, ValueError, "params must have 8 bytes"),
        (quantize, {"algorithm": QuantizationAlgorithm.NONE}, ValueError, "algorithm"),
        (quantize, {"algorithm": 7}, ValueError, "algorithm"),
        (quantize, {"algorithm": "MIN_MAX"}, TypeError, "algorithm"),
        (quantize, {"algorithm": True}, TypeError, "algorithm"),
        (quantize, {"block_size": 0}, ValueError, "block_size"),
        (quantize, {"block_size": -4}, ValueError, "block_size"),
        (quantize, {"block_size": kernels.MAX_QUANT_BLOCK_SIZE + 1}, ValueError, "block_size"),
        (quantize, {"block_size": 2.0}, TypeError, "block_size"),
        (quantize, {"q": x.view(np.uint8)[:n]}, ValueError, "q must not overlap src"),
        (deq, {"dst": dst[:10]}, ValueError, "dst has 10 elements but q has 100"),
        (deq, {"dst": dst.astype(np.int32)}, TypeError, "dst must have dtype"),
        (deq, {"q": q.astype(np.float32)}, TypeError, "q must have dtype"),
        (deq, {"source_dtype": DataType.UINT8}, TypeError, "source_dtype"),
        (deq, {"source_dtype": "float32"}, TypeError, "source_dtype"),
        (deq, {"source_dtype": 99}, ValueError, "source_dtype"),
        (deq, {"source_dtype": DataType.DOUBLE}, ValueError, "params must have 16 bytes"),
        (deq, {"algorithm": ZPS}, ValueError, "params must have 4 bytes"),
        (deq, {"block_size": 10}, ValueError, "params must have 80 bytes"),
    ]
    for fn, kw, exc, match in cases:
        with pytest.raises(exc, match=match):
            fn(**kw)

    ro = np.zeros(n, np.uint8)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="q must be writable"):
        quantize(q=ro)
    ro_p = p.copy()
    ro_p.flags.writeable = False
    with pytest.raises(ValueError, match="params must be writable"):
        quantize(params=ro_p)
    ro_dst = dst.copy()
    ro_dst.flags.writeable = False
    with pytest.raises(ValueError, match="dst must be writable"):
        deq(dst=ro_dst)
    with pytest.raises(ValueError, match="must be C-contiguous"):
        quantize(src=np.zeros(2 * n, np.float32)[::2])
    with pytest.raises(ValueError, match="count must be >= 0"):
        kernels.quantized_params_bytes(-1, f32)
    with pytest.raises(TypeError, match="quantized_dtype"):
        kernels.quantized_params_bytes(1, f32, quantized_dtype=DataType.INT8)
    # Read-only inputs are fine.
    ro_x = x.copy()
    ro_x.flags.writeable = False
    quantize(src=ro_x)
    ro_q = q.copy()
    ro_q.flags.writeable = False
    deq(q=ro_q, params=p.copy())


@pytest.mark.parametrize("n", SMALL_LENGTHS)
def test_core_checks_without_the_python_wrapper(n):
    """The C++ edge refuses what the Python wrapper would, with ValueError, never a crash."""
    from pccl import _core

    core = _core.kernels
    D, A = _core.DataType, _core.QuantizationAlgorithm
    f32, u8, i8, i32 = D.FLOAT, D.UINT8, D.INT8, D.INT32
    x = np.zeros(n, np.float32)
    q = np.zeros(n, np.uint8)
    nb = -(-n // 1024)
    with pytest.raises(ValueError, match="params has"):
        core.quantize(x, q, np.zeros(8 * nb + 1, np.uint8), f32, u8, A.MIN_MAX, 1024)
    with pytest.raises(ValueError, match="algorithm must be MIN_MAX or ZERO_POINT_SCALE"):
        core.quantize(x, q, np.zeros(8 * nb, np.uint8), f32, u8, A.NONE, 1024)
    with pytest.raises(ValueError, match="quantized dtype must be uint8 or uint16"):
        core.quantize(x, q.view(np.int8), np.zeros(8 * nb, np.uint8), f32, i8, A.MIN_MAX, 1024)
    with pytest.raises(ValueError, match="source dtype must be"):
        core.quantize(x.view(np.int32), q, np.zeros(8 * nb, np.uint8), i32, u8, A.MIN_MAX, 1024)
    with pytest.raises(ValueError, match="block size"):
        core.quantize(x, q, np.zeros(8 * nb, np.uint8), f32, u8, A.MIN_MAX, 0)
    with pytest.raises(ValueError, match="destination dtype must be"):
        core.dequantize(x.view(np.int32), q, np.zeros(8 * nb, np.uint8), i32, f32, u8, A.MIN_MAX,
                        1024, True)
