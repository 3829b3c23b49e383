"""The outer half of DiLoCo on one peer: outer parameters, outer optimizer, pseudo-gradients.

The outer parameters are CPU copies of the model's parameters; the outer optimizer (SGD
with Nesterov momentum by default) steps them with the averaged pseudo-gradient as their
gradient. Both the outer parameters and every tensor of the outer optimizer's state are
registered as pccl shared state, so a peer that joins receives exactly what the others hold.

Shared state points at tensor memory, so the optimizer state must exist, and keep its
address, before it is registered. torch optimizers create state lazily on the first step;
`OuterState` creates it with one step at learning rate 0 on zero gradients (the parameters
do not move; SGD's momentum buffers start at zero, which gives the same first update as a
lazily created buffer; Adam-like optimizers count that step in their step counters) and
checks after every step that no state tensor was replaced.

Only this module touches the layout of the flat pseudo-gradient buffers: parameters in
`model.parameters()` order, each flattened.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

import pccl
from pccl import _core
from pccl._tensors import as_buffer

OuterOptimizerFactory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


def default_outer_optimizer(params: list[torch.Tensor]) -> torch.optim.Optimizer:
    """SGD, lr 0.7, momentum 0.9, Nesterov: the outer optimizer of the DiLoCo paper."""
    return torch.optim.SGD(params, lr=0.7, momentum=0.9, nesterov=True, foreach=False)


class OuterState:
    """Outer parameters and outer optimizer of `model`, registered as one SharedState.

    Args:
        model: the local (inner) model; its parameters must be CPU tensors.
        make_optimizer: builds the outer optimizer over the outer parameters.
    """

    def __init__(self, model: torch.nn.Module, make_optimizer: OuterOptimizerFactory):
        self.local = [p for p in model.parameters()]
        names = [name for name, _ in model.named_parameters()]
        if not self.local:
            raise ValueError("model has no parameters")
        for name, p in zip(names, self.local):
            if p.device.type != "cpu":
                raise ValueError(f"parameter {name!r} is on {p.device}; DiLoCo needs CPU tensors")
        with torch.no_grad():
            self.outer = [p.detach().clone().contiguous() for p in self.local]
        self.optimizer = make_optimizer(self.outer)
        self._materialise_optimizer_state()
        self.numel = sum(p.numel() for p in self.outer)
        dtypes = {p.dtype for p in self.outer}
        if len(dtypes) != 1:
            raise ValueError(f"all parameters must share one dtype, got {sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop()

        named = self._named_tensors(names)
        self.tensors = [t for _, t in named]
        self.shared = pccl.SharedState(pccl.TensorInfo.from_torch(t, n) for n, t in named)
        self._names = names
        self._addresses = [t.data_ptr() for t in self.tensors]

    def _named_tensors(self, names: list[str]) -> list[tuple[str, torch.Tensor]]:
        """The shared tensors: each outer parameter, then its optimizer state tensors."""
        out = []
        for name, p in zip(names, self.outer):
            out.append((f"outer/{name}", p))
            for key, value in sorted(self.optimizer.state[p].items()):
                if isinstance(value, torch.Tensor):
                    out.append((f"outer_opt/{name}/{key}", value))
        return out

    def _materialise_optimizer_state(self) -> None:
        saved = [group["lr"] for group in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["lr"] = 0.0
        for p in self.outer:
            p.grad = torch.zeros_like(p)
        self.optimizer.step()
        for group, lr in zip(self.optimizer.param_groups, saved):
            group["lr"] = lr
        for p in self.outer:
            p.grad = None
            for key, value in self.optimizer.state[p].items():
                if isinstance(value, torch.Tensor) and not value.is_contiguous():
                    raise ValueError(f"outer optimizer state {key!r} is not contiguous")

    @property
    def nbytes(self) -> int:
        return sum(info.nbytes for info in self.shared.tensor_infos)

    def new_buffer(self) -> torch.Tensor:
        """A flat buffer that holds one pseudo-gradient."""
        return torch.empty(self.numel, dtype=self.dtype)

    @torch.no_grad()
    def pseudo_gradient(self, out: torch.Tensor) -> None:
        """out = outer - local, flattened: the step the inner phase took, negated."""
        offset = 0
        for o, p in zip(self.outer, self.local):
            n = o.numel()
            torch.sub(o.reshape(-1), p.detach().reshape(-1), out=out[offset:offset + n])
            offset += n

    @torch.no_grad()
    def apply(self, averaged: torch.Tensor) -> None:
        """One outer optimizer step with `averaged` (flat) as the outer parameters' gradient."""
        offset = 0
        for o in self.outer:
            n = o.numel()
            o.grad = averaged[offset:offset + n].view_as(o)
            offset += n
        self.optimizer.step()
        for o in self.outer:
            o.grad = None
        now = [t for _, t in self._named_tensors(self._names)]
        if (len(now) != len(self.tensors) or any(a is not b for a, b in zip(now, self.tensors))
                or [t.data_ptr() for t in now] != self._addresses):
            raise RuntimeError("the outer optimizer replaced a state tensor; shared state would "
                               "point at stale memory (use an optimizer that updates in place)")

    @torch.no_grad()
    def reset_local(self) -> None:
        """Local parameters := outer parameters (the start of the next inner phase)."""
        for o, p in zip(self.outer, self.local):
            p.copy_(o)

    def hashes(self) -> tuple[int, ...]:
        """XXH64 of every shared tensor (outer parameters and optimizer state), in order."""
        # Through the buffer's address, so that DiLoCo works with torch alone (pccl.kernels
        # speaks numpy); the same XXH64 as pccl.kernels.hash64.
        return tuple(_core.kernels.hash64_address(b.ptr, b.nbytes)
                     for b in (as_buffer(t, "state tensor") for t in self.tensors))


__all__ = ["OuterOptimizerFactory", "OuterState", "default_outer_optimizer"]
