"""pccl: fault-tolerant collective communication for training over the internet.

A C++ core (pccl._core) moves and reduces bytes; this package is its Python API, a
drop-in for PCCL 1.0's (`import pccl`).
"""

from __future__ import annotations

from pccl import _core, kernels
from pccl._enums import (
    DataType,
    DeviceType,
    DistributionHint,
    QuantizationAlgorithm,
    ReduceOp,
)

__all__ = [
    "DataType",
    "DeviceType",
    "DistributionHint",
    "QuantizationAlgorithm",
    "ReduceOp",
    "kernels",
]

del _core
