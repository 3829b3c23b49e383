"""A selection of PyTorch's own distributed test suite, run against the "pccl" backend.

tests/torch_suite/suite.py runs torch.testing._internal.distributed.distributed_test the
way torch's test_distributed_spawn.py runs it for Gloo (3 ranks, each test in fresh
processes). The whole suite takes about half an hour here; CI runs the tests below, one per
kind of collective pccl serves natively (the README lists the full comparison with Gloo).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("expecttest")  # torch's test utilities need it

SUITE = Path(__file__).resolve().parents[1] / "torch_suite" / "suite.py"

SELECTION = [
    "test_broadcast",
    "test_broadcast_group",
    "test_all_gather",
    "test_all_gather_into_tensor_ops",
    "test_reduce_scatter_tensor_cpu",
    "test_all_to_all",
    "test_all_to_all_single_unequal_split",
    "test_gather",
    "test_scatter",
    "test_barrier",
    "test_all_reduce_sum",
    "test_all_reduce_coalesced_max",
    "test_DistributedDataParallel_SyncBatchNorm_Single_Input_Per_Process",
]


@pytest.mark.timeout(600)
def test_torch_distributed_suite_selection_passes_on_pccl(tmp_path: Path) -> None:
    env = dict(os.environ, BACKEND="pccl", WORLD_SIZE="3", TEMP_DIR=str(tmp_path))
    args = [sys.executable, str(SUITE), "-v"]
    for name in SELECTION:
        args.append(f"TestSuite.{name}")
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=540)
    tail = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, tail
    # Every selected test ran and passed (none skipped: a skip would hide a regression).
    for name in SELECTION:
        assert f"{name} (__main__.TestSuite" in tail or name in done.stderr, name
    assert "skipped" not in done.stderr.split("Ran ")[-1], tail
