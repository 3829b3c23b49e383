"""torch.distributed backend "pccl": `import pccl.torch` registers it.

    import torch.distributed as dist
    import pccl.torch  # noqa: F401 - registers the backend

    dist.init_process_group(backend="pccl", init_method="env://")
    dist.all_reduce(tensor)
    model = torch.nn.parallel.DistributedDataParallel(model)

Rank 0 starts a pccl master in its own process and publishes its address in torch's
store; set PCCL_MASTER_ADDR=host:port to use an external master (`pccl_master`) instead.
The run is authenticated with PCCL_RUN_SECRET / PCCL_RUN_SECRET_FILE where set, else with a
fresh secret rank 0 shares through the store; PCCL_TRANSPORT=encrypted encrypts it
(docs/security.md).
Collectives: all_reduce and reduce (SUM, AVG, PRODUCT, MIN, MAX), broadcast, all_gather,
all_gather_single (all_gather_into_tensor), reduce_scatter, reduce_scatter_single
(reduce_scatter_tensor), gather, scatter, all_to_all, all_to_all_single and barrier,
synchronous or with async_op=True; send and recv are refused with a clear error. CUDA tensors are
staged through host memory. SUM and AVG reductions run in pccl.ReduceMode.EXACT or PRIVATE
with PCCL_REDUCE_MODE=exact|private or `pccl.torch.set_reduce_mode(mode)`. Errors are
pccl's (pccl.PeerLostError when a rank is lost), or ValueError/TypeError for calls the
backend refuses. The adapter is pure Python over
pccl's all-reduce; it does not link libtorch.
"""

from __future__ import annotations

import torch.distributed as dist

from pccl.torch._backend import (
    BACKEND_NAME,
    REDUCE_MODE_ENV,
    ProcessGroupPCCL,
    create_process_group,
    set_reduce_mode,
)
from pccl.torch._rendezvous import MASTER_ADDR_ENV
from pccl.torch._work import PcclWork

dist.Backend.register_backend(BACKEND_NAME, create_process_group, devices=["cpu", "cuda"])

__all__ = ["BACKEND_NAME", "MASTER_ADDR_ENV", "REDUCE_MODE_ENV", "PcclWork",
           "ProcessGroupPCCL", "create_process_group", "set_reduce_mode"]
