"""Broadcast / all-gather / reduce-scatter / gather / scatter / all-to-all / send-recv
backends on loopback, each a group of spawned peer processes (used by bench.collectives).

  pccl  N Communicator peers of a MasterNode the parent runs; comm.broadcast(root=<lowest
        peer id>), comm.all_gather, comm.reduce_scatter(op=SUM), comm.gather and
        comm.scatter (the same root), comm.all_to_all; blocks in ascending peer id.
        send_recv: every rank sends its buffer to the next rank and receives the previous
        rank's (send_async + recv_async), as a pipeline's stages do; send_recv_any: the
        same, received from any source (recv_async(out, None)).
  gloo  torch.distributed, backend "gloo", tcp://127.0.0.1 rendezvous; dist.broadcast(src=0),
        dist.all_gather_into_tensor, dist.reduce_scatter_tensor (falling back to
        dist.reduce_scatter, then to all_reduce + slice, whichever this torch's Gloo runs),
        dist.gather(dst=0), dist.scatter(src=0), dist.all_to_all_single; send_recv with
        dist.isend + dist.irecv (send_recv_any: dist.irecv without src).

A peer's "rank" is its Gloo rank, or for pccl its index among the sorted peer ids, so that
block k of an all-gather's output / a reduce-scatter's input belongs to rank k on both.
`CollGroup(backend, world, setup)` starts the peers; `CollGroup.run(op, bytes, iters)` makes
each run `measure`: verified warm-up, a tiny all-reduce as a barrier, `iters` timed calls,
a check of the last timed call's result, and one more verified call with other inputs.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from bench.lib.loopback import op_timeout, start_gloo, warmups
from bench.lib.procs import gather, report_error, spawn_ranks, stop_workers

OPS = ("broadcast", "all_gather", "reduce_scatter", "gather", "scatter", "all_to_all",
       "send_recv", "send_recv_any")
SHIFTS = ("send_recv", "send_recv_any")  # each rank's buffer to the next rank
SETUP_TIMEOUT = 120.0  # seconds for a group to start, rendezvous and (pccl) admit everyone
PATTERN = 256  # period of the verification pattern, in elements


# --- buffers and verification data ----------------------------------------------------------

def layout(op: str, n_bytes: int, world: int) -> tuple[int, int]:
    """(block, total) elements of an op of `n_bytes`: a broadcast's buffer is one block; an
    all-gather's output / a reduce-scatter's input is `world` blocks (rounded down so that
    every peer's block is the same whole number of float32)."""
    total = n_bytes // 4
    if op == "broadcast" or op in SHIFTS:
        return total, total
    block = total // world
    return block, block * world


def _row(block_index: int) -> np.ndarray:
    """The period of block `block_index`'s pattern: integers 1..251, distinct per block."""
    i = np.arange(PATTERN, dtype=np.int64)
    return ((i * 37 + block_index * 101) % 251 + 1).astype(np.float32)


def _tiles(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    full = (x.size // PATTERN) * PATTERN
    return x[:full].reshape(-1, PATTERN), x[full:]


def coef(rank: int, salt: int) -> int:
    return rank + 1 + salt


def fill_block(x: np.ndarray, block_index: int, c: int) -> None:
    """x = pattern of `block_index` times `c` (integer-valued: sums of them are exact)."""
    row = _row(block_index) * np.float32(c)
    body, tail = _tiles(x)
    body[:] = row
    tail[:] = row[: tail.size]


def check_block(x: np.ndarray, block_index: int, c: int) -> bool:
    row = _row(block_index) * np.float32(c)
    body, tail = _tiles(x)
    return bool((body == row).all() and (tail == row[: tail.size]).all())


@dataclass
class Case:
    """One op's buffers on one peer, with its inputs and the expected results."""

    op: str
    rank: int
    world: int
    block: int
    send: np.ndarray
    recv: np.ndarray  # the same array as send for a broadcast (in place)

    @classmethod
    def make(cls, op: str, n_bytes: int, rank: int, world: int) -> Case:
        block, total = layout(op, n_bytes, world)
        if op == "broadcast":
            buf = np.empty(total, np.float32)
            return cls(op, rank, world, block, buf, buf)
        if op in ("all_gather", "gather"):
            return cls(op, rank, world, block, np.empty(block, np.float32),
                       np.empty(total, np.float32))
        if op == "all_to_all" or op in SHIFTS:
            return cls(op, rank, world, block, np.empty(total, np.float32),
                       np.empty(total, np.float32))
        return cls(op, rank, world, block, np.empty(total, np.float32),
                   np.empty(block, np.float32))

    def blocks(self, x: np.ndarray) -> list[np.ndarray]:
        return [x[k * self.block:(k + 1) * self.block] for k in range(self.world)]

    def fill(self, salt: int) -> None:
        """This rank's inputs (they differ per rank); recv poisoned with -1."""
        c = coef(self.rank, salt)
        if self.op == "broadcast":  # rank 0 is the root; the others' data must be replaced
            fill_block(self.send, 0, c)
            return
        if self.op in ("all_gather", "gather") or self.op in SHIFTS:
            fill_block(self.send, self.rank, c)
        elif self.op == "scatter":  # rank 0 is the root: block k for rank k
            for k, b in enumerate(self.blocks(self.send)):
                fill_block(b, k, coef(0, salt))
        else:
            for k, b in enumerate(self.blocks(self.send)):
                fill_block(b, k, c)
        self.recv.fill(-1.0)

    def check(self, salt: int) -> bool:
        """Whether recv holds exactly what the op must give this rank for fill(salt)."""
        if self.op == "broadcast":
            return check_block(self.recv, 0, coef(0, salt))
        if self.op == "all_gather" or (self.op == "gather" and self.rank == 0):
            return all(check_block(b, k, coef(k, salt))
                       for k, b in enumerate(self.blocks(self.recv)))
        if self.op == "gather":  # not the root: nothing to receive
            return True
        if self.op in SHIFTS:  # the previous rank's buffer
            previous = (self.rank - 1) % self.world
            return check_block(self.recv, previous, coef(previous, salt))
        if self.op == "scatter":
            return check_block(self.recv, self.rank, coef(0, salt))
        if self.op == "all_to_all":  # block k came from rank k: its block for this rank
            return all(check_block(b, self.rank, coef(k, salt))
                       for k, b in enumerate(self.blocks(self.recv)))
        total = sum(coef(k, salt) for k in range(self.world))
        return check_block(self.recv, self.rank, total)


# --- one measurement, common to both backends (runs inside each peer) ----------------------

def measure(op: Callable[[], int | None], tiny: Callable[[], None], case: Case, iters: int,
            n_warm: int) -> dict[str, Any]:
    """Verified warm-up, barrier, timed loop, check of the last timed result, a final
    verified call. `op` returns the bytes this peer sent (pccl) or None (Gloo)."""
    case.fill(salt=0)
    op()
    ok = {"warmup": case.check(salt=0)}
    for _ in range(n_warm - 1):
        op()  # same inputs: the result stays what was checked
    tiny()  # barrier: everyone has finished setting up its buffers
    times: list[float] = []
    tx: int | None = None
    t0 = time.perf_counter()
    for _ in range(iters):
        ts = time.perf_counter()
        sent = op()
        times.append(time.perf_counter() - ts)
        if sent is not None:
            tx = (tx or 0) + sent
    wall = time.perf_counter() - t0
    ok["timed"] = case.check(salt=0)
    case.fill(salt=3)
    op()
    ok["final"] = case.check(salt=3)
    return {"rank": case.rank, "wall": wall, "median": statistics.median(times),
            "ok": all(ok.values()), "checks": ok,
            "tx_per_op": None if tx is None else tx / iters}


# --- backends (run inside the peers) --------------------------------------------------------

class PcclCollPeer:
    def __init__(self, rank: int, world: int, setup: dict[str, Any]):
        import pccl

        self._pccl = pccl
        self.world = world
        self.comm = pccl.Communicator(setup["address"], 0, setup.get("pool_size", 0))
        self.restore = bool(setup.get("restore", False))
        self.comm.connect(timeout=60)
        self.comm.wait_for_world(world, timeout=60)  # are_peers_pending / update_topology
        self.ring = self.comm.ring_order()
        self.ids = sorted(self.ring)
        if len(self.ids) != world:
            raise RuntimeError(f"ring has {len(self.ids)} peers, expected {world}")
        self.rank = self.ids.index(self.comm.peer_id)  # block index = rank in peer-id order
        self.root = self.ids[0]
        self._one = np.zeros(1, np.float32)
        self.info = {"isa": pccl.kernels.active_isa(), "ring": self.ring,
                     "peer_id": self.comm.peer_id}

    def theory_tx(self, op: str, case: Case) -> int:
        """Bytes pccl's algorithm makes this peer send per op."""
        if op == "broadcast":  # everyone forwards, except the root's predecessor
            pred = self.ring[(self.ring.index(self.root) - 1) % self.world]
            return 0 if self.comm.peer_id == pred else case.recv.nbytes
        n, block = self.world, case.block * 4
        is_root = self.comm.peer_id == self.root
        # Gather, scatter and all-to-all send each block once, straight to its destination
        # (the pair links; with 2 peers the ring is that link).
        if op == "gather":  # its own block, to the root
            return 0 if is_root else block
        if op == "scatter":  # the root: every other peer's block
            return (n - 1) * block if is_root else 0
        if op == "all_to_all":  # its block for every other peer
            return (n - 1) * block
        if op in SHIFTS:  # its buffer, once, straight to the next rank
            return case.send.nbytes
        return (n - 1) * block

    def run(self, op: str, n_bytes: int, iters: int) -> dict[str, Any]:
        case = Case.make(op, n_bytes, self.rank, self.world)
        timeout = op_timeout(n_bytes, iters)
        comm, SUM = self.comm, self._pccl.ReduceOp.SUM
        root = comm.peer_id == self.root
        calls: dict[str, Callable[[], Any]] = {
            "broadcast": lambda: comm.broadcast(case.recv, root=self.root, timeout=timeout,
                                                restore_input=self.restore),
            "all_gather": lambda: comm.all_gather(case.send, case.recv, timeout=timeout),
            "reduce_scatter": lambda: comm.reduce_scatter(case.send, case.recv, op=SUM,
                                                          timeout=timeout),
            "gather": lambda: comm.gather(case.send, case.recv if root else None,
                                          root=self.root, timeout=timeout),
            "scatter": lambda: comm.scatter(case.send if root else None, case.recv,
                                            root=self.root, timeout=timeout),
            "all_to_all": lambda: comm.all_to_all(case.send, case.recv, timeout=timeout),
            "send_recv": lambda: self._shift(case, timeout),
            "send_recv_any": lambda: self._shift(case, timeout, any_source=True),
        }
        call = calls[op]

        def run_op() -> int:
            return int(call().tx_bytes)

        def tiny() -> None:
            comm.all_reduce(self._one, self._one, op=SUM, timeout=timeout)

        result = measure(run_op, tiny, case, iters, warmups(n_bytes))
        result["theory_tx"] = self.theory_tx(op, case)
        result["peer_id"] = comm.peer_id
        return result

    def _shift(self, case: Case, timeout: float, any_source: bool = False) -> Any:
        """Sends to the next rank and receives from the previous one at once (from any
        source: only the previous rank sends to this one); returns the send's info (its
        tx_bytes are this peer's)."""
        n = self.world
        sending = self.comm.send_async(case.send, self.ids[(self.rank + 1) % n], timeout=timeout)
        receiving = self.comm.recv_async(
            case.recv, None if any_source else self.ids[(self.rank - 1) % n], timeout=timeout)
        receiving.result()
        return sending.result()

    def close(self) -> None:
        self.comm.close()


class GlooCollPeer:
    def __init__(self, rank: int, world: int, setup: dict[str, Any]):
        warnings.filterwarnings("ignore", category=FutureWarning)  # *_tensor deprecations
        self.torch, self.dist = start_gloo(rank, world, setup)
        self.rank, self.world = rank, world
        self._one = self.torch.zeros(1, dtype=self.torch.float32)
        self.rs_method = self._probe_reduce_scatter()
        self.info = {"torch": self.torch.__version__, "reduce_scatter": self.rs_method}

    def _probe_reduce_scatter(self) -> str:
        """The first reduce-scatter form this Gloo runs (checked on a tiny exact input):
        'reduce_scatter_tensor', 'reduce_scatter' (a list of inputs), or 'all_reduce+slice'.
        An unsupported form fails on every rank alike, before any byte is sent."""
        torch, dist, n = self.torch, self.dist, self.world
        inp = torch.arange(n, dtype=torch.float32) + 1
        want = float((self.rank + 1) * n)
        forms: list[tuple[str, Callable[[Any], None]]] = [
            ("reduce_scatter_tensor", lambda out: dist.reduce_scatter_tensor(out, inp)),
            ("reduce_scatter", lambda out: dist.reduce_scatter(out, list(inp.chunk(n)))),
        ]
        for name, form in forms:
            out = torch.zeros(1, dtype=torch.float32)
            try:
                form(out)
            except (RuntimeError, NotImplementedError, ValueError):
                continue
            if float(out[0]) != want:
                raise RuntimeError(f"gloo {name} probe: got {float(out[0])}, expected {want}")
            return name
        return "all_reduce+slice"

    def _reduce_scatter(self, send: Any, recv: Any) -> Callable[[], None]:
        dist, n, rank = self.dist, self.world, self.rank
        if self.rs_method == "reduce_scatter_tensor":
            return lambda: dist.reduce_scatter_tensor(recv, send)
        if self.rs_method == "reduce_scatter":
            chunks = list(send.chunk(n))
            return lambda: dist.reduce_scatter(recv, chunks)

        def emulated() -> None:  # what users do without a reduce-scatter: all of it, slice
            work = send.clone()
            dist.all_reduce(work)
            recv.copy_(work.chunk(n)[rank])
        return emulated

    def run(self, op: str, n_bytes: int, iters: int) -> dict[str, Any]:
        case = Case.make(op, n_bytes, self.rank, self.world)
        send = self.torch.from_numpy(case.send)  # share memory with the numpy buffers
        recv = self.torch.from_numpy(case.recv)
        dist = self.dist
        if op == "broadcast":
            call: Callable[[], Any] = lambda: dist.broadcast(recv, src=0)
        elif op == "all_gather":
            call = lambda: dist.all_gather_into_tensor(recv, send)
        elif op == "gather":
            blocks = list(recv.chunk(self.world)) if self.rank == 0 else None
            call = lambda: dist.gather(send, gather_list=blocks, dst=0)
        elif op == "scatter":
            pieces = list(send.chunk(self.world)) if self.rank == 0 else None
            call = lambda: dist.scatter(recv, scatter_list=pieces, src=0)
        elif op == "all_to_all":
            call = lambda: dist.all_to_all_single(recv, send)
        elif op in SHIFTS:
            call = lambda: self._shift(send, recv, any_source=op == "send_recv_any")
        else:
            call = self._reduce_scatter(send, recv)

        def run_op() -> None:
            call()

        def tiny() -> None:
            dist.all_reduce(self._one)

        return measure(run_op, tiny, case, iters, warmups(n_bytes))

    def _shift(self, send: Any, recv: Any, any_source: bool = False) -> None:
        n = self.world
        works = [self.dist.isend(send, (self.rank + 1) % n),
                 self.dist.irecv(recv, None if any_source else (self.rank - 1) % n)]
        for work in works:
            work.wait()

    def close(self) -> None:
        self.dist.destroy_process_group()


PEERS: dict[str, Any] = {"pccl": PcclCollPeer, "gloo": GlooCollPeer}


def _peer_main(conn: Connection, backend: str, rank: int, world: int,
               setup: dict[str, Any]) -> None:
    """A benchmark peer: sets up its backend, then runs ("run", op, bytes, iters) commands."""
    peer = None
    try:
        peer = PEERS[backend](rank, world, setup)
        conn.send(("ready", peer.info))
        while True:
            job = conn.recv()
            if job is None:
                break
            _, op, n_bytes, iters = job
            conn.send(("result", peer.run(op, n_bytes, iters)))
    except EOFError:  # the parent is gone
        return
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        report_error(conn, e)
        return
    peer.close()


# --- the parent: groups of peers -----------------------------------------------------------

class CollGroup:
    """N peer processes of one backend, kept for every op and size of a world size."""

    def __init__(self, backend: str, world: int, setup: dict[str, Any]):
        self.backend, self.world = backend, world
        self.conns, self.procs = spawn_ranks(_peer_main, backend, world, setup)
        try:
            replies = self._gather("ready", SETUP_TIMEOUT)
        except BaseException:
            self.close(graceful=False)
            raise
        self.info: dict[str, Any] = replies[0][1]
        self.peer_info = [r[1] for r in replies]

    def _gather(self, kind: str, timeout: float) -> list[tuple[Any, ...]]:
        return gather(self.conns, self.procs, kind, timeout, f"{self.backend} world {self.world}",
                      [f"process {r}" for r in range(self.world)])

    def run(self, op: str, n_bytes: int, iters: int) -> list[dict[str, Any]]:
        """One measurement; every peer's result, in process order."""
        for conn in self.conns:
            conn.send(("run", op, n_bytes, iters))
        return [r[1] for r in self._gather("result", op_timeout(n_bytes, iters))]

    def close(self, *, graceful: bool) -> None:
        stop_workers(self.conns, self.procs, graceful=graceful)
