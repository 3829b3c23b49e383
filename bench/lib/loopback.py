"""fp32 SUM all-reduce backends on loopback, each a group of spawned peer processes
(used by bench.all_reduce).

  pccl     N Communicator peers of a MasterNode the parent runs; comm.all_reduce(x, x, op=SUM).
  pccl-auth       the same in a run with a secret (every connection authenticated).
  pccl-encrypted  the same with transport="encrypted" (every frame sealed, AES-256-GCM).
  pccl-exact      the same with mode=ReduceMode.EXACT (fixed point mod p;
                  csrc/pccl/comm/exact_allreduce.cc).
  pccl-private    the same with mode=ReduceMode.PRIVATE (EXACT plus pairwise masks).
  pccl-verified   the same with mode=ReduceMode.VERIFIED (EXACT plus linear hashes).
  pccl-norestore  the same with restore_input=False (no copy to give a failed call's input
                  back; for callers that recompute it).
  pccl-uint8      the same quantized: QuantizationOptions(UINT8, MIN_MAX) (lossy: not
                  verified; the zeros of the timed loop still are).
  gloo     torch.distributed, backend "gloo", tcp://127.0.0.1 rendezvous; dist.all_reduce(x).
  ceiling  N processes in a ring of plain TCP sockets; per op each one streams the bytes a
           ring all-reduce puts on one link, 2(n-1)/n x size, to its successor while it
           receives as many from its predecessor. No reduction, no framing: its busbw is
           the most this machine's loopback allows (CPU-bound on small machines).

`Group(backend, world, setup)` starts and sets up the peers; `Group.run(bytes, iters)`
makes every peer run `measure`: verified warm-up calls, a tiny all-reduce as a barrier,
`iters` timed in-place all-reduces of zeros, a zero check and one more verified call.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from bench.lib.common import bus_factor
from bench.lib.data import check_sum, fill_input
from bench.lib.procs import gather, report_error, spawn_ranks, stop_workers

SETUP_TIMEOUT = 120.0  # seconds for a group to start, rendezvous and (pccl) admit everyone


def warmups(n_bytes: int) -> int:
    return 5 if n_bytes <= (1 << 20) else 1


def op_timeout(n_bytes: int, iters: int) -> float:
    """Deadline of one measurement: generous (assumes only 20 MB/s of bus traffic)."""
    ops = iters + warmups(n_bytes) + 3
    return 60.0 + ops * n_bytes * 2 / 20e6


# --- one measurement, common to all backends (runs inside each peer) ----------------------

def measure(op: Callable[[], None], tiny: Callable[[], None], x: np.ndarray, rank: int,
            world: int, iters: int, n_warm: int, verify: bool) -> dict[str, Any]:
    """Verified warm-up, barrier, timed loop on zeros, zero check, final verified call."""
    ok = True
    if verify:
        fill_input(x, rank, salt=0)
        op()
        ok &= check_sum(x, world, salt=0)
    for _ in range(n_warm - 1 if verify else n_warm):
        x.fill(0.0)
        op()
    x.fill(0.0)
    tiny()  # barrier: everyone has finished setting up its buffer
    times = []
    c0 = time.process_time()
    t0 = time.perf_counter()
    for _ in range(iters):
        ts = time.perf_counter()
        op()
        times.append(time.perf_counter() - ts)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    if verify:
        ok &= not np.any(x)  # sums of zeros stay zero: catches stray bytes
        fill_input(x, rank, salt=3)
        op()
        ok &= check_sum(x, world, salt=3)
    return {"wall": wall, "cpu": cpu, "median": statistics.median(times), "ok": ok}


# --- backends (run inside the peers) --------------------------------------------------------

def start_gloo(rank: int, world: int, setup: dict[str, Any]) -> tuple[Any, Any]:
    """Joins this rank to a Gloo group over tcp://127.0.0.1:setup["port"]; returns the
    torch and torch.distributed modules (imported here: only Gloo ranks need them)."""
    import datetime

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{setup['port']}",
                            rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    return torch, dist


class PcclPeer:
    def __init__(self, rank: int, world: int, setup: dict[str, Any]):
        import pccl

        self._pccl = pccl
        self.rank, self.world = rank, world
        self.comm = pccl.Communicator(setup["address"], 0, setup["pool_size"],
                                      secret=setup.get("secret"),
                                      transport=setup.get("transport"))
        self.comm.connect(timeout=60)
        self.comm.wait_for_world(world, timeout=60)
        self._one = np.zeros(1, np.float32)
        self.info = {"isa": pccl.kernels.active_isa()}
        variant = setup.get("variant", "pccl")
        self.options: dict[str, Any] = {}
        if variant == "pccl-exact":
            self.options["mode"] = pccl.ReduceMode.EXACT
        elif variant == "pccl-private":
            self.options["mode"] = pccl.ReduceMode.PRIVATE
        elif variant == "pccl-verified":
            self.options["mode"] = pccl.ReduceMode.VERIFIED
        elif variant == "pccl-norestore":
            self.options["restore_input"] = False
        elif variant == "pccl-uint8":
            self.options["quantization_options"] = pccl.QuantizationOptions(
                pccl.DataType.UINT8, pccl.QuantizationAlgorithm.MIN_MAX)
        self.verify = variant != "pccl-uint8"

    def run(self, n_bytes: int, iters: int) -> dict[str, Any]:
        x = np.empty(n_bytes // 4, np.float32)
        SUM = self._pccl.ReduceOp.SUM
        timeout = op_timeout(n_bytes, iters)

        def op() -> None:
            self.comm.all_reduce(x, x, op=SUM, timeout=timeout, **self.options)

        def tiny() -> None:
            self.comm.all_reduce(self._one, self._one, op=SUM, timeout=timeout)

        return measure(op, tiny, x, self.rank, self.world, iters, warmups(n_bytes),
                       self.verify)

    def close(self) -> None:
        self.comm.close()


class GlooPeer:
    def __init__(self, rank: int, world: int, setup: dict[str, Any]):
        self.torch, self.dist = start_gloo(rank, world, setup)
        self.rank, self.world = rank, world
        self._one = self.torch.zeros(1, dtype=self.torch.float32)
        self.info = {"torch": self.torch.__version__}

    def run(self, n_bytes: int, iters: int) -> dict[str, Any]:
        x = np.empty(n_bytes // 4, np.float32)
        t = self.torch.from_numpy(x)  # shares memory with x
        dist = self.dist

        def op() -> None:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)

        def tiny() -> None:
            dist.all_reduce(self._one, op=dist.ReduceOp.SUM)

        return measure(op, tiny, x, self.rank, self.world, iters, warmups(n_bytes), True)

    def close(self) -> None:
        self.dist.destroy_process_group()


class CeilingPeer:
    """One process of a plain TCP ring: a sender thread streams to the successor while the
    calling thread receives from the predecessor."""

    def __init__(self, rank: int, world: int, setup: dict[str, Any]):
        self.rank, self.world = rank, world
        ports: list[int] = setup["ports"]
        listener: socket.socket = setup["listener"]
        deadline = time.monotonic() + 60
        nxt = (rank + 1) % world
        while True:
            try:
                self.out = socket.create_connection(("127.0.0.1", ports[nxt]), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        listener.settimeout(60)
        self.inp, _ = listener.accept()
        listener.close()
        for s in (self.out, self.inp):
            s.settimeout(None)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._todo = threading.Semaphore(0)
        self._done = threading.Semaphore(0)
        self._job: tuple[memoryview, int] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._sender, daemon=True)
        self._thread.start()
        self.info: dict[str, Any] = {}

    def _sender(self) -> None:
        while True:
            self._todo.acquire()
            job = self._job
            if job is None:
                return
            buf, n = job
            try:
                while n > 0:
                    k = min(n, len(buf))
                    self.out.sendall(buf[:k])
                    n -= k
            except BaseException as e:  # noqa: BLE001 - re-raised by the receiving thread
                self._error = e
            self._done.release()

    def _stream(self, send: memoryview, recv: memoryview, n: int) -> None:
        self._job = (send, n)
        self._todo.release()
        left = n
        while left > 0:
            got = self.inp.recv_into(recv[: min(left, len(recv))])
            if got == 0:
                raise ConnectionError("ceiling ring: predecessor closed the connection")
            left -= got
        if not self._done.acquire(timeout=300):
            raise TimeoutError("ceiling ring: sender stuck")
        if self._error is not None:
            raise self._error

    def run(self, n_bytes: int, iters: int) -> dict[str, Any]:
        x = np.zeros(n_bytes, np.uint8)
        y = np.zeros(n_bytes, np.uint8)
        send, recv = memoryview(x), memoryview(y)
        link = round(n_bytes * bus_factor(self.world))
        one = memoryview(bytearray(4))

        def op() -> None:
            self._stream(send, recv, link)

        def tiny() -> None:
            self._stream(one, memoryview(bytearray(4)), 4)

        return measure(op, tiny, x.view(np.float32), self.rank, self.world, iters,
                       warmups(n_bytes), verify=False)

    def close(self) -> None:
        self._job = None
        self._todo.release()
        self._thread.join(timeout=5)
        self.out.close()
        self.inp.close()


PEERS = {"pccl": PcclPeer, "pccl-auth": PcclPeer, "pccl-encrypted": PcclPeer,
         "pccl-exact": PcclPeer, "pccl-private": PcclPeer, "pccl-verified": PcclPeer,
         "pccl-uint8": PcclPeer, "pccl-norestore": PcclPeer,
         "gloo": GlooPeer,
         "ceiling": CeilingPeer}
# The secret and transport of the pccl variants (the master and every peer take them).
PCCL_AUTH = {"pccl": (None, None),
             "pccl-auth": ("bench run secret: 32 bytes long", "plain"),
             "pccl-encrypted": ("bench run secret: 32 bytes long", "encrypted"),
             "pccl-exact": (None, None), "pccl-private": (None, None),
             "pccl-verified": (None, None),
             "pccl-uint8": (None, None), "pccl-norestore": (None, None)}


def _peer_main(conn: Connection, backend: str, rank: int, world: int,
               setup: dict[str, Any]) -> None:
    """A benchmark peer: sets up its backend, then runs ("run", bytes, iters) commands."""
    peer = None
    try:
        if backend == "ceiling":  # tell the parent our port, learn everyone's
            listener = socket.create_server(("127.0.0.1", 0), backlog=4)
            conn.send(("port", listener.getsockname()[1]))
            setup = dict(setup, ports=conn.recv(), listener=listener)
        peer = PEERS[backend](rank, world, setup)
        conn.send(("ready", peer.info))
        while True:
            job = conn.recv()
            if job is None:
                break
            _, n_bytes, iters = job
            conn.send(("result", peer.run(n_bytes, iters)))
    except EOFError:  # the parent is gone
        return
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        report_error(conn, e)
        return
    if peer is not None:
        peer.close()


# --- the parent: groups of peers -----------------------------------------------------------

class Group:
    """N peer processes of one backend."""

    def __init__(self, backend: str, world: int, setup: dict[str, Any]):
        self.backend, self.world = backend, world
        self.conns, self.procs = spawn_ranks(_peer_main, backend, world, setup)
        deadline = time.monotonic() + SETUP_TIMEOUT
        try:
            if backend == "ceiling":
                ports = [r[1] for r in self._gather("port", deadline - time.monotonic())]
                for conn in self.conns:
                    conn.send(ports)
            self.info = self._gather("ready", deadline - time.monotonic())[0][1]
        except BaseException:
            self.close(graceful=False)
            raise

    def _gather(self, kind: str, timeout: float) -> list[tuple[Any, ...]]:
        """One reply of `kind` from every peer, in rank order."""
        return gather(self.conns, self.procs, kind, timeout, f"{self.backend} world {self.world}",
                      [f"rank {r}" for r in range(self.world)])

    def run(self, n_bytes: int, iters: int) -> list[dict[str, Any]]:
        for conn in self.conns:
            conn.send(("run", n_bytes, iters))
        return [r[1] for r in self._gather("result", op_timeout(n_bytes, iters))]

    def close(self, *, graceful: bool) -> None:
        stop_workers(self.conns, self.procs, graceful=graceful)
