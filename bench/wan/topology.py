"""The WAN lab's topology language: one line of `key=value` words (bench/wan/network.py).

    peers=N            peer nodes p0..p(N-1) (or regions=eu:2,us:1 -> eu0, eu1, us0)
    master=own|NODE|none
                       own: a node "master" in its own namespace, in the first peer's
                       region (own@REGION to choose); NODE: the master runs in that peer's
                       namespace (lab.ip(NODE)); none: no master (the default: own)
    rtt, delay         round-trip / one-way delay of every link (ms, us, s)
    rate               rate cap per direction per node pair (mbit, gbit, kbit; 0 = none)
    loss               random loss per packet (0.1% or 0.001)
    jitter             one-way delay jitter, uniform +-jitter, never reorders
    queue              drop-tail queue per link (bytes; default one bandwidth-delay product,
                       at least 256 KiB)
    window             TCP buffer cap in every node namespace (bytes, KiB, MiB; default:
                       the host's)
    A-B:k=v,k=v        link parameters between regions A and B (both directions), e.g.
                       eu-us:rtt=100ms,rate=400mbit; links inside a region use the
                       defaults unless given as eu-eu:...
    mtu=65000 seed=1 cc=NAME (default: the host's; a namespace may only pick algorithms in
                       net.ipv4.tcp_allowed_congestion_control)

Byte sizes here use SI prefixes for k/m/g (512k = 512000) and binary ones for KiB/MiB/GiB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "ki": 1024, "kib": 1024, "m": 1e6, "mb": 1e6,
          "mi": 1 << 20, "mib": 1 << 20, "g": 1e9, "gb": 1e9, "gi": 1 << 30, "gib": 1 << 30}


def parse_bytes(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?i?b?)", text.strip().lower())
    if not m:
        raise ValueError(f"bad byte size {text!r} (e.g. 512KiB, 4MiB, 65536)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def parse_seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(us|ms|s)?", text.strip().lower())
    if not m:
        raise ValueError(f"bad duration {text!r} (e.g. 50ms, 200us, 1s)")
    return float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, None: 1e-3}[m.group(2)]


def parse_rate(text: str) -> float:
    """Bits per second from e.g. 400mbit, 1gbit, 0."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(kbit|mbit|gbit|bit)?", text.strip().lower())
    if not m:
        raise ValueError(f"bad rate {text!r} (e.g. 400mbit, 1gbit, 0 for none)")
    return float(m.group(1)) * {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "bit": 1, None: 1e6}[
        m.group(2)]


def parse_fraction(text: str) -> float:
    text = text.strip()
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 <= value < 1:
        raise ValueError(f"loss must be in [0, 1), got {text!r}")
    return value


@dataclass(frozen=True)
class LinkSpec:
    """One direction of a node pair. delay and jitter in seconds, rate in bit/s (0: none)."""

    delay: float = 0.0
    rate: float = 0.0
    loss: float = 0.0
    jitter: float = 0.0
    queue: int | None = None  # bytes; None: one BDP, at least 256 KiB

    def queue_bytes(self) -> int:
        if self.queue is not None:
            return self.queue
        return max(256 << 10, int(self.rate / 8 * 2 * self.delay))

    def with_words(self, words: dict[str, str]) -> LinkSpec:
        spec = self
        for key, value in words.items():
            if key == "rtt":
                spec = replace(spec, delay=parse_seconds(value) / 2)
            elif key == "delay":
                spec = replace(spec, delay=parse_seconds(value))
            elif key == "rate":
                spec = replace(spec, rate=parse_rate(value))
            elif key == "loss":
                spec = replace(spec, loss=parse_fraction(value))
            elif key == "jitter":
                spec = replace(spec, jitter=parse_seconds(value))
            elif key == "queue":
                spec = replace(spec, queue=parse_bytes(value))
            else:
                raise ValueError(f"unknown link parameter {key!r}")
        return spec


LINK_KEYS = ("rtt", "delay", "rate", "loss", "jitter", "queue")


@dataclass
class Topology:
    nodes: dict[str, str] = field(default_factory=dict)  # node -> region, in address order
    master: str | None = "master"  # node whose namespace runs the master
    default: LinkSpec = LinkSpec()
    region_links: dict[tuple[str, str], LinkSpec] = field(default_factory=dict)
    window: int | None = None
    mtu: int = 65000
    cc: str | None = None  # None: the host's default (a namespace may not pick others)
    seed: int = 1
    text: str = ""

    @staticmethod
    def parse(text: str) -> Topology:
        top = Topology(text=text)
        words: dict[str, str] = {}
        pairs: dict[tuple[str, str], dict[str, str]] = {}
        for word in text.split():
            head, colon, rest = word.partition(":")
            if colon and "=" not in head:  # A-B:k=v,k=v
                a, dash, b = head.partition("-")
                if not dash or not rest:
                    raise ValueError(f"bad region link {word!r}; use e.g. eu-us:rtt=100ms")
                pairs[(a, b)] = dict(kv.split("=", 1) for kv in rest.split(","))
            elif "=" in word:
                key, _, value = word.partition("=")
                words[key] = value
            else:
                raise ValueError(f"topology words must be key=value, got {word!r}")
        if "regions" in words:
            for item in words.pop("regions").split(","):
                name, _, count = item.partition(":")
                for i in range(int(count or 1)):
                    top.nodes[f"{name}{i}"] = name
            words.pop("peers", None)
        else:
            top.nodes.update({f"p{i}": "r" for i in range(int(words.pop("peers", "2")))})
        if not top.nodes:
            raise ValueError("a topology needs at least one peer")
        first_region = next(iter(top.nodes.values()))
        master = words.pop("master", "own")
        if master == "none":
            top.master = None
        elif master.startswith("own"):
            top.nodes["master"] = master.partition("@")[2] or first_region
            top.master = "master"
        elif master in top.nodes:
            top.master = master
        else:
            raise ValueError(f"master={master!r}: not own, own@REGION, none or a peer name")
        top.default = LinkSpec().with_words({k: words.pop(k) for k in LINK_KEYS if k in words})
        if "window" in words:
            top.window = parse_bytes(words.pop("window"))
        top.mtu = int(words.pop("mtu", top.mtu))
        top.cc = words.pop("cc", None)
        top.seed = int(words.pop("seed", top.seed))
        if words:
            raise ValueError(f"unknown topology keys: {sorted(words)}")
        for (a, b), params in pairs.items():
            spec = top.default.with_words(params)
            top.region_links[(a, b)] = spec
            top.region_links[(b, a)] = spec
        if not 1280 <= top.mtu <= 65535:
            raise ValueError("mtu must be in [1280, 65535]")
        return top

    def link(self, src: str, dst: str) -> LinkSpec:
        return self.region_links.get((self.nodes[src], self.nodes[dst]), self.default)

    def peers(self) -> list[str]:
        return [n for n in self.nodes if n != "master"]
