"""Shared state: named tensors every peer of a group keeps bit-identical.

Register tensors in a SharedState and call Communicator.sync_shared_state(state) once per
step, after advancing `state.revision` by one. Each peer hashes its tensors; the master
elects the most popular content among the peers at the highest revision (ties go to the
oldest member); peers whose content differs fetch exactly the differing tensors from peers
that hold the elected content, straight into the tensors' memory, and verify the hashes.

    infos = [pccl.TensorInfo.from_torch(model.weight, "weight")]
    state = pccl.SharedState(infos)
    state.revision += 1
    info = comm.sync_shared_state(state)   # SharedStateSyncInfo(tx_bytes, rx_bytes)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pccl import _core
from pccl._enums import CORE_DTYPE, DataType, DeviceType
from pccl._tensors import as_buffer


class TensorInfo:
    """One named tensor of a SharedState (PCCL 1.0's TensorInfo).

    Args:
        name: the key peers agree on; unique within a SharedState.
        data_ptr: address of the tensor's first byte (contiguous CPU memory).
        numel: number of elements.
        dtype: element type.
        device_type: only DeviceType.CPU is supported.
        allow_content_inequality: peers may hold different content for this tensor; it is
            not compared, but a peer that has never synced receives it.

    Prefer from_torch / from_numpy: they check the tensor and keep it alive.
    """

    def __init__(self, name: str, data_ptr: int, *, numel: int, dtype: DataType,
                 device_type: DeviceType = DeviceType.CPU,
                 allow_content_inequality: bool = False):
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        if len(name.encode()) > 1024:
            raise ValueError(f"name must be at most 1024 bytes, got {len(name.encode())}")
        for arg, value in (("data_ptr", data_ptr), ("numel", numel)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TypeError(f"{arg} must be a non-negative int, got {value!r}")
        try:
            dtype = DataType(dtype)
        except ValueError:
            raise TypeError(f"dtype must be a pccl.DataType, got {dtype!r}") from None
        if DeviceType(device_type) is not DeviceType.CPU:
            raise ValueError(f"tensor {name!r}: only CPU tensors can be shared state for now")
        if data_ptr == 0 and numel > 0:
            raise ValueError(f"tensor {name!r}: data_ptr is null")
        self.name = name
        self.data_ptr = data_ptr
        self.numel = numel
        self.dtype = dtype
        self.device_type = DeviceType(device_type)
        self.allow_content_inequality = bool(allow_content_inequality)
        self._tensor: Any = None  # keeps the memory alive

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    @staticmethod
    def from_torch(tensor: Any, name: str, *, allow_content_inequality: bool = False
                   ) -> TensorInfo:
        """Describes a contiguous, writable CPU torch tensor (kept alive by the info)."""
        return TensorInfo._from_buffer(tensor, name, allow_content_inequality)

    @staticmethod
    def from_numpy(array: Any, name: str, *, allow_content_inequality: bool = False
                   ) -> TensorInfo:
        """Describes a C-contiguous, writable numpy array (kept alive by the info)."""
        return TensorInfo._from_buffer(array, name, allow_content_inequality)

    @staticmethod
    def _from_buffer(obj: Any, name: str, allow: bool) -> TensorInfo:
        buffer = as_buffer(obj, name if isinstance(name, str) else "tensor", writable=True)
        info = TensorInfo(name, buffer.ptr, numel=buffer.count, dtype=buffer.dtype,
                          allow_content_inequality=allow)
        info._tensor = obj
        return info

    def __repr__(self) -> str:
        return (f"TensorInfo({self.name!r}, numel={self.numel}, dtype={self.dtype.name}, "
                f"allow_content_inequality={self.allow_content_inequality})")


class SharedState:
    """The tensors a peer group keeps identical, and their revision.

    Args:
        tensor_infos: the tensors; names must be unique.
    """

    def __init__(self, tensor_infos: Iterable[TensorInfo]):
        infos = list(tensor_infos)
        names = set()
        for i, info in enumerate(infos):
            if not isinstance(info, TensorInfo):
                raise TypeError(f"tensor_infos[{i}] must be a pccl.TensorInfo, "
                                f"got {type(info).__name__}")
            if info.name in names:
                raise ValueError(f"tensor name {info.name!r} appears twice")
            names.add(info.name)
        self.tensor_infos = infos
        self._revision = 0

    @property
    def revision(self) -> int:
        """Advance by one before each sync; after a sync it is the group's revision."""
        return self._revision

    @revision.setter
    def revision(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
            raise ValueError(f"revision must be an int in [0, 2**64), got {value!r}")
        self._revision = value

    def push_revision(self) -> None:
        """revision += 1 (PCCL 1.0's helper)."""
        self.revision = self._revision + 1

    def _entries(self) -> list[_core.SharedStateEntry]:
        return [_core.SharedStateEntry(key=i.name, address=i.data_ptr, nbytes=i.nbytes,
                                       dtype=CORE_DTYPE[i.dtype],
                                       allow_content_inequality=i.allow_content_inequality)
                for i in self.tensor_infos]


__all__ = ["SharedState", "TensorInfo"]
