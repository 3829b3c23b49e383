"""pccl's compute kernels on host buffers, for tests, benchmarks and custom pipelines.

These are the kernels the collectives run on (csrc/pccl/kernels). Each function takes
numpy arrays or torch CPU tensors (see pccl._tensors), checks them and calls the C++
kernel with the GIL released. The ISA path (generic, avx2, avx512) is chosen at import
from the CPU (or the PCCL_ISA environment variable); `set_isa` forces another one.

One module per kernel family: reduce, quantize, modular, hash; all re-exported here.
"""

from __future__ import annotations

from pccl import _core
from pccl.kernels.hash import *
from pccl.kernels.modular import *
from pccl.kernels.quantize import *
from pccl.kernels.reduce import *

_k = _core.kernels


def supported_isas() -> list[str]:
    """ISA paths this build has and this CPU runs, e.g. ['generic', 'avx2', 'avx512']."""
    return list(_k.supported_isas())


def active_isa() -> str:
    """The ISA path the kernels use now."""
    return str(_k.active_isa())


def set_isa(isa: str) -> None:
    """Forces the kernels onto `isa` (one of supported_isas()).

    Raises:
        ValueError: unknown ISA, or one this CPU cannot run.
    """
    if not isinstance(isa, str):
        raise TypeError(f"isa must be a str, got {type(isa).__name__}")
    _k.set_isa(isa)
