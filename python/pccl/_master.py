"""The pccl master: `MasterNode` (re-exported by pccl and pccl.master).

A run has one master. Peers connect to it to join; it decides who is in the ring, when
the topology changes, and the verdict of every collective. The master holds no tensors
and moves no bulk data, so one small process serves a whole run.

Example:
    >>> from pccl.master import MasterNode
    >>> with MasterNode("127.0.0.1:0") as master:  # port 0: any free port
    ...     print(master.port > 0)
    True

From a shell: ``pccl_master --listen-address 0.0.0.0:48148`` or ``python -m pccl.master``
(pccl/master.py). The class lives here, apart from that command, so that running the
command's module does not find it already imported by `import pccl`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from types import TracebackType
from typing import Any

from pccl import _core
from pccl._auth import check_secret, check_transport
from pccl._status import StatusServer
from pccl.errors import MasterUnavailableError

__all__ = ["DEFAULT_LISTEN_ADDRESS", "MasterNode", "RelayNode"]

DEFAULT_LISTEN_ADDRESS = "0.0.0.0:48148"


def _check_listen_address(listen_address: object) -> str:
    if not isinstance(listen_address, str):
        raise TypeError(
            f"listen_address must be a str 'host:port', got {type(listen_address).__name__}"
        )
    if listen_address.startswith("["):
        host, sep, port = listen_address[1:].partition("]:")
    else:
        host, sep, port = listen_address.rpartition(":")
        if ":" in host:
            raise ValueError(
                f"listen_address {listen_address!r}: put IPv6 literals in brackets, '[::1]:port'"
            )
    if not sep or not host:
        raise ValueError(f"listen_address must look like 'host:port', got {listen_address!r}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(
            f"listen_address {listen_address!r} has an invalid port {port!r} (0-65535)"
        )
    return listen_address


class MasterNode:
    """Serves a pccl run from a background thread.

    As in PCCL 1.0, `run()` returns at once and a running master keeps the process alive
    at interpreter exit until `interrupt()` or a signal (SIGINT, SIGTERM) stops it, so a
    script may end with `MasterNode(listen_address=...).run()`. Dropping the last reference
    does not stop it either. `with MasterNode(...)` and `close()` stop it.

    Args:
        listen_address: "host:port" to bind, e.g. "0.0.0.0:48148", "[::]:48148"; port 0
            binds any free port (see `port`).
        link_timeout: seconds a member may take to connect its ring links after a topology
            change before the master drops it.
        heartbeat_timeout: seconds without a heartbeat after which a peer (hung, stopped or
            unreachable) is kicked; the others' operations then fail and can be retried.
        daemon: True lets the process exit while the master serves (as a daemon thread
            does); for masters embedded in a larger program, e.g. the torch backend's.
        secret: the run secret (at least 16 bytes); every connection must prove it
            (docs/security.md). None reads PCCL_RUN_SECRET, then the file named by
            PCCL_RUN_SECRET_FILE; without any, anyone who reaches the master may join (it
            warns when it listens beyond loopback).
        transport: "plain" or "encrypted" (every frame of every connection sealed with
            AES-256-GCM or ChaCha20-Poly1305; needs a secret). None reads PCCL_TRANSPORT
            (default plain). Every process of a run must use the same one.
        relay_address: where the run's relay listens, for peers that cannot be dialled
            (behind a NAT or a firewall): None runs it on listen_address's host on a free
            port (`relay_port`), "off" runs none, "host:port" binds there (open that port
            on a firewalled host). Relayed bytes stay end-to-end authenticated (and
            encrypted in an encrypted run); docs/security.md.
        external_relay: "host:port" of a relay in another process (`pccl_relay`, or
            `pccl.RelayNode`), as peers dial it; the master then runs none of its own.
        relay_key: the key that relay was started with (bytes, at least 16): the master
            makes each peer's ticket for it. Needed with external_relay.
        http_address: "host:port" (port 0: any; see `http_port`) where the master serves
            /status (JSON, `status()`) and /metrics (Prometheus text) over HTTP; None: no
            HTTP (pccl/_status.py). Unauthenticated: bind it where only operators reach.
        state_file: a file where the master keeps what it knows of the run (members and
            ring order, epochs, shared-state revisions, measured bandwidths, counters),
            rewritten after every change. A master started again with the same file (say,
            after a crash) waits `resume_window` for those peers to resume before it admits
            anyone else. Without one, a restarted master rebuilds the run from the peers
            that resume (they reconnect on their own for PCCL_MASTER_RESUME_S, 60 s).
        resume_window: seconds a restarted master waits for the peers the resuming ones
            (or its state file) name, before it rebuilds the run from those back.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: an argument has a bad value.
    """

    def __init__(self, listen_address: str, *, link_timeout: float = 30.0,
                 heartbeat_timeout: float = 3.0, daemon: bool = False,
                 secret: str | bytes | None = None, transport: str | None = None,
                 relay_address: str | None = None, external_relay: str | None = None,
                 relay_key: bytes | None = None, http_address: str | None = None,
                 state_file: str | os.PathLike[str] | None = None,
                 resume_window: float = 5.0) -> None:
        self._server: _core.MasterServer | None = None
        self._http: StatusServer | None = None
        self._http_address = None if http_address is None else _check_listen_address(
            http_address)
        self._keeper: threading.Thread | None = None
        self._closed = False
        if not isinstance(daemon, bool):
            raise TypeError(f"daemon must be a bool, got {type(daemon).__name__}")
        self._daemon = daemon
        self._listen_address = _check_listen_address(listen_address)
        if isinstance(link_timeout, bool) or not isinstance(link_timeout, (int, float)):
            raise TypeError(
                f"link_timeout must be a number of seconds, got {type(link_timeout).__name__}"
            )
        if not 0 < link_timeout < 1e9:
            raise ValueError(f"link_timeout must be positive, got {link_timeout}")
        self._link_timeout_ms = max(1, int(link_timeout * 1000))
        if isinstance(heartbeat_timeout, bool) or not isinstance(heartbeat_timeout, (int, float)):
            raise TypeError("heartbeat_timeout must be a number of seconds, got "
                            f"{type(heartbeat_timeout).__name__}")
        if not 0.05 <= heartbeat_timeout < 1e9:
            raise ValueError(f"heartbeat_timeout must be at least 0.05 s, got {heartbeat_timeout}")
        self._heartbeat_timeout_ms = int(heartbeat_timeout * 1000)
        self._secret = check_secret(secret)
        self._transport = check_transport(transport)
        if relay_address is None or relay_address == "off":
            self._relay_address = relay_address or ""
        else:
            self._relay_address = _check_listen_address(relay_address)
        self._external_relay = ""
        self._relay_key = b""
        if external_relay is not None:
            self._external_relay = _check_listen_address(external_relay)
            if not isinstance(relay_key, bytes) or len(relay_key) < 16:
                raise ValueError("external_relay needs relay_key: the bytes (at least 16) "
                                 "the relay was started with")
            self._relay_key = relay_key
        elif relay_key is not None:
            raise ValueError("relay_key goes with external_relay")
        if state_file is not None and not isinstance(state_file, (str, os.PathLike)):
            raise TypeError(f"state_file must be a path, got {type(state_file).__name__}")
        self._state_file = "" if state_file is None else os.fspath(state_file)
        if isinstance(resume_window, bool) or not isinstance(resume_window, (int, float)):
            raise TypeError("resume_window must be a number of seconds, got "
                            f"{type(resume_window).__name__}")
        if not 0 <= resume_window < 1e9:
            raise ValueError(f"resume_window must be >= 0 seconds, got {resume_window}")
        self._resume_window_ms = int(resume_window * 1000)

    def run(self) -> None:
        """Starts serving in the background and returns at once (no-op if serving).

        Raises:
            ValueError: listen_address cannot be resolved.
            RuntimeError: the address cannot be bound, or the node was closed.
        """
        if self._closed:
            raise RuntimeError("MasterNode is closed")
        if self._server is not None:
            if self._server.running:
                return
            self._server.join()
            self._server = None
        try:
            self._server = _core.MasterServer.start(self._listen_address, self._link_timeout_ms,
                                                    self._heartbeat_timeout_ms, self._secret,
                                                    self._transport, self._relay_address,
                                                    self._external_relay, self._relay_key,
                                                    self._state_file, self._resume_window_ms)
        except MasterUnavailableError as e:  # bind/listen failed: not a reachability problem
            raise RuntimeError(str(e)) from e
        if self._http_address is not None and self._http is None:
            host, _, port = self._http_address.rpartition(":")
            try:
                self._http = StatusServer(host.strip("[]"), int(port), self.status)
            except OSError as e:
                self.close()
                raise RuntimeError(f"cannot serve HTTP on {self._http_address}: {e}") from e
        if not self._daemon:
            # A non-daemon thread that waits for the server keeps the interpreter from
            # exiting while it serves; it holds the server, not this node, so the node may
            # be garbage collected meanwhile.
            self._keeper = threading.Thread(target=self._server.join, daemon=False,
                                            name=f"pccl-master {self._server.address}")
            self._keeper.start()

    def interrupt(self) -> None:
        """Asks the server to stop; returns at once. `run()` may start it again."""
        if self._server is not None:
            self._server.interrupt()

    def join(self) -> None:
        """Waits until the server thread has stopped (after `interrupt()`)."""
        if self._server is not None:
            self._server.join()

    def close(self) -> None:
        """Stops the server and frees its port. Idempotent."""
        self._closed = True
        http, self._http = self._http, None
        if http is not None:
            http.close()
        server, self._server = self._server, None
        if server is not None:
            server.interrupt()
            server.join()

    @property
    def running(self) -> bool:
        """True while the server thread is serving."""
        return self._server is not None and bool(self._server.running)

    @property
    def port(self) -> int:
        """The bound port (the real one when the address asked for port 0)."""
        return int(self._require_server().port)

    @property
    def relay_port(self) -> int:
        """The relay's port on the master's host (0: relay_address="off")."""
        return int(self._require_server().relay_port)

    def relay_links(self) -> list[tuple[int, int, int, int, int]]:
        """What the relay forwarded, per ordered pair of peers: (from peer, to peer, bytes,
        connections open now, connections so far)."""
        return list(self._require_server().relay_links())

    def status(self) -> dict[str, Any]:
        """The run as the master sees it (refreshed within 50 ms of a change):

            epoch, epoch_cause: the topology epoch and why it started;
            peers: [{peer_id, host, port (where other peers dial it), peer_group, member
                (False: pending admission), reachable (the master's dial-back: True, False
                or None while unknown), rto_s, idle_s (since its last message),
                heartbeat_rtt_s (its latest heartbeat's round trip; 0: none yet)}], members
                in ring order, then pending peers;
            groups: [{peer_group, ring_epoch, ring (peer ids in order), links ([{from, to,
                bytes_per_second (last measured; 0: not yet)}]), operations_in_flight,
                state_revision (of the last shared-state sync; None: none yet)}];
            events: the latest 200 of [{time (Unix seconds), kind ("join", "resume",
                "epoch", "leave", "failed", "restart"), text}], oldest first;
            counters: {ops_succeeded, ops_failed, ops_failed_<Code>, bytes_sent, joins,
                resumes, departures, epochs, restarts, pending_queries (are_peers_pending()
                and wait_for_world() queries)};
            histograms: {"heartbeat_rtt", "member_op" (each member's time per collective):
                {buckets: [(upper bound in seconds, observations), ..., (None, beyond the
                last bound)], sum, count}}.
        """
        result: dict[str, Any] = self._require_server().status()
        return result

    @property
    def http_port(self) -> int:
        """The port /status and /metrics are served on (the real one for port 0)."""
        if self._http is None:
            raise RuntimeError("MasterNode serves no HTTP: pass http_address")
        return self._http.port

    @property
    def address(self) -> str:
        """The bound address, "host:port" ("[v6]:port" for IPv6)."""
        return str(self._require_server().address)

    def _require_server(self) -> _core.MasterServer:
        if self._server is None:
            raise RuntimeError("MasterNode is not serving: call run() first")
        return self._server

    def __enter__(self) -> MasterNode:
        self.run()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A serving non-daemon master outlives its node (see the class docstring): its
        # keeper thread holds the server until interrupt() or a signal.
        if self._daemon or self._server is None or not self._server.running:
            with contextlib.suppress(Exception):  # never raise from a finalizer
                self.close()

    def __repr__(self) -> str:
        state = "serving" if self.running else ("closed" if self._closed else "stopped")
        where = self._server.address if self._server is not None else self._listen_address
        return f"MasterNode({where!r}, {state})"


class RelayNode:
    """A relay for peers behind NAT in a process of its own, for the masters started with
    `external_relay=` (its address) and `relay_key=` (the same key); see docs/security.md.

    Args:
        listen_address: "host:port" to bind; port 0 binds any free port (see `port`).
        key: at least 16 bytes, secret: tickets for this relay are HMACs under it.

    Raises:
        TypeError, ValueError: bad arguments.
        RuntimeError: the address cannot be bound.
    """

    def __init__(self, listen_address: str, key: bytes) -> None:
        if not isinstance(key, bytes):
            raise TypeError(f"key must be bytes, got {type(key).__name__}")
        try:
            self._server: _core.RelayServer | None = _core.RelayServer.start(
                _check_listen_address(listen_address), key)
        except MasterUnavailableError as e:
            raise RuntimeError(str(e)) from e

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("RelayNode is closed")
        return int(self._server.port)

    def links(self) -> list[tuple[int, int, int, int, int]]:
        """What it forwarded, per ordered pair of peers: (from peer, to peer, bytes,
        connections open now, connections so far)."""
        return [] if self._server is None else list(self._server.links())

    def close(self) -> None:
        """Cuts every connection and frees the port. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()

    def __enter__(self) -> RelayNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
