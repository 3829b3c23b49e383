"""Shaped networks on one machine: namespaces and veth pairs (bench/lib/netns.py) with
their rates capped by tc htb (needs root), and a pccl run across one.

A ShapedNetwork has regions; each region is a router namespace with hosts (namespaces)
behind it, one veth pair per host. Region routers are joined pairwise by one veth pair
each: the inter-region link, which every flow between the two regions shares. Rates are
token-bucket caps (tc htb) on the sending side of a veth, so each direction of a link is
capped separately:

    host A1 --+                        +-- host B1
              +-- router A ==narrow== router B --+
    host A2 --+                        +-- host B2

    net = ShapedNetwork({"A": ["a1", "a2"], "B": ["b1", "b2"]}, inter_region_mbit=50)
    net.ip("a1")                                   # the host's address, e.g. "10.77.1.2"
    proc = net.popen("a1", [sys.executable, "worker.py"], stdout=subprocess.PIPE)
    net.close()                                    # also on exceptions: use `with`

`uplink_mbit` caps every host's sending side (its uplink), as on a home or cloud link.
Addresses: host i (counting from 1 over all regions) is 10.<net>.i.2 behind 10.<net>.i.1 on
its router; routers talk over 10.<net>.(200 + k).0/24. close() kills what popen() started
and deletes every namespace. Send traffic only between these namespaces; nothing is
routed to the outside.

run_plan(net, hosts, plan) starts `python -m pccl.master` in the first host's namespace,
then one peer (bench/lib/shaped_peer.py) per host, in order, each admitted before the next
starts (so the initial ring follows `hosts`), hands every peer the same plan and returns
each peer's JSON lines. Every process is killed on any failure.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.lib import netns

REPO = Path(__file__).resolve().parents[2]


def unavailable_reason() -> str | None:
    """Why shaped networks cannot be built here, or None if they can."""
    return netns.unavailable_reason(tools=("ip", "tc"))


class ShapedNetwork:
    def __init__(self, regions: dict[str, Sequence[str]], *, inter_region_mbit: float | None,
                 uplink_mbit: float | None = None, net: int | None = None):
        self._ns = netns.Namespaces()
        self._net = net if net is not None else 64 + os.getpid() % 128
        self._hosts: dict[str, tuple[str, str]] = {}  # host -> (namespace, address)
        try:
            self._build(regions, inter_region_mbit, uplink_mbit)
        except BaseException:
            self.close()
            raise

    # -- building -----------------------------------------------------------------------

    def _shape(self, ns: str, dev: str, mbit: float) -> None:
        """Caps what `dev` sends at `mbit`: htb, with a byte-limited FIFO behind it that
        holds about 50 ms at that rate (veths pass 64 KiB GSO packets, so a queue counted
        in packets would hold seconds of traffic and starve flows that start later)."""
        rate = f"{mbit}mbit"
        queue = max(64 << 10, int(mbit * 1e6 / 8 * 0.05))
        run = self._ns.run
        run(ns, "tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10")
        run(ns, "tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb",
            "rate", rate, "ceil", rate)
        run(ns, "tc", "qdisc", "add", "dev", dev, "parent", "1:10", "handle", "10:",
            "bfifo", "limit", str(queue))

    def _build(self, regions: dict[str, Sequence[str]], inter_mbit: float | None,
               uplink_mbit: float | None) -> None:
        n = self._ns
        routers = {region: n.add(f"r{region}") for region in regions}
        for ns in routers.values():
            n.sysctl(ns, [("net.ipv4.ip_forward", "1")])
        subnets: dict[str, list[str]] = {region: [] for region in regions}
        index = itertools.count(1)
        for region, hosts in regions.items():
            for host in hosts:
                i = next(index)
                ns = n.add(host)
                n.veth(ns, "eth0", routers[region], f"h{i}")
                base = f"10.{self._net}.{i}"
                n.address(ns, "eth0", f"{base}.2/24")
                n.address(routers[region], f"h{i}", f"{base}.1/24")
                n.ip(ns, "route", "add", "default", "via", f"{base}.1")
                if uplink_mbit:
                    self._shape(ns, "eth0", uplink_mbit)
                self._hosts[host] = (ns, f"{base}.2")
                subnets[region].append(f"{base}.0/24")
        for k, (a, b) in enumerate(itertools.combinations(regions, 2)):
            ra, rb = routers[a], routers[b]
            dev_a, dev_b = f"to{b}"[:15], f"to{a}"[:15]
            n.veth(ra, dev_a, rb, dev_b)
            base = f"10.{self._net}.{200 + k}"
            n.address(ra, dev_a, f"{base}.1/24")
            n.address(rb, dev_b, f"{base}.2/24")
            if inter_mbit:
                self._shape(ra, dev_a, inter_mbit)
                self._shape(rb, dev_b, inter_mbit)
            for subnet in subnets[b]:
                n.ip(ra, "route", "add", subnet, "via", f"{base}.2")
            for subnet in subnets[a]:
                n.ip(rb, "route", "add", subnet, "via", f"{base}.1")

    # -- using ----------------------------------------------------------------------------

    def ip(self, host: str) -> str:
        return self._hosts[host][1]

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """`argv` run inside `host`'s namespace."""
        return self._ns.command(self._hosts[host][0], argv)

    def popen(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return self._ns.popen(self._hosts[host][0], argv, **kwargs)

    def close(self) -> None:
        self._ns.close()

    def __enter__(self) -> ShapedNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- a pccl run across a shaped network -----------------------------------------------------

def _env() -> dict[str, str]:
    """The installed pccl first, then this repository (for `python -m bench.lib...`)."""
    import pccl

    package_root = str(Path(pccl.__file__).resolve().parents[1])
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [package_root, str(REPO), os.environ.get("PYTHONPATH")])))


def run_plan(net: ShapedNetwork, hosts: list[str], plan: list[dict[str, Any]],
             timeout: float = 600) -> list[list[dict[str, Any]]]:
    """Each peer's output lines (JSON), in `hosts` order."""
    env = _env()
    procs: list[subprocess.Popen[str]] = []
    watchdog: threading.Timer | None = None
    try:
        master = net.popen(hosts[0], [sys.executable, "-m", "pccl.master", "--listen-address",
                                      f"{net.ip(hosts[0])}:0"],
                           stdout=subprocess.PIPE, text=True, env=env)
        procs.append(master)
        line = master.stdout.readline() if master.stdout else ""
        if "listening on" not in line:
            raise RuntimeError(f"the master did not start: {line!r}")
        address = line.split()[-1]
        peers = []
        for rank, host in enumerate(hosts):
            p = net.popen(host, [sys.executable, "-m", "bench.lib.shaped_peer", address,
                                 str(len(hosts)), str(rank), json.dumps(plan)],
                          stdout=subprocess.PIPE, text=True, env=env)
            procs.append(p)
            peers.append(p)
            first = p.stdout.readline() if p.stdout else ""
            if not first:
                raise RuntimeError(f"peer {rank} ({host}) exited before it was admitted")
        # Read on with the text streams that read the first line (communicate() would skip
        # what they buffered); a timer kills everything if the plan overruns.
        def kill_all() -> None:
            for q in procs:
                q.kill()

        watchdog = threading.Timer(timeout, kill_all)
        watchdog.start()
        outputs = []
        for rank, p in enumerate(peers):
            out = p.stdout.read() if p.stdout else ""
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


def slowest(outputs: list[list[dict[str, Any]]], step: int) -> list[float]:
    """Per iteration, the slowest peer's time of plan step `step`."""
    per_peer = [lines[step]["times"] for lines in outputs]
    return [max(ts) for ts in zip(*per_peer)]
