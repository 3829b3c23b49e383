"""Network namespaces on one machine: the one place that creates, enters and deletes them.

Both network stacks of the benchmarks build on this module: the shaped networks
(bench/lib/shaped.py: routers and hosts joined by veth pairs, rates capped by tc htb) and
the WAN lab (bench/wan/network.py: nodes behind a router whose TUN device feeds the link
emulator). A `Namespaces` object owns a set of namespaces and the processes started in
them:

    with Namespaces() as net:
        a, b = net.add("a"), net.add("b")           # full names, e.g. "pccl-1234-0-a"
        net.veth(a, "eth0", b, "eth0")
        net.address(a, "eth0", "10.9.0.1/24")
        net.address(b, "eth0", "10.9.0.2/24")
        net.ip(a, "route", "add", "default", "via", "10.9.0.2")   # `ip -n a route ...`
        net.sysctl(b, [("net.ipv4.ip_forward", "1")])
        proc = net.popen(a, ["ping", "-c1", "10.9.0.2"])        # a command inside `a`
        child = net.spawn(b, some_function, (arg,))            # a Python function inside `b`

close() (also at exit, and on SIGTERM / SIGHUP: `close_at_exit`) kills every process the
object started, then deletes its namespaces, which deletes the veths in them. Names carry
a per-process prefix (`pccl-<pid>-<n>-`), so `cleanup_stale()` can remove the leftovers of
a process that was SIGKILLed. Everything here needs root and `ip` (iproute2).
"""

from __future__ import annotations

import atexit
import ctypes
import multiprocessing as mp
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

CLONE_NEWNET = 0x40000000
PREFIX = "pccl-"  # every namespace made here: pccl-<pid>-<n>-<name>


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs a command on the host; raises RuntimeError with its stderr if it fails."""
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def unavailable_reason(*, tools: Sequence[str] = ("ip",), tun: bool = False) -> str | None:
    """Why namespaces (with `tools` on the PATH, and with a TUN device in them if `tun`)
    cannot be made here, or None if they can. A container may be root without the right
    to create namespaces or TUN devices, so this makes one and deletes it."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in tools:
        if shutil.which(tool) is None:
            return f"needs the `{tool}` command"
    if tun and not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        sh("ip", "netns", "add", probe)
        if tun:
            sh("ip", "-n", probe, "tuntap", "add", "dev", "tun0", "mode", "tun")
    except RuntimeError as e:
        return f"cannot create a network namespace{' with a TUN device' if tun else ''}: {e}"
    finally:
        sh("ip", "netns", "del", probe, check=False)
    return None


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


def run_in_netns(name: str, target: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """target(*args) inside namespace `name` (the entry point of `Namespaces.spawn`)."""
    enter_netns(name)
    return target(*args)


def cleanup_stale() -> list[str]:
    """Deletes namespaces made here (pccl-<pid>-...) whose creating process is gone."""
    removed = []
    for name in sh("ip", "netns", "list").stdout.split():
        m = re.match(re.escape(PREFIX) + r"(\d+)-", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            sh("ip", "netns", "del", name, check=False)
            removed.append(name)
    return removed


# --- teardown at exit and on signals ------------------------------------------------------

class Closable(Protocol):
    def close(self) -> None: ...


_live: list[Closable] = []
_handlers_installed = False
_made = 0  # Namespaces objects made by this process: part of their prefix


def close_at_exit(thing: Closable) -> None:
    """Closes `thing` at exit and on SIGTERM / SIGHUP, unless `forget(thing)` came first.
    Things close in reverse order of registration. SIGINT stays Python's
    KeyboardInterrupt, which unwinds through the owners' `with` blocks."""
    global _handlers_installed
    if not _handlers_installed:
        _handlers_installed = True
        atexit.register(_close_all)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                if signal.getsignal(sig) in (signal.SIG_DFL, None):
                    signal.signal(sig, _on_signal)
    _live.append(thing)


def forget(thing: Closable) -> None:
    if thing in _live:
        _live.remove(thing)


def _close_all() -> None:
    for thing in _live[::-1]:  # a copy: close() calls forget()
        thing.close()


def _on_signal(signum: int, frame: Any) -> None:
    _close_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


# --- a set of namespaces ----------------------------------------------------------------

class Namespaces:
    """Namespaces with one name prefix, and the processes started in them; one owner."""

    def __init__(self, prefix: str | None = None):
        global _made
        self.prefix = prefix or f"{PREFIX}{os.getpid()}-{_made}-"
        _made += 1
        self._names: list[str] = []
        self._procs: list[Any] = []  # subprocess.Popen or multiprocessing.Process
        self._closed = False
        close_at_exit(self)

    # -- building -----------------------------------------------------------------------

    def add(self, name: str) -> str:
        """Creates namespace prefix + name with its loopback up; returns the full name."""
        ns = self.prefix + name
        sh("ip", "netns", "add", ns)
        self._names.append(ns)
        self.ip(ns, "link", "set", "lo", "up")
        return ns

    def ip(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`ip -n NS ARGS...`"""
        return sh("ip", "-n", ns, *args, check=check)

    def run(self, ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs a command inside `ns` to completion (`ip netns exec`), output captured."""
        return sh(*self.command(ns, argv), check=check)

    def veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str, *,
             mtu: int | None = None) -> None:
        """A veth pair: `name_a` in `ns_a`, `name_b` in `ns_b` (both still down)."""
        m = ["mtu", str(mtu)] if mtu else []
        self.ip(ns_a, "link", "add", name_a, *m, "type", "veth", "peer", "name", name_b, *m,
                "netns", ns_b)

    def address(self, ns: str, dev: str, cidr: str) -> None:
        """Gives `dev` in `ns` the address `cidr` and brings it up."""
        self.ip(ns, "addr", "add", cidr, "dev", dev)
        self.ip(ns, "link", "set", dev, "up")

    def sysctl(self, ns: str, settings: list[tuple[str, str]], *, check: bool = True) -> bool:
        """Writes /proc/sys keys inside `ns` (a shell, not procps' sysctl: one package
        less); /proc/sys/net shows the namespace of the process that opens it."""
        for key, value in settings:
            if not re.fullmatch(r"[\w.]+", key) or not re.fullmatch(r"[\w ]+", value):
                raise ValueError(f"bad sysctl {key}={value!r}")
        script = "set -e; " + "; ".join(f"printf '%s' '{v}' > /proc/sys/{k.replace('.', '/')}"
                                        for k, v in settings)
        return self.run(ns, "sh", "-c", script, check=check).returncode == 0

    def read_sysctl(self, ns: str, key: str) -> str:
        return self.run(ns, "cat", "/proc/sys/" + key.replace(".", "/")).stdout

    # -- running things inside --------------------------------------------------------------

    @staticmethod
    def command(ns: str, argv: Sequence[str]) -> list[str]:
        """`argv` run inside `ns`."""
        return ["ip", "netns", "exec", ns, *argv]

    def popen(self, ns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Starts `argv` inside `ns`, in a session of its own (unless the caller says
        otherwise); close() kills its process group."""
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(self.command(ns, argv), **kwargs)
        self._procs.append(proc)
        return proc

    def spawn(self, ns: str, target: Callable[..., Any], args: tuple[Any, ...] = (),
              **kwargs: Any) -> Any:
        """A started multiprocessing (spawn) Process that runs target(*args) inside `ns`;
        close() kills it."""
        ctx = mp.get_context("spawn")
        proc = ctx.Process(target=run_in_netns, args=(ns, target, args), daemon=True, **kwargs)
        proc.start()
        self._procs.append(proc)
        return proc

    # -- tearing down -----------------------------------------------------------------------

    def stop_processes(self) -> None:
        """Kills every process started here that still runs (popen: its whole group)."""
        for proc in self._procs:
            try:
                if isinstance(proc, subprocess.Popen):
                    if proc.poll() is None:
                        try:
                            os.killpg(proc.pid, signal.SIGKILL)
                        except (ProcessLookupError, PermissionError):
                            proc.kill()
                        proc.wait(timeout=10)
                elif proc.is_alive():
                    proc.kill()
                    proc.join(timeout=10)
            except Exception as e:  # noqa: BLE001 - teardown goes on
                print(f"netns: stopping {proc}: {e}", file=sys.stderr)
        self._procs.clear()

    def close(self) -> None:
        """Stops the processes, then deletes the namespaces (and the veths in them).
        Idempotent; safe from atexit and signal handlers."""
        if self._closed:
            return
        self._closed = True
        self.stop_processes()
        for ns in reversed(self._names):
            sh("ip", "netns", "del", ns, check=False)
        self._names.clear()
        forget(self)

    def __enter__(self) -> Namespaces:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
