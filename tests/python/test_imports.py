"""numpy and torch are each optional: pccl imports and works in an environment with numpy
only, with torch only, and with both.

The two extra environments are virtual environments under build/import-envs/, made on first
use (numpy or torch==2.13.0 from the package index, and a copy of the installed pccl
package); later runs reuse them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pccl
import pytest

ROOT = Path(__file__).resolve().parents[2]
ENVS = ROOT / "build" / "import-envs"
CHECK = Path(__file__).resolve().parent / "import_check.py"
PACKAGES = {"numpy": ["numpy"], "torch": ["torch==2.13.0"]}


def environment(kind: str) -> Path:
    """The interpreter of the `kind` environment (made if missing) with pccl copied in."""
    home = ENVS / kind
    python = home / "bin" / "python"
    ready = home / ".ready"
    if not ready.exists():
        shutil.rmtree(home, ignore_errors=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(home)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PACKAGES[kind]],
                       check=True, timeout=600)
        ready.touch()
    site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60).stdout.strip())
    shutil.rmtree(site / "pccl", ignore_errors=True)  # the pccl under test, every time
    shutil.copytree(Path(pccl.__file__).parent, site / "pccl",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return python


def run_check(python: Path | str, kind: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([str(python), str(CHECK), kind], capture_output=True, text=True,
                         timeout=120, env=env, cwd=str(ENVS.parent))
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_pccl_works_with_only(kind: str) -> None:
    assert run_check(environment(kind), kind) == f"ok {kind}"


@pytest.mark.timeout(120)
def test_pccl_works_with_both() -> None:
    assert run_check(sys.executable, "both") == "ok torch"
