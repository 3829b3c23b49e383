"""Value types of PCCL 1.0's API: descriptors, options and result records."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from pccl import _core
from pccl._enums import DataType, DistributionHint, QuantizationAlgorithm, ReduceMode, ReduceOp
from pccl._tensors import as_buffer


class Attribute(enum.IntEnum):
    """What get_attribute() can report (PCCL 1.0's values, defined by the core)."""

    GLOBAL_WORLD_SIZE = _core.Attribute.GLOBAL_WORLD_SIZE.value
    LOCAL_WORLD_SIZE = _core.Attribute.LOCAL_WORLD_SIZE.value
    NUM_DISTINCT_PEER_GROUPS = _core.Attribute.NUM_DISTINCT_PEER_GROUPS.value
    LARGEST_PEER_GROUP_WORLD_SIZE = _core.Attribute.LARGEST_PEER_GROUP_WORLD_SIZE.value


class SharedStateSyncStrategy(enum.IntEnum):
    """Who may send and who may receive during sync_shared_state()."""

    ENFORCE_POPULAR = _core.SharedStateSyncStrategy.ENFORCE_POPULAR.value
    RECEIVE_ONLY = _core.SharedStateSyncStrategy.RECEIVE_ONLY.value
    SEND_ONLY = _core.SharedStateSyncStrategy.SEND_ONLY.value


@dataclass
class ReduceOperandDescriptor:
    """Element type of an all-reduce's operands."""

    datatype: DataType
    distribution_hint: DistributionHint = DistributionHint.NONE


@dataclass
class QuantizationOptions:
    """How an all-reduce compresses data on the wire (algorithm NONE: not at all)."""

    quantized_datatype: DataType = DataType.UINT8
    algorithm: QuantizationAlgorithm = QuantizationAlgorithm.MIN_MAX


@dataclass
class ReduceDescriptor:
    """Everything peers must agree on for one all-reduce (`mode`: see
    Communicator.all_reduce)."""

    count: int
    op: ReduceOp
    tag: int
    operand_descriptor: ReduceOperandDescriptor
    quantization_options: QuantizationOptions
    mode: ReduceMode = ReduceMode.DEFAULT


@dataclass
class ReduceOpDescriptor:
    """One all-reduce of all_reduce_multiple_with_retry: buffers plus descriptor.

    `send` and `recv` keep the tensors alive; sendbuf_ptr/recvbuf_ptr are their addresses.
    """

    sendbuf_ptr: int
    recvbuf_ptr: int
    reduce_descriptor: ReduceDescriptor
    send: Any = field(default=None, repr=False)
    recv: Any = field(default=None, repr=False)

    @staticmethod
    def from_torch(send: Any, recv: Any, reduce_descriptor: ReduceDescriptor) -> ReduceOpDescriptor:
        """Describes an all-reduce of two contiguous CPU torch tensors."""
        return ReduceOpDescriptor._from_buffers(send, recv, reduce_descriptor)

    @staticmethod
    def from_numpy(send: Any, recv: Any, reduce_descriptor: ReduceDescriptor) -> ReduceOpDescriptor:
        """Describes an all-reduce of two contiguous numpy arrays."""
        return ReduceOpDescriptor._from_buffers(send, recv, reduce_descriptor)

    @staticmethod
    def _from_buffers(send: Any, recv: Any, descriptor: ReduceDescriptor) -> ReduceOpDescriptor:
        s = as_buffer(send, "send")
        r = as_buffer(recv, "recv", writable=True)
        return ReduceOpDescriptor(s.ptr, r.ptr, descriptor, send, recv)


@dataclass
class ReduceInfo:
    """What an all-reduce did: peers in the group and bytes this peer moved."""

    local_world_size: int
    tx_bytes: int
    rx_bytes: int

    @property
    def world_size(self) -> int:
        """`local_world_size`, by the name of PCCL's earlier API."""
        return self.local_world_size


@dataclass
class SharedStateSyncInfo:
    """Bytes this peer sent and received during a shared-state sync."""

    tx_bytes: int
    rx_bytes: int
