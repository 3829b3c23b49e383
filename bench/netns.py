"""Shaped networks on one machine: network namespaces, veth pairs and tc htb (needs root).

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
its router; routers talk over 10.<net>.(200 + k).0/24. Names carry a per-process prefix,
and close() deletes every namespace it made (deleting a namespace deletes its veths).
Send traffic only between these namespaces; nothing is routed to the outside.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any


def unavailable_reason() -> str | None:
    """Why shaped networks cannot be built here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs the `{tool}` command (iproute2)"
    probe = f"pnprobe{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _run(*argv: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")


class ShapedNetwork:
    def __init__(self, regions: dict[str, Sequence[str]], *, inter_region_mbit: float | None,
                 uplink_mbit: float | None = None, net: int | None = None):
        self._prefix = f"pn{os.getpid() % 100000}"
        self._net = net if net is not None else 64 + os.getpid() % 128
        self._namespaces: list[str] = []
        self._hosts: dict[str, tuple[str, str]] = {}  # host -> (namespace, address)
        try:
            self._build(regions, inter_region_mbit, uplink_mbit)
        except BaseException:
            self.close()
            raise

    # -- building -----------------------------------------------------------------------

    def _namespace(self, name: str) -> str:
        ns = f"{self._prefix}-{name}"
        _run("ip", "netns", "add", ns)
        self._namespaces.append(ns)
        self._in(ns, "ip", "link", "set", "lo", "up")
        return ns

    def _in(self, ns: str, *argv: str) -> None:
        _run("ip", "netns", "exec", ns, *argv)

    def _veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
        tmp_a, tmp_b = f"{self._prefix}x{len(self._namespaces)}a", f"{self._prefix}x{len(self._namespaces)}b"
        _run("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        _run("ip", "link", "set", tmp_a, "netns", ns_a)
        _run("ip", "link", "set", tmp_b, "netns", ns_b)
        self._in(ns_a, "ip", "link", "set", tmp_a, "name", name_a)
        self._in(ns_b, "ip", "link", "set", tmp_b, "name", name_b)

    def _address(self, ns: str, dev: str, cidr: str) -> None:
        self._in(ns, "ip", "addr", "add", cidr, "dev", dev)
        self._in(ns, "ip", "link", "set", dev, "up")

    def _shape(self, ns: str, dev: str, mbit: float) -> None:
        """Caps what `dev` sends at `mbit`: htb, with a byte-limited FIFO behind it that
        holds about 50 ms at that rate (veths pass 64 KiB GSO packets, so a queue counted
        in packets would hold seconds of traffic and starve flows that start later)."""
        rate = f"{mbit}mbit"
        queue = max(64 << 10, int(mbit * 1e6 / 8 * 0.05))
        self._in(ns, "tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10")
        self._in(ns, "tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb",
                 "rate", rate, "ceil", rate)
        self._in(ns, "tc", "qdisc", "add", "dev", dev, "parent", "1:10", "handle", "10:",
                 "bfifo", "limit", str(queue))

    def _build(self, regions: dict[str, Sequence[str]], inter_mbit: float | None,
               uplink_mbit: float | None) -> None:
        routers = {region: self._namespace(f"r{region}") for region in regions}
        for ns in routers.values():
            self._in(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        subnets: dict[str, list[str]] = {region: [] for region in regions}
        index = itertools.count(1)
        for region, hosts in regions.items():
            for host in hosts:
                i = next(index)
                ns = self._namespace(host)
                self._veth(ns, "eth0", routers[region], f"h{i}")
                base = f"10.{self._net}.{i}"
                self._address(ns, "eth0", f"{base}.2/24")
                self._address(routers[region], f"h{i}", f"{base}.1/24")
                self._in(ns, "ip", "route", "add", "default", "via", f"{base}.1")
                if uplink_mbit:
                    self._shape(ns, "eth0", uplink_mbit)
                self._hosts[host] = (ns, f"{base}.2")
                subnets[region].append(f"{base}.0/24")
        for k, (a, b) in enumerate(itertools.combinations(regions, 2)):
            ra, rb = routers[a], routers[b]
            self._veth(ra, f"to{b}"[:15], rb, f"to{a}"[:15])
            base = f"10.{self._net}.{200 + k}"
            self._address(ra, f"to{b}"[:15], f"{base}.1/24")
            self._address(rb, f"to{a}"[:15], f"{base}.2/24")
            if inter_mbit:
                self._shape(ra, f"to{b}"[:15], inter_mbit)
                self._shape(rb, f"to{a}"[:15], inter_mbit)
            for subnet in subnets[b]:
                self._in(ra, "ip", "route", "add", subnet, "via", f"{base}.2")
            for subnet in subnets[a]:
                self._in(rb, "ip", "route", "add", subnet, "via", f"{base}.1")

    # -- using ----------------------------------------------------------------------------

    def ip(self, host: str) -> str:
        return self._hosts[host][1]

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """`argv` run inside `host`'s namespace."""
        return ["ip", "netns", "exec", self._hosts[host][0], *argv]

    def popen(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        return subprocess.Popen(self.command(host, argv), **kwargs)

    def close(self) -> None:
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._namespaces.clear()

    def __enter__(self) -> ShapedNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
