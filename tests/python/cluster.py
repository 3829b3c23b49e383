"""A real pccl run for tests: a master and N peer processes that execute test functions.

Each peer is a spawned process with its own Communicator. Once every peer is admitted,
the test sends it work: a module-level function `fn(comm, index, *args)` that runs in every
peer at once; `Cluster.run` returns each peer's return value (or raises the first peer
exception, with its type and message). Processes are reused across calls, so a test module
pays for process start-up once. Every wait has a deadline.

Fault tests also get: a master with short timeouts (`heartbeat_timeout=`), or one in its own
process that can be killed and started again on its address (`master_process=True`,
`kill_master()`, `restart_master()`); an event queue
(`Cluster.events`) to which test functions in the peers post messages with `notify()`
while they run, e.g. "I am about to start the all-reduce"; and signals to single peers
(`kill(index, sig)`). `secret=` and `transport=` go to the master and every peer
(docs/security.md).

Peers and the master can live elsewhere than on loopback (the WAN lab, bench/wan/lab.py):
`peer_prelude(index)` runs first in each peer process (e.g. to enter a network namespace),
and `master_prefix` is prepended to the master process's command line (e.g.
["ip", "netns", "exec", NS]); `connect_host` then names the master's address.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import queue
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import pccl

_ctx = mp.get_context("spawn")
_events: Connection | None = None  # in a peer process: its pipe into Cluster.events


def status_kib(field: str, pid: int | str = "self") -> int:
    """A memory field of /proc/<pid>/status (VmRSS, VmHWM, ...) in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def notify(*message: Any) -> None:
    """Posts `message` (a tuple) to the test's Cluster.events; call it from peer functions."""
    if _events is None:
        raise RuntimeError("notify() only works inside a Cluster peer process")
    _events.send(message)


class Events:
    """What peers notify(), in arrival order. One pipe per peer rather than one shared
    queue: a peer SIGKILLed while writing must not block the others (a multiprocessing
    Queue shares a lock between writers)."""

    def __init__(self) -> None:
        self._readers: list[Connection] = []

    def add(self, reader: Connection) -> None:
        self._readers.append(reader)

    def get(self, timeout: float) -> tuple[Any, ...]:
        """The next message; raises queue.Empty after `timeout` seconds without one."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            ready = mp_connection.wait(self._readers, timeout=max(0.0, left))
            for reader in ready:
                try:
                    return reader.recv()
                except (EOFError, OSError):  # the peer is gone
                    self._readers.remove(reader)
                    reader.close()
            if not ready and left <= 0:
                raise queue.Empty

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
        self._readers.clear()


class PeerError(Exception):
    """A test function raised in a peer: carries the peer's exception type name."""

    def __init__(self, index: int, type_name: str, message: str, trace: str):
        super().__init__(f"peer {index}: {type_name}: {message}\n{trace}")
        self.index = index
        self.type_name = type_name
        self.message = message


def wait_for_world(comm: pccl.Communicator, world: int, deadline: float) -> None:
    """Admits pending peers until the run has `world` peers, by `deadline` (monotonic)."""
    comm.wait_for_world(world, timeout=max(0.001, deadline - time.monotonic()))


def _peer_main(conn: Connection, address: str, index: int, world: int, pool_size: int,
               peer_group: int, wait_world: bool, events: Connection | None = None,
               prelude: Callable[[int], Any] | None = None, rejoin: bool = False,
               auth: tuple[str | None, str | None] = (None, None),
               options: dict[str, Any] | None = None) -> None:
    global _events
    _events = events
    try:
        if prelude is not None:
            prelude(index)
        while True:
            comm = pccl.Communicator(address, peer_group, pool_size, secret=auth[0],
                                     transport=auth[1], **(options or {}))
            try:
                comm.connect(timeout=60)
                break
            except pccl.KickedError:
                # Stopped by a fault test while it waited for admission, and kicked: a
                # peer that means to join connects again (rejoin=True), as users do.
                comm.close()
                if not rejoin:
                    raise
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
                 master_address: str = "127.0.0.1:0", connect_host: str = "127.0.0.1",
                 heartbeat_timeout: float = 3.0, master_process: bool = False,
                 peer_prelude: Callable[[int], Any] | None = None,
                 master_prefix: list[str] | None = None, secret: str | None = None,
                 transport: str | None = None,
                 peer_options: list[dict[str, Any]] | None = None,
                 master_options: dict[str, Any] | None = None,
                 master_args: list[str] | None = None):
        self.master: pccl.MasterNode | None = None
        self.master_proc: subprocess.Popen[str] | None = None
        self.world = world
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        self.pids: list[int] = []
        self.events = Events()
        self.peer_prelude = peer_prelude
        self.auth = (secret, transport)
        if master_process or master_prefix:
            port = self._start_master_process(master_address, heartbeat_timeout,
                                              master_prefix or [], master_args or [])
            self._master_launch = (master_address.rsplit(":", 1)[0] + f":{port}",
                                   heartbeat_timeout, master_prefix or [], master_args or [])
        else:
            self.master = pccl.MasterNode(master_address, heartbeat_timeout=heartbeat_timeout,
                                          daemon=True, secret=secret, transport=transport,
                                          **(master_options or {}))
            self.master.run()
            port = self.master.port
        self.address = f"{connect_host}:{port}"
        groups = peer_groups or [0] * world
        try:
            for index in range(world):
                self.add_peer(index, pool_size, groups[index], wait_world=True,
                              options=peer_options[index] if peer_options else None)
            for index in range(world):
                self.expect_ready(index, timeout=90)
        except BaseException:
            self.close()
            raise

    def add_peer(self, index: int, pool_size: int, peer_group: int, *, wait_world: bool,
                 rejoin: bool = False, options: dict[str, Any] | None = None) -> int:
        """Starts peer `index`; `rejoin`: it connects again if kicked while connecting;
        `options`: more keyword arguments for its Communicator (listen_address, ...)."""
        parent, child = _ctx.Pipe()
        events_reader, events_writer = _ctx.Pipe(duplex=False)
        proc = _ctx.Process(target=_peer_main, daemon=True,
                            args=(child, self.address, index, self.world, pool_size, peer_group,
                                  wait_world, events_writer, self.peer_prelude, rejoin,
                                  self.auth, options))
        proc.start()
        child.close()
        events_writer.close()
        self.events.add(events_reader)
        self.conns.append(parent)
        self.procs.append(proc)
        self.pids.append(proc.pid or 0)
        return len(self.conns) - 1

    def _start_master_process(self, listen_address: str, heartbeat_timeout: float,
                              prefix: list[str], extra: list[str]) -> int:
        """Runs `python -m pccl.master` (after `prefix`, with `extra` arguments) and returns
        the port it printed."""
        env = dict(os.environ)
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(pccl.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        secret, transport = self.auth
        if secret is not None:
            env["PCCL_RUN_SECRET"] = secret
        if transport is not None:
            env["PCCL_TRANSPORT"] = transport
        self.master_proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "pccl.master", "--listen-address", listen_address,
             "--heartbeat-timeout", str(heartbeat_timeout), *extra],
            stdout=subprocess.PIPE, text=True, env=env)
        assert self.master_proc.stdout is not None
        # The master prints "pccl master listening on HOST:PORT" once bound; readline ends
        # at EOF if it dies first.
        line = self.master_proc.stdout.readline()
        if "listening on" not in line:
            self.master_proc.kill()
            self.master_proc.wait(timeout=10)
            raise RuntimeError(f"the master process did not start: {line!r}")
        return int(line.rsplit(":", 1)[1])

    def restart_master(self) -> None:
        """Starts the master process again on the address it had, once the old one is dead
        (kill_master(SIGKILL) first)."""
        if self.master_proc is None:
            raise RuntimeError("restart_master() needs Cluster(master_process=True)")
        self.master_proc.wait(timeout=10)
        if self.master_proc.stdout is not None:
            self.master_proc.stdout.close()
        self._start_master_process(*self._master_launch)

    def kill_master(self, sig: int = signal.SIGKILL) -> None:
        """Signals the master process (master_process=True only)."""
        if self.master_proc is None:
            raise RuntimeError("kill_master() needs Cluster(master_process=True)")
        self.master_proc.send_signal(sig)

    def expect_ready(self, index: int, timeout: float) -> None:
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

    def kill(self, index: int, sig: int = signal.SIGKILL) -> bool:
        """Sends `sig` to peer `index`; False if the process had already exited."""
        try:
            os.kill(self.pids[index], sig)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        for conn, proc in zip(self.conns, self.procs):
            try:
                if proc.is_alive():
                    os.kill(proc.pid, signal.SIGCONT)  # a test may have stopped it
                    conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        if self.master is not None:
            self.master.close()
        if self.master_proc is not None:
            if self.master_proc.poll() is None:
                self.master_proc.terminate()
                try:
                    self.master_proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.master_proc.kill()
                    self.master_proc.wait(timeout=10)
            if self.master_proc.stdout is not None:
                self.master_proc.stdout.close()
        self.events.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
