"""PyTorch's own distributed test suite (torch.testing._internal.distributed.
distributed_test), run against a backend: BACKEND=pccl (default) or BACKEND=gloo.

    BACKEND=pccl python tests/torch_suite/suite.py [unittest args, e.g. -k broadcast]

Every test spawns WORLD_SIZE ranks (3 unless set) that init_process_group(BACKEND) over
env:// and run it, as torch's test_distributed_spawn.py does for Gloo.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

os.environ.setdefault("BACKEND", "pccl")
os.environ.setdefault("WORLD_SIZE", "3")
if "TEMP_DIR" not in os.environ:
    # Made once, by the process that runs the suite, and removed when it exits; the ranks it
    # spawns import this file again and find TEMP_DIR set.
    os.environ["TEMP_DIR"] = tempfile.mkdtemp(prefix="pccl-torch-suite-")
    atexit.register(shutil.rmtree, os.environ["TEMP_DIR"], ignore_errors=True)
# torch's run_tests writes JUnit XML through `xmlrunner` (not installed) whenever CI is
# set, as CI services do; the suite's verdict is its exit status, so run it as locally.
os.environ.pop("CI", None)

if os.environ["BACKEND"] == "pccl":
    import pccl.torch  # noqa: F401 - registers the "pccl" backend in every rank
from torch.testing._internal.common_utils import run_tests  # noqa: E402
from torch.testing._internal.distributed.distributed_test import (  # noqa: E402
    DistributedTest,
    TestDistBackend,
)


class TestSuite(TestDistBackend, DistributedTest._DistTestBase):
    def setUp(self) -> None:
        super().setUp()
        self._spawn_processes()

    def _check_return_codes(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        # Every rank's exit status when one is not 0: torch's report names only the ranks
        # that raised inside the test (exit code 10), not one that crashed or left early.
        codes = [p.exitcode for p in self.processes]
        if any(code != 0 for code in codes):
            print(f"rank exit codes: {codes}", file=sys.stderr, flush=True)
        return super()._check_return_codes(*args, **kwargs)


if __name__ == "__main__":
    sys.exit(run_tests())
