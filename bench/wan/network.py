"""The WAN lab: peers in network namespaces, linked through a packet-level link emulator.

    with Lab("peers=3 master=own rtt=100ms rate=400mbit window=512KiB") as lab:
        lab.popen("p1", ["python3", "-c", "..."])          # a command inside p1's namespace
        proc = lab.process("p0", some_function, args)       # a Python function inside p0
        print(lab.ip("master"), lab.stats())
        lab.blackhole("p0", "p1", seconds=2)               # faults at run time: faults.py

How the lab is wired (namespaces, veths and processes come from bench/lib/netns.py, so
their names start with its per-process prefix, `pccl-<pid>-<n>-`):

    node namespace (p0, p1, ..., master)          router namespace
      eth0 10.201.<i>.2/24  <-- veth pair -->  v<i> 10.201.<i>.1/24
      default via 10.201.<i>.1                    ip rule: iif v<i> -> table 100
                                                  table 100: default dev tun0
                                                  wanemu reads tun0, delays / shapes /
                                                  drops, writes back into tun0; the main
                                                  table then delivers to v<dst>

Every packet between two nodes crosses the emulator (bench/wan/wanemu.cc) exactly once, on
the link (src node -> dst node); that link's one-way delay, jitter, rate cap, random loss
and drop-tail queue come from the topology (bench/wan/topology.py), and can change at run
time, with blackholes, flaps and TCP resets, through the emulator's control socket
(bench/wan/faults.py: the Lab methods blackhole, heal, flap, loss_burst, set_link,
reset_link, restore). TCP buffers in every node namespace are capped at `window` bytes
(tcp_rmem / tcp_wmem max; rmem_max / wmem_max so that an explicit SO_RCVBUF / SO_SNDBUF
ends at the same size), so one TCP stream moves at most about window / RTT. MTU is large
(65000 by default) so the emulator moves few packets.

Requires root, /dev/net/tun, `ip` and g++; `requirements()` says which is missing. The lab
tears everything down on close(), at exit, and on SIGINT / SIGTERM / SIGHUP.
`python -m bench.wan.lab --help` for the CLI (run, selfcheck, cleanup, build).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.lib import netns
from bench.wan.faults import Faults
from bench.wan.topology import Topology

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SOURCES = [HERE / "wanemu.cc", HERE / "wanemu_faults.cc"]
HEADERS = [HERE / "wanemu.h"]
BINARY = REPO / "build" / "wan" / "wanemu"
SUBNET = "10.201"
TABLE = 100


# --- the emulator binary ------------------------------------------------------------------

def build_emulator() -> Path:
    """Compiles wanemu into build/wan/ when the binary is missing or older than a source."""
    newest = max(f.stat().st_mtime for f in SOURCES + HEADERS)
    if BINARY.exists() and BINARY.stat().st_mtime >= newest:
        return BINARY
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    tmp = BINARY.with_suffix(f".tmp{os.getpid()}")  # concurrent builders don't collide
    cmd = ["g++", "-O2", "-std=c++20", "-pthread", "-Wall", "-Wextra", "-o", str(tmp),
           *map(str, SOURCES)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"building the emulator failed: {' '.join(cmd)}\n{done.stderr}")
    tmp.replace(BINARY)
    return BINARY


def requirements() -> str | None:
    """Why the lab cannot run here, or None if it can (root, TUN, ip, a built emulator, and
    the right to create a namespace with a TUN device in it)."""
    reason = netns.unavailable_reason(tools=("ip",), tun=True)
    if reason is not None:
        return f"the WAN lab {reason}"
    try:
        build_emulator()
    except (RuntimeError, OSError) as e:
        return f"the WAN link emulator does not build: {e}"
    return None


# --- the lab ------------------------------------------------------------------------------

class Lab(Faults):
    """A running topology: namespaces, veths, the TUN, routing, and the emulator; the
    fault methods (blackhole, heal, flap, loss_burst, set_link, reset_link, restore,
    link_state, fault, control) come from bench/wan/faults.py."""

    def __init__(self, topology: Topology | str, *, prefix: str | None = None):
        self.top = Topology.parse(topology) if isinstance(topology, str) else topology
        reason = requirements()
        if reason is not None:
            raise RuntimeError(reason)
        self._net = netns.Namespaces(prefix)
        self.prefix = self._net.prefix
        self.router = self.prefix + "r"
        self._emu: subprocess.Popen[str] | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="pccl-wan-"))
        self._stats_path = self._tmp / "stats.json"
        self._stats_seq = 0
        self._control_path = self._tmp / "control.sock"
        self._control_sock = None
        self._control_lock = threading.Lock()
        self._closed = False
        self.socket_max_enforced = False
        netns.close_at_exit(self)  # after its namespaces: closes first
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
        top, n = self.top, self._net
        mtu = str(top.mtu)
        r = n.add("r")
        n.sysctl(r, [("net.ipv4.ip_forward", "1"), ("net.ipv4.conf.all.rp_filter", "0"),
                     ("net.ipv4.conf.default.rp_filter", "0"),
                     ("net.ipv4.conf.all.send_redirects", "0"),
                     ("net.ipv4.conf.default.send_redirects", "0")])
        n.ip(r, "tuntap", "add", "dev", "tun0", "mode", "tun")
        n.ip(r, "link", "set", "tun0", "mtu", mtu, "up")
        n.ip(r, "route", "add", "default", "dev", "tun0", "table", str(TABLE))
        for i, node in enumerate(top.nodes):
            ns = n.add(node)
            veth = f"v{i}"
            n.veth(r, veth, ns, "eth0", mtu=top.mtu)
            n.address(r, veth, f"{SUBNET}.{i}.1/24")
            n.ip(r, "rule", "add", "iif", veth, "lookup", str(TABLE), "pref", "100")
            n.address(ns, "eth0", f"{SUBNET}.{i}.2/24")
            n.ip(ns, "route", "add", "default", "via", f"{SUBNET}.{i}.1")
            self._tune_tcp(ns)
        self._start_emulator()

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
        self._net.sysctl(ns, settings)
        if w is not None:
            self._net.sysctl(ns, [("net.core.rmem_max", str(w // 2)),
                                  ("net.core.wmem_max", str(w // 2))], check=False)
            now = self._net.read_sysctl(ns, "net.core.rmem_max")
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
        """Runs wanemu in the router namespace. Not one of the namespaces' processes: it
        stops last, with SIGTERM, after everything that sends through it."""
        config = self._tmp / "wanemu.conf"
        config.write_text(self._config_text())
        self._emu = subprocess.Popen(
            self._net.command(self.router, [str(BINARY), "--config", str(config),
                                            "--stats", str(self._stats_path),
                                            "--control", str(self._control_path)]),
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
        self._close_control()
        self._net.stop_processes()
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
        self._net.close()
        shutil.rmtree(self._tmp, ignore_errors=True)
        netns.forget(self)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running things in nodes -------------------------------------------------------

    def popen(self, node: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Starts `argv` inside `node`'s namespace, in a session of its own; the lab kills
        its process group on close()."""
        return self._net.popen(self.netns(node), argv, **kwargs)

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
        return self._net.spawn(self.netns(node), target, args, **kwargs)

    def stats(self) -> dict[str, Any]:
        """The emulator's per-link counters (packets, bytes, drops; drop_fault: dropped by a
        blackhole or a reset), keyed 'src->dst', and the RSTs it injected."""
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
                        "write_errors": data["write_errors"],
                        "rst_injected": data["rst_injected"], "links": links}
            time.sleep(0.01)
        raise TimeoutError("the emulator did not write its stats")
