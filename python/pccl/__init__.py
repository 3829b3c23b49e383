"""pccl: fault-tolerant collective communication for training over the internet.

A C++ core (pccl._core) moves and reduces bytes; this package is its Python API, a
drop-in for PCCL 1.0's (`import pccl`).
"""

from __future__ import annotations

from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

from pccl import _core, _logging, cuda
from pccl._enums import (
    DataType,
    DeviceType,
    DistributionHint,
    QuantizationAlgorithm,
    ReduceMode,
    ReduceOp,
)
from pccl._master import MasterNode, RelayNode
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
from pccl.communicator import (
    AsyncReduceHandle,
    Communicator,
    CommunicatorStats,
    LinkInfo,
    LinkStats,
    OperationStats,
    Reachability,
)
from pccl.errors import (
    AuthenticationError,
    DataLossError,
    IntegrityError,
    InvalidUsageError,
    KickedError,
    MasterUnavailableError,
    PCCLError,
    PCCLTimeoutError,
    PeerLostError,
    Result,
    TooFewPeersError,
)
from pccl.shared_state import SharedState, TensorInfo

_logging.start()  # the core's log lines go to Python's logging, logger "pccl"

__all__ = [
    "AsyncReduceHandle",
    "Attribute",
    "AuthenticationError",
    "Communicator",
    "CommunicatorStats",
    "DataLossError",
    "DataType",
    "DeviceType",
    "DistributionHint",
    "IntegrityError",
    "InvalidUsageError",
    "KickedError",
    "MasterNode",
    "RelayNode",
    "MasterUnavailableError",
    "PCCLError",
    "PCCLTimeoutError",
    "PeerLostError",
    "QuantizationAlgorithm",
    "QuantizationOptions",
    "LinkInfo",
    "LinkStats",
    "OperationStats",
    "Reachability",
    "ReduceDescriptor",
    "ReduceInfo",
    "ReduceMode",
    "ReduceOp",
    "ReduceOpDescriptor",
    "ReduceOperandDescriptor",
    "Result",
    "SharedState",
    "SharedStateSyncInfo",
    "SharedStateSyncStrategy",
    "TensorInfo",
    "TooFewPeersError",
    "cuda",
    "kernels",
]

try:
    __version__ = _metadata.version("pccl")
except _metadata.PackageNotFoundError:  # run from a source tree
    __version__ = "dev"

del _core, _metadata

if TYPE_CHECKING:
    from pccl import kernels


def __getattr__(name: str) -> Any:
    # pccl.kernels speaks numpy: import it (and numpy) on first use, so that `import pccl`
    # works with torch alone.
    if name == "kernels":
        import importlib

        return importlib.import_module("pccl.kernels")
    raise AttributeError(f"module 'pccl' has no attribute {name!r}")
