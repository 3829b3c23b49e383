"""The encrypted transport (csrc/pccl/secure/records.h): exact results, and a tampered
byte on a ring link fails the collective on every peer, after which the retry succeeds.

The tampering happens in a proxy (a thread of this test) that sits on one ring link: peer
B listens on 127.0.0.1 only and advertises 127.0.0.2, where the proxy listens on B's port
and forwards to 127.0.0.1. Whoever dials B dials the proxy. On request the proxy flips one
bit in the next large chunk it forwards towards B (sealed data records; the handshake
before them is small and left alone).
"""

from __future__ import annotations

import socket
import threading

import numpy as np
import pccl
from cluster import Cluster, notify

SECRET = "encrypted test run secret, 32 b!"


class TamperingProxy:
    """Forwards 127.0.0.2:port to 127.0.0.1:port; `tamper()` arms a one-bit flip."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server = socket.create_server(("127.0.0.2", port))
        self.server.settimeout(0.2)
        self.armed = threading.Event()
        self.flipped = threading.Event()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def tamper(self) -> None:
        self.armed.set()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.server.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(("127.0.0.1", self.port))
            for src, dst, towards_b in ((client, upstream, True), (upstream, client, False)):
                t = threading.Thread(target=self._pump, args=(src, dst, towards_b), daemon=True)
                t.start()
                self.threads.append(t)

    def _pump(self, src: socket.socket, dst: socket.socket, towards_b: bool) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if (towards_b and len(data) > 4096 and self.armed.is_set()
                        and not self.flipped.is_set()):
                    self.flipped.set()
                    data = data[:2048] + bytes([data[2048] ^ 0x10]) + data[2049:]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self.stop.set()
        self.server.close()


def p2p_port(comm: pccl.Communicator, index: int) -> int:
    return comm.p2p_port


def admit(comm: pccl.Communicator, index: int, world: int) -> None:
    comm.wait_for_world(world, timeout=60)


def steps(comm: pccl.Communicator, index: int, count: int) -> list[tuple[int, int, bool]]:
    """`count` exact all-reduces, each retried until it succeeds; per step: (step, failed
    attempts, exact)."""
    out = []
    for step in range(count):
        failures = 0
        while True:
            x = np.full(1 << 20, float(index + step), np.float32)  # 4 MiB: many records
            try:
                comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, timeout=30)
                break
            except pccl.PeerLostError:
                failures += 1
                if failures > 3:
                    raise
        out.append((step, failures, bool(np.all(x == 3 * step + 3))))
        notify("step", index, step)
    return out


def test_encrypted_run_detects_a_tampered_record_and_recovers() -> None:
    options = [{"listen_address": "127.0.0.1", "advertise_address": "127.0.0.2"}]
    with Cluster(1, secret=SECRET, transport="encrypted", pool_size=1,
                 peer_options=options) as c:
        proxy = TamperingProxy(c.run(p2p_port)[0])
        try:
            for index in (1, 2):  # one joiner at a time: the members admit it
                members = list(range(index))
                c.add_peer(index, 1, 0, wait_world=False)
                c.start(admit, index + 1, peers=members)
                c.expect_ready(index, timeout=60)
                c.collect(members)
            c.start(steps, 12)
            seen = 0
            while seen < 3 * 4:  # four steps everywhere, then the flip
                c.events.get(timeout=60)
                seen += 1
            proxy.tamper()
            results = c.collect([0, 1, 2], timeout=120)
        finally:
            proxy.close()
    assert proxy.flipped.is_set()
    for per_peer in results:
        assert all(exact for _, _, exact in per_peer), per_peer
    # The record that did not open failed one collective on every peer (one verdict), and
    # its retry, on re-dialled links, succeeded.
    failed = [{step for step, failures, _ in per_peer if failures} for per_peer in results]
    attempts = [[f for _, f, _ in per_peer] for per_peer in results]
    assert len(failed[0]) == 1 and failed[0] == failed[1] == failed[2], attempts
    assert all(f == 1 for per_peer in results for _, f, _ in per_peer if f), attempts
