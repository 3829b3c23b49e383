"""Runs a pccl master and peers (bench/shaped_peer.py) inside a ShapedNetwork.

run_plan(net, hosts, plan) starts `python -m pccl.master` in the first host's namespace,
then one shaped_peer.py per host, in order, each admitted before the next starts (so the
initial ring follows `hosts`), hands every peer the same plan and returns each peer's JSON
lines. Every process is killed on any failure, and the namespaces go with the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pccl
from netns import ShapedNetwork

HERE = Path(__file__).resolve().parent


def _env() -> dict[str, str]:
    package_root = str(Path(pccl.__file__).resolve().parents[1])
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [package_root, os.environ.get("PYTHONPATH")])))


def run_plan(net: ShapedNetwork, hosts: list[str], plan: list[dict[str, Any]],
             timeout: float = 600) -> list[list[dict[str, Any]]]:
    """Each peer's output lines (JSON), in `hosts` order."""
    env = _env()
    procs: list[subprocess.Popen] = []
    watchdog: threading.Timer | None = None
    try:
        master = net.popen(hosts[0], [sys.executable, "-m", "pccl.master", "--listen-address",
                                      f"{net.ip(hosts[0])}:0"],
                           stdout=subprocess.PIPE, text=True, env=env)
        procs.append(master)
        line = master.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"the master did not start: {line!r}")
        address = line.split()[-1]
        peers = []
        for rank, host in enumerate(hosts):
            p = net.popen(host, [sys.executable, str(HERE / "shaped_peer.py"), address,
                                 str(len(hosts)), str(rank), json.dumps(plan)],
                          stdout=subprocess.PIPE, text=True, env=env)
            procs.append(p)
            peers.append(p)
            first = p.stdout.readline()
            if not first:
                raise RuntimeError(f"peer {rank} ({host}) exited before it was admitted")
        # Read on with the text streams that read the first line (communicate() would skip
        # what they buffered); a timer kills everything if the plan overruns.
        watchdog = threading.Timer(timeout, lambda: [q.kill() for q in procs])
        watchdog.start()
        outputs = []
        for rank, p in enumerate(peers):
            out = p.stdout.read()
            p.wait()
            if p.returncode != 0:
                raise RuntimeError(f"peer {rank} ({hosts[rank]}) failed with {p.returncode}")
            outputs.append([json.loads(line) for line in out.splitlines() if line.strip()])
        return outputs
    finally:
        if watchdog is not None:
            watchdog.cancel()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()


def parse_size(text: str) -> int:
    """'16MiB', '4KiB', '1GiB' or a plain number of bytes."""
    units = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def slowest(outputs: list[list[dict[str, Any]]], step: int) -> list[float]:
    """Per iteration, the slowest peer's time of plan step `step`."""
    per_peer = [lines[step]["times"] for lines in outputs]
    return [max(ts) for ts in zip(*per_peer)]
