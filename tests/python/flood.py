"""A flood of hostile connections at one listener (the master's or a peer's), for
test_flood.py and bench/flood.py.

`flood(host, port, total, ...)` opens `total` TCP connections to (host, port), at most
`concurrent` at a time, from many loopback source addresses (127.0.0.2, 127.0.0.3, ...:
many hosts, as a distributed flood would be, so per-address caps alone do not stop it).
Connection i is of kind KINDS[i % 4]:

  idle         connects and says nothing;
  slow         dribbles a frame header, one byte every 0.2 s;
  garbage      sends 256 random bytes;
  wrong_proof  sends a well-formed Greeting (claiming to be `claim_id`, addressed to
               `to_id`), waits for the Challenge and answers it with a random Proof.

Each connection is held until the listener closes it or for `hold_s` after its last step,
whichever comes first; then the next one opens. One thread, non-blocking sockets and a
selector: the flooder itself needs little CPU. Returns counts of what happened.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import time
from dataclasses import dataclass, field

import wire
from wire import Kind

KINDS = ("idle", "slow", "garbage", "wrong_proof")
SOURCES = 100  # 127.0.0.2 ... 127.0.0.101


@dataclass
class FloodReport:
    opened: int = 0
    refused_at_connect: int = 0   # RST or no room in the backlog
    closed_by_listener: int = 0   # the listener closed it (timeout, refusal, cap)
    held_to_the_end: int = 0      # still open when its hold time ran out
    challenges: int = 0           # wrong_proof connections that got as far as a Challenge
    by_kind: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class _Conn:
    sock: socket.socket
    kind: str
    connected: bool = False
    step: int = 0
    inbox: bytes = b""
    next_action: float = 0.0
    give_up: float = 0.0


def flood(host: str, port: int, total: int, *, concurrent: int = 1000, hold_s: float = 2.0,
          purpose: int = Kind.HELLO, claim_id: int = 0, to_id: int = 0,
          deadline_s: float = 120.0) -> FloodReport:
    report = FloodReport()
    sel = selectors.DefaultSelector()
    live: dict[int, _Conn] = {}
    started = time.monotonic()
    deadline = started + deadline_s
    next_index = 0

    def close(c: _Conn, outcome: str) -> None:
        sel.unregister(c.sock)
        del live[c.sock.fileno()]
        c.sock.close()
        if outcome == "listener":
            report.closed_by_listener += 1
        elif outcome == "refused":
            report.refused_at_connect += 1
        else:
            report.held_to_the_end += 1

    def open_one(index: int) -> None:
        kind = KINDS[index % len(KINDS)]
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((f"127.0.0.{2 + index % SOURCES}", 0))
        err = s.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            report.refused_at_connect += 1
            return
        now = time.monotonic()
        c = _Conn(s, kind, next_action=now, give_up=now + hold_s + 5.0)
        live[s.fileno()] = c
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
        report.opened += 1
        report.by_kind[kind] = report.by_kind.get(kind, 0) + 1

    def act(c: _Conn, now: float) -> None:
        """The connection's next step once connected; sets when it wants to act again."""
        if c.kind == "slow":
            header = wire.frame(Kind.HELLO, b"")[:wire.HEADER_BYTES]
            if c.step < len(header):
                c.sock.send(header[c.step:c.step + 1])
                c.step += 1
                c.next_action = now + 0.2
                c.give_up = now + hold_s
                return
        elif c.kind == "garbage" and c.step == 0:
            c.sock.send(os.urandom(256))
            c.step = 1
        elif c.kind == "wrong_proof" and c.step == 0:
            c.sock.send(wire.frame(Kind.GREETING, wire.greeting(
                purpose, claim_id, to_id, nonce=os.urandom(32))))
            c.step = 1
            c.give_up = now + hold_s + 5.0  # the Challenge may take a moment under load
            c.next_action = float("inf")
            return
        c.next_action = float("inf")
        c.give_up = min(c.give_up, now + hold_s)

    def on_readable(c: _Conn) -> bool:
        """Reads what came; False once the listener closed the connection."""
        try:
            data = c.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return False
        except BlockingIOError:
            return True
        if not data:
            return False
        c.inbox += data
        if c.kind == "wrong_proof" and c.step == 1 and len(c.inbox) >= wire.HEADER_BYTES:
            _, _, kind, length = wire.HEADER.unpack_from(c.inbox)
            if kind == Kind.CHALLENGE and len(c.inbox) >= wire.HEADER_BYTES + length:
                report.challenges += 1
                c.sock.send(wire.frame(Kind.PROOF, wire.proof(os.urandom(32))))
                c.step = 2
                c.give_up = time.monotonic() + hold_s
        return True

    while time.monotonic() < deadline and (next_index < total or live):
        while next_index < total and len(live) < concurrent:
            open_one(next_index)
            next_index += 1
        now = time.monotonic()
        for key, events in sel.select(timeout=0.05):
            c = key.data
            if c.sock.fileno() not in live:
                continue
            if not c.connected and events & selectors.EVENT_WRITE:
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    close(c, "refused")
                    continue
                c.connected = True
                sel.modify(c.sock, selectors.EVENT_READ, c)
            if events & selectors.EVENT_READ and not on_readable(c):
                close(c, "listener")
        now = time.monotonic()
        for c in list(live.values()):
            try:
                if c.connected and now >= c.next_action:
                    act(c, now)
            except (ConnectionResetError, BrokenPipeError):
                close(c, "listener")
                continue
            if now >= c.give_up:
                close(c, "held")
    for c in list(live.values()):
        close(c, "held")
    sel.close()
    report.seconds = time.monotonic() - started
    return report
