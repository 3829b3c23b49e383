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


# What a failure shows besides unittest's report: the failing tests' lines that tell what
# the run went through (when their ranks started, pccl's warnings and errors, links that
# broke, the master's epochs with their causes: info level; every rank's exit code, and
# Python's own report of a crash: faulthandler). They may lie far from the
# log's end, where unittest prints its report, so they are picked out and put after it.
_DIAGNOSTIC = re.compile(r"Started process|\[pccl (WARNING|ERROR)|master: epoch|broke|kicked|"
                         r"rank exit codes|Fatal Python error|Traceback|Error:|barrier timeout")
_TEST_START = re.compile(r"^.*Started process 0 with pid", re.MULTILINE)


def _failure_report(log: str) -> str:
    end = log.find("\n=====")
    report = log[end:] if end >= 0 else log[-6000:]
    body = log[:end] if end >= 0 else log
    # Each test's lines run from its rank 0's start to the next test's; unittest writes the
    # test's outcome (. E F s) at the start of the line that follows them.
    starts = [m.start() for m in _TEST_START.finditer(body)] + [len(body)]
    failed = []
    for begin, after in zip(starts, starts[1:]):
        if body[after:after + 1] in ("E", "F") or (after == len(body) and
                                                   body.rstrip()[-1:] in ("E", "F")):
            failed.extend(body[begin:after].splitlines())
    lines = [line for line in (failed or body.splitlines()) if _DIAGNOSTIC.search(line)]
    return report[-8000:] + "\nwhat the failing tests' ranks logged:\n" + "\n".join(lines[-150:])


@pytest.mark.timeout(600)
def test_torch_distributed_suite_selection_passes_on_pccl(tmp_path: Path) -> None:
    env = dict(os.environ, BACKEND="pccl", WORLD_SIZE="3", TEMP_DIR=str(tmp_path),
               PCCL_LOG_LEVEL="info", PYTHONFAULTHANDLER="1")
    args = [sys.executable, str(SUITE)]
    for name in SELECTION:
        args.append(f"TestSuite.{name}")
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=540)
    log = done.stdout + done.stderr
    assert done.returncode == 0, _failure_report(log)
    # unittest ends with "Ran N tests ... OK"; "OK (skipped=k)" would mean a selected test
    # did not run, which could hide a regression.
    assert re.search(rf"^Ran {len(SELECTION)} tests? in ", log, re.MULTILINE), log[-3000:]
    assert log.rstrip().endswith("\nOK"), log[-3000:]
