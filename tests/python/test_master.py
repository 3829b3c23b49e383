"""The master over real sockets: MasterNode in-process and the CLI in a subprocess.

Clients speak the wire protocol by hand (tests/python/wire.py) on loopback. No sleeps:
every read has a socket timeout, every subprocess wait has a timeout.
"""

from __future__ import annotations

import os
import random
import selectors
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import wire
from pccl.master import MasterNode
from wire import Code, Conn, Kind

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def master() -> Iterator[MasterNode]:
    with MasterNode("127.0.0.1:0") as node:
        yield node


def join_first(node: MasterNode, port: int = 40001, group: int = 0) -> tuple[Conn, int]:
    """Connects the first peer and completes epoch 1; returns (conn, peer_id)."""
    c = Conn("127.0.0.1", node.port)
    c.send(Kind.HELLO, wire.hello(peer_group=group, p2p_port=port))
    welcome = c.expect(Kind.WELCOME)
    assert welcome["accepted"] == 1 and welcome["peer_id"] != 0
    topo = c.expect(Kind.TOPOLOGY)
    c.send(Kind.LINKS_READY, wire.links_ready(topo["epoch"]))
    assert c.expect(Kind.TOPOLOGY_COMPLETE)["epoch"] == topo["epoch"]
    return c, welcome["peer_id"]


def expect_dropped(c: Conn, code: Code = Code.INVALID_ARGUMENT) -> str:
    err = c.expect(Kind.ERROR)
    assert err["code"] == code, err
    assert c.closed_by_peer()
    return err["message"]


# --- the conversation ------------------------------------------------------------------------

def test_one_peer_hello_topology_links_complete(master: MasterNode) -> None:
    with Conn("127.0.0.1", master.port) as c:
        c.send(Kind.HELLO, wire.hello(peer_group=7, p2p_port=40001))
        welcome = c.expect(Kind.WELCOME)
        assert welcome["accepted"] == 1
        topo = c.expect(Kind.TOPOLOGY)
        assert topo["epoch"] == 1
        assert topo["members"] == [
            {"peer_id": welcome["peer_id"], "host": "127.0.0.1", "port": 40001, "peer_group": 7,
             "public_key": b"", "ring_epoch": 1, "reachable": 0}  # it never asked
        ]
        c.send(Kind.LINKS_READY, wire.links_ready(1))
        assert c.expect(Kind.TOPOLOGY_COMPLETE)["epoch"] == 1
        c.send(Kind.QUERY_PENDING, wire.pending_query(1))
        assert c.expect(Kind.PENDING_REPLY)["pending"] == 0
        c.send(Kind.VOTE_TOPOLOGY, wire.vote())
        c.expect(Kind.TOPOLOGY_UNCHANGED)
        c.send(Kind.GOODBYE)
        assert c.closed_by_peer()


def test_second_peer_admitted_by_vote_and_verdicts(master: MasterNode) -> None:
    a, a_id = join_first(master)
    with a, Conn("127.0.0.1", master.port) as b:
        b.send(Kind.HELLO, wire.hello(p2p_port=40002, advertise_host="b.example"))
        welcome = b.expect(Kind.WELCOME)
        assert welcome["accepted"] == 0
        b_id = welcome["peer_id"]
        a.send(Kind.QUERY_PENDING, wire.pending_query(1))
        assert a.expect(Kind.PENDING_REPLY)["pending"] == 1
        b.send(Kind.VOTE_TOPOLOGY, wire.vote())  # pending peers do not vote: refused, kept
        assert b.expect(Kind.ERROR)["code"] == Code.FAILED_PRECONDITION
        a.send(Kind.VOTE_TOPOLOGY, wire.vote())
        for c in (a, b):
            topo = c.expect(Kind.TOPOLOGY)
            assert topo["epoch"] == 2
            assert [m["peer_id"] for m in topo["members"]] == [a_id, b_id]
            assert topo["members"][1]["host"] == "b.example"
        for c in (a, b):
            c.send(Kind.LINKS_READY, wire.links_ready(2))
        for c in (a, b):
            assert c.expect(Kind.TOPOLOGY_COMPLETE)["epoch"] == 2
        key = (2, 0, 5, 0)
        a.send(Kind.OP_DONE, wire.op_done(key, True, 0xABC))
        b.send(Kind.OP_DONE, wire.op_done(key, True, 0xABC))
        challenges = set()
        for c in (a, b):
            v = c.expect(Kind.VERDICT)
            assert v["key"] == key and v["ok"] == 1
            assert len(v["challenge"]) == 32 and v["reports"] == b""
            challenges.add(v["challenge"])
        assert len(challenges) == 1  # one verdict, the same for the whole group
        # Reports (ReduceMode.VERIFIED's hashes) reach every member, each framed, with a
        # fresh challenge.
        key = (2, 0, 5, 1)
        a.send(Kind.OP_DONE, wire.op_done(key, True, 0xABC, report=b"from a"))
        b.send(Kind.OP_DONE, wire.op_done(key, True, 0xABC, report=b"b"))
        for c in (a, b):
            v = c.expect(Kind.VERDICT)
            assert v["ok"] == 1 and v["challenge"] not in challenges
            assert v["reports"] == wire.string(b"from a") + wire.string(b"b")
        # b leaves: a gets a new epoch alone.
        b.send(Kind.GOODBYE)
        topo = a.expect(Kind.TOPOLOGY)
        assert topo["epoch"] == 3 and [m["peer_id"] for m in topo["members"]] == [a_id]


def test_frame_arriving_byte_by_byte(master: MasterNode) -> None:
    with Conn("127.0.0.1", master.port) as c:
        for byte in wire.frame(Kind.HELLO, wire.hello()):
            c.send_raw(bytes([byte]))
        assert c.expect(Kind.WELCOME)["accepted"] == 1


def test_link_timeout_drops_a_silent_member() -> None:
    with MasterNode("127.0.0.1:0", link_timeout=0.2) as node, Conn("127.0.0.1", node.port) as c:
        c.send(Kind.HELLO, wire.hello())
        c.expect(Kind.WELCOME)
        c.expect(Kind.TOPOLOGY)
        assert "ring links" in expect_dropped(c, Code.DEADLINE_EXCEEDED)


# --- bad input: that connection is dropped, everyone else is served -------------------------

BAD_INPUTS = {
    "random_bytes": random.Random(7).randbytes(64),
    "wrong_magic": wire.frame(Kind.HELLO, wire.hello(), magic=0xDEADBEEF),
    "wrong_version": wire.frame(Kind.HELLO, wire.hello(), version=99),
    "oversized_length": wire.frame(Kind.HELLO, length=wire.MAX_CONTROL_PAYLOAD + 1),
    "unknown_kind": wire.frame(999, b""),
    "master_only_kind": wire.frame(Kind.WELCOME, b"\0" * 9),
    "non_hello_first": wire.frame(Kind.VOTE_TOPOLOGY),
    "truncated_message": wire.frame(Kind.HELLO, wire.hello()[:5]),
    "trailing_bytes": wire.frame(Kind.HELLO, wire.hello() + b"x"),
    "port_zero": wire.frame(Kind.HELLO, wire.hello(p2p_port=0)),
    "huge_string_length": wire.frame(Kind.HELLO, b"\0" * 6 + b"\xff\xff\xff\xff"),
    "empty_message_with_bytes": wire.frame(Kind.GOODBYE, b"zz"),
    "truncated_heartbeat": wire.frame(Kind.HEARTBEAT, b"zz"),
    "truncated_query": wire.frame(Kind.QUERY_PENDING, b"zz"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_drops_only_that_connection(master: MasterNode, name: str) -> None:
    a, _ = join_first(master)
    with a:
        with Conn("127.0.0.1", master.port) as bad:
            bad.send_raw(BAD_INPUTS[name])
            expect_dropped(bad)
        # The member is unaffected and a newcomer is served.
        a.send(Kind.QUERY_PENDING, wire.pending_query(1))
        assert a.expect(Kind.PENDING_REPLY)["pending"] == 0
        with Conn("127.0.0.1", master.port) as good:
            good.send(Kind.HELLO, wire.hello())
            assert good.expect(Kind.WELCOME)["accepted"] == 0


def test_second_hello_drops_the_member(master: MasterNode) -> None:
    a, _ = join_first(master)
    with a:
        a.send(Kind.HELLO, wire.hello())
        assert "second Hello" in expect_dropped(a)
    # The run is empty again: the next peer is admitted at once.
    b, _ = join_first(master)
    b.close()


def test_truncated_frame_then_close(master: MasterNode) -> None:
    with Conn("127.0.0.1", master.port) as bad:
        bad.send_raw(wire.frame(Kind.HELLO, wire.hello())[:10])
        bad.sock.shutdown(socket.SHUT_WR)
        assert bad.closed_by_peer()
    c, _ = join_first(master)
    c.close()


def test_refusal_keeps_the_connection(master: MasterNode) -> None:
    a, _ = join_first(master)
    with a:
        a.send(Kind.LINKS_READY, wire.links_ready(42))
        err = a.expect(Kind.ERROR)
        assert err["code"] == Code.FAILED_PRECONDITION and "epoch" in err["message"]
        a.send(Kind.QUERY_PENDING, wire.pending_query(1))
        assert a.expect(Kind.PENDING_REPLY)["pending"] == 0


# --- MasterNode -------------------------------------------------------------------------------

def test_context_manager_frees_the_port() -> None:
    with MasterNode("127.0.0.1:0") as node:
        port = node.port
        assert node.running and node.address == f"127.0.0.1:{port}"
    assert not node.running
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))  # would fail with EADDRINUSE if the listener lived on
    finally:
        s.close()
    with MasterNode(f"127.0.0.1:{port}") as again:
        assert again.port == port


def test_run_is_non_blocking_and_interrupt_stops() -> None:
    node = MasterNode("127.0.0.1:0")
    node.run()
    node.run()  # already serving: no-op
    port = node.port
    node.interrupt()
    node.join()
    assert not node.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    node.close()
    node.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        node.run()


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    with MasterNode("[::1]:0") as node:
        assert node.address.startswith("[::1]:")
        with Conn("::1", node.port) as c:
            c.send(Kind.HELLO, wire.hello())
            c.expect(Kind.WELCOME)
            assert c.expect(Kind.TOPOLOGY)["members"][0]["host"] == "::1"


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((123,), {}, TypeError, "listen_address"),
        (("localhost",), {}, ValueError, "listen_address"),
        (("127.0.0.1:99999",), {}, ValueError, "port"),
        (("::1:5",), {}, ValueError, "brackets"),
        ((":5",), {}, ValueError, "listen_address"),
        (("127.0.0.1:0",), {"link_timeout": -1}, ValueError, "link_timeout"),
        (("127.0.0.1:0",), {"link_timeout": "1"}, TypeError, "link_timeout"),
    ],
)
def test_bad_arguments(args: tuple, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        MasterNode(*args, **kwargs)


def test_port_before_run_raises() -> None:
    node = MasterNode("127.0.0.1:0")
    with pytest.raises(RuntimeError, match="run"):
        _ = node.port


def test_bind_conflict_raises() -> None:
    with MasterNode("127.0.0.1:0") as node:
        other = MasterNode(f"127.0.0.1:{node.port}")
        with pytest.raises(RuntimeError):
            other.run()


# --- the CLI ------------------------------------------------------------------------------------

def console_script(tmp_path: Path) -> list[str]:
    """The installed pccl_master, or else a launcher made from pyproject.toml's entry point,
    as pip would write it."""
    script = shutil.which("pccl_master")
    if script:
        return [script]
    import tomllib

    entry = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = entry["pccl_master"].split(":")
    launcher = tmp_path / "pccl_master"
    launcher.write_text(
        f"#!{sys.executable}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n"
    )
    launcher.chmod(0o755)
    return [str(launcher)]


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise TimeoutError("no output from pccl_master")
    return proc.stdout.readline()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("how", ["python_-m", "console_script"])
def test_cli_serves_and_stops_on_signal(how: str, sig: int, tmp_path: Path) -> None:
    if how == "python_-m":
        command = [sys.executable, "-m", "pccl.master"]
    else:
        command = console_script(tmp_path)
    env = dict(os.environ)  # the pccl under test: installed, or PYTHONPATH=python in a dev tree
    proc = subprocess.Popen(
        [*command, "--listen-address", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = read_line(proc, 30)
        assert line.startswith("pccl master listening on 127.0.0.1:"), line
        port = int(line.strip().rsplit(":", 1)[1])
        with Conn("127.0.0.1", port) as c:
            c.send(Kind.HELLO, wire.hello())
            assert c.expect(Kind.WELCOME)["accepted"] == 1
            proc.send_signal(sig)
            assert proc.wait(timeout=20) == 0
            # The master said why it went away before closing.
            c.expect(Kind.TOPOLOGY)
            err = c.expect(Kind.ERROR)
            assert err["code"] == Code.UNAVAILABLE
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=20)


def test_cli_bad_address_exits_nonzero() -> None:
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "pccl.master", "--listen-address", "nonsense"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "listen_address" in proc.stderr
