"""Peers that cannot be dialled are reached through the run's relay (issue 16, step 2:
master/relay.h, link/routes.h), on loopback, in real processes.

A peer that listens on 127.0.0.1 but advertises 127.0.0.3 (where nothing listens) is, for
the others, a peer behind a NAT: the master's dial-back is refused, so it parks
connections at the relay, and every member that fails to dial it directly goes through
the relay. With hole punching off (PCCL_PUNCH_MS=0) the bytes stay on the relay: ring
links, optimize_topology()'s probes and a joiner's shared-state sync all work, exactly,
and link_info() and the relay's counters say which links were relayed. With hole punching
on (the default) the two ends' simultaneous connects meet on loopback (each "NAT mapping"
is the port itself), and the links are punched: the relay carried only the rendezvous.
The relay refuses connections without a valid ticket. The same in a network lab with real
NATs is tests/python/test_nat.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pccl
import pytest
import wire
from cluster import Cluster
from pccl import ReduceOp
from wire import Kind

UNDIALLABLE = {"listen_address": "127.0.0.1", "advertise_address": "127.0.0.3"}
COUNT = 300_000  # 1.2 MB per all-reduce: several segments per link


def reduce_and_report(comm: pccl.Communicator, index: int) -> dict[str, Any]:
    x = np.full(COUNT, float(index + 1), dtype=np.float32)
    comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=60)
    world = comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE)
    return {"exact": bool(np.all(x == float(world * (world + 1) // 2))), "world": world,
            "peer_id": comm._core.peer_id, "ring": comm.ring_order(),
            "links": [tuple(link) for link in comm.link_info()],
            "reachable": comm.wait_for_reachability(timeout=20).reachable}


def check_routes(results: list[dict[str, Any]], hidden: int, into_hidden: str) -> None:
    """Every link into the undiallable peer went `into_hidden`; every other one direct."""
    for r in results:
        for peer, d, route, _ in r["links"]:
            into = (d == "next" and peer == hidden) or (d == "prev" and r["peer_id"] == hidden)
            assert route == (into_hidden if into else "direct"), (r, peer, d)


def sync_state(comm: pccl.Communicator, index: int, fill: float) -> dict[str, Any]:
    weights = np.full(50_000, fill, dtype=np.float32)
    state = pccl.SharedState([pccl.TensorInfo.from_numpy(weights, "weights")])
    state.revision = 1
    info = comm.sync_shared_state(state, timeout=60)
    return {"rx_bytes": info.rx_bytes, "weights_ok": bool(np.all(weights == 7.0))}


def optimize(comm: pccl.Communicator, index: int) -> list[tuple[Any, ...]]:
    comm.optimize_topology()
    return [tuple(link) for link in comm.link_info()]


@pytest.mark.timeout(180)
def test_a_peer_nobody_can_dial_is_reached_through_the_relay(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PCCL_PUNCH_MS", "0")  # the peer processes inherit it
    with Cluster(3, peer_options=[{}, {}, UNDIALLABLE]) as c:
        assert c.master is not None and c.master.relay_port > 0
        results = c.run(reduce_and_report)
        assert all(r["exact"] and r["world"] == 3 for r in results), results
        assert [r["reachable"] for r in results] == [True, True, False]
        hidden = results[2]["peer_id"]
        # The undiallable peer dials its next neighbour directly (it can dial out), and its
        # previous neighbour reaches it through the relay; the others dial each other
        # directly.
        check_routes(results, hidden, "relayed")
        relayed = {(f, t): (b, n) for f, t, b, _, n in c.master.relay_links()}
        # What the hidden peer received on its ring link crossed the relay: a ring
        # all-reduce sends 2(n-1)/n of the buffer on each link.
        to_hidden = sum(b for (_, t), (b, _) in relayed.items() if t == hidden)
        assert to_hidden >= 4 * COUNT * 4 // 3, relayed

        # optimize_topology() probes every pair, the relayed ones through the relay: each
        # peer measured its next neighbour.
        links = c.run(optimize)
        for peer_links in links:
            assert all(rate > 0 for _, d, _, rate in peer_links if d == "next"), links

        # A joiner that cannot be dialled either: it is admitted (its ring links go through
        # the relay), fetches the shared state exactly, and the sums stay exact with four.
        joiner = c.add_peer(3, pool_size=2, peer_group=0, wait_world=False,
                            options={"listen_address": "127.0.0.1",
                                     "advertise_address": "127.0.0.4"})
        c.start(admit, 4, peers=[0, 1, 2])
        c.expect_ready(joiner, timeout=90)
        c.collect([0, 1, 2], timeout=90)
        c.world = 4
        c.start(sync_state, 7.0, peers=[0, 1, 2])
        joined = c.run(sync_state, 0.0, peers=[3], timeout=90)[0]
        c.collect([0, 1, 2], timeout=90)
        assert joined == {"rx_bytes": 50_000 * 4, "weights_ok": True}, joined
        results = c.run(reduce_and_report)
        assert all(r["exact"] and r["world"] == 4 for r in results), results
        routes = {d: route for _, d, route, _ in results[3]["links"]}
        assert routes["prev"] == "relayed", results[3]


@pytest.mark.timeout(120)
def test_hole_punching_replaces_the_relay_where_the_mappings_hold() -> None:
    with Cluster(3, peer_options=[{}, {}, UNDIALLABLE]) as c:
        assert c.master is not None
        results = c.run(reduce_and_report)
        assert all(r["exact"] and r["world"] == 3 for r in results), results
        check_routes(results, results[2]["peer_id"], "punched")
        # The relay paired the connections and carried one agreement byte each way on each.
        relayed = c.master.relay_links()
        connections = sum(n for _, _, _, _, n in relayed)
        assert connections >= 2 and sum(b for _, _, b, _, _ in relayed) == 2 * connections, relayed


def admit(comm: pccl.Communicator, index: int, world: int) -> None:
    comm.wait_for_world(world, timeout=60)


@pytest.mark.timeout(60)
def test_the_relay_refuses_connections_without_a_valid_ticket() -> None:
    with pccl.MasterNode("127.0.0.1:0", daemon=True) as master:
        master.run()
        relay = ("127.0.0.1", master.relay_port)
        # A dialer with a made-up ticket, and one that parks with it.
        for kind in (Kind.RELAY_DIAL, Kind.RELAY_PARK):
            conn = wire.Conn(*relay)
            payload = (5).to_bytes(8, "little") + wire.string(b"x" * 32)
            if kind == Kind.RELAY_DIAL:
                payload += (6).to_bytes(8, "little") + b"\x00"  # to peer 6, no punching
            conn.send(kind, payload)
            answer_kind, answer = conn.recv_frame()
            assert answer_kind == Kind.RELAY_READY
            assert answer[0] == 0 and b"wrong ticket for peer 5" in answer
            assert conn.closed_by_peer()
            conn.close()
        # Anything else first.
        conn = wire.Conn(*relay)
        conn.send(Kind.HELLO, wire.hello())
        answer_kind, answer = conn.recv_frame()
        assert answer_kind == Kind.RELAY_READY and answer[0] == 0
        assert b"must start with RelayPark or RelayDial" in answer
        conn.close()


@pytest.mark.timeout(60)
def test_a_master_without_relay_has_none() -> None:
    with pccl.MasterNode("127.0.0.1:0", daemon=True, relay_address="off") as master:
        master.run()
        assert master.relay_port == 0
        assert master.relay_links() == []


@pytest.mark.timeout(120)
def test_a_standalone_relay_serves_the_run(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PCCL_PUNCH_MS", "0")  # so that the bytes cross the relay
    # A key file's one trailing newline (\n or \r\n) is not part of the key: random bytes
    # ending in \n or \r would lose it (one run in 128), so the key is hex.
    key = os.urandom(32).hex().encode()
    key_file = tmp_path / "relay.key"
    key_file.write_bytes(key)
    env = dict(os.environ, PYTHONPATH=str(Path(pccl.__file__).resolve().parent.parent))
    relay = subprocess.Popen([sys.executable, "-m", "pccl.relay", "--listen-address",
                              "127.0.0.1:0", "--key-file", str(key_file)],
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert relay.stdout is not None
        line = relay.stdout.readline()
        assert line.startswith("pccl relay listening on 127.0.0.1:"), line
        address = line.split()[-1]
        with Cluster(3, peer_options=[{}, {}, UNDIALLABLE],
                     master_options={"external_relay": address, "relay_key": key}) as c:
            assert c.master is not None and c.master.relay_port == 0  # none of its own
            results = c.run(reduce_and_report)
            assert all(r["exact"] and r["world"] == 3 for r in results), results
            check_routes(results, results[2]["peer_id"], "relayed")
    finally:
        relay.terminate()
        assert relay.wait(timeout=10) == 0  # SIGTERM: a clean exit
        assert relay.stdout is not None
        relay.stdout.close()


def test_an_external_relay_needs_its_key() -> None:
    with pytest.raises(ValueError, match="external_relay needs relay_key"):
        pccl.MasterNode("127.0.0.1:0", external_relay="127.0.0.1:9")
    with pytest.raises(ValueError, match="relay_key goes with external_relay"):
        pccl.MasterNode("127.0.0.1:0", relay_key=b"k" * 32)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        pccl.RelayNode("127.0.0.1:0", b"short")
