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
from pccl._types import (
    Attribute,
    QuantizationOptions,
    ReduceDescriptor,
    ReduceInfo,
    ReduceOpDescriptor,
    ReduceOperandDescriptor,
    SharedStateSyncInfo,
    SharedStateSyncStrategy,
)
from pccl.communicator import AsyncReduceHandle, Communicator
from pccl.master import MasterNode
from pccl.shared_state import SharedState, TensorInfo
from pccl.errors import (
    DataLossError,
    InvalidUsageError,
    KickedError,
    MasterUnavailableError,
    PCCLError,
    PCCLTimeoutError,
    PeerLostError,
    Result,
    TooFewPeersError,
)

__all__ = [
    "AsyncReduceHandle",
    "Attribute",
    "Communicator",
    "DataLossError",
    "DataType",
    "DeviceType",
    "DistributionHint",
    "InvalidUsageError",
    "KickedError",
    "MasterNode",
    "MasterUnavailableError",
    "PCCLError",
    "PCCLTimeoutError",
    "PeerLostError",
    "QuantizationAlgorithm",
    "QuantizationOptions",
    "ReduceDescriptor",
    "ReduceInfo",
    "ReduceOp",
    "ReduceOpDescriptor",
    "ReduceOperandDescriptor",
    "Result",
    "SharedState",
    "SharedStateSyncInfo",
    "SharedStateSyncStrategy",
    "TensorInfo",
    "TooFewPeersError",
    "kernels",
]

del _core
