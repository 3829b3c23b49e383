"""Faults at run time in the WAN lab: the methods of `Lab` (bench/wan/network.py) that
cut, flap, degrade and reset links while the programs in the nodes keep running.

    lab.blackhole("p0", "p1", seconds=2)    # the pair drops every packet, both ways, 2 s
    lab.blackhole("p0")                     # all of p0's traffic (the master's too) until heal
    lab.heal("p0")                          # heal(): every link
    lab.flap("p0", "p1", 1.0, 0.5, 10)      # up 1 s / down 0.5 s (down first) for 10 s
    lab.loss_burst("p0", "p1", 0.2, 3)      # 20 % random loss for 3 s, then the loss before
    lab.set_link("p0", "p1", delay="80ms", rate="100mbit", seconds=5)   # any link parameter
    lab.reset_link("p0", "p1")              # every TCP connection between them: RST, RST
    lab.restore()                           # configured parameters back, no blackholes
    lab.link_state("p0", "p1")              # the live parameters of p0 -> p1

Each call returns once the emulator acknowledged the change, i.e. once it applies to every
packet that arrives after. Timed changes (seconds=, flap, loss_burst) run on the
emulator's own clock (wanemu's control thread), not in Python: the call returns at once and
the emulator undoes the change when due. A later change of the same kind (blackhole or
parameters) on a link cancels what is pending there. Everything lives in the emulator, so
closing the lab undoes it all; restore() undoes it earlier.

b=None means the whole node `a` (every link from or to it); oneway=True only a -> b.
A blackhole drops packets silently (no RST, no ICMP), also those already on the link, so
a connection stalls and TCP retransmits with backoff until the link heals.

reset_link() is a reset from the middle of the network: the emulator forges a RST to each
end of every TCP connection on the link (bench/wan/wanemu_faults.cc), so both sockets fail
with ECONNRESET and the processes are untouched; a socket that outlives it (e.g. one in
the middle of its handshake) is then killed with `ss -K` in its namespace (ECONNABORTED).
Connections opened after the call are not touched.

`fault(line)` runs the same changes written as text (the CLI's --fault): `blackhole p0-p1
5s`, `blackhole p0`, `heal [p0]`, `flap p0-p1 UP DOWN DURATION`, `loss p0-p1 5% 3s`,
`set p0>p1 delay=80ms rate=100mbit [for=5s]`, `reset p0-p1`, `restore [p0]`. Links: `A-B`
(both ways), `A>B` (one way), `A` (the whole node). Durations need a unit (s, ms).
"""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.lib import netns
from bench.wan.topology import parse_bytes, parse_fraction, parse_rate, parse_seconds

CONTROL_TIMEOUT = 10.0  # seconds to wait for the emulator's answer


def seconds_with_unit(text: str) -> float:
    if not re.fullmatch(r"\d+(\.\d+)?(us|ms|s)", text.strip().lower()):
        raise ValueError(f"bad duration {text!r}: give a unit (5s, 500ms)")
    return parse_seconds(text)


class Faults:
    """Run-time faults; mixed into Lab, which provides the members below."""

    top: Any
    _net: netns.Namespaces
    _control_path: Path
    _control_sock: socket.socket | None
    _control_lock: threading.Lock

    if TYPE_CHECKING:
        def index(self, node: str) -> int: ...
        def ip(self, node: str) -> str: ...
        def netns(self, node: str) -> str: ...

    # -- the control channel -------------------------------------------------------------

    def control(self, command: str) -> str:
        """Sends one raw command line to the emulator (wanemu.h lists them; nodes by
        index) and returns its answer after "ok"; RuntimeError if it answers "err"."""
        if "\n" in command:
            raise ValueError("one command per call")
        with self._control_lock:
            if self._control_sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(CONTROL_TIMEOUT)
                try:
                    sock.connect(str(self._control_path))
                except OSError:
                    sock.close()
                    raise
                self._control_sock = sock
            sock = self._control_sock
            sock.sendall(command.encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("the emulator closed its control socket")
                reply += chunk
        text = reply.decode().strip()
        if text != "ok" and not text.startswith("ok "):
            raise RuntimeError(f"wanemu: {command!r}: {text}")
        return text[3:]

    def _close_control(self) -> None:
        """Without the lock: close() may run in a signal handler that interrupted control()."""
        sock, self._control_sock = self._control_sock, None
        if sock is not None:
            sock.close()

    def _links(self, a: str | None, b: str | None = None, oneway: bool = False) -> str:
        """The emulator's link selector: every link, node a's, the pair, or a -> b."""
        if a is None:
            if b is not None:
                raise ValueError("b without a")
            return "*"
        if b is None:
            if oneway:
                raise ValueError("oneway needs both nodes")
            return str(self.index(a))
        return f"{self.index(a)}{'>' if oneway else '-'}{self.index(b)}"

    # -- faults ---------------------------------------------------------------------------

    def blackhole(self, a: str, b: str | None = None, seconds: float | None = None, *,
                  oneway: bool = False) -> None:
        """Drops every packet between a and b (b None: between a and every other node),
        silently, from now on; heals by itself after `seconds` if given."""
        extra = f" {seconds:.9f}" if seconds else ""
        self.control(f"blackhole {self._links(a, b, oneway)}{extra}")

    def heal(self, a: str | None = None, b: str | None = None, *, oneway: bool = False) -> None:
        """Ends blackholes and flaps on the selected links (a None: every link)."""
        self.control(f"heal {self._links(a, b, oneway)}")

    def flap(self, a: str, b: str | None, up_s: float, down_s: float, duration_s: float, *,
             oneway: bool = False) -> None:
        """Blackholes the link for down_s, heals it for up_s, and so on (down first, now),
        for duration_s; it is healed at the end."""
        self.control(f"flap {self._links(a, b, oneway)} {down_s:.9f} {up_s:.9f} "
                     f"{duration_s:.9f}")

    def loss_burst(self, a: str, b: str | None, loss: float, seconds: float, *,
                   oneway: bool = False) -> None:
        """Random loss `loss` (0..1) on the link for `seconds`, then the loss it had."""
        self.set_link(a, b, loss=loss, seconds=seconds, oneway=oneway)

    def set_link(self, a: str, b: str | None = None, *, delay: float | str | None = None,
                 jitter: float | str | None = None, rate: float | str | None = None,
                 loss: float | str | None = None, queue: int | str | None = None,
                 seconds: float | None = None, oneway: bool = False) -> None:
        """Changes one-way delay / jitter (seconds, or "80ms"), rate (bit/s, or "100mbit";
        0: no cap), loss (0..1, or "1%") and queue (bytes, or "1MiB") of the selected
        links, for packets that arrive from now on; with `seconds`, the values they had
        come back after that long."""
        words = []
        if delay is not None:
            words.append(f"delay_us={_num(delay, parse_seconds) * 1e6:.0f}")
        if jitter is not None:
            words.append(f"jitter_us={_num(jitter, parse_seconds) * 1e6:.0f}")
        if rate is not None:
            words.append(f"rate_bps={_num(rate, parse_rate):.0f}")
        if loss is not None:
            value = _num(loss, parse_fraction)
            if not 0 <= value <= 1:
                raise ValueError(f"loss must be in [0, 1], got {loss!r}")
            words.append(f"loss={value!r}")
        if queue is not None:
            words.append(f"queue_bytes={_num(queue, parse_bytes):.0f}")
        if not words:
            raise ValueError("set_link: nothing to change")
        if seconds:
            words.append(f"for={seconds:.9f}")
        self.control(f"set {self._links(a, b, oneway)} {' '.join(words)}")

    def restore(self, a: str | None = None, b: str | None = None, *,
                oneway: bool = False) -> None:
        """Configured parameters back and blackholes off on the selected links (a None:
        every link); pending timed changes there are cancelled."""
        self.control(f"restore {self._links(a, b, oneway)}")

    def link_state(self, a: str, b: str) -> dict[str, float]:
        """The live parameters of the link a -> b: delay_us, jitter_us, rate_bps, loss,
        queue_bytes, blackhole (0 or 1)."""
        reply = self.control(f"show {self._links(a, b, oneway=True)}")
        return {k: float(v) for k, v in (w.split("=") for w in reply.split()[1:])}

    def reset_link(self, a: str, b: str | None = None) -> dict[str, int]:
        """Resets every TCP connection between a and b (b None: between a and any other
        node): both ends fail with ECONNRESET; the processes are untouched. Returns
        {"flows": directions the emulator sent a RST for, "killed": sockets that survived
        it and `ss -K` killed}."""
        others = [b] if b is not None else [n for n in self.top.nodes if n != a]
        before = {(n, m): self._tcp_connections(n, m) for n in [a, *others]
                  for m in ([a] if n != a else others)}
        flows = int(self.control(f"reset {self._links(a, b)}"))
        killed = 0
        for (node, other), conns in before.items():
            if conns:
                killed += self._kill_connections(node, other, conns)
        return {"flows": flows, "killed": killed}

    def _tcp_connections(self, node: str, other: str) -> list[tuple[str, str]]:
        """(local, peer) address:port of node's TCP connections to `other`."""
        done = self._net.run(self.netns(node), "ss", "-tnH", "state", "connected", "exclude",
                             "time-wait", "dst", self.ip(other))
        return [(f[3], f[4]) for f in (line.split() for line in done.stdout.splitlines())
                if len(f) >= 5]

    def _kill_connections(self, node: str, other: str, conns: list[tuple[str, str]]) -> int:
        expr: list[str] = []
        for local, peer in conns:
            expr += [*(["or"] if expr else []), "(", "src", local, "and", "dst", peer, ")"]
        done = self._net.run(self.netns(node), "ss", "-K", "-tnH", *expr, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"ss -K in {node}: {done.stderr.strip()}")
        return len(done.stdout.splitlines())

    # -- the same as text ------------------------------------------------------------------

    def fault(self, line: str) -> None:
        """Runs one fault written as text (see the top of bench/wan/faults.py)."""
        words = line.split()
        if not words:
            raise ValueError("empty fault")
        action, rest = words[0], words[1:]
        a = b = None
        oneway = False
        if rest and "=" not in rest[0] and not re.fullmatch(r"[\d.]+%?", rest[0]):
            target = rest.pop(0)
            oneway = ">" in target
            a, _, b_text = target.replace(">", "-").partition("-")
            b = b_text or None
            for node in filter(None, (a, b)):
                self.index(node)  # ValueError for an unknown node
        if action in ("heal", "restore") and len(rest) == 0:
            getattr(self, action)(a, b, oneway=oneway)
        elif a is None:
            raise ValueError(f"fault {line!r}: which link? (A-B, A>B or A)")
        elif action == "blackhole" and len(rest) <= 1:
            seconds = seconds_with_unit(rest[0]) if rest else None
            self.blackhole(a, b, seconds, oneway=oneway)
        elif action == "flap" and len(rest) == 3:
            up, down, duration = (seconds_with_unit(w) for w in rest)
            self.flap(a, b, up, down, duration, oneway=oneway)
        elif action == "loss" and len(rest) == 2:
            self.loss_burst(a, b, parse_fraction(rest[0]), seconds_with_unit(rest[1]),
                            oneway=oneway)
        elif action == "set" and rest:
            kv = dict(w.split("=", 1) for w in rest)
            seconds = seconds_with_unit(kv.pop("for")) if "for" in kv else None
            unknown = set(kv) - {"delay", "jitter", "rate", "loss", "queue"}
            if unknown:
                raise ValueError(f"fault {line!r}: unknown parameters {sorted(unknown)}")
            self.set_link(a, b, seconds=seconds, oneway=oneway, **kv)
        elif action == "reset" and not rest and not oneway:
            self.reset_link(a, b)
        else:
            raise ValueError(f"cannot read fault {line!r}")


def _num(value: float | str, parse: Any) -> float:
    return float(parse(value)) if isinstance(value, str) else float(value)
