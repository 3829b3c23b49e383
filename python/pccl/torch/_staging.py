"""Host memory for pccl: it reduces contiguous CPU buffers only.

A contiguous CPU tensor is used in place. Anything else (a CUDA tensor, a strided view)
is staged: copied into a contiguous CPU tensor before the collective and copied back
after it. CUDA copies are blocking, so the host copy is complete before pccl reads it;
the copy back is ordered on the current CUDA stream of the thread that finishes the
collective. A CUDA tensor is staged in pinned (page-locked) host memory from torch's
caching host allocator, as Gloo stages it: the device copies each way run at the bus's
rate instead of through the driver's bounce buffer, and a buffer freed after one call is
handed to the next instead of being allocated (and faulted in) again.
"""

from __future__ import annotations

import torch


class HostTensor:
    """A contiguous CPU tensor holding `tensor`'s values, shared with it where possible.

    Attributes:
        tensor: the caller's tensor.
        host: what pccl reads and writes.
    """

    def __init__(self, tensor: torch.Tensor):
        check_dense(tensor)
        self.tensor = tensor
        self.staged = tensor.device.type != "cpu" or not tensor.is_contiguous()
        if self.staged:
            self.host = _host_copy_of(tensor)
        else:
            self.host = tensor.detach()

    def write_back(self) -> None:
        """Makes `tensor` hold `host`'s values (a no-op when they share memory)."""
        if self.staged:
            self.tensor.detach().copy_(self.host)


def check_dense(tensor: torch.Tensor) -> None:
    """Raises TypeError for a sparse (or any non-strided) tensor: pccl moves dense memory."""
    if tensor.layout != torch.strided:
        raise TypeError(f"the pccl backend does not support {tensor.layout} tensors; pass a "
                        "dense tensor (tensor.to_dense())")


def host_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU tensor with `tensor`'s values, never sharing its memory."""
    check_dense(tensor)
    return _host_copy_of(tensor)


def _host_copy_of(tensor: torch.Tensor) -> torch.Tensor:
    """One copy of `tensor` into a new contiguous CPU tensor: pinned for a CUDA tensor
    (the module's story), ordinary memory otherwise. `copy_` without non_blocking waits
    for a device copy to finish."""
    host = torch.empty(tensor.shape, dtype=tensor.dtype,
                       pin_memory=tensor.device.type == "cuda")
    return host.copy_(tensor.detach())


def as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    """The flat uint8 view of a contiguous tensor (any dtype, 0-d included)."""
    return tensor.reshape(-1).view(torch.uint8)
