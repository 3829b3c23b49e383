"""pccl's wire format in pure Python, for tests that talk to a master or peer by hand.

Mirrors csrc/pccl/net/wire.h (the 16-byte frame header: u32 magic "PCCL", u16 protocol
version, u16 kind, u64 payload length; little-endian) and csrc/pccl/proto/messages.h
(payload fields in order, strings as u32 length + bytes). Encoders take fields as
arguments; decoders return dicts. `Conn` is a blocking client whose reads time out.
"""

from __future__ import annotations

import enum
import socket
import struct
from typing import Any

MAGIC = 0x4C434350
VERSION = 6
HEADER = struct.Struct("<IHHQ")
HEADER_BYTES = HEADER.size  # 16
MAX_CONTROL_PAYLOAD = 1 << 20


class Kind(enum.IntEnum):
    HELLO = 1
    WELCOME = 2
    VOTE_TOPOLOGY = 3
    TOPOLOGY = 4
    LINKS_READY = 5
    TOPOLOGY_COMPLETE = 6
    TOPOLOGY_UNCHANGED = 7
    QUERY_PENDING = 8
    PENDING_REPLY = 9
    OP_DONE = 10
    VERDICT = 11
    GOODBYE = 12
    ERROR = 13
    HEARTBEAT = 14
    LINK_BROKEN = 19
    REACHABILITY_QUERY = 20
    REACHABILITY = 21
    P2P_HELLO = 32
    P2P_WELCOME = 33
    DATA = 34
    SYNC_STATE = 40
    SYNC_PLAN = 41
    SYNC_DONE = 42
    SYNC_COMPLETE = 43
    STATE_HELLO = 44
    PROBE_HELLO = 47
    DIAL_BACK = 50
    PAIR_HELLO = 51
    RELAY_PARK = 70
    RELAY_DIAL = 71
    RELAY_READY = 72
    RELAY_INCOMING = 73
    GREETING = 60
    CHALLENGE = 61
    PROOF = 62


class Code(enum.IntEnum):  # pccl::StatusCode
    OK = 0
    INVALID_ARGUMENT = 1
    OUT_OF_RANGE = 2
    FAILED_PRECONDITION = 3
    ABORTED = 4
    UNAVAILABLE = 5
    DEADLINE_EXCEEDED = 6
    DATA_LOSS = 7
    INTERNAL = 8
    TOO_FEW_PEERS = 9
    KICKED = 10
    UNAUTHENTICATED = 11


def frame(kind: int, payload: bytes = b"", *, magic: int = MAGIC, version: int = VERSION,
          length: int | None = None) -> bytes:
    """A frame; `magic`, `version` and `length` can be falsified for negative tests."""
    n = len(payload) if length is None else length
    return HEADER.pack(magic, version, int(kind), n) + payload


def string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<I", len(b)) + b


def op_key(epoch: int, peer_group: int, tag: int, seq: int, from_peer: int = 0,
           to_peer: int = 0) -> bytes:
    """OpKey; from_peer and to_peer name a send/recv's two ends (0, 0: a collective)."""
    return struct.pack("<QIQQQQ", epoch, peer_group, tag, seq, from_peer, to_peer)


# --- encoders (peer -> master) ------------------------------------------------------------

def hello(peer_group: int = 0, p2p_port: int = 40000, advertise_host: str = "",
          public_key: bytes = b"", resume_peer_id: int = 0, resume_epoch: int = 0,
          resume_ring_epoch: int = 0, resume_ring: tuple = (),
          resume_state_revision: int = 0) -> bytes:
    """Hello; the resume_* fields make it the Hello of a peer that lost the master.
    resume_ring: (peer id, bytes per second) pairs, in ring order."""
    ring = struct.pack("<I", len(resume_ring)) + b"".join(
        struct.pack("<QQ", peer, rate) for peer, rate in resume_ring)
    return (struct.pack("<IH", peer_group, p2p_port) + string(advertise_host)
            + string(public_key)
            + struct.pack("<QQQ", resume_peer_id, resume_epoch, resume_ring_epoch) + ring
            + struct.pack("<Q", resume_state_revision))


def greeting(purpose: int = Kind.HELLO, from_peer_id: int = 0, to_peer_id: int = 0,
             epoch: int = 0, slot: int = 0, transport: int = 0, cipher: int = 0,
             nonce: bytes = bytes(32)) -> bytes:
    """The first frame of a connection in a run with a secret (auth/handshake.h)."""
    return (struct.pack("<HQQQIBB", int(purpose), from_peer_id, to_peer_id, epoch, slot,
                        transport, cipher) + string(nonce))


def proof(value: bytes = bytes(32)) -> bytes:
    return string(value)


def links_ready(epoch: int) -> bytes:
    return struct.pack("<Q", epoch)


def vote(ring_epoch: int = 0, started: tuple[tuple[int, int], ...] = ()) -> bytes:
    """VoteTopology: the ring epoch and (tag, count) of the collectives started on it."""
    return (struct.pack("<QI", ring_epoch, len(started))
            + b"".join(struct.pack("<QQ", tag, count) for tag, count in started))


def pending_query(seq: int, joint: bool = True, wait: bool = False) -> bytes:
    return struct.pack("<QBB", seq, int(joint), int(wait))


def op_done(key: tuple[int, ...], ok: bool, descriptor_hash: int = 0,
            reason: str = "", code: int = 0, report: bytes = b"", tx_bytes: int = 0,
            duration_us: int = 0) -> bytes:
    return (op_key(*key) + struct.pack("<BQ", int(ok), descriptor_hash) + string(reason)
            + struct.pack("<I", code) + string(report)
            + struct.pack("<QI", tx_bytes, duration_us))


def link_broken(ring_epoch: int, peer_id: int, reason: str = "") -> bytes:
    return struct.pack("<QQ", ring_epoch, peer_id) + string(reason)


def heartbeat(rtt_us: int = 0) -> bytes:
    return struct.pack("<I", rtt_us)


# --- decoders (master -> peer) -------------------------------------------------------------

class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> Any:
        s = struct.Struct("<" + fmt)
        values = s.unpack_from(self.data, self.pos)
        self.pos += s.size
        return values[0] if len(values) == 1 else values

    def raw(self) -> bytes:
        n = self.take("I")
        b = self.data[self.pos : self.pos + n]
        if len(b) != n:
            raise ValueError("truncated string")
        self.pos += n
        return b

    def string(self) -> str:
        return self.raw().decode()

    def key(self) -> tuple[int, ...]:
        """(epoch, peer_group, tag, seq), plus (from_peer, to_peer) for a send/recv."""
        key = self.take("QIQQQQ")
        return key if key[4] or key[5] else key[:4]

    def done(self) -> None:
        if self.pos != len(self.data):
            raise ValueError(f"{len(self.data) - self.pos} trailing bytes")


def decode(kind: int, payload: bytes) -> dict[str, Any]:
    """Decodes a master -> peer message into a dict (with "kind")."""
    r = _Reader(payload)
    out: dict[str, Any] = {"kind": Kind(kind)}
    if kind == Kind.WELCOME:
        out["peer_id"], out["accepted"], out["heartbeat_interval_ms"] = r.take("QBI")
        out["relay_port"] = r.take("H")
        out["relay_ticket"] = r.raw()
        out["relay_host"] = r.string()
    elif kind == Kind.TOPOLOGY:
        out["epoch"], n = r.take("QI")
        members = []
        for _ in range(n):
            peer_id = r.take("Q")
            host = r.string()
            port, group = r.take("HI")
            public_key = r.raw()
            ring_epoch, reachable = r.take("QB")
            members.append({"peer_id": peer_id, "host": host, "port": port, "peer_group": group,
                            "public_key": public_key, "ring_epoch": ring_epoch,
                            "reachable": reachable})
        out["members"] = members
    elif kind == Kind.TOPOLOGY_COMPLETE or kind == Kind.LINKS_READY:
        out["epoch"] = r.take("Q")
    elif kind == Kind.PENDING_REPLY:
        out["seq"], out["pending"] = r.take("QB")
    elif kind == Kind.VERDICT:
        out["key"] = r.key()
        out["ok"] = r.take("B")
        out["reason"] = r.string()
        out["code"] = r.take("I")
        out["ring_replaced"] = r.take("B")
        out["challenge"] = r.raw()
        out["reports"] = r.raw()
    elif kind == Kind.REACHABILITY:
        out["observed_host"] = r.string()
        out["observed_port"] = r.take("H")
        out["reachable"] = r.take("B")
        out["detail"] = r.string()
    elif kind == Kind.ERROR:
        out["code"] = r.take("I")
        out["message"] = r.string()
    r.done()
    return out


class Conn:
    """A blocking connection speaking frames; every read gives up after `timeout` seconds."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, kind: int, payload: bytes = b"") -> None:
        self.sock.sendall(frame(kind, payload))

    def _exactly(self, n: int) -> bytes:
        chunks = []
        while n > 0:
            b = self.sock.recv(n)
            if not b:
                raise ConnectionError("connection closed by the remote end")
            chunks.append(b)
            n -= len(b)
        return b"".join(chunks)

    def recv_header(self) -> dict[str, int]:
        """The next frame header as it came (no checks): magic, version, kind, length."""
        magic, version, kind, length = HEADER.unpack(self._exactly(HEADER_BYTES))
        return {"magic": magic, "version": version, "kind": kind, "length": length}

    def recv_payload(self, header: dict[str, int]) -> bytes:
        if header["length"] > MAX_CONTROL_PAYLOAD:
            raise ValueError(f"frame length {header['length']} over the limit")
        return self._exactly(header["length"])

    def recv_frame(self) -> tuple[int, bytes]:
        """The next frame's kind and raw payload (for messages decode() does not know)."""
        header = self.recv_header()
        if header["magic"] != MAGIC or header["version"] != VERSION:
            raise ValueError(f"bad frame header {header}")
        return header["kind"], self.recv_payload(header)

    def recv(self) -> dict[str, Any]:
        kind, payload = self.recv_frame()
        return decode(kind, payload)

    def expect(self, kind: Kind) -> dict[str, Any]:
        msg = self.recv()
        if msg["kind"] != kind:
            raise AssertionError(f"expected {kind.name}, got {msg}")
        return msg

    def closed_by_peer(self) -> bool:
        """True if the remote end closed (EOF or reset) before the read timeout."""
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
