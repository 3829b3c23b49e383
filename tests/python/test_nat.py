"""Peers behind real NATs (issue 16). Needs root, `ip` and `nft`; skipped with the reason
otherwise.

The network (bench/lib/nat_lab.py): a public namespace with the master and public
peers, a private network behind an endpoint-independent NAT and one behind a symmetric NAT;
the public side has no route into either, and the lab checks that its NATs map ports as
claimed.

Step 1: a peer behind a NAT learns that nobody can dial it, and its public mapping: it
reaches the master only through the NAT; the master sees it at the NAT's public address,
dials back its advertised endpoint there and is refused (nothing listens on the router); a
public peer is dialled back and reachable.
Step 2: a run with peers behind both NATs works through the master's relay with default
settings: exact sums, a restart behind the symmetric NAT, two peers behind one NAT.
"""

from __future__ import annotations

import functools
import signal
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import pccl
import pytest
from cluster import Cluster
from pccl import ReduceOp

from bench.lib import nat_lab, netns


# Every test needs root, `ip` and `nft` (CI installs nftables and runs as root).
_UNAVAILABLE = nat_lab.unavailable_reason()
pytestmark = pytest.mark.skipif(_UNAVAILABLE is not None, reason=str(_UNAVAILABLE))


def master_main(conn: Connection) -> None:
    with pccl.MasterNode("10.77.0.1:0", daemon=True) as node:
        node.run()
        conn.send(node.port)
        conn.recv()  # until the test is done


def peer_main(conn: Connection, master: str) -> None:
    """Joins the run (alone in it), reports the master's answer, and leaves."""
    with pccl.Communicator(master) as comm:
        comm.connect(timeout=30)
        answer = comm.wait_for_reachability(timeout=20)
        port = comm.p2p_port
    conn.send((*answer, port))


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
    with netns.Namespaces() as net:
        names = nat_lab.build(net)
        public, home = names["public"], names["eim"]
        master = start(net, public, master_main)
        address = f"10.77.0.1:{recv(master, 'the master')}"
        behind = start(net, home, peer_main, address)
        reachable, observed, detail, home_port = recv(behind, "the peer behind the NAT")
        assert not reachable, detail
        # The master saw the NAT's public address, and dialled the peer's port there.
        assert observed.startswith("10.77.1.2:"), observed
        assert f"dialling 10.77.1.2:{home_port} failed" in detail, detail
        in_public = start(net, public, peer_main, address)
        reachable, observed, detail, public_port = recv(in_public, "the public peer")
        assert reachable, detail
        assert observed.startswith("10.77.0.1:") and detail == f"dialled 10.77.0.1:{public_port}"
        master.send(None)


# --- step 2: a run across NATs (the lab: bench/lib/nat_lab.py) -------------------------------
#
# A public namespace with the master and public peers, one private network behind an
# endpoint-independent NAT ("eim") and one behind a symmetric NAT ("sym"). A peer behind a
# NAT is advertised at the NAT's public address (what the master observes), where its
# router refuses the connection: the others reach it through the master's relay, which
# nobody configured.


def observe_sources(conn: Connection, count: int) -> None:
    """In the public namespace: `count` listeners; reports their ports, then the source
    port each one's first connection came from."""
    import socket

    listeners = [socket.create_server(("10.77.0.1", 0)) for _ in range(count)]
    conn.send([listener.getsockname()[1] for listener in listeners])
    seen = []
    for listener in listeners:
        listener.settimeout(20)
        accepted, (_, port) = listener.accept()
        seen.append(port)
        accepted.close()
    conn.send(seen)


def dial_from_one_port(conn: Connection, ports: list[int]) -> None:
    """Behind a NAT: connects to each of `ports` on 10.77.0.1 from one local port."""
    import socket

    local = 0
    sockets = []
    for port in ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", local))
        local = s.getsockname()[1]
        s.connect(("10.77.0.1", port))
        sockets.append(s)
    conn.send(local)
    conn.recv()  # hold the connections until the test read the mappings
    for s in sockets:
        s.close()


@pytest.mark.timeout(120)
def test_the_lab_nats_map_ports_as_they_claim() -> None:
    """The lab is what the other tests say it is: the endpoint-independent NAT keeps one
    local port's mapping for every destination, the symmetric one maps each anew."""
    with netns.Namespaces() as net:
        names = nat_lab.build(net)
        mappings = {}
        for kind in ("eim", "sym"):
            server = start(net, names["public"], observe_sources, 3)
            ports = recv(server, "the listeners")
            client = start(net, names[kind], dial_from_one_port, ports)
            local = recv(client, "the dialler")
            mappings[kind] = (local, recv(server, "the observed sources"))
            client.send(None)
        local, seen = mappings["eim"]
        assert seen == [local] * 3, mappings
        local, seen = mappings["sym"]
        assert len(set(seen)) == 3 and local not in seen, mappings


def enter(namespaces: list[str], index: int) -> None:
    """Peer prelude: peer `index` runs in namespaces[index]."""
    netns.enter_netns(namespaces[index])


def reduce_until_done(comm: pccl.Communicator, index: int) -> dict[str, Any]:
    """One all-reduce, retried while peers are lost; exact for the world it ran with."""
    while True:
        x = np.full(1 << 18, float(index + 1), dtype=np.float32)
        try:
            info = comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=60)
            break
        except (pccl.PeerLostError, pccl.PCCLTimeoutError):
            continue
    world = info.world_size
    return {"peer_id": comm._core.peer_id, "world": world, "sum": float(x[0]),
            "exact": bool(np.all(x == x[0])),
            "reachable": comm.wait_for_reachability(timeout=20).reachable,
            "links": [tuple(link) for link in comm.link_info()]}


def admit(comm: pccl.Communicator, index: int, world: int) -> None:
    comm.wait_for_world(world, timeout=90)


def sync_state(comm: pccl.Communicator, index: int, fill: float) -> dict[str, Any]:
    weights = np.full(1 << 16, fill, dtype=np.float32)
    state = pccl.SharedState([pccl.TensorInfo.from_numpy(weights, "weights")])
    state.revision = 1
    info = comm.sync_shared_state(state, timeout=90)
    return {"rx_bytes": info.rx_bytes, "exact": bool(np.all(weights == 5.0))}


def routes_by_peer(results: list[dict[str, Any]]) -> dict[tuple[int, int], str]:
    """(sender, receiver) -> route of each ring link, as its sender reports it."""
    return {(r["peer_id"], peer): route for r in results
            for peer, direction, route, _ in r["links"] if direction == "next"}


@pytest.mark.timeout(300)
def test_peers_behind_an_eim_and_a_symmetric_nat_reduce_and_one_restarts() -> None:
    with netns.Namespaces() as net:
        names = nat_lab.build(net)
        where = ["public", "public", "eim", "sym", "sym"]  # the last: the restarted peer
        with Cluster(4, master_address="0.0.0.0:0", connect_host="10.77.0.1",
                     master_prefix=["ip", "netns", "exec", names["public"]],
                     peer_prelude=functools.partial(enter, [names[w] for w in where])) as c:
            results = c.run(reduce_until_done, timeout=120)
            assert [(r["world"], r["sum"], r["exact"]) for r in results] == [(4, 10.0, True)] * 4
            assert [r["reachable"] for r in results] == [True, True, False, False]
            # Links into public peers are direct. Into a NATed peer: hole punching works from
            # a public peer (behind the symmetric NAT too: the NATed end's dial reaches the
            # public end's listener), and fails between the two NATs (the symmetric one
            # maps the punch anew), so that link stays relayed.
            natted = {results[2]["peer_id"], results[3]["peer_id"]}
            routes = routes_by_peer(results)
            assert len(routes) == 4, routes
            for (sender, receiver), route in routes.items():
                expected = ("direct" if receiver not in natted
                            else "relayed" if sender in natted else "punched")
                assert route == expected, (sender, receiver, routes)

            # The peer behind the symmetric NAT is killed; the survivors go on, exact.
            assert c.kill(3, signal.SIGKILL)
            survivors = c.run(reduce_until_done, peers=[0, 1, 2], timeout=120)
            assert [(r["world"], r["sum"], r["exact"]) for r in survivors] == [(3, 6.0, True)] * 3
            # It starts again behind the same NAT: admitted, it syncs the shared state
            # exactly, and the sums of four are exact again.
            joiner = c.add_peer(4, pool_size=2, peer_group=0, wait_world=False)
            c.start(admit, 4, peers=[0, 1, 2])
            c.expect_ready(joiner, timeout=120)
            c.collect([0, 1, 2], timeout=120)
            c.start(sync_state, 5.0, peers=[0, 1, 2])
            joined = c.run(sync_state, 0.0, peers=[4], timeout=120)[0]
            c.collect([0, 1, 2], timeout=120)
            assert joined == {"rx_bytes": (1 << 16) * 4, "exact": True}, joined
            again = c.run(reduce_until_done, peers=[0, 1, 2, 4], timeout=120)
            assert [(r["world"], r["sum"], r["exact"]) for r in again] == [
                (4, 1.0 + 2.0 + 3.0 + 5.0, True)] * 4, again
            assert again[3]["reachable"] is False
            natted = {again[2]["peer_id"], again[3]["peer_id"]}
            for (sender, receiver), route in routes_by_peer(again).items():
                expected = ("direct" if receiver not in natted
                            else "relayed" if sender in natted else "punched")
                assert route == expected, (sender, receiver, route)


@pytest.mark.timeout(180)
def test_two_peers_behind_the_same_nat_reach_each_other() -> None:
    with netns.Namespaces() as net:
        names = nat_lab.build(net)
        with Cluster(2, master_address="0.0.0.0:0", connect_host="10.77.0.1",
                     master_prefix=["ip", "netns", "exec", names["public"]],
                     peer_prelude=functools.partial(enter, [names["eim"]] * 2)) as c:
            results = c.run(reduce_until_done, timeout=120)
            assert [(r["world"], r["sum"], r["exact"]) for r in results] == [(2, 3.0, True)] * 2
            # Each is advertised at the NAT's public address, where the router refuses, and
            # punching to that address fails the same way (the NAT does no hairpinning):
            # they reach each other through the relay.
            assert set(routes_by_peer(results).values()) == {"relayed"}
