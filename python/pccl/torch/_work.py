"""Work handles for the pccl process group, and the thread that completes them.

A collective is launched in the caller's thread (pccl all-reduces run concurrently, each
under its own tag) and handed to the Completer together with a `finish` step: copy the
reduced bytes into the caller's tensors. The Completer's one thread waits for the
collectives in launch order, runs `finish`, and completes the torch Future. The future
therefore completes on its own: DDP chains its bucket callbacks on it
(`work.get_future()`) and never calls `wait()` on the Work.

A failed collective completes the future with pccl's exception (PeerLostError, ...);
`wait()` and `get_future().wait()` raise it. One that ran out of the process group's
timeout raises CollectiveTimeoutError, a PCCLTimeoutError that is also the RuntimeError
torch's own backends raise, worded as theirs ("... Timed out after ..."). So does a collective
that succeeded among fewer peers than the group has: after a lost rank pccl carries on
with the survivors, but a torch process group has a fixed size, and a sum, average or
gather over the survivors only would be silently wrong.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch.futures import Future

from pccl.communicator import AsyncReduceHandle
from pccl.errors import PCCLTimeoutError, PeerLostError

Finish = Callable[[], Any]


class CollectiveTimeoutError(PCCLTimeoutError, RuntimeError):
    """A collective of the pccl process group passed the group's timeout."""


def _as_torch_error(error: BaseException, timeout_s: float) -> BaseException:
    if isinstance(error, PCCLTimeoutError) and not isinstance(error, CollectiveTimeoutError):
        timed_out = CollectiveTimeoutError(
            f"pccl collective Timed out after {timeout_s:g} s (the process group's "
            f"timeout): {error}")
        timed_out.__cause__ = error
        return timed_out
    return error


class PcclWork(dist.Work):
    """One collective of the pccl process group (what `async_op=True` returns)."""

    def __init__(self, future: Future[list[torch.Tensor]]):
        super().__init__()
        self._future = future
        # A recv from any source: gives the sender's rank once the recv is done.
        self.source: Callable[[], int] | None = None

    def _source_rank(self) -> int:
        """The sending rank of a recv from any source (torch's dist.recv without src asks);
        waits for the recv."""
        if self.source is None:
            raise RuntimeError("source rank asked of a pccl Work that is no recv from any source")
        self.wait()
        return self.source()

    def wait(self, timeout: timedelta | None = None) -> bool:
        """Blocks until the collective finished; raises its error if it failed.

        The collective itself fails after the process group's timeout. A positive
        `timeout` bounds this wait only: TimeoutError if the collective is still running
        then (it keeps running).
        """
        if timeout is not None and timeout.total_seconds() > 0:
            finished = threading.Event()  # set by the future itself: no polling
            self._future.add_done_callback(lambda _: finished.set())
            if not finished.wait(timeout.total_seconds()):
                raise TimeoutError(f"pccl collective not finished after {timeout}")
        self._future.wait()
        return True

    def is_completed(self) -> bool:
        return self._future.done()

    def is_success(self) -> bool:
        if not self._future.done():
            return False
        try:
            self._future.value()
        except Exception:  # noqa: BLE001 - a failed collective is just "not a success"
            return False
        return True

    def exception(self) -> BaseException | None:
        if not self._future.done():
            return None
        try:
            self._future.value()
        except Exception as e:  # noqa: BLE001 - returned, not raised
            return e
        return None

    def result(self) -> list[torch.Tensor]:
        """The collective's output tensors; waits for them (raises its error)."""
        return list(self._future.wait())

    def get_future(self) -> Future[list[torch.Tensor]]:
        """Completes with the collective's output tensors (a list), or its error."""
        return self._future


class Completer:
    """Finishes launched collectives in launch order on one background thread.

    Args:
        world_size: the peers every collective must have run with.
        timeout_s: the process group's timeout, for the wording of a timeout's error.
    """

    def __init__(self, world_size: int, timeout_s: float) -> None:
        self._world_size = world_size
        self._timeout_s = timeout_s
        self._queue: queue.SimpleQueue[tuple[Sequence[AsyncReduceHandle], Finish,
                                             Future[list[torch.Tensor]]]
                                       | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="pccl-torch-completer",
                                        daemon=True)
        self._thread.start()
        self._closed = False

    def submit(self, handles: Sequence[AsyncReduceHandle], finish: Finish) -> PcclWork:
        """Returns the Work that completes once `handles` are done and `finish` ran;
        the Work's future holds what `finish` returns."""
        if self._closed:
            raise RuntimeError("the pccl process group was shut down")
        future: Future[list[torch.Tensor]] = Future()
        self._queue.put((handles, finish, future))
        return PcclWork(future)

    def close(self) -> None:
        """Waits for everything submitted, then stops the thread. Idempotent."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            handles, finish, future = item
            error: BaseException | None = None
            for handle in handles:  # wait for every one: their buffers are in use
                try:
                    peers = handle.result().local_world_size
                    if peers != self._world_size:
                        raise PeerLostError(
                            f"pccl backend: the collective ran with {peers} of the process "
                            f"group's {self._world_size} ranks (a rank was lost); its result "
                            "is not the group's, and the group cannot continue")
                except BaseException as e:  # noqa: BLE001 - handed to the future
                    error = error or e
            if error is None:
                try:
                    with torch.no_grad():
                        value = finish()
                except BaseException as e:  # noqa: BLE001 - handed to the future
                    error = e
            if error is None:
                future.set_result(value)
            else:
                failure = _as_torch_error(error, self._timeout_s)
                future.set_exception(failure)  # type: ignore[arg-type]  # torch stub: T
