"""Flooding the listeners (docs/security.md, "a stranger"): 10,000 hostile connections at
the master and 10,000 at a peer (idle, dribbling, garbage, Greetings answered with a wrong
Proof; flood.py) while three peers of a run with a secret all-reduce in a loop. The loop
stays exact and keeps stepping, every process's memory stays bounded, and connections that
never finish their handshake are closed by the listeners' timeouts. The step time under
flood is measured by bench/flood.py, not asserted here.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pccl
import pytest
from cluster import Cluster, notify, status_kib
from flood import FloodReport, flood
from wire import Kind

SECRET = "flood test run secret, 32 bytes"
TOTAL = 10_000
ELEMENTS = 1 << 16


def step_loop(comm: pccl.Communicator, index: int, stop_file: str) -> list[tuple[float, bool]]:
    """All-reduces until the stop file exists (agreed through the all-reduce itself, so
    every peer stops after the same step); per step: (end time, exact)."""
    steps = []
    step = 0
    while True:
        want_stop = os.path.exists(stop_file)
        x = np.full(ELEMENTS, float(index + step), np.float32)
        x[0] = 1.0 if want_stop else 0.0
        for _ in range(4):
            try:
                comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, timeout=60)
                break
            except pccl.PeerLostError:
                # Not expected: no peer leaves. Retried as a loop would, counted as inexact.
                steps.append((time.monotonic(), False))
                x = np.full(ELEMENTS, float(index + step), np.float32)
                x[0] = 1.0 if want_stop else 0.0
        exact = bool(np.all(x[1:] == 3 * step + 3))
        steps.append((time.monotonic(), exact))
        if step == 0:
            notify("stepping", index)
        step += 1
        if x[0] > 0:
            return steps


def p2p_target(comm: pccl.Communicator, index: int) -> tuple[int, int]:
    return comm.peer_id, comm.p2p_port


def hold_idle(port: int, count: int, limit_s: float) -> list[float | None]:
    """Opens `count` connections that never speak; returns when each was closed by the
    listener (seconds), None for one still open after `limit_s`."""
    socks = []
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((f"127.0.1.{1 + i}", 0))
        s.connect(("127.0.0.1", port))
        socks.append(s)
    started = time.monotonic()
    closed: list[float | None] = [None] * count
    for i, s in enumerate(socks):
        s.settimeout(max(0.01, limit_s - (time.monotonic() - started)))
        try:
            if s.recv(1) == b"":
                closed[i] = time.monotonic() - started
        except ConnectionResetError:
            closed[i] = time.monotonic() - started
        except TimeoutError:
            pass
        s.close()
    return closed


@pytest.mark.timeout(300)
def test_a_flood_of_hostile_connections_leaves_the_run_exact(tmp_path: Path) -> None:
    stop_file = tmp_path / "stop"
    with Cluster(3, secret=SECRET, pool_size=2, master_process=True) as c:
        assert c.master_proc is not None
        master_port = int(c.address.rsplit(":", 1)[1])
        (id_0, _), (id_1, port_1), _ = c.run(p2p_target)
        pids = [c.master_proc.pid, *c.pids]
        rss_before = [status_kib("VmRSS", pid) * 1024 for pid in pids]
        c.start(step_loop, str(stop_file))
        for _ in range(3):
            c.events.get(timeout=60)  # every peer is stepping

        reports: dict[str, FloodReport] = {}
        idle_closed: dict[str, list[float | None]] = {}
        rss_peak = list(rss_before)

        def run(name: str, fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            result = fn(*args, **kwargs)
            (reports if isinstance(result, FloodReport) else idle_closed)[name] = result

        threads = [
            # At the master: Greetings for the master plane. At peer 1: Greetings that
            # claim to be peer 0 (a member: the costly path, with its X25519 agreement).
            threading.Thread(target=run, args=("master", flood, "127.0.0.1", master_port,
                                               TOTAL), kwargs={"hold_s": 1.0}),
            threading.Thread(target=run, args=("peer", flood, "127.0.0.1", port_1, TOTAL),
                             kwargs={"hold_s": 1.0, "purpose": Kind.P2P_HELLO,
                                     "claim_id": id_0, "to_id": id_1}),
            threading.Thread(target=run, args=("master idle", hold_idle, master_port, 8, 20.0)),
            threading.Thread(target=run, args=("peer idle", hold_idle, port_1, 8, 20.0)),
        ]
        flood_started = time.monotonic()
        for t in threads[2:]:  # the idle ones first, accepted before the flood fills backlogs
            t.start()
        time.sleep(0.5)
        for t in threads[:2]:
            t.start()
        while any(t.is_alive() for t in threads):
            rss_peak = [max(p, status_kib("VmRSS", pid) * 1024) for p, pid in zip(rss_peak, pids)]
            time.sleep(0.5)
        flood_ended = time.monotonic()
        stop_file.touch()
        results = c.collect([0, 1, 2], timeout=120)

    for name in ("master", "peer"):
        r = reports[name]
        assert r.opened + r.refused_at_connect == TOTAL, (name, r)
        # Every hostile connection ended: closed by the listener or dropped by us; none got
        # anywhere (a wrong Proof never passes, and the loop's peers saw no stranger).
        assert r.closed_by_listener + r.held_to_the_end + r.refused_at_connect == TOTAL
    # Connections that never speak are closed by the listeners' timeouts: the peer's
    # handshake limit (5 s) and the master's hello timeout (10 s), well within 20 s.
    for name in ("master idle", "peer idle"):
        assert all(t is not None for t in idle_closed[name]), (name, idle_closed[name])
    for per_peer in results:
        assert all(exact for _, exact in per_peer), "an all-reduce under flood was not exact"
        during = [t for t, _ in per_peer if flood_started <= t <= flood_ended]
        assert len(during) >= 3, f"only {len(during)} steps during the flood"
    # Memory bounded: no process grew by more than 64 MiB while flooded.
    for pid, before, peak in zip(pids, rss_before, rss_peak):
        assert peak - before < 64 << 20, (pid, before, peak)
