"""ProcessGroupPCCL: torch.distributed collectives over pccl's ring collectives.

pccl's collectives run over one ring and end with one verdict for the group, their inputs
intact on failure. Each torch collective is one of them per tensor, plus local copies:

    all_reduce       all-reduce of the tensor itself, with the requested op.
    broadcast        pccl broadcast of the tensor's bytes from the source.
    all_gather       pccl all-gather of each rank's bytes into world_size blocks, in rank
                     order (pccl orders blocks by the ranks' peer ids, exchanged once at
                     rendezvous).
    reduce           all-reduce into a host copy that only the destination keeps.
    reduce_scatter   pccl reduce-scatter of the world_size inputs laid end to end; in an
                     EXACT or PRIVATE reduce mode an all-reduce of them, of which each rank
                     keeps its own slice (the modes belong to the all-reduce).
    gather           pccl gather of each rank's bytes to the destination.
    scatter          pccl scatter of the source's inputs.
    all_to_all       first an all-gather of every rank's piece sizes (a world x world
                     table), then a pccl all-to-all of the pieces, each padded to the
                     largest.
    barrier          a one-byte all-reduce.
    send, recv       pccl send/recv of the tensor's bytes between the two ranks, over
                     links of their own (isend, irecv and batch_isend_irecv too: each op
                     is one of them). A send completes once the receiver has the data.
                     They take torch's tag, not the group's counter, since only two ranks
                     call them; the n-th send from a rank to another with a tag meets the
                     n-th recv there from it with that tag.

A recv from any source waits for the first rank whose send to this one (with the tag)
begins, and receives that one; the Work names the rank (dist.recv returns it).

Ranks must issue the same collectives in the same order (torch requires it too): each
launch takes the next tag of the group's sequence counter, so the same call carries the
same tag on every rank and concurrent collectives (async_op=True, DDP's buckets) never
share one.

Every collective is launched in the calling thread and completed by the Completer
(_work.py); with async_op=False torch waits on the returned Work.

The reducing collectives (all_reduce, reduce, reduce_scatter) with SUM or AVG run in the
group's `reduce_mode` (pccl.ReduceMode: EXACT or PRIVATE; from PCCL_REDUCE_MODE, or
pccl.torch.set_reduce_mode); the byte-moving ones never need it.
"""

from __future__ import annotations

import datetime
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

import pccl
from pccl.communicator import AsyncReduceHandle
from pccl.torch._ops import check_reducible, reduce_op
from pccl.torch._rendezvous import Rendezvous
from pccl.torch._staging import HostTensor, as_bytes, host_copy
from pccl.torch._work import Completer, PcclWork

BACKEND_NAME = "pccl"
# What _launch starts.
ALL_REDUCE, BROADCAST, ALL_GATHER, REDUCE_SCATTER = ("all_reduce", "broadcast", "all_gather",
                                                    "reduce_scatter")
GATHER, SCATTER, ALL_TO_ALL = "gather", "scatter", "all_to_all"
REDUCE_MODE_ENV = "PCCL_REDUCE_MODE"


def reduce_mode_from_env() -> pccl.ReduceMode:
    """PCCL_REDUCE_MODE: "default" (or unset), "exact" or "private"."""
    value = os.environ.get(REDUCE_MODE_ENV, "default").strip().lower()
    modes = {"default": pccl.ReduceMode.DEFAULT, "exact": pccl.ReduceMode.EXACT,
             "private": pccl.ReduceMode.PRIVATE}
    if value not in modes:
        raise ValueError(f"{REDUCE_MODE_ENV} must be one of {sorted(modes)}, got {value!r}")
    return modes[value]

# torch.distributed's type stubs do not name these; typed loosely here.
Store = Any
AllgatherOptions = Any


class ProcessGroupPCCL(dist.ProcessGroup):
    """A torch process group whose ranks are the peers of one pccl run.

    Created by `dist.init_process_group(backend="pccl", ...)` (see pccl.torch); the
    constructor blocks until all `size` ranks joined the run or `timeout` passed.
    """

    def __init__(self, store: Store, rank: int, size: int,
                 timeout: datetime.timedelta):
        super().__init__(rank, size)  # type: ignore[call-arg]  # the stubs want a store
        self._rank = rank
        self._size = size
        self._timeout_s = timeout.total_seconds()
        self._rendezvous = Rendezvous(store, rank, size, timeout)
        self._comm = self._rendezvous.comm
        self._peer_ids = self._rendezvous.peer_ids  # by rank
        self._tags = itertools.count(1)
        self._tags_lock = threading.Lock()
        self._completer = Completer(size, self._timeout_s)
        self._shut_down = False
        self._group_name: str | None = None
        # Every rank must use the same mode (each all-reduce's descriptor includes it).
        self.reduce_mode = reduce_mode_from_env()

    def getBackendName(self) -> str:
        return BACKEND_NAME

    # torch names every process group (destroying a subgroup and the functional
    # collectives look groups up by name). Its C++ ProcessGroup keeps the name in its
    # device backends, which a Python process group has none of, so it is kept here.
    def _set_group_name(self, name: str) -> None:
        self._group_name = name

    @property
    def group_name(self) -> str:  # type: ignore[override]  # the stubs' GroupName is a str
        if self._group_name is None:
            raise RuntimeError("ProcessGroup name not set")
        return self._group_name

    # -- collectives ------------------------------------------------------------------

    def allreduce(self, tensors: list[torch.Tensor],  # type: ignore[override]
                  opts: dist.AllreduceOptions | None = None) -> PcclWork:
        op = reduce_op(dist.ReduceOp.SUM if opts is None else opts.reduceOp)
        for t in tensors:
            check_reducible(t, op, "all_reduce's tensor")
        staged = [HostTensor(t) for t in tensors]
        handles = [self._launch(ALL_REDUCE, s.host, s.host, op, reduction=True) for s in staged]

        def finish() -> list[torch.Tensor]:
            for s in staged:
                s.write_back()
            return tensors

        return self._submit(handles, finish)

    def allreduce_coalesced(self, tensors: list[torch.Tensor],
                            opts: Any = None) -> PcclWork:
        return self.allreduce(tensors, opts)

    def reduce(self, tensors: list[torch.Tensor],  # type: ignore[override]
               opts: dist.ReduceOptions | None = None) -> PcclWork:
        op = reduce_op(dist.ReduceOp.SUM if opts is None else opts.reduceOp)
        dst = 0 if opts is None else opts.rootRank
        for t in tensors:
            check_reducible(t, op, "reduce's tensor")
        # An all-reduce into host copies; only the destination keeps the result.
        sources = [HostTensor(t).host for t in tensors]
        reduced = [torch.empty_like(s) for s in sources]
        handles = [self._launch(ALL_REDUCE, s, r, op, reduction=True)
                   for s, r in zip(sources, reduced)]

        def finish() -> list[torch.Tensor]:
            if self._rank == dst:
                for t, r in zip(tensors, reduced):
                    t.detach().copy_(r)
            return tensors

        return self._submit(handles, finish)

    def broadcast(self, tensors: list[torch.Tensor],  # type: ignore[override]
                  opts: dist.BroadcastOptions | None = None) -> PcclWork:
        src = 0 if opts is None else opts.rootRank
        staged = [HostTensor(t) for t in tensors]
        handles = []
        for s in staged:
            data = as_bytes(s.host)
            handles.append(self._launch(BROADCAST, data, data, root=src))

        def finish() -> list[torch.Tensor]:
            if self._rank != src:
                for s in staged:
                    s.write_back()
            return tensors

        return self._submit(handles, finish)

    def allgather(self, output_tensors: list[list[torch.Tensor]],  # type: ignore[override]
                  input_tensors: list[torch.Tensor],
                  opts: AllgatherOptions | None = None) -> PcclWork:
        self._check_gather_outputs(output_tensors, input_tensors, "all_gather")
        gathered = [self._gather_bytes(t) for t in input_tensors]

        def finish() -> list[list[torch.Tensor]]:
            self._copy_gathered(output_tensors, input_tensors, [slots for _, slots in gathered])
            return output_tensors

        return self._submit([handle for handle, _ in gathered], finish)

    def allgather_coalesced(self, output_lists: list[list[torch.Tensor]],
                            input_list: list[torch.Tensor], opts: Any = None) -> PcclWork:
        """all_gather_coalesced: output_lists[rank][i] receives input_list[i] of `rank`."""
        if len(output_lists) != self._size:
            raise ValueError(f"all_gather_coalesced needs {self._size} output lists (one per "
                             f"rank), got {len(output_lists)}")
        for outputs in output_lists:
            _same_length(outputs, input_list, "all_gather_coalesced")
        per_input = [[outputs[i] for outputs in output_lists] for i in range(len(input_list))]
        return self.allgather(per_input, input_list, opts)

    def all_gather_single(self, output: torch.Tensor, input: torch.Tensor,
                          opts: AllgatherOptions | None = None) -> PcclWork:
        if output.dtype != input.dtype or output.numel() != input.numel() * self._size:
            raise ValueError(f"all_gather_single needs an output of {self._size} x "
                             f"{input.numel()} elements of {input.dtype}, got "
                             f"{output.numel()} of {output.dtype}")
        handle, slots = self._gather_bytes(input)

        def finish() -> list[torch.Tensor]:
            output.copy_(slots.view(input.dtype).view(output.shape))
            return [output]

        return self._submit([handle], finish)

    def reduce_scatter(self, output_tensors: list[torch.Tensor],  # type: ignore[override]
                       input_tensors: list[list[torch.Tensor]],
                       opts: dist.ReduceScatterOptions | None = None) -> PcclWork:
        _same_length(output_tensors, input_tensors, "reduce_scatter")
        op = reduce_op(dist.ReduceOp.SUM if opts is None else opts.reduceOp)
        buffers = []
        for out, inputs in zip(output_tensors, input_tensors):
            check_reducible(out, op, "reduce_scatter's output")
            if len(inputs) != self._size:
                raise ValueError(f"reduce_scatter needs {self._size} input tensors (one per "
                                 f"rank), got {len(inputs)}")
            for tensor in inputs:
                _same_elements(tensor, out, "reduce_scatter's input", "its output")
            buffers.append(torch.cat([host_copy(t).reshape(-1) for t in inputs]))
        reduced = [self._launch_reduce_scatter(b, op) for b in buffers]

        def finish() -> list[torch.Tensor]:
            for out, (_, mine) in zip(output_tensors, reduced):
                out.copy_(mine().view(out.shape))
            return output_tensors

        return self._submit([handle for handle, _ in reduced], finish)

    def reduce_scatter_single(self, output: torch.Tensor, input: torch.Tensor,
                              opts: dist.ReduceScatterOptions | None = None) -> PcclWork:
        op = reduce_op(dist.ReduceOp.SUM if opts is None else opts.reduceOp)
        check_reducible(input, op, "reduce_scatter_single's input")
        if output.dtype != input.dtype or input.numel() != output.numel() * self._size:
            raise ValueError(f"reduce_scatter_single needs an input of {self._size} x "
                             f"{output.numel()} elements of {output.dtype}, got "
                             f"{input.numel()} of {input.dtype}")
        send = HostTensor(input).host  # read only: the caller's input stays as it was
        handle, mine = self._launch_reduce_scatter(send.reshape(-1), op)

        def finish() -> list[torch.Tensor]:
            output.copy_(mine().view(output.shape))
            return [output]

        return self._submit([handle], finish)

    # torch before 2.13 calls these two by their older names (all_gather_into_tensor and
    # reduce_scatter_tensor go through _allgather_base and _reduce_scatter_base there).
    _allgather_base = all_gather_single
    _reduce_scatter_base = reduce_scatter_single  # type: ignore[assignment]  # argument names

    def gather(self, output_tensors: list[list[torch.Tensor]],  # type: ignore[override]
               input_tensors: list[torch.Tensor], opts: Any = None) -> PcclWork:
        dst = 0 if opts is None else opts.rootRank
        root = self._rank == dst
        if root:  # elsewhere torch passes no output lists
            self._check_gather_outputs(output_tensors, input_tensors, "gather")
        handles: list[AsyncReduceHandle | None] = []
        gathered: list[torch.Tensor] = []
        for t in input_tensors:
            data = as_bytes(HostTensor(t).host)
            slots = torch.empty(data.numel() * self._size, dtype=torch.uint8)
            handles.append(self._launch(GATHER, data, slots if root else None, root=dst))
            gathered.append(slots)

        def finish() -> list[list[torch.Tensor]]:
            if root:
                self._copy_gathered(output_tensors, input_tensors, gathered)
            return output_tensors

        return self._submit(handles, finish)

    def scatter(self, output_tensors: list[torch.Tensor],  # type: ignore[override]
                input_tensors: list[list[torch.Tensor]], opts: Any = None) -> PcclWork:
        src = 0 if opts is None else opts.rootRank
        handles, received = [], []
        for i, out in enumerate(output_tensors):
            width = out.numel() * out.element_size()
            slots = None
            if self._rank == src:
                inputs = input_tensors[i]
                if len(inputs) != self._size:
                    raise ValueError(f"scatter needs {self._size} input tensors (one per "
                                     f"rank) at the source, got {len(inputs)}")
                slots = torch.empty(width * self._size, dtype=torch.uint8)
                for r, tensor in enumerate(inputs):
                    _same_elements(tensor, out, "scatter's input", "the output")
                    slots[r * width:(r + 1) * width] = as_bytes(host_copy(tensor))
            mine = torch.empty(width, dtype=torch.uint8)
            handles.append(self._launch(SCATTER, slots, mine, root=src))
            received.append(mine)

        def finish() -> list[torch.Tensor]:
            for out, mine in zip(output_tensors, received):
                out.copy_(mine.view(out.dtype).view(out.shape))
            return output_tensors

        return self._submit(handles, finish)

    def alltoall(self, output_tensors: list[torch.Tensor],
                 input_tensors: list[torch.Tensor], opts: Any = None) -> PcclWork:
        for name, tensors in (("output", output_tensors), ("input", input_tensors)):
            if len(tensors) != self._size:
                raise ValueError(f"all_to_all needs {self._size} {name} tensors (one per "
                                 f"rank), got {len(tensors)}")
        dtype = input_tensors[0].dtype
        if any(t.dtype != dtype for t in (*input_tensors, *output_tensors)):
            raise ValueError("all_to_all needs one dtype for every input and output tensor")
        pieces = [as_bytes(host_copy(t)) for t in input_tensors]
        # Everyone's piece sizes first: where rank r's piece for this rank starts depends on
        # the pieces r sends to the ranks before it.
        mine_sizes = torch.tensor([p.numel() for p in pieces], dtype=torch.int64)
        table = torch.empty(self._size * self._size, dtype=torch.int64)
        sizing = self._launch(ALL_GATHER, mine_sizes, table)
        if sizing is not None:
            sizing.result()
        sizes = table.view(self._size, self._size)  # sizes[r, q]: bytes from rank r to q
        for r, out in enumerate(output_tensors):
            got = int(sizes[r, self._rank].item())
            if got != out.numel() * out.element_size():
                raise ValueError(f"all_to_all: rank {r} sends this rank {got} bytes, but "
                                 f"output tensor {r} holds {out.numel() * out.element_size()}")
        # pccl's all-to-all moves equal blocks: each piece padded to the largest.
        width = int(sizes.max().item())
        send = torch.zeros(width * self._size, dtype=torch.uint8)
        for q, piece in enumerate(pieces):
            send[q * width:q * width + piece.numel()] = piece
        recv = torch.empty(width * self._size, dtype=torch.uint8)
        handle = self._launch(ALL_TO_ALL, send, recv)

        def finish() -> list[torch.Tensor]:
            for r, out in enumerate(output_tensors):
                piece = recv[r * width:r * width + out.numel() * out.element_size()]
                out.copy_(piece.view(out.dtype).view(out.shape))
            return output_tensors

        return self._submit([handle], finish)

    def alltoall_base(self, output: torch.Tensor, input: torch.Tensor,
                      output_split_sizes: list[int], input_split_sizes: list[int],
                      opts: Any = None) -> PcclWork:
        outputs = _split_rows(output, output_split_sizes, self._size, "output")
        work = self.alltoall(outputs, _split_rows(input, input_split_sizes, self._size, "input"),
                             opts)
        return work

    def send(self, tensors: list[torch.Tensor], dst: int, tag: int = 0) -> PcclWork:
        return self._point_to_point(tensors, dst, tag, sending=True)

    def recv(self, tensors: list[torch.Tensor], src: int, tag: int = 0) -> PcclWork:
        return self._point_to_point(tensors, src, tag, sending=False)

    def recv_anysource(self, tensors: list[torch.Tensor], tag: int = 0) -> PcclWork:
        return self._point_to_point(tensors, None, tag, sending=False)

    def barrier(self, opts: dist.BarrierOptions | None = None) -> PcclWork:  # type: ignore[override]
        token = torch.zeros(1, dtype=torch.uint8)
        return self._submit([self._launch(ALL_REDUCE, token, token)], lambda: [token])

    # -- lifecycle --------------------------------------------------------------------

    def shutdown(self) -> None:
        """Finishes collectives in flight, leaves the pccl run. Idempotent."""
        if not self._shut_down:
            self._shut_down = True
            self._completer.close()
            self._rendezvous.close()

    def abort(self) -> None:
        self.shutdown()

    # -- building blocks --------------------------------------------------------------

    def _check_gather_outputs(self, output_tensors: list[list[torch.Tensor]],
                              input_tensors: list[torch.Tensor], what: str) -> None:
        _same_length(output_tensors, input_tensors, what)
        for outputs, tensor in zip(output_tensors, input_tensors):
            if len(outputs) != self._size:
                raise ValueError(f"{what} needs {self._size} output tensors (one per rank), "
                                 f"got {len(outputs)}")
            for out in outputs:
                _same_elements(out, tensor, f"{what}'s output", "its input")

    def _copy_gathered(self, output_tensors: list[list[torch.Tensor]],
                       input_tensors: list[torch.Tensor],
                       gathered: list[torch.Tensor]) -> None:
        """Copies each rank's block of each gathered buffer into its output tensor."""
        for outputs, tensor, slots in zip(output_tensors, input_tensors, gathered):
            for out, slot in zip(outputs, slots.chunk(self._size)):
                out.copy_(slot.view(tensor.dtype).view(out.shape))

    def _gather_bytes(self, tensor: torch.Tensor) -> tuple[AsyncReduceHandle | None,
                                                           torch.Tensor]:
        """Launches the all-gather of `tensor`'s bytes; returns the slots buffer."""
        data = as_bytes(HostTensor(tensor).host)
        slots = torch.empty(data.numel() * self._size, dtype=torch.uint8)
        return self._launch(ALL_GATHER, data, slots), slots

    def _launch_reduce_scatter(self, send: torch.Tensor, op: pccl.ReduceOp
                               ) -> tuple[AsyncReduceHandle | None, Callable[[], torch.Tensor]]:
        """Launches the reduce-scatter of `send` (world_size blocks end to end); returns
        the handle and a function that gives this rank's reduced block once it is done.
        In an EXACT or PRIVATE reduce mode it is an all-reduce (the modes are its own)."""
        block = send.numel() // self._size
        if self._mode_for(op, reduction=True) is not pccl.ReduceMode.DEFAULT:
            reduced = torch.empty_like(send)
            handle = self._launch(ALL_REDUCE, send, reduced, op, reduction=True)
            return handle, lambda: reduced[self._rank * block:(self._rank + 1) * block]
        mine = torch.empty(block, dtype=send.dtype)
        return self._launch(REDUCE_SCATTER, send, mine, op), lambda: mine

    def _point_to_point(self, tensors: list[torch.Tensor], peer: int | None, tag: int, *,
                        sending: bool) -> PcclWork:
        """A send of tensors[0] to rank `peer`, or a recv into it from `peer` (None: from
        any rank; the Work then names it)."""
        what = "send" if sending else "recv"
        if len(tensors) != 1:
            raise ValueError(f"{what} takes one tensor, got {len(tensors)}")
        if peer is not None and (not 0 <= peer < self._size or peer == self._rank):
            raise ValueError(f"{what}: rank {peer} is not another rank of this group of "
                             f"{self._size} (this is rank {self._rank})")
        staged = HostTensor(tensors[0])
        data = as_bytes(staged.host)
        self._check_world()
        peer_id = None if peer is None else self._peer_ids[peer]
        if sending:
            assert peer_id is not None
            handle = self._comm.send_async(data, peer_id, tag=tag, timeout=self._timeout_s)
        else:
            handle = self._comm.recv_async(data, peer_id, tag=tag, timeout=self._timeout_s)

        def finish() -> list[torch.Tensor]:
            if not sending:
                staged.write_back()
            return tensors

        work = self._submit([handle], finish)
        if peer is None:
            work.source = lambda: self._peer_ids.index(handle.peer)
        return work

    def _check_world(self) -> None:
        """Raises PeerLostError if a rank is already lost (pccl applies the master's new
        topology in the background): fail now rather than run on the survivors' ring,
        where a rank whose previous collective failed would never join this one."""
        self._comm._refresh_attributes()
        peers = self._comm.get_attribute(pccl.Attribute.LOCAL_WORLD_SIZE)
        if peers != self._size:
            raise pccl.PeerLostError(
                f"pccl backend: the run has {peers} of the process group's {self._size} "
                "ranks (a rank was lost); the group cannot continue")

    def _mode_for(self, op: pccl.ReduceOp, *, reduction: bool) -> pccl.ReduceMode:
        if reduction and op in (pccl.ReduceOp.SUM, pccl.ReduceOp.AVG):
            return self.reduce_mode
        return pccl.ReduceMode.DEFAULT

    def _launch(self, kind: str, send: torch.Tensor | None, recv: torch.Tensor | None,
                op: pccl.ReduceOp = pccl.ReduceOp.SUM, *, reduction: bool = False,
                root: int = 0) -> AsyncReduceHandle | None:
        """Starts one pccl collective under the next tag: ALL_REDUCE (`op`; `reduction`: of
        the caller's data, which runs in reduce_mode when op is SUM or AVG), BROADCAST
        from rank `root` (send is recv), ALL_GATHER, REDUCE_SCATTER (`op`), GATHER to rank
        `root` (recv None elsewhere), SCATTER from rank `root` (send None elsewhere) or
        ALL_TO_ALL, blocks in rank order. Returns None, with recv already final, for an
        empty block or a group of one (they still take a tag, so the ranks' counters stay
        equal)."""
        with self._tags_lock:  # tags in launch order, even with several calling threads
            tag = next(self._tags)
            block = recv if kind == SCATTER else send
            if block is None or block.numel() == 0:
                return None
            if self._size == 1:  # pccl needs two peers; alone, every op is the identity
                if send is not None and recv is not None and recv.data_ptr() != send.data_ptr():
                    recv.copy_(send)
                return None
            self._check_world()
            timeout = self._timeout_s
            # No restore copies: a failed collective fails the group for good (torch's
            # process groups do not retry), and torch promises nothing of a failed
            # collective's buffers.
            if kind == BROADCAST:
                return self._comm.broadcast_async(recv, root=self._peer_ids[root], tag=tag,
                                                  timeout=timeout)
            if kind == ALL_GATHER:
                return self._comm.all_gather_async(send, recv, tag=tag, order=self._peer_ids,
                                                   timeout=timeout)
            ids = self._peer_ids
            if kind == REDUCE_SCATTER:
                return self._comm.reduce_scatter_async(send, recv, op=op, tag=tag, order=ids,
                                                       timeout=timeout)
            if kind == GATHER:
                return self._comm.gather_async(send, recv, root=ids[root], tag=tag, order=ids,
                                               timeout=timeout)
            if kind == SCATTER:
                return self._comm.scatter_async(send, recv, root=ids[root], tag=tag, order=ids,
                                                timeout=timeout)
            if kind == ALL_TO_ALL:
                return self._comm.all_to_all_async(send, recv, tag=tag, order=ids,
                                                   timeout=timeout)
            return self._comm.all_reduce_async(send, recv, op=op, tag=tag, timeout=timeout,
                                               mode=self._mode_for(op, reduction=reduction),
                                               restore_input=False)

    def _submit(self, handles: Sequence[AsyncReduceHandle | None],
                finish: Callable[[], Any]) -> PcclWork:
        return self._completer.submit([h for h in handles if h is not None], finish)

    def __repr__(self) -> str:
        return f"ProcessGroupPCCL(rank={self._rank}, size={self._size})"


def _split_rows(tensor: torch.Tensor, split_sizes: list[int], world: int,
                name: str) -> list[torch.Tensor]:
    """all_to_all_single's `tensor` cut along dim 0 into `world` pieces of `split_sizes`
    rows (equal pieces when empty). Views: copying into them fills `tensor`."""
    rows = tensor.shape[0] if tensor.dim() > 0 else 0
    if not split_sizes:
        if rows % world != 0:
            raise ValueError(f"all_to_all_single: the {name}'s {rows} rows do not split "
                             f"into {world} equal pieces")
        split_sizes = [rows // world] * world
    if len(split_sizes) != world or sum(split_sizes) != rows:
        raise ValueError(f"all_to_all_single: {name} split sizes {split_sizes} do not cut "
                         f"{rows} rows into {world} pieces")
    return list(torch.split(tensor, split_sizes, dim=0))


def _same_length(a: Sequence[Any], b: Sequence[Any], what: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{what}: {len(a)} output lists for {len(b)} inputs")


def _same_elements(tensor: torch.Tensor, like: torch.Tensor, name: str, like_name: str) -> None:
    if tensor.dtype != like.dtype or tensor.numel() != like.numel():
        raise ValueError(f"{name} has {tensor.numel()} elements of {tensor.dtype} but "
                         f"{like_name} has {like.numel()} of {like.dtype}")


def set_reduce_mode(mode: pccl.ReduceMode, group: Any = None) -> None:
    """Makes the pccl process group `group` (default: the default group) run its SUM and
    AVG reductions in `mode` from now on. Every rank must call it with the same mode
    before the same collective; PCCL_REDUCE_MODE sets the starting mode."""
    mode = pccl.ReduceMode(mode)
    backend = group or dist.group.WORLD  # torch hands out ProcessGroupPCCL itself
    if not isinstance(backend, ProcessGroupPCCL):
        raise ValueError(f"set_reduce_mode needs a pccl process group, got "
                         f"{type(backend).__name__}")
    backend.reduce_mode = mode


def create_process_group(store: Store, rank: int, world_size: int,
                         timeout: datetime.timedelta) -> ProcessGroupPCCL:
    """torch's creation hook for backend "pccl" (see dist.Backend.register_backend)."""
    return ProcessGroupPCCL(store, rank, world_size, timeout)
