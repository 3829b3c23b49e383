"""A peer behind a real NAT learns that nobody can dial it, and its public mapping
(issue 16, step 1). Needs root, `ip` and `nft`; skipped with the reason otherwise.

Three network namespaces (bench/lib/netns.py):

    public  10.77.0.1   the master and a public peer
    nat     10.77.0.2   a router that masquerades (nftables) what comes from
            192.168.7.1 its private side
    home    192.168.7.2 a peer behind that NAT (default route via the router)

The public namespace has no route to 192.168.7.0/24: the home peer reaches the master
only through the NAT, as on the internet. The master sees it at the NAT's address, dials
back its advertised endpoint there, and is refused (nothing listens on the router); the
public peer is dialled back and reachable.
"""

from __future__ import annotations

import shutil
import time
from multiprocessing.connection import Connection
from typing import Any

import pccl
import pytest

from bench.lib import netns


def unavailable() -> str | None:
    if shutil.which("nft") is None:
        return "needs the `nft` command (apt-get install nftables)"
    return netns.unavailable_reason()


def master_main(conn: Connection) -> None:
    with pccl.MasterNode("10.77.0.1:0", daemon=True) as node:
        node.run()
        conn.send(node.port)
        conn.recv()  # until the test is done


def peer_main(conn: Connection, master: str) -> None:
    """Joins the run (alone in it), reports the master's answer, and leaves."""
    with pccl.Communicator(master) as comm:
        comm.connect(timeout=30)
        deadline = time.monotonic() + 20
        while comm.reachability is None and time.monotonic() < deadline:
            time.sleep(0.01)
        answer = comm.reachability
        port = comm.p2p_port
    conn.send(None if answer is None else (*answer, port))


def start(net: netns.Namespaces, ns: str, target: Any, *args: Any) -> Connection:
    import multiprocessing as mp

    parent, child = mp.get_context("spawn").Pipe()
    net.spawn(ns, target, (child, *args))
    child.close()
    return parent


def recv(conn: Connection, what: str, timeout: float = 60) -> Any:
    if not conn.poll(timeout):
        raise TimeoutError(f"{what} did not answer within {timeout} s")
    return conn.recv()


@pytest.mark.timeout(120)
def test_a_peer_behind_a_nat_is_told_it_cannot_be_dialled_and_its_public_mapping() -> None:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    with netns.Namespaces() as net:
        public, nat, home = net.add("public"), net.add("nat"), net.add("home")
        net.veth(public, "eth0", nat, "wan0")
        net.veth(home, "eth0", nat, "lan0")
        net.address(public, "eth0", "10.77.0.1/24")
        net.address(nat, "wan0", "10.77.0.2/24")
        net.address(nat, "lan0", "192.168.7.1/24")
        net.address(home, "eth0", "192.168.7.2/24")
        net.ip(home, "route", "add", "default", "via", "192.168.7.1")
        net.sysctl(nat, [("net.ipv4.ip_forward", "1")])
        for rule in (["add", "table", "ip", "nat"],
                     ["add", "chain", "ip", "nat", "post",
                      "{ type nat hook postrouting priority 100 ; }"],
                     ["add", "rule", "ip", "nat", "post", "oifname", "wan0", "ip", "saddr",
                      "192.168.7.0/24", "masquerade"]):
            net.run(nat, "nft", *rule)

        master = start(net, public, master_main)
        address = f"10.77.0.1:{recv(master, 'the master')}"
        behind = start(net, home, peer_main, address)
        reachable, observed, detail, home_port = recv(behind, "the peer behind the NAT")
        assert not reachable, detail
        # The master saw the NAT's public address, and dialled the peer's port there.
        assert observed.startswith("10.77.0.2:"), observed
        assert f"dialling 10.77.0.2:{home_port} failed" in detail, detail
        in_public = start(net, public, peer_main, address)
        reachable, observed, detail, public_port = recv(in_public, "the public peer")
        assert reachable, detail
        assert observed.startswith("10.77.0.1:") and detail == f"dialled 10.77.0.1:{public_port}"
        master.send(None)
