"""The one place where torch's reduce ops and dtypes meet pccl's.

pccl reduces every dtype it knows (integers, float16, bfloat16, float32, float64) with
SUM, AVG, PROD, MAX and MIN. The backend refuses what torch's own backends refuse or what
pccl cannot do: AVG on integers (pccl would truncate; Gloo refuses it), the bitwise ops,
PREMUL_SUM, bool elements. The refusal happens here, on every rank alike and before
anything is sent, so a bad call raises instead of hanging. (Complex tensors never get
here: torch.distributed reduces them as float pairs.)
"""

from __future__ import annotations

import torch
import torch.distributed as dist

import pccl

_REDUCE_OPS = {
    dist.ReduceOp.SUM: pccl.ReduceOp.SUM,
    dist.ReduceOp.AVG: pccl.ReduceOp.AVG,
    dist.ReduceOp.PRODUCT: pccl.ReduceOp.PROD,
    dist.ReduceOp.MAX: pccl.ReduceOp.MAX,
    dist.ReduceOp.MIN: pccl.ReduceOp.MIN,
}
SUPPORTED_OPS = "SUM, AVG, PRODUCT, MIN, MAX"


def reduce_op(op: object) -> pccl.ReduceOp:
    """pccl's op for a torch ReduceOp (or the ReduceOp of an options struct).

    Raises:
        ValueError: an op pccl cannot reduce with.
    """
    for torch_op, pccl_op in _REDUCE_OPS.items():
        if op == torch_op:
            return pccl_op
    raise ValueError(f"the pccl backend does not support {_op_name(op)}; it supports "
                     f"{SUPPORTED_OPS}")


def check_reducible(tensor: torch.Tensor, op: pccl.ReduceOp, name: str) -> None:
    """Raises TypeError unless `op` can reduce `tensor`'s element type."""
    try:
        pccl.DataType.from_torch_dtype(tensor.dtype)
    except TypeError:
        raise TypeError(f"the pccl backend cannot reduce {name} of dtype {tensor.dtype}; "
                        "it reduces integer, float16, bfloat16, float32 and float64 "
                        "tensors") from None
    if op is pccl.ReduceOp.AVG and not tensor.is_floating_point():
        raise TypeError(f"the pccl backend cannot average {name} of dtype {tensor.dtype}; "
                        "use ReduceOp.SUM and divide")


def _op_name(op: object) -> str:
    for name, value in dist.ReduceOp.RedOpType.__members__.items():
        if op == value:
            return f"ReduceOp.{name}"
    return repr(op)
