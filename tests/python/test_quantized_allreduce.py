"""Quantized ring all-reduce between real peer processes: parity, accuracy, refusals."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pccl
import pytest
from cluster import Cluster
from pccl import DataType, QuantizationAlgorithm, QuantizationOptions, ReduceOp

BF16 = np.dtype(ml_dtypes.bfloat16)
COUNT = 50_021
ALGORITHMS = [QuantizationAlgorithm.MIN_MAX, QuantizationAlgorithm.ZERO_POINT_SCALE]


def gaussian(index: int, count: int, dtype: np.dtype) -> np.ndarray:
    return np.random.default_rng(1000 + index).standard_normal(count).astype(dtype)


def quantized_reduce(comm: pccl.Communicator, index: int, dtype: np.dtype, op: ReduceOp,
                     algorithm: int, quantized: int) -> tuple[int, bytes, int]:
    x = gaussian(index, COUNT, dtype)
    out = np.empty_like(x)
    options = QuantizationOptions(DataType(quantized), QuantizationAlgorithm(algorithm))
    info = comm.all_reduce(x, out, op=op, quantization_options=options, tag=5)
    # In place, with the restore copy (the default) and without: the same algorithm, so
    # the same bytes.
    y = x.copy()
    comm.all_reduce(y, y, op=op, quantization_options=options, tag=7)
    assert y.tobytes() == out.tobytes(), "in place differs from out of place"
    comm.all_reduce(x, x, op=op, quantization_options=options, tag=6, restore_input=False)
    assert x.tobytes() == out.tobytes(), "in place without restore differs from out of place"
    return pccl.kernels.hash64(out), out.astype(np.float64).tobytes(), info.tx_bytes


# More than one window of the quantized scratch (algo::kWindowElements, 8 Mi elements):
# the call runs as two ring passes.
BEYOND_ONE_WINDOW = (8 << 20) + 1001


def quantized_beyond_one_window(comm: pccl.Communicator, index: int,
                                world: int) -> tuple[int, float, int]:
    """A uint8 MIN_MAX SUM of BEYOND_ONE_WINDOW float32 elements: (hash of the result, its
    relative RMS error against the exact sum, bytes sent)."""
    x = gaussian(index, BEYOND_ONE_WINDOW, np.float32)
    out = np.empty_like(x)
    options = QuantizationOptions(DataType.UINT8, QuantizationAlgorithm.MIN_MAX)
    info = comm.all_reduce(x, out, op=ReduceOp.SUM, quantization_options=options, tag=8)
    comm.all_reduce(x, x, op=ReduceOp.SUM, quantization_options=options, tag=9,
                    restore_input=False)
    assert x.tobytes() == out.tobytes(), "in place without restore differs from out of place"
    exact = sum(gaussian(i, BEYOND_ONE_WINDOW, np.float32).astype(np.float64)
                for i in range(world))
    return pccl.kernels.hash64(out), relative_rms(out.astype(np.float64), exact), info.tx_bytes


def relative_rms(result: np.ndarray, exact: np.ndarray) -> float:
    return float(np.sqrt(np.mean((result - exact) ** 2) / np.mean(exact**2)))


def upstream_scheme(inputs: list[np.ndarray], levels: int) -> np.ndarray:
    """A numpy model of upstream PCCL's quantized ring: one min/max per whole chunk,
    truncation toward the minimum, and the partial sum requantized at every hop."""
    world = len(inputs)
    chunks = [np.array_split(x.astype(np.float32), world) for x in inputs]

    def roundtrip(v: np.ndarray) -> np.ndarray:
        lo, hi = float(v.min()), float(v.max())
        scale = (hi - lo) / (levels - 1) or 1.0
        q = np.floor((v - lo) / scale)
        return (lo + q * scale).astype(np.float32)

    out = []
    for c in range(world):
        partial = chunks[c][c]
        for hop in range(1, world):
            partial = roundtrip(partial) + chunks[(c + hop) % world][c]
        out.append(roundtrip(partial))  # the owner's bytes travel the all-gather quantized
    return np.concatenate(out).astype(np.float64)


@pytest.fixture(scope="module", params=[2, 4], ids=lambda w: f"world{w}")
def cluster(request: pytest.FixtureRequest):
    with Cluster(request.param) as c:
        yield c


@pytest.mark.timeout(240)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, BF16], ids=str)
def test_every_peer_gets_identical_bytes(cluster: Cluster, dtype: np.dtype) -> None:
    for algorithm in ALGORITHMS:
        for quantized in (DataType.UINT8, DataType.UINT16):
            for op in (ReduceOp.SUM, ReduceOp.AVG):
                results = cluster.run(quantized_reduce, np.dtype(dtype), op, int(algorithm),
                                      int(quantized))
                assert len({h for h, _, _ in results}) == 1, (algorithm, quantized, op)


@pytest.mark.timeout(240)
def test_accuracy_beats_upstream_scheme_and_grows_slowly(cluster: Cluster) -> None:
    world = cluster.world
    inputs = [gaussian(i, COUNT, np.float32) for i in range(world)]
    exact = sum(x.astype(np.float64) for x in inputs)
    tx_bytes = {}
    for quantized, levels in ((DataType.UINT8, 256), (DataType.UINT16, 65536)):
        _, raw, tx_bytes[quantized] = cluster.run(quantized_reduce, np.dtype(np.float32), ReduceOp.SUM,
                                 int(QuantizationAlgorithm.MIN_MAX), int(quantized))[0]
        ours = relative_rms(np.frombuffer(raw, dtype=np.float64), exact)
        theirs = relative_rms(upstream_scheme(inputs, levels), exact)
        assert ours <= 0.5 * theirs, (quantized.name, ours, theirs)
        # Per-element error of one quantization is at most half a step; over the 2(n-1)
        # hops of a ring it adds up like a random walk: bound it by sqrt(world) steps.
        step = 1.0 / (levels - 1)
        assert ours <= step * np.sqrt(world) * 4, (quantized.name, ours)
    # uint8 / uint16 move about a quarter / half of float32's bytes (plus block parameters).
    float_bytes = 2 * (world - 1) * COUNT * 4 / world
    assert tx_bytes[DataType.UINT8] <= 0.27 * float_bytes
    assert tx_bytes[DataType.UINT16] <= 0.52 * float_bytes


@pytest.mark.timeout(240)
def test_a_tensor_beyond_one_scratch_window_is_as_accurate_and_identical(
        cluster: Cluster) -> None:
    world = cluster.world
    results = cluster.run(quantized_beyond_one_window, world, timeout=200)
    assert len({h for h, _, _ in results}) == 1
    step = 1.0 / 255
    for _, rms, tx_bytes in results:
        assert rms <= step * np.sqrt(world) * 4, rms  # the bound of the test above
        assert tx_bytes <= 0.27 * 2 * (world - 1) * BEYOND_ONE_WINDOW * 4 / world


def refused(comm: pccl.Communicator, index: int, case: str) -> str:
    x = np.ones(1000, dtype=np.int32 if case == "int" else np.float32)
    op = ReduceOp.MAX if case == "max" else ReduceOp.SUM
    quantized = DataType.FLOAT if case == "float-wire" else DataType.UINT8
    if case == "nan" and index == 0:
        x[17] = np.nan
    try:
        comm.all_reduce(x, x, op=op, tag=9, timeout=20,
                        quantization_options=QuantizationOptions(quantized))
    except pccl.InvalidUsageError:
        return "InvalidUsageError" if x[0] == 1 else "input changed"
    except pccl.PCCLError as e:
        return f"{type(e).__name__}: {e}"
    return "no error"


@pytest.mark.parametrize("case", ["max", "int", "float-wire", "nan"])
def test_unsupported_or_non_finite_input_is_refused_everywhere(cluster: Cluster,
                                                                case: str) -> None:
    assert cluster.run(refused, case, timeout=60) == ["InvalidUsageError"] * cluster.world
