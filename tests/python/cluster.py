"""A real pccl run for tests: a master and N peer processes that execute test functions.

Each peer is a spawned process with its own Communicator. Once every peer is admitted,
the test sends it work: a module-level function `fn(comm, index, *args)` that runs in every
peer at once; `Cluster.run` returns each peer's return value (or raises the first peer
exception, with its type and message). Processes are reused across calls, so a test module
pays for process start-up once. Every wait has a deadline.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import pccl

_ctx = mp.get_context("spawn")


class PeerError(Exception):
    """A test function raised in a peer: carries the peer's exception type name."""

    def __init__(self, index: int, type_name: str, message: str, trace: str):
        super().__init__(f"peer {index}: {type_name}: {message}\n{trace}")
        self.index = index
        self.type_name = type_name
        self.message = message


def wait_for_world(comm: pccl.Communicator, world: int, deadline: float) -> None:
    """Admits pending peers until the run has `world` peers (polls the master)."""
    while comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) < world:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the run did not reach {world} peers in time")
        if comm.are_peers_pending():
            comm.update_topology()
        else:
            time.sleep(0.005)  # polling interval while other processes start


def _peer_main(conn: Connection, address: str, index: int, world: int, pool_size: int,
               peer_group: int, wait_world: bool) -> None:
    try:
        comm = pccl.Communicator(address, peer_group, pool_size)
        comm.connect(timeout=60)
        if wait_world:
            wait_for_world(comm, world, time.monotonic() + 60)
        conn.send(("ready", os.getpid()))
    except BaseException as e:  # noqa: BLE001 - reported to the test
        conn.send(("error", type(e).__name__, str(e), traceback.format_exc()))
        return
    while True:
        job = conn.recv()
        if job is None:
            break
        fn, args = job
        try:
            conn.send(("ok", fn(comm, index, *args)))
        except BaseException as e:  # noqa: BLE001 - reported to the test
            conn.send(("error", type(e).__name__, str(e), traceback.format_exc()))
    comm.close()


class Cluster:
    """A master plus `world` peer processes, all admitted before the constructor returns."""

    def __init__(self, world: int, *, pool_size: int = 2, peer_groups: list[int] | None = None,
                 master_address: str = "127.0.0.1:0", connect_host: str = "127.0.0.1"):
        self.master = pccl.MasterNode(master_address)
        self.master.run()
        self.address = f"{connect_host}:{self.master.port}"
        self.world = world
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        self.pids: list[int] = []
        groups = peer_groups or [0] * world
        try:
            for index in range(world):
                self.add_peer(index, pool_size, groups[index], wait_world=True)
            for index in range(world):
                self._expect_ready(index, timeout=90)
        except BaseException:
            self.close()
            raise

    def add_peer(self, index: int, pool_size: int, peer_group: int, *, wait_world: bool) -> int:
        parent, child = _ctx.Pipe()
        proc = _ctx.Process(target=_peer_main, daemon=True,
                            args=(child, self.address, index, self.world, pool_size, peer_group,
                                  wait_world))
        proc.start()
        self.conns.append(parent)
        self.procs.append(proc)
        self.pids.append(proc.pid or 0)
        return len(self.conns) - 1

    def _expect_ready(self, index: int, timeout: float) -> None:
        reply = self._recv(index, timeout)
        if reply[0] != "ready":
            raise PeerError(index, *reply[1:])

    def _recv(self, index: int, timeout: float) -> tuple[Any, ...]:
        conn = self.conns[index]
        if not conn.poll(timeout):
            raise TimeoutError(f"peer {index} did not answer within {timeout} s")
        return conn.recv()

    def start(self, fn: Callable[..., Any], *args: Any, peers: list[int] | None = None) -> list[int]:
        """Sends `fn(comm, index, *args)` to `peers` (default all) without waiting."""
        targets = list(range(len(self.conns))) if peers is None else peers
        for index in targets:
            self.conns[index].send((fn, args))
        return targets

    def collect(self, targets: list[int], timeout: float = 60) -> list[Any]:
        """Results of a start() in peer order; raises the first PeerError."""
        replies = [self._recv(index, timeout) for index in targets]
        for index, reply in zip(targets, replies):
            if reply[0] == "error":
                raise PeerError(index, *reply[1:])
        return [reply[1] for reply in replies]

    def outcomes(self, targets: list[int], timeout: float = 60) -> list[tuple[Any, ...]]:
        """Raw replies of a start(): ("ok", value) or ("error", type, message, trace)."""
        return [self._recv(index, timeout) for index in targets]

    def run(self, fn: Callable[..., Any], *args: Any, peers: list[int] | None = None,
            timeout: float = 60) -> list[Any]:
        return self.collect(self.start(fn, *args, peers=peers), timeout)

    def kill(self, index: int, sig: int = signal.SIGKILL) -> None:
        os.kill(self.pids[index], sig)

    def close(self) -> None:
        for conn, proc in zip(self.conns, self.procs):
            try:
                if proc.is_alive():
                    conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        self.master.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
