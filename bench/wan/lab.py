"""The WAN lab: peers in network namespaces, linked through a packet-level link emulator.

    with Lab("peers=3 master=own rtt=100ms rate=400mbit window=512KiB") as lab:
        lab.popen("p1", ["python3", "-c", "..."])          # a command inside p1's namespace
        proc = lab.process("p0", some_function, args)       # a Python function inside p0
        print(lab.ip("master"), lab.stats())

How the lab is wired (all names start with a per-process prefix, `pwl-<pid>-`):

    node namespace (p0, p1, ..., master)          router namespace
      eth0 10.201.<i>.2/24  <-- veth pair -->  v<i> 10.201.<i>.1/24
      default via 10.201.<i>.1                    ip rule: iif v<i> -> table 100
                                                  table 100: default dev tun0
                                                  wanemu reads tun0, delays / shapes /
                                                  drops, writes back into tun0; the main
                                                  table then delivers to v<dst>

Every packet between two nodes crosses the emulator (bench/wan/wanemu.cc) exactly once, on
the link (src node -> dst node); that link's one-way delay, jitter, rate cap, random loss
and drop-tail queue come from the topology. TCP buffers in every node namespace are capped
at `window` bytes (tcp_rmem / tcp_wmem max; rmem_max / wmem_max so that an explicit
SO_RCVBUF / SO_SNDBUF ends at the same size), so one TCP stream moves at most about
window / RTT. MTU is large (65000 by default) so the emulator moves few packets.

Topology description: space-separated `key=value` words.

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

Requires root, /dev/net/tun, `ip` and g++; `requirements()` says which is missing. The lab
tears everything down on close(), at exit, and on SIGINT / SIGTERM / SIGHUP.
`python bench/wan/lab.py --help` for the CLI (run, shell-less `exec`, selfcheck, cleanup).
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SOURCE = HERE / "wanemu.cc"
BINARY = REPO / "build" / "wan" / "wanemu"
SUBNET = "10.201"
TABLE = 100
CLONE_NEWNET = 0x40000000


# --- the emulator binary ------------------------------------------------------------------

def build_emulator() -> Path:
    """Compiles wanemu into build/wan/ when the binary is missing or older than its source."""
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    tmp = BINARY.with_suffix(f".tmp{os.getpid()}")  # concurrent builders don't collide
    cmd = ["g++", "-O2", "-std=c++20", "-pthread", "-Wall", "-Wextra", "-o", str(tmp),
           str(SOURCE)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"building the emulator failed: {' '.join(cmd)}\n{done.stderr}")
    tmp.replace(BINARY)
    return BINARY


def requirements() -> str | None:
    """Why the lab cannot run here, or None if it can (root, TUN, ip, a built emulator, and
    the right to create a namespace with a TUN device in it)."""
    if os.geteuid() != 0:
        return "the WAN lab needs root (network namespaces, TUN)"
    if not os.path.exists("/dev/net/tun"):
        return "the WAN lab needs /dev/net/tun"
    if shutil.which("ip") is None:
        return "the WAN lab needs `ip` (iproute2)"
    try:
        build_emulator()
    except (RuntimeError, OSError) as e:
        return f"the WAN link emulator does not build: {e}"
    probe = f"pwl-{os.getpid()}-probe"
    try:  # a container may be root without the right to make namespaces or TUN devices
        _sh("ip", "netns", "add", probe)
        _sh("ip", "-n", probe, "tuntap", "add", "dev", "tun0", "mode", "tun")
    except RuntimeError as e:
        return f"cannot create a network namespace with a TUN device here: {e}"
    finally:
        _sh("ip", "netns", "del", probe, check=False)
    return None


# --- topology -----------------------------------------------------------------------------

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


# --- namespaces ---------------------------------------------------------------------------

def enter_netns(name: str) -> None:
    """Moves the calling thread (and threads it starts later) into network namespace `name`."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _in_netns(netns: str, target: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    enter_netns(netns)
    return target(*args)


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def _sysctl(netns: str, settings: list[tuple[str, str]], *, check: bool = True) -> bool:
    """Writes /proc/sys keys inside `netns` (a shell, not procps' sysctl: one package less).
    /proc/sys/net shows the namespace of the process that opens it."""
    for key, value in settings:
        if not re.fullmatch(r"[\w.]+", key) or not re.fullmatch(r"[\w ]+", value):
            raise ValueError(f"bad sysctl {key}={value!r}")
    script = "set -e; " + "; ".join(f"printf '%s' '{v}' > /proc/sys/{k.replace('.', '/')}"
                                    for k, v in settings)
    return _sh("ip", "netns", "exec", netns, "sh", "-c", script, check=check).returncode == 0


def _read_sysctl(netns: str, key: str) -> str:
    return _sh("ip", "netns", "exec", netns, "cat", "/proc/sys/" + key.replace(".", "/")).stdout


_live: list[Lab] = []
_handlers_installed = False


def _close_all() -> None:
    for lab in _live[::-1]:  # a copy: close() removes the lab from _live
        lab.close()


def _on_signal(signum: int, frame: Any) -> None:
    _close_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_close_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)
        # SIGINT stays Python's KeyboardInterrupt, which unwinds through close().


class Lab:
    """A running topology: namespaces, veths, the TUN, routing, and the emulator."""

    def __init__(self, topology: Topology | str, *, prefix: str | None = None):
        self.top = Topology.parse(topology) if isinstance(topology, str) else topology
        self.prefix = prefix or f"pwl-{os.getpid()}-{len(_live)}-"
        self.router = self.prefix + "r"
        self._namespaces: list[str] = []
        self._procs: list[Any] = []
        self._emu: subprocess.Popen[str] | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="pccl-wan-"))
        self._stats_seq = 0
        self._closed = False
        self.socket_max_enforced = False
        reason = requirements()
        if reason is not None:
            raise RuntimeError(reason)
        _install_handlers()
        _live.append(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # -- addresses ------------------------------------------------------------------------

    def index(self, node: str) -> int:
        return list(self.top.nodes).index(node)

    def ip(self, node: str) -> str:
        return f"{SUBNET}.{self.index(node)}.2"

    def netns(self, node: str) -> str:
        return self.prefix + node

    def master_ip(self) -> str:
        if self.top.master is None:
            raise RuntimeError("this topology has no master (master=none)")
        return self.ip(self.top.master)

    # -- building and tearing down ---------------------------------------------------------

    def _build(self) -> None:
        top, r = self.top, self.router
        mtu = str(top.mtu)
        self._add_netns(r)
        _sh("ip", "-n", r, "link", "set", "lo", "up")
        _sysctl(r, [("net.ipv4.ip_forward", "1"), ("net.ipv4.conf.all.rp_filter", "0"),
                    ("net.ipv4.conf.default.rp_filter", "0"),
                    ("net.ipv4.conf.all.send_redirects", "0"),
                    ("net.ipv4.conf.default.send_redirects", "0")])
        _sh("ip", "-n", r, "tuntap", "add", "dev", "tun0", "mode", "tun")
        _sh("ip", "-n", r, "link", "set", "tun0", "mtu", mtu, "up")
        _sh("ip", "-n", r, "route", "add", "default", "dev", "tun0", "table", str(TABLE))
        for i, node in enumerate(top.nodes):
            ns = self.netns(node)
            self._add_netns(ns)
            veth = f"v{i}"
            _sh("ip", "-n", r, "link", "add", veth, "mtu", mtu, "type", "veth", "peer", "name",
                "eth0", "mtu", mtu, "netns", ns)
            _sh("ip", "-n", r, "addr", "add", f"{SUBNET}.{i}.1/24", "dev", veth)
            _sh("ip", "-n", r, "link", "set", veth, "up")
            _sh("ip", "-n", r, "rule", "add", "iif", veth, "lookup", str(TABLE), "pref", "100")
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            _sh("ip", "-n", ns, "addr", "add", f"{SUBNET}.{i}.2/24", "dev", "eth0")
            _sh("ip", "-n", ns, "link", "set", "eth0", "up")
            _sh("ip", "-n", ns, "route", "add", "default", "via", f"{SUBNET}.{i}.1")
            self._tune_tcp(ns)
        self._start_emulator()

    def _add_netns(self, name: str) -> None:
        _sh("ip", "netns", "add", name)
        self._namespaces.append(name)

    def _tune_tcp(self, ns: str) -> None:
        """TCP settings of one node: buffer caps (the window), congestion control, and no
        metrics carried from one connection to the next.

        net.core.rmem_max / wmem_max are set too where the kernel keeps them per namespace
        (so that an explicit SO_RCVBUF, which the kernel doubles, ends at the same cap);
        where it does not (EINVAL, as on 6.18), a program that sets SO_RCVBUF / SO_SNDBUF
        itself escapes the window; pccl with PCCL_SOCKET_BUFFER_BYTES=0 and Gloo do not.
        """
        settings = [("net.ipv4.tcp_no_metrics_save", "1")]
        if self.top.cc is not None:  # a namespace may only pick an allowed algorithm
            settings.append(("net.ipv4.tcp_congestion_control", self.top.cc))
        w = self.top.window
        if w is not None:
            settings += [("net.ipv4.tcp_rmem", f"4096 {min(131072, w)} {w}"),
                         ("net.ipv4.tcp_wmem", f"4096 {min(16384, w)} {w}")]
        _sysctl(ns, settings)
        if w is not None:
            _sysctl(ns, [("net.core.rmem_max", str(w // 2)), ("net.core.wmem_max", str(w // 2))],
                    check=False)
            now = _read_sysctl(ns, "net.core.rmem_max")
            self.socket_max_enforced = now.strip() == str(w // 2)

    def _config_text(self) -> str:
        lines = ["tun tun0", f"seed {self.top.seed}"]
        names = list(self.top.nodes)
        for i, node in enumerate(names):
            lines.append(f"node {i} {self.ip(node)}")
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                if i == j:
                    continue
                s = self.top.link(a, b)
                lines.append(f"link {i} {j} {round(s.delay * 1e6)} {round(s.jitter * 1e6)} "
                             f"{s.rate:.0f} {s.loss!r} {s.queue_bytes()}")
        return "\n".join(lines) + "\n"

    def _start_emulator(self) -> None:
        config = self._tmp / "wanemu.conf"
        config.write_text(self._config_text())
        self._stats_path = self._tmp / "stats.json"
        self._emu = subprocess.Popen(
            ["ip", "netns", "exec", self.router, str(BINARY), "--config", str(config),
             "--stats", str(self._stats_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self._emu.stdout is not None
        line = self._emu.stdout.readline()
        if "ready" not in line:
            err = self._emu.stderr.read() if self._emu.stderr else ""
            raise RuntimeError(f"the emulator did not start: {line!r} {err}")

    def close(self) -> None:
        """Stops every process the lab started, the emulator, and deletes the namespaces.
        Idempotent; safe from atexit and signal handlers."""
        if self._closed:
            return
        self._closed = True
        for proc in self._procs:
            try:
                if isinstance(proc, subprocess.Popen):
                    if proc.poll() is None:
                        try:  # its own session (popen): the whole group, shell children too
                            os.killpg(proc.pid, signal.SIGKILL)
                        except (ProcessLookupError, PermissionError):
                            proc.kill()
                        proc.wait(timeout=10)
                elif proc.is_alive():
                    proc.kill()
                    proc.join(timeout=10)
            except Exception as e:  # noqa: BLE001 - teardown goes on
                print(f"lab: stopping {proc}: {e}", file=sys.stderr)
        if self._emu is not None and self._emu.poll() is None:
            self._emu.terminate()
            try:
                self._emu.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._emu.kill()
                self._emu.wait(timeout=5)
        if self._emu is not None:
            for pipe in (self._emu.stdout, self._emu.stderr):
                if pipe is not None:
                    pipe.close()
        for ns in reversed(self._namespaces):
            _sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self._tmp, ignore_errors=True)
        if self in _live:
            _live.remove(self)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running things in nodes -------------------------------------------------------

    def popen(self, node: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Starts `argv` inside `node`'s namespace, in a session of its own; the lab kills
        its process group on close()."""
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(["ip", "netns", "exec", self.netns(node), *argv], **kwargs)
        self._procs.append(proc)
        return proc

    def run(self, node: str, argv: Sequence[str], timeout: float | None = None,
            **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        proc = self.popen(node, argv, **kwargs)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def process(self, node: str, target: Callable[..., Any], args: tuple[Any, ...] = (),
                **kwargs: Any) -> Any:
        """A started multiprocessing (spawn) Process that runs target(*args) inside `node`'s
        namespace; the lab kills it on close()."""
        ctx = mp.get_context("spawn")
        proc = ctx.Process(target=_in_netns, args=(self.netns(node), target, args), daemon=True,
                           **kwargs)
        proc.start()
        self._procs.append(proc)
        return proc

    def stats(self) -> dict[str, Any]:
        """The emulator's per-link counters (packets, bytes, drops), keyed 'src->dst'."""
        if self._emu is None or self._emu.poll() is not None:
            raise RuntimeError("the emulator is not running")
        self._stats_seq += 1
        self._emu.send_signal(signal.SIGUSR1)
        names = list(self.top.nodes)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                data = json.loads(self._stats_path.read_text())
            except (OSError, ValueError):
                data = {"seq": -1}
            if data["seq"] >= self._stats_seq:
                links = {}
                for link in data["links"]:
                    key = ("unshaped" if link["src"] < 0 else
                           f"{names[link['src']]}->{names[link['dst']]}")
                    links[key] = link
                return {"unknown_packets": data["unknown_packets"],
                        "write_errors": data["write_errors"], "links": links}
            time.sleep(0.01)
        raise TimeoutError("the emulator did not write its stats")


def cleanup_stale() -> list[str]:
    """Deletes lab namespaces (pwl-<pid>-...) whose creating process is gone."""
    removed = []
    for name in _sh("ip", "netns", "list").stdout.split():
        m = re.match(r"pwl-(\d+)-", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            _sh("ip", "netns", "del", name, check=False)
            removed.append(name)
    return removed


# --- measurement tools (each runs inside a node) -----------------------------------------

def _echo_server(port: int, ready: Any) -> None:
    srv = socket.create_server(("0.0.0.0", port))
    ready.send(True)
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := conn.recv(4096):
        conn.sendall(data)


def _echo_client(host: str, port: int, count: int, out: Any) -> None:
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtts = []
    for _ in range(count):
        t = time.perf_counter()
        s.sendall(b"x" * 64)
        got = 0
        while got < 64:
            got += len(s.recv(64 - got))
        rtts.append(time.perf_counter() - t)
    s.close()
    out.send(rtts)


def _sink(port: int, streams: int, duration: float, warmup: float, ready: Any,
          out: Any) -> None:
    """Accepts `streams` connections, drains them; reports bytes/s between warmup and the end."""
    import selectors

    srv = socket.create_server(("0.0.0.0", port), backlog=streams)
    ready.send(True)
    conns = [srv.accept()[0] for _ in range(streams)]
    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c, selectors.EVENT_READ)
    buf = bytearray(1 << 20)
    total, counted, t0 = 0, 0, time.perf_counter()
    t_begin, t_end, open_ = t0 + warmup, t0 + duration, len(conns)
    last = t0
    while open_:
        for key, _ in sel.select(timeout=1.0):
            n = key.fileobj.recv_into(buf)  # type: ignore[union-attr]
            if n == 0:
                sel.unregister(key.fileobj)
                open_ -= 1
                continue
            now = time.perf_counter()
            total += n
            if t_begin <= now <= t_end:
                counted += n
                last = now
    out.send({"bytes": total, "rate": counted / max(1e-9, last - t_begin)})


def _source(host: str, port: int, streams: int, duration: float) -> None:
    socks = [socket.create_connection((host, port), timeout=30) for _ in range(streams)]
    for s in socks:
        s.setblocking(False)
    import selectors

    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_WRITE)
    chunk = memoryview(bytes(1 << 20))
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        for key, _ in sel.select(timeout=0.2):
            try:
                key.fileobj.send(chunk)  # type: ignore[union-attr]
            except BlockingIOError:
                pass
    for s in socks:
        s.close()


def measure_rtt(lab: Lab, a: str, b: str, count: int = 20, port: int = 5201) -> float:
    """Median TCP echo round trip a -> b -> a, seconds (first exchange dropped)."""
    ctx = mp.get_context("spawn")
    ready_r, ready_w = ctx.Pipe(duplex=False)
    out_r, out_w = ctx.Pipe(duplex=False)
    server = lab.process(b, _echo_server, (port, ready_w))
    if not ready_r.poll(30):
        raise TimeoutError("echo server did not start")
    ready_r.recv()
    client = lab.process(a, _echo_client, (lab.ip(b), port, count + 1, out_w))
    if not out_r.poll(60):
        raise TimeoutError("echo client did not finish")
    rtts = sorted(out_r.recv()[1:])
    client.join(10)
    server.join(10)
    return rtts[len(rtts) // 2]


def measure_throughput(lab: Lab, a: str, b: str, streams: int, duration: float,
                       warmup: float, port: int = 5202) -> float:
    """Bytes/s from a to b over `streams` TCP connections, counted after `warmup` s."""
    ctx = mp.get_context("spawn")
    ready_r, ready_w = ctx.Pipe(duplex=False)
    out_r, out_w = ctx.Pipe(duplex=False)
    sink = lab.process(b, _sink, (port, streams, duration, warmup, ready_w, out_w))
    if not ready_r.poll(30):
        raise TimeoutError("sink did not start")
    ready_r.recv()
    source = lab.process(a, _source, (lab.ip(b), port, streams, duration))
    if not out_r.poll(duration + 60):
        raise TimeoutError("throughput measurement did not finish")
    result = out_r.recv()
    source.join(10)
    sink.join(10)
    return float(result["rate"])


# --- self-check -------------------------------------------------------------------------

def selfcheck(args: argparse.Namespace) -> int:
    """RTT, single-stream and 16-stream throughput against the configured link, and the
    raw forwarding rate with no shaping. Prints a table and JSON."""
    rows: list[dict[str, Any]] = []
    ok = True

    def row(what: str, expected: float | None, measured: float, unit: str, tolerance: float | None,
            note: str = "") -> None:
        nonlocal ok
        ratio = measured / expected if expected else None
        passed = None if tolerance is None or ratio is None else abs(ratio - 1) <= tolerance
        if passed is False:
            ok = False
        rows.append({"what": what, "expected": expected, "measured": measured, "unit": unit,
                     "ratio": ratio, "pass": passed, "note": note})

    with Lab(f"peers=2 master=none mtu={args.mtu}") as lab:
        for streams in (1, 4):
            rate = measure_throughput(lab, "p0", "p1", streams, args.duration, 1.0)
            row(f"raw forwarding, {streams} stream(s), no shaping", None, rate / 1e6, "MB/s",
                None, "target >= 300 MB/s")
            rows[-1]["pass"] = rate >= 300e6
            ok &= rate >= 300e6
    for rtt_ms in args.rtt:
        desc = (f"peers=2 master=none rtt={rtt_ms}ms rate={args.rate} window={args.window} "
                f"mtu={args.mtu}")
        top = Topology.parse(desc)
        with Lab(top) as lab:
            rtt = measure_rtt(lab, "p0", "p1")
            row(f"RTT ({desc})", rtt_ms, rtt * 1e3, "ms", 0.10)
            window = top.window or 0
            one = measure_throughput(lab, "p0", "p1", 1, args.duration + rtt_ms / 100,
                                     1.0 + rtt_ms / 100)
            # Linux advertises about 3/4 of the buffer as window (sk scaling_ratio), so one
            # stream moves ~0.75 x buffer / RTT; the check accepts 0.6-1.1 of buffer / RTT.
            row(f"1 stream, window {window >> 10} KiB", window / (rtt_ms / 1e3) / 1e6,
                one / 1e6, "MB/s", None, "expected: window / RTT (kernel: ~0.75x)")
            rows[-1]["pass"] = 0.6 <= rows[-1]["ratio"] <= 1.1
            ok &= rows[-1]["pass"]
            many = measure_throughput(lab, "p0", "p1", 16, args.duration + rtt_ms / 100,
                                      1.0 + rtt_ms / 100)
            cap = top.default.rate / 8
            row("16 streams", cap / 1e6, many / 1e6, "MB/s", 0.10, "expected: rate cap")
            rows[-1]["drops"] = {k: v["drop_queue"] for k, v in lab.stats()["links"].items()
                                 if v["drop_queue"]}
    print(f"{'check':58} {'expected':>9} {'measured':>9} {'unit':>5} {'ratio':>6} pass")
    for r in rows:
        exp = "-" if r["expected"] is None else f"{r['expected']:.2f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['what']:58} {exp:>9} {r['measured']:9.2f} {r['unit']:>5} {ratio:>6} "
              f"{'-' if r['pass'] is None else ('yes' if r['pass'] else 'NO')}")
    print(json.dumps(rows, indent=1))
    return 0 if ok else 1


# --- CLI ----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pccl WAN lab (see the module docstring)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="build a topology, run one command per node, tear down")
    p.add_argument("topology", help='e.g. "peers=3 rtt=100ms rate=400mbit window=512KiB"')
    p.add_argument("--node", action="append", nargs=2, metavar=("NODE", "COMMAND"), default=[],
                   help="run COMMAND (a shell line) in NODE; repeatable; $MASTER, $IP_<NODE>"
                        " are set")
    p.add_argument("--bg", action="append", nargs=2, metavar=("NODE", "COMMAND"), default=[],
                   help="like --node, but not waited for (e.g. the master); killed at the end")
    p.add_argument("--timeout", type=float, default=600)
    c = sub.add_parser("selfcheck", help="measure RTT, throughput and forwarding rate")
    c.add_argument("--rtt", type=float, nargs="+", default=[50, 100], help="ms")
    c.add_argument("--rate", default="400mbit")
    c.add_argument("--window", default="512KiB")
    c.add_argument("--mtu", type=int, default=65000)
    c.add_argument("--duration", type=float, default=5.0, help="seconds per throughput check")
    sub.add_parser("cleanup", help="delete namespaces left by dead lab processes")
    sub.add_parser("build", help="build the emulator")
    args = parser.parse_args(argv)

    if args.cmd == "build":
        print(build_emulator())
        return 0
    reason = requirements()
    if reason is not None:
        print(f"lab.py: {reason}", file=sys.stderr)
        return 2
    if args.cmd == "cleanup":
        print("\n".join(cleanup_stale()) or "nothing to clean")
        return 0
    if args.cmd == "selfcheck":
        return selfcheck(args)
    with Lab(args.topology) as lab:
        env = dict(os.environ)
        if lab.top.master is not None:
            env["MASTER"] = f"{lab.master_ip()}:48148"
        for node in lab.top.nodes:
            env[f"IP_{node.upper()}"] = lab.ip(node)
        for node, cmd in args.bg:
            lab.popen(node, ["sh", "-c", cmd], env=env)
        procs = [(node, lab.popen(node, ["sh", "-c", cmd], env=env)) for node, cmd in args.node]
        rc = 0
        deadline = time.monotonic() + args.timeout
        for node, proc in procs:
            try:
                code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"lab.py: {node}: timed out", file=sys.stderr)
                code = 124
            print(f"lab.py: {node} exited {code}", file=sys.stderr)
            rc = rc or code
        print(json.dumps(lab.stats(), indent=1))
        return rc


if __name__ == "__main__":
    sys.exit(main())
