"""The pccl master: `MasterNode` and the `pccl_master` command.

A run has one master. Peers connect to it to join; it decides who is in the ring, when
the topology changes, and the verdict of every collective. The master holds no tensors
and moves no bulk data, so one small process serves a whole run.

Example:
    >>> from pccl.master import MasterNode
    >>> with MasterNode("127.0.0.1:0") as master:  # port 0: any free port
    ...     print(master.port > 0)
    True

From a shell: ``pccl_master --listen-address 0.0.0.0:48148`` or ``python -m pccl.master``.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from types import FrameType, TracebackType

from pccl import _core
from pccl.errors import MasterUnavailableError

__all__ = ["MasterNode", "main"]

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

    Args:
        listen_address: "host:port" to bind, e.g. "0.0.0.0:48148", "[::]:48148"; port 0
            binds any free port (see `port`).
        link_timeout: seconds a member may take to connect its ring links after a topology
            change before the master drops it.
        heartbeat_timeout: seconds without a heartbeat after which a peer (hung, stopped or
            unreachable) is kicked; the others' operations then fail and can be retried.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: an argument has a bad value.
    """

    def __init__(self, listen_address: str, *, link_timeout: float = 30.0,
                 heartbeat_timeout: float = 3.0) -> None:
        self._server: _core.MasterServer | None = None
        self._closed = False
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
                                                    self._heartbeat_timeout_ms)
        except MasterUnavailableError as e:  # bind/listen failed: not a reachability problem
            raise RuntimeError(str(e)) from e

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
        with contextlib.suppress(Exception):  # never raise from a finalizer
            self.close()

    def __repr__(self) -> str:
        state = "serving" if self.running else ("closed" if self._closed else "stopped")
        where = self._server.address if self._server is not None else self._listen_address
        return f"MasterNode({where!r}, {state})"


def main(argv: list[str] | None = None) -> int:
    """The `pccl_master` command: serves until SIGINT or SIGTERM, then exits with 0."""
    parser = argparse.ArgumentParser(
        prog="pccl_master", description="Runs the master of a pccl run."
    )
    parser.add_argument(
        "--listen-address",
        default=DEFAULT_LISTEN_ADDRESS,
        metavar="HOST:PORT",
        help=f"address to listen on (default {DEFAULT_LISTEN_ADDRESS}; port 0 = any free port)",
    )
    parser.add_argument(
        "--link-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds a member may take to connect its ring links (default 30)",
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="seconds without a heartbeat before a peer is kicked (default 3)",
    )
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        try:
            node = MasterNode(args.listen_address, link_timeout=args.link_timeout,
                              heartbeat_timeout=args.heartbeat_timeout)
        except (TypeError, ValueError) as e:
            parser.error(str(e))
        try:
            node.run()
        except (ValueError, RuntimeError) as e:
            print(f"pccl_master: {e}", file=sys.stderr, flush=True)
            return 1
        try:
            print(f"pccl master listening on {node.address}", flush=True)
            while not stop.wait(1.0):
                if not node.running:
                    print("pccl_master: server stopped unexpectedly", file=sys.stderr)
                    return 1
        finally:
            node.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
