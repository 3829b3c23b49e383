"""Faults injected at run time into the WAN lab (bench/wan/faults.py, wanemu_faults.cc):
TCP resets, blackholes of a link and of a whole node, flaps, loss bursts and parameter
changes, each checked with plain sockets between the lab's namespaces (no pccl), and a
teardown that leaves nothing behind.

The sockets are made by short-lived threads that entered a node's network namespace (a
socket belongs to the namespace it was created in), so everything runs in this process.
Needs root, /dev/net/tun, `ip`, `ss` and g++; skips with the reason otherwise.
"""

from __future__ import annotations

import errno
import itertools
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from wan_lab import module_lab, undo_faults  # noqa: F401 - undo_faults is autouse

from bench.lib.netns import enter_netns
from bench.wan.network import Lab, requirements

TOPOLOGY = "peers=3 master=own rtt=10ms rate=100mbit"

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from module_lab(TOPOLOGY)


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    """Things (sockets, Streams) to close after the test."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        thing.close()


# --- sockets inside the nodes -------------------------------------------------------------

def in_node(lab: Lab, node: str, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) run by a thread inside `node`'s network namespace."""
    out: dict[str, Any] = {}

    def body() -> None:
        try:
            enter_netns(lab.netns(node))
            out["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            out["error"] = e

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def listen(lab: Lab, node: str, closing: list[Any]) -> tuple[socket.socket, int]:
    srv = in_node(lab, node, socket.create_server, ("0.0.0.0", 0))
    closing.append(srv)
    return srv, srv.getsockname()[1]


def pair(lab: Lab, a: str, b: str, closing: list[Any]) -> tuple[socket.socket, socket.socket]:
    """A TCP connection from a to b: (a's socket, b's socket)."""
    srv, port = listen(lab, b, closing)
    client = in_node(lab, a, socket.create_connection, (lab.ip(b), port), 5)
    closing.append(client)
    conn = srv.accept()[0]
    closing.append(conn)
    for s in (client, conn):
        s.settimeout(5)
    return client, conn


def echo(a: socket.socket, b: socket.socket) -> None:
    a.sendall(b"ping")
    assert b.recv(4) == b"ping"
    b.sendall(b"pong")
    assert a.recv(4) == b"pong"


class Stream:
    """A TCP stream from node a to node b: a sender and a receiver thread; `received` is a
    list of (time, bytes) and `errors` what either side raised."""

    def __init__(self, lab: Lab, a: str, b: str, closing: list[Any]):
        self.tx, self.rx = pair(lab, a, b, closing)
        for s in (self.tx, self.rx):
            s.settimeout(0.1)
        self.received: list[tuple[float, int]] = []
        self.errors: list[BaseException] = []
        self.stop = False
        self.threads = [threading.Thread(target=self._send), threading.Thread(target=self._recv)]
        for t in self.threads:
            t.start()
        closing.append(self)

    def _send(self) -> None:
        chunk = bytes(64 << 10)
        while not self.stop:
            try:
                self.tx.send(chunk)
            except TimeoutError:
                continue
            except OSError as e:
                self.errors.append(e)
                return

    def _recv(self) -> None:
        buf = bytearray(1 << 20)
        while not self.stop:
            try:
                n = self.rx.recv_into(buf)
            except TimeoutError:
                continue
            except OSError as e:
                self.errors.append(e)
                return
            if n == 0:
                return
            self.received.append((time.monotonic(), n))

    def bytes_between(self, t0: float, t1: float) -> int:
        return sum(n for t, n in list(self.received) if t0 <= t <= t1)

    def close(self) -> None:
        self.stop = True
        for t in self.threads:
            t.join(5)


class UdpCounter:
    """Datagrams from node a to node b, counted by tag at b."""

    def __init__(self, lab: Lab, a: str, b: str, closing: list[Any]):
        self.rx = in_node(lab, b, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
        self.tx = in_node(lab, a, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
        closing += [self.rx, self.tx]
        # 400 small datagrams overflow the default buffer (truesize) if this thread lags
        self.rx.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 4 << 20)
        self.rx.bind(("0.0.0.0", 0))
        self.rx.settimeout(0.1)
        self.dest = (lab.ip(b), self.rx.getsockname()[1])
        self.counts: dict[str, int] = {}
        self.times: list[float] = []
        self.stop = False
        self.thread = threading.Thread(target=self._recv)
        self.thread.start()
        closing.append(self)

    def _recv(self) -> None:
        while not self.stop:
            try:
                tag = self.rx.recv(64).decode()
            except TimeoutError:
                continue
            self.counts[tag] = self.counts.get(tag, 0) + 1
            self.times.append(time.monotonic())

    def send(self, tag: str, count: int, gap: float = 0.0) -> int:
        """Sends `count` datagrams tagged `tag`; how many arrived (once no more do)."""
        for i in range(count):
            self.tx.sendto(tag.encode(), self.dest)
            if gap or i % 50 == 49:
                time.sleep(gap or 0.002)
        seen = -1
        while seen != self.counts.get(tag, 0):
            seen = self.counts.get(tag, 0)
            time.sleep(0.1)
        return seen

    def close(self) -> None:
        self.stop = True
        self.thread.join(5)


def rtt(a: socket.socket, b: socket.socket, count: int = 5) -> float:
    times = []
    for _ in range(count):
        t = time.perf_counter()
        echo(a, b)
        times.append(time.perf_counter() - t)
    return sorted(times)[count // 2]


# --- tests ----------------------------------------------------------------------------------

def test_reset_link_resets_both_ends_of_that_pair_only(lab: Lab, closing: list[Any]) -> None:
    idle = pair(lab, "p0", "p1", closing)
    reverse = pair(lab, "p1", "p0", closing)  # dialed the other way
    other = pair(lab, "p0", "p2", closing)    # a third node: must survive
    for a, b in (idle, reverse, other):
        echo(a, b)
    busy = Stream(lab, "p0", "p1", closing)   # in full flow: its RSTs need challenge ACKs
    time.sleep(0.3)
    result = lab.reset_link("p0", "p1")
    assert result["flows"] >= 6, result       # 3 connections, both directions each
    assert result["killed"] == 0, f"sockets outlived the emulator's RSTs: {result}"
    for s in (*idle, *reverse):
        with pytest.raises(ConnectionResetError) as failure:
            s.recv(1)
        assert failure.value.errno == errno.ECONNRESET
    busy.close()
    assert len(busy.errors) == 2, busy.errors
    assert all(isinstance(e, ConnectionResetError) for e in busy.errors), busy.errors
    echo(*other)
    echo(*pair(lab, "p0", "p1", closing))  # new connections are not affected
    assert lab.stats()["rst_injected"] >= 6


def test_blackhole_stalls_a_link_silently_and_heals(lab: Lab, closing: list[Any]) -> None:
    cut, spared = Stream(lab, "p0", "p1", closing), Stream(lab, "p0", "p2", closing)
    time.sleep(0.5)
    t0 = time.monotonic()
    lab.blackhole("p0", "p1", seconds=2)
    assert lab.link_state("p1", "p0")["blackhole"] == 1   # both directions
    time.sleep(2.2)
    assert lab.link_state("p0", "p1")["blackhole"] == 0   # healed by the emulator's timer
    deadline = t0 + 6  # TCP's retransmission backoff: the first retry after the heal
    while cut.bytes_between(t0 + 2, deadline) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    resumed = min((t for t, _ in cut.received if t > t0 + 2), default=None)
    assert cut.bytes_between(t0 + 0.05, t0 + 1.95) == 0, "bytes crossed a blackholed link"
    assert spared.bytes_between(t0 + 0.05, t0 + 1.95) > 5e6, "the other link stalled too"
    assert resumed is not None, "the stream did not resume after the heal"
    assert not cut.errors and not spared.errors, (cut.errors, spared.errors)
    print(f"\n[wan faults] stream resumed {resumed - t0:.2f} s after a 2 s blackhole")
    assert lab.stats()["links"]["p0->p1"]["drop_fault"] > 0


def test_node_blackhole_cuts_it_from_the_master_too(lab: Lab, closing: list[Any]) -> None:
    srv, port = listen(lab, "master", closing)
    srv.settimeout(2)
    connected = pair(lab, "p0", "master", closing)
    lab.blackhole("p0")
    for target in ("master", "p1"):
        with pytest.raises(TimeoutError):  # no RST and no ICMP: the SYNs just vanish
            in_node(lab, "p0", socket.create_connection, (lab.ip(target), port), 0.5)
    closing.append(in_node(lab, "p1", socket.create_connection, (lab.ip("master"), port), 2))
    closing.append(srv.accept()[0])  # p1 still reaches the master
    connected[0].sendall(b"x")
    connected[1].settimeout(0.3)
    with pytest.raises(TimeoutError):
        connected[1].recv(1)
    lab.heal("p0")
    closing.append(in_node(lab, "p0", socket.create_connection, (lab.ip("master"), port), 2))
    closing.append(srv.accept()[0])
    connected[1].settimeout(5)
    assert connected[1].recv(1) == b"x"  # the stalled connection resumes (retransmission)


def test_loss_burst_raises_loss_then_restores_it(lab: Lab, closing: list[Any]) -> None:
    udp = UdpCounter(lab, "p0", "p1", closing)
    assert udp.send("before", 400) == 400
    drops = lab.stats()["links"]["p0->p1"]["drop_loss"]
    t0 = time.monotonic()
    lab.loss_burst("p0", "p1", 0.5, 1.5)
    assert lab.link_state("p0", "p1")["loss"] == 0.5 == lab.link_state("p1", "p0")["loss"]
    during = udp.send("during", 400)
    assert 120 < during < 280, f"{during} of 400 arrived at 50 % loss"
    assert lab.stats()["links"]["p0->p1"]["drop_loss"] - drops == 400 - during
    time.sleep(max(0.0, t0 + 1.6 - time.monotonic()))
    assert lab.link_state("p0", "p1")["loss"] == 0
    assert udp.send("after", 400) == 400


def test_flap_alternates_down_and_up(lab: Lab, closing: list[Any]) -> None:
    udp = UdpCounter(lab, "p2", "p1", closing)
    t0 = time.monotonic()
    lab.flap("p2", "p1", 0.3, 0.3, 1.2)  # down [0, .3), up [.3, .6), down, up, healed at 1.2
    udp.send("flap", 280, gap=0.005)
    phases = [0.0, 0.3, 0.6, 0.9, 1.2]
    seen = [sum(1 for t in udp.times if lo + 0.05 < t - t0 < hi - 0.05)
            for lo, hi in itertools.pairwise(phases)]
    assert seen[0] == 0 and seen[2] == 0, f"datagrams per phase {seen}"
    assert seen[1] > 10 and seen[3] > 10, f"datagrams per phase {seen}"
    assert udp.send("healed", 50) == 50


def test_set_link_changes_delay_at_run_time(lab: Lab, closing: list[Any]) -> None:
    a, b = pair(lab, "p0", "p2", closing)
    before = rtt(a, b)
    lab.set_link("p0", "p2", delay="40ms", oneway=True)
    slower = rtt(a, b)
    lab.restore("p0", "p2")
    after = rtt(a, b)
    # one-way 5 ms -> 40 ms: the round trip goes from 10 ms to 45 ms, and back
    assert 0.009 < before < 0.025 and 0.044 < slower < 0.065 and after < 0.025, (
        before, slower, after)


def test_close_leaves_no_namespace_process_or_file() -> None:
    reason = requirements()
    if reason is not None:
        pytest.skip(reason)
    lab = Lab("peers=2 master=own rtt=10ms")
    try:
        sleeper = lab.popen("p0", ["sleep", "60"])
        lab.blackhole("p0", seconds=30)
        lab.flap("p1", "master", 1, 1, 30)
        lab.loss_burst("p1", None, 0.5, 30)
        emulator, tmp, prefix = lab._emu, lab._tmp, lab.prefix
        assert emulator is not None and (tmp / "control.sock").exists()
    finally:
        lab.close()
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           check=True).stdout
    assert prefix not in names
    assert sleeper.poll() is not None and emulator.poll() is not None
    assert not tmp.exists()
