"""A selection of PyTorch's own distributed test suite, run against the "pccl" backend.

tests/torch_suite/suite.py runs torch.testing._internal.distributed.distributed_test the
way torch's test_distributed_spawn.py runs it for Gloo (3 ranks, each test in fresh
processes). The whole suite takes about half an hour here; CI runs the tests below, one per
kind of collective pccl serves natively (the README lists the full comparison with Gloo).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
import expecttest  # noqa: E402,F401 - torch's test utilities need it (in the test extras)

SUITE = Path(__file__).resolve().parents[1] / "torch_suite" / "suite.py"

SELECTION = [
    "test_broadcast",
    "test_broadcast_full_group",
    "test_all_gather",
    "test_all_gather_complex",
    "test_all_gather_coalesced_simple",
    "test_gather",
    "test_scatter",
    "test_barrier",
    "test_all_reduce_sum_async",
    "test_reduce_sum",
    "test_all_reduce_complex_unsupported_ops",
    "test_destroy_group",
    "test_DistributedDataParallelCPU",
    "test_send_recv",
    "test_send_recv_with_tag",
    "test_isend",
    "test_irecv",
    "test_send_recv_any_source",
]


@pytest.mark.timeout(600)
def test_torch_distributed_suite_selection_passes_on_pccl(tmp_path: Path) -> None:
    env = dict(os.environ, BACKEND="pccl", WORLD_SIZE="3", TEMP_DIR=str(tmp_path))
    args = [sys.executable, str(SUITE)]
    for name in SELECTION:
        args.append(f"TestSuite.{name}")
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=540)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]
    # unittest ends with "Ran N tests ... OK"; "OK (skipped=k)" would mean a selected test
    # did not run, which could hide a regression.
    assert re.search(rf"^Ran {len(SELECTION)} tests? in ", log, re.MULTILINE), log[-3000:]
    assert log.rstrip().endswith("\nOK"), log[-3000:]
