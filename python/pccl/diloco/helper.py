"""DiLoCo and async DiLoCo outer loops over a pccl Communicator.

    comm = pccl.Communicator(address); comm.connect()
    diloco = DiLoCo(model, inner_optimizer, comm)          # asynchronous=True for async
    diloco.start()                                         # adopt the run's outer state
    while training:
        for _ in range(H):
            loss_fn(model(x), y).backward(); inner_optimizer.step(); inner_optimizer.zero_grad()
        info = diloco.outer_step()                         # OuterStepInfo: bytes, world, ...

The outer step, as every peer runs it (t counts outer steps; S_t is the outer state -- outer
parameters and outer optimizer state -- after step t, shared-state revision t; "local" is
the model, which started the inner phase from S_{t-1}):

  synchronous                          asynchronous
  D  delta_t = S_{t-1} - local         E  finish delta_{t-1}, launched one step ago and
  E  all-reduce delta_t (AVG); apply      reducing during this inner phase; apply -> S_t
     it with the outer optimizer -> S_t
  P  are_peers_pending()               P  are_peers_pending()
  F  sync revision t                   F  sync revision t
                                       D  delta_t = S_t - local; launch its all-reduce
  R  local := S_t                      R  local := S_t
  J  admission, if P said so           J  admission, if P said so

  E  All-reduces are AVG (optionally quantized) and retried when a peer is lost: a failed
     all-reduce leaves its input intact and the core reruns it on the survivors. Async
     results land one step late; delta_t is measured from S_t, which already holds the
     update applied at E, so progress the inner phase re-finds is not counted twice.
  P  Once per step: a joint call of every member, which the master answers alike for all,
     so every member takes the same branch.
  F  Moves nothing while peers advance identically, and verifies that they do.
  J  update_topology() admits the joiners -- async first finishes delta_t, so the ring does
     not change under it, and the next inner phase runs without overlap -- then every
     member re-syncs at revision t (a no-op for members, the joiner's whole transfer) and
     resets local := S_t.

A joiner connects (admitted by the members' J) and its start() is its half of that J sync:
it syncs at revision 0, below the group's, so it adopts S_t and never wins the election.
Its first inner phase starts from S_t like everyone's. In async mode the members then
apply delta_t at E of step t+1, and the joiner has nothing to apply (delta_t was in flight
when it joined): it catches up at F of that step, before computing its pseudo-gradient,
syncing RECEIVE_ONLY so that it fetches S_{t+1} whatever the head count (with
ENFORCE_POPULAR, several joiners holding the same stale S_t could out-vote the members).
This is the second shared-state sync with which upstream PCCL lets a joiner eavesdrop on
the in-flight result. The founding peers call start() at revision 0 together: the most
popular initial state wins, ties going to the oldest peer.

Alone (world of one, TooFewPeersError): the peer applies its own pseudo-gradient -- the
average over a world of one -- rather than dropping the step, so a survivor keeps
training; the run is this one peer, so parity holds trivially, and later joiners adopt its
state. Revisions advance by exactly one per outer step; the outer state of every member is
bit-identical after every step (the all-reduce gives every peer the same bytes, the
optimizer step is deterministic, and F verifies it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import pccl
from pccl.diloco.outer_state import OuterOptimizerFactory, OuterState, default_outer_optimizer

_log = logging.getLogger("pccl.diloco")

_RETRYABLE = (pccl.PeerLostError, pccl.PCCLTimeoutError)


@dataclass
class OuterStepInfo:
    """What one outer step did on this peer.

    Attributes:
        step: the outer step number, equal to the shared-state revision after it.
        world: peers whose pseudo-gradients were averaged into the applied update (1: this
            peer alone applied its own); 0 if nothing was applied (async: the first step,
            and a joiner's first step).
        reduce_tx_bytes, reduce_rx_bytes: bytes of pseudo-gradient all-reduces that
            finished during this call (retries included).
        sync_tx_bytes, sync_rx_bytes: bytes of shared-state syncs during this call.
        admitted: new peers were admitted at the end of this step.
        comm_seconds: time this call spent blocked on communication.
    """

    step: int
    world: int
    reduce_tx_bytes: int = 0
    reduce_rx_bytes: int = 0
    sync_tx_bytes: int = 0
    sync_rx_bytes: int = 0
    admitted: bool = False
    comm_seconds: float = 0.0

    @property
    def tx_bytes(self) -> int:
        return self.reduce_tx_bytes + self.sync_tx_bytes

    @property
    def rx_bytes(self) -> int:
        return self.reduce_rx_bytes + self.sync_rx_bytes


class DiLoCo:
    """DiLoCo (or async DiLoCo) outer optimization of `model` over `communicator`.

    Args:
        model: the local model (CPU parameters of one dtype); the inner loop trains it.
        inner_optimizer: the inner optimizer; it stays local (never averaged or shared).
        communicator: a connected pccl.Communicator.
        outer_optimizer: builds the outer optimizer from the outer parameters; default SGD
            lr 0.7, momentum 0.9, Nesterov (the DiLoCo paper's). It must update its state
            tensors in place (torch's SGD, Adam, AdamW do).
        asynchronous: overlap each step's all-reduce with the next inner phase and apply
            its result one step late.
        quantization: pccl.QuantizationOptions for the pseudo-gradient all-reduce, or None.
        mode: pccl.ReduceMode of the pseudo-gradient all-reduce: EXACT makes the averaged
            pseudo-gradient's bytes independent of ring order, joins and retries; PRIVATE
            also hides each peer's pseudo-gradient from every other single peer. Not
            combined with quantization.
        tag: the all-reduce tag for pseudo-gradients.
        max_retries: how many times a pseudo-gradient all-reduce is retried after losing a
            peer before the error is raised.
        timeout: seconds for each blocking pccl call (None: the library default).
    """

    def __init__(self, model: torch.nn.Module, inner_optimizer: torch.optim.Optimizer,
                 communicator: pccl.Communicator, *,
                 outer_optimizer: OuterOptimizerFactory = default_outer_optimizer,
                 asynchronous: bool = False,
                 quantization: pccl.QuantizationOptions | None = None,
                 mode: pccl.ReduceMode = pccl.ReduceMode.DEFAULT,
                 tag: int = 0, max_retries: int = 16, timeout: float | None = None):
        if not isinstance(communicator, pccl.Communicator):
            raise TypeError("communicator must be a pccl.Communicator")
        if quantization is not None and not isinstance(quantization, pccl.QuantizationOptions):
            raise TypeError("quantization must be a pccl.QuantizationOptions or None")
        self.model = model
        self.inner_optimizer = inner_optimizer
        self.comm = communicator
        self.asynchronous = bool(asynchronous)
        self.quantization = quantization
        self.mode = pccl.ReduceMode(mode)
        if self.mode and quantization is not None:
            raise ValueError("an exact mode is not quantized: pass mode or quantization")
        self.tag = tag
        self.max_retries = max_retries
        self.timeout = timeout
        self.state = OuterState(model, outer_optimizer)
        # One pseudo-gradient buffer: async finishes and applies delta_{t-1} before it
        # computes delta_t.
        self._buffer = self.state.new_buffer()
        self._in_flight: tuple[torch.Tensor, pccl.AsyncReduceHandle | None] | None = None
        self._finished: tuple[torch.Tensor, int] | None = None  # (averaged, world) to apply
        self._receive_only_next = False
        self._started = False

    @property
    def step(self) -> int:
        """Outer steps done by the run (the shared-state revision)."""
        return self.state.shared.revision

    @property
    def outer_parameters(self) -> list[torch.Tensor]:
        return self.state.outer

    def state_hashes(self) -> tuple[int, ...]:
        """XXH64 of every shared tensor; equal on every peer after each outer step."""
        return self.state.hashes()

    # -- the protocol ------------------------------------------------------------------

    def start(self) -> OuterStepInfo:
        """Adopts the run's outer state and resets the model to it. Call once, after
        connect() and before the first inner phase; a joiner receives everything here."""
        if self._started:
            raise pccl.InvalidUsageError("start() was already called")
        self._started = True
        info = OuterStepInfo(step=0, world=0)
        self.state.shared.revision = 0
        self._sync(info)
        # Joining a running async group: the members' in-flight result reaches us at the
        # next F.
        self._receive_only_next = self.asynchronous and self.step > 0
        self.state.reset_local()
        return info

    def outer_step(self) -> OuterStepInfo:
        """Ends the inner phase: the steps of the module docstring."""
        if not self._started:
            raise pccl.InvalidUsageError("call start() before outer_step()")
        info = OuterStepInfo(step=self.step + 1, world=0)
        t0 = time.monotonic()
        if not self.asynchronous:
            self.state.pseudo_gradient(self._buffer)                            # D
            self._in_flight = (self._buffer, None)
        if self._in_flight is not None:                                         # E
            self._finish(info)
        if self._finished is not None:
            averaged, info.world = self._finished
            self._finished = None
            self.state.apply(averaged)
        admit = self._call(self.comm.are_peers_pending)                        # P
        self.state.shared.revision = info.step                                 # F
        strategy = (pccl.SharedStateSyncStrategy.RECEIVE_ONLY if self._receive_only_next
                    else pccl.SharedStateSyncStrategy.ENFORCE_POPULAR)
        self._receive_only_next = False
        self._sync(info, strategy)
        if self.asynchronous:                                                   # D (async)
            self.state.pseudo_gradient(self._buffer)
            self._launch(self._buffer)
        self.state.reset_local()                                                # R
        if admit:                                                               # J
            if self._in_flight is not None:
                self._finish(info)
            self._call(self.comm.update_topology)
            self._sync(info)
            self.state.reset_local()
            info.admitted = True
        info.comm_seconds = time.monotonic() - t0
        return info

    def close(self) -> None:
        """Waits for an all-reduce still in flight (async), so its tensors can be freed. Its
        result is not applied: the outer state stays that of the last outer step, the same
        on every peer. Call it on every peer after the same last outer step."""
        if self._in_flight is not None and self._in_flight[1] is not None:
            self._in_flight[1].wait()
        self._in_flight = None

    # -- pieces ------------------------------------------------------------------------

    def _launch(self, buffer: torch.Tensor) -> None:
        try:
            handle = self.comm.all_reduce_async(
                buffer, buffer, op=pccl.ReduceOp.AVG, tag=self.tag,
                quantization_options=self.quantization, timeout=self.timeout, mode=self.mode)
        except pccl.TooFewPeersError:
            handle = None  # alone: _finish() settles it
        except _RETRYABLE:
            handle = None  # _finish() retries it
        self._in_flight = (buffer, handle)

    def _finish(self, info: OuterStepInfo) -> None:
        """Completes the in-flight pseudo-gradient all-reduce (waiting for a launched one,
        running it otherwise), retrying after lost peers; stores the result to apply."""
        assert self._in_flight is not None
        buffer, handle = self._in_flight
        self._in_flight = None
        for attempt in range(self.max_retries + 1):
            try:
                if handle is not None:
                    done = handle.result()
                else:
                    done = self.comm.all_reduce(
                        buffer, buffer, op=pccl.ReduceOp.AVG, tag=self.tag,
                        quantization_options=self.quantization, timeout=self.timeout,
                        mode=self.mode)
            except pccl.TooFewPeersError:
                self._finished = (buffer, 1)  # alone: the average of one is our own
                return
            except _RETRYABLE as e:
                handle = None
                if attempt == self.max_retries:
                    raise
                _log.info("pseudo-gradient all-reduce failed (%s); retrying", e)
                continue
            info.reduce_tx_bytes += done.tx_bytes
            info.reduce_rx_bytes += done.rx_bytes
            self._finished = (buffer, done.local_world_size)
            return

    def _sync(self, info: OuterStepInfo,
              strategy: pccl.SharedStateSyncStrategy = pccl.SharedStateSyncStrategy.ENFORCE_POPULAR
              ) -> None:
        done = self._call(self.comm.sync_shared_state, self.state.shared, strategy)
        info.sync_tx_bytes += done.tx_bytes
        info.sync_rx_bytes += done.rx_bytes
        info.step = self.step

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args), retried after a lost peer (the core then runs it on the survivors)."""
        for attempt in range(self.max_retries + 1):
            try:
                return fn(*args, timeout=self.timeout)
            except _RETRYABLE as e:
                if attempt == self.max_retries:
                    raise
                _log.info("%s failed (%s); retrying", getattr(fn, "__name__", fn), e)
        raise AssertionError("unreachable")


__all__ = ["DiLoCo", "OuterStepInfo"]
