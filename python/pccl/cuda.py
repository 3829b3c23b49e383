"""`pccl.cuda`, as in PCCL 1.0: whether this build of pccl handles CUDA memory itself.

Scripts written for PCCL 1.0 pick their device with it:

    device = "cuda" if pccl.cuda.is_available() else "cpu"

pccl's core moves and reduces host memory only, so this is False: `Communicator` and
`SharedState` take CPU tensors. The torch.distributed backend (`import pccl.torch`) does
accept CUDA tensors and stages them through host memory.
"""

from __future__ import annotations

__all__ = ["is_available", "is_cuda_available"]

# PCCL 1.0 exposes the build's CUDA support as this bool.
is_cuda_available: bool = False


def is_available() -> bool:
    """True if this build of pccl reduces and shares CUDA tensors natively (never, yet)."""
    return is_cuda_available
