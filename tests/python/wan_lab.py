"""The WAN lab (bench/wan/network.py) as pytest fixtures, shared by the test files that
inject faults into it: one lab per module, and every fault undone after each test.

    from wan_lab import module_lab, undo_faults  # noqa: F401 - undo_faults is autouse

    @pytest.fixture(scope="module")
    def lab() -> Iterator[Lab]:
        yield from module_lab(TOPOLOGY)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from bench.wan.network import Lab, requirements


def module_lab(topology: str) -> Iterator[Lab]:
    """A running lab of `topology` for a module fixture; skips with the reason where the
    lab cannot run (root, /dev/net/tun, ip, g++; `ss` for resets)."""
    reason = requirements() or (None if shutil.which("ss") else "the WAN lab needs `ss`")
    if reason is not None:
        pytest.skip(reason)
    with Lab(topology) as running:
        yield running


@pytest.fixture(autouse=True)
def undo_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that used the lab: heals every blackhole, flap and loss burst."""
    yield
    if "lab" in request.fixturenames:
        request.getfixturevalue("lab").restore()
