"""The master's live view (pccl/_status.py): /status and /metrics over HTTP against a live
3-peer run, a kill showing up as an event, counters that move, and `pccl status`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pccl
import pytest
from cluster import Cluster
from pccl import ReduceOp

pytest.importorskip("prometheus_client")
WORLD = 3


def get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
        assert reply.status == 200
        return bytes(reply.read())


def status_when(port: int, ready: Any, what: str, timeout: float = 20.0) -> dict[str, Any]:
    """/status once `ready(status)` holds (the master publishes within a second)."""
    deadline = time.monotonic() + timeout
    while True:
        status = json.loads(get(port, "/status"))
        if ready(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s: {status}")
        time.sleep(0.05)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of Prometheus text (labels in any order)."""
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        metric_name, _, label_text = sample.partition("{")
        found = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
        if metric_name == name and found == labels:
            return float(value)
    raise AssertionError(f"{name}{labels} not in\n{text}")


def sums(comm: pccl.Communicator, index: int, n: int) -> int:
    x = np.ones(1000, dtype=np.float32)
    for _ in range(n):
        comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=60)
    return comm.peer_id


@pytest.mark.timeout(120)
def test_status_and_metrics_follow_a_live_run() -> None:
    with Cluster(WORLD, master_options={"http_address": "127.0.0.1:0"}) as c:
        assert c.master is not None
        port = c.master.http_port
        ids = [str(i) for i in c.run(sums, 0)]  # /status writes peer ids as strings
        status = status_when(port, lambda s: len(s["peers"]) == WORLD, "3 peers")
        assert {p["peer_id"] for p in status["peers"]} == set(ids)
        assert {p["peer_id"] for p in c.master.status()["peers"]} == {int(i) for i in ids}
        assert all(p["member"] and p["host"] == "127.0.0.1" and p["port"] > 0 and
                   p["peer_group"] == 0 for p in status["peers"])
        (group,) = status["groups"]
        assert sorted(group["ring"]) == sorted(ids) and len(group["links"]) == WORLD
        assert [e["kind"] for e in status["events"]].count("join") == WORLD
        assert time.time() - 60 < status["events"][-1]["time"] <= time.time() + 1

        before = get(port, "/metrics").decode()
        c.run(sums, 5)
        after = status_when(port, lambda s: s["counters"].get("ops_succeeded", 0) >= 5,
                            "decided collectives")
        metrics = get(port, "/metrics").decode()
        assert (metric(metrics, "pccl_operations_total", outcome="succeeded", code="") -
                metric(before, "pccl_operations_total", outcome="succeeded", code="") >= 5)
        assert metric(metrics, "pccl_peers", state="member") == WORLD
        assert metric(metrics, "pccl_membership_events_total", event="joins") == WORLD
        # What the members reported with their collectives: a ring all-reduce sends
        # 2 (n - 1) / n of the buffer per peer, and each report is one observation.
        ring_bytes = 2 * (WORLD - 1) / WORLD * 1000 * 4
        sent = (metric(metrics, "pccl_bytes_sent_total") -
                metric(before, "pccl_bytes_sent_total"))
        assert 5 * WORLD * ring_bytes * 0.99 <= sent <= 5 * WORLD * ring_bytes * 1.01, sent
        assert (metric(metrics, "pccl_member_op_seconds_count") -
                metric(before, "pccl_member_op_seconds_count")) == 5 * WORLD
        assert metric(metrics, "pccl_member_op_seconds_bucket", le="+Inf") == metric(
            metrics, "pccl_member_op_seconds_count")
        # Each peer tells the round trip of its previous heartbeat with the next one.
        beats = status_when(port, lambda s: all(p["heartbeat_rtt_s"] > 0 for p in s["peers"]),
                            "heartbeat round trips")
        assert all(p["heartbeat_rtt_s"] < 1.0 for p in beats["peers"])
        assert metric(get(port, "/metrics").decode(), "pccl_heartbeat_rtt_seconds_count") >= WORLD

        cli = subprocess.run([sys.executable, "-m", "pccl.cli", "status", f"127.0.0.1:{port}"],
                             capture_output=True, text=True, timeout=30)
        assert cli.returncode == 0, cli.stderr
        assert all(str(i) in cli.stdout for i in ids) and "member" in cli.stdout

        victim = ids[2]
        c.kill(2)
        gone = status_when(port, lambda s: len(s["peers"]) == WORLD - 1, "the kill")
        assert victim not in {p["peer_id"] for p in gone["peers"]}
        assert any(e["kind"] == "leave" and str(victim) in e["text"] for e in gone["events"])
        assert gone["counters"]["departures"] == 1 and gone["epoch"] > after["epoch"]
        with pytest.raises(urllib.error.HTTPError):
            get(port, "/nothing")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.timeout(120)
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium)")
def test_the_page_draws_the_peers_and_the_ring(tmp_path: Any) -> None:
    assert CHROMIUM is not None
    with Cluster(WORLD, master_options={"http_address": "127.0.0.1:0"}) as c:
        assert c.master is not None
        url = f"http://127.0.0.1:{c.master.http_port}/"
        ids = c.run(sums, 3)
        status_when(c.master.http_port, lambda s: len(s["groups"]) == 1, "a ring")
        headless = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
                    "--virtual-time-budget=5000"]
        # The page fills itself in from /status; a cold browser may dump the DOM before
        # its first fetch came back, so a few tries.
        for _ in range(3):
            dom = subprocess.run(headless + ["--dump-dom", url], capture_output=True,
                                 text=True, timeout=60)
            if 'data-peer-id="' in dom.stdout:
                break
        shot = tmp_path / "status_page.png"
        subprocess.run(headless + [f"--screenshot={shot}", "--window-size=1100,760", url],
                       capture_output=True, timeout=60)
    # The script ran: every peer is drawn on the ring, with the epoch in the summary.
    for peer_id in ids:
        summary = dom.stdout[dom.stdout.find('id="summary"'):][:300]
        assert f'data-peer-id="{peer_id}"' in dom.stdout, summary
    assert "members" in dom.stdout and "<circle" in dom.stdout
    # The screenshot of the same page (the README shows one): a PNG of the window's size.
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (1100, 760)
