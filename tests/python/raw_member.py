"""A member of a pccl run written by hand on the raw wire (wire.py), for tests of what a
misbehaving member can and cannot do to the honest ones.

It says Hello, waits until the honest members admit it, and builds its ring links as far
as the protocol asks (it dials its next neighbour's pool and answers its previous
neighbour's), then reports LinksReady; from then on the test makes it say what it likes
(`send`) while it never moves a byte of data. The run must have no secret (a raw member
cannot prove one). Every wait has a deadline.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

import wire
from wire import Kind


class RawMember:
    def __init__(self, master_port: int, pool_size: int, peer_group: int = 0,
                 timeout: float = 30.0) -> None:
        self.pool_size = pool_size
        self.timeout = timeout
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.p2p_port = self.listener.getsockname()[1]
        self.p2p: list[socket.socket] = []  # ring connections, kept open and silent
        self._stop = threading.Event()
        self._send_lock = threading.Lock()
        self._heartbeats: threading.Thread | None = None
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()
        self.master = wire.Conn("127.0.0.1", master_port, timeout=timeout)
        self.master.send(Kind.HELLO, wire.hello(peer_group, self.p2p_port))
        self.peer_id: int = self.master.expect(Kind.WELCOME)["peer_id"]
        self.epoch = 0
        self.ring_epoch = 0
        self.next_peer_id = 0
        self.verdicts: list[dict[str, Any]] = []

    def _accept_loop(self) -> None:
        """Answers every hello of the previous neighbour with P2PWelcome(ok)."""
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(self.timeout)
            try:
                header = conn.recv(wire.HEADER_BYTES, socket.MSG_WAITALL)
                length = wire.HEADER.unpack(header)[3]
                conn.recv(length, socket.MSG_WAITALL)
                conn.sendall(wire.frame(Kind.P2P_WELCOME, b"\x01" + wire.string("")))
                self.p2p.append(conn)
            except (OSError, struct.error):
                conn.close()

    def recv(self) -> dict[str, Any]:
        """The master's next message (verdicts are also kept in self.verdicts); kinds that
        wire.decode does not know come as {"kind": int, "payload": bytes}."""
        kind, payload = self.master.recv_frame()
        known = (Kind.WELCOME, Kind.TOPOLOGY, Kind.TOPOLOGY_COMPLETE, Kind.VERDICT, Kind.ERROR,
                 Kind.PENDING_REPLY)
        msg = wire.decode(kind, payload) if kind in known else {"kind": kind, "payload": payload}
        if msg["kind"] == Kind.VERDICT:
            self.verdicts.append(msg)
        return msg

    def wait_for(self, kind: Kind) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            msg = self.recv()
            if msg["kind"] == kind:
                return msg
            if msg["kind"] == Kind.ERROR:
                raise AssertionError(f"the master said {msg}")
        raise TimeoutError(f"no {kind.name} from the master")

    def join_ring(self) -> None:
        """Waits for the Topology that admits it and builds its side of the ring."""
        self.build_ring()
        self.links_ready()

    def build_ring(self) -> dict[str, Any]:
        """Waits for the next Topology and dials its next neighbour's pool (its previous
        neighbour's dials are answered all along); returns that topology."""
        topology = self.wait_for(Kind.TOPOLOGY)
        members = topology["members"]
        ids = [m["peer_id"] for m in members]
        me = ids.index(self.peer_id)
        nxt = members[(me + 1) % len(members)]
        self.epoch = topology["epoch"]
        self.ring_epoch = members[me]["ring_epoch"]
        self.next_peer_id = nxt["peer_id"]
        for slot in range(self.pool_size):
            s = socket.create_connection((nxt["host"], nxt["port"]), timeout=self.timeout)
            s.sendall(wire.frame(Kind.P2P_HELLO, struct.pack(
                "<QQQI", self.ring_epoch, self.peer_id, nxt["peer_id"], slot)))
            header = s.recv(wire.HEADER_BYTES, socket.MSG_WAITALL)
            s.recv(wire.HEADER.unpack(header)[3], socket.MSG_WAITALL)
            self.p2p.append(s)
        return topology

    def links_ready(self) -> None:
        """Says its links of the last topology are ready and waits until all are."""
        self.send(Kind.LINKS_READY, wire.links_ready(self.epoch))
        self.wait_for(Kind.TOPOLOGY_COMPLETE)

    def send(self, kind: Kind, payload: bytes = b"") -> None:
        with self._send_lock:
            self.master.send(kind, payload)

    def keep_alive(self, interval: float = 0.5) -> None:
        """Heartbeats from a thread until close(), so that the master keeps a raw member
        that has nothing else to say (it drops a silent peer after its heartbeat timeout)."""
        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    self.send(Kind.HEARTBEAT, wire.heartbeat())
                except OSError:
                    return
        self._heartbeats = threading.Thread(target=beat, daemon=True)
        self._heartbeats.start()

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(timeout=5)
        if self._heartbeats is not None:
            self._heartbeats.join(timeout=5)
        for s in self.p2p:
            s.close()
        self.listener.close()
        self.master.close()
