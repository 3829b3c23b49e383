"""The one contract across the binding: the core defines the enums and status codes,
python/pccl reads them, the core refuses anything but its own enum members, and the typed
stub of pccl._core matches the built module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pccl
import pytest
from pccl import _core, errors

ALLOWLIST = Path(__file__).resolve().parent / "stubtest_allowlist.txt"

PAIRS = [
    (pccl.DataType, _core.DataType),
    (pccl.ReduceOp, _core.ReduceOp),
    (pccl.QuantizationAlgorithm, _core.QuantizationAlgorithm),
    (pccl.Attribute, _core.Attribute),
    (pccl.SharedStateSyncStrategy, _core.SharedStateSyncStrategy),
]


@pytest.mark.parametrize("public,core", PAIRS, ids=[p.__name__ for p, _ in PAIRS])
def test_public_enums_are_the_cores(public: type, core: type) -> None:
    assert {m.name: m.value for m in public} == {m.name: m.value for m in core}


def test_every_core_status_code_maps_to_an_error_class() -> None:
    for code in _core.StatusCode:
        if code is _core.StatusCode.OK:
            continue
        error = errors.error_for_status(code, "x")
        assert isinstance(error, pccl.PCCLError) and error.status == code
        assert type(error) is not pccl.PCCLError or code is _core.StatusCode.INTERNAL, code


def test_the_binding_takes_only_core_enum_members() -> None:
    with pytest.raises(TypeError):
        _core.AllReduceRequest(send=0, recv=0, count=0, dtype=10, op=_core.ReduceOp.SUM)
    with pytest.raises(TypeError):
        _core.AllReduceRequest(send=0, recv=0, count=0, dtype=pccl.DataType.FLOAT,
                               op=_core.ReduceOp.SUM)
    request = _core.AllReduceRequest(send=0, recv=0, count=3, dtype=_core.DataType.FLOAT,
                                     op=_core.ReduceOp.SUM, tag=9)
    assert (request.count, request.tag) == (3, 9)


@pytest.mark.timeout(300)
def test_core_stub_matches_the_built_module() -> None:
    out = subprocess.run([sys.executable, "-m", "mypy.stubtest", "pccl._core", "--allowlist",
                          str(ALLOWLIST)], capture_output=True, text=True, timeout=280,
                         cwd=str(ALLOWLIST.parent))
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
