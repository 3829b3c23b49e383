"""Can the others dial this peer? (issue 16, step 1: master/dial_back.h)

After connect() a peer asks the master (ReachabilityQuery); the master dials the endpoint
the peer advertised, says DialBack on that connection if it opens, and answers with
whether it connected and where it sees the peer's own connection come from. Real
processes and sockets on loopback: a peer whose listener answers is reachable; one that
advertises an address where nothing listens is not, and says why; the raw wire shows the
dial-back itself and the observed endpoint; a query before Hello is refused.
"""

from __future__ import annotations

import socket

import pccl
import pytest
import wire
from wire import Kind


def wait_for_reachability(comm: pccl.Communicator, timeout: float = 10.0) -> pccl.Reachability:
    answer = comm.wait_for_reachability(timeout=timeout)
    assert comm.reachability == answer  # the property shows the same answer from now on
    return answer


@pytest.mark.timeout(60)
def test_a_peer_with_a_listening_port_is_reachable() -> None:
    with pccl.MasterNode("127.0.0.1:0", daemon=True) as master:
        master.run()
        with pccl.Communicator(master.address) as comm:
            assert comm.reachability is None  # not connected: nobody asked
            comm.connect(timeout=30)
            answer = wait_for_reachability(comm)
            assert answer.reachable, answer
            assert answer.detail == f"dialled 127.0.0.1:{comm.p2p_port}"
            host, port = answer.observed_address.rsplit(":", 1)
            assert host == "127.0.0.1" and 0 < int(port) != comm.p2p_port
            # The check left the listener serving: the run works as before.
            assert comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) == 1


@pytest.mark.timeout(60)
def test_a_peer_nobody_can_dial_learns_it_and_why() -> None:
    with pccl.MasterNode("127.0.0.1:0", daemon=True) as master:
        master.run()
        # It listens on 127.0.0.1 but tells the others to dial 127.0.0.3, where nothing
        # listens: as a peer behind a NAT that advertises its own address.
        with pccl.Communicator(master.address, listen_address="127.0.0.1",
                               advertise_address="127.0.0.3") as comm:
            comm.connect(timeout=30)
            answer = wait_for_reachability(comm)
            assert not answer.reachable
            assert f"dialling 127.0.0.3:{comm.p2p_port} failed" in answer.detail
            assert "refused" in answer.detail
            assert answer.observed_address.startswith("127.0.0.1:")


@pytest.mark.timeout(60)
def test_the_dial_back_and_the_observed_endpoint_on_the_wire() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    p2p_port = listener.getsockname()[1]
    # Raw members send no heartbeats: a long timeout keeps them in the run.
    with pccl.MasterNode("127.0.0.1:0", daemon=True, heartbeat_timeout=60) as master, listener:
        master.run()
        with wire.Conn("127.0.0.1", master.port) as conn:
            conn.send(Kind.HELLO, wire.hello(p2p_port=p2p_port))
            assert conn.expect(Kind.WELCOME)
            conn.send(Kind.REACHABILITY_QUERY)
            dialled, _ = listener.accept()
            with dialled:
                dialled.settimeout(10)
                header = wire.HEADER.unpack(dialled.recv(wire.HEADER_BYTES, socket.MSG_WAITALL))
                assert header == (wire.MAGIC, wire.VERSION, Kind.DIAL_BACK, 0)
                assert dialled.recv(1) == b""  # then the master hangs up
            answer = conn.recv()
            while answer["kind"] != Kind.REACHABILITY:  # the Topology of epoch 1 comes first
                assert answer["kind"] == Kind.TOPOLOGY, answer
                answer = conn.recv()
            assert answer["reachable"] == 1
            assert answer["detail"] == f"dialled 127.0.0.1:{p2p_port}"
            assert (answer["observed_host"], answer["observed_port"]) == \
                conn.sock.getsockname()
            # Later topologies say who could be dialled back: the dialers skip the relay
            # for this member (link/routes.h); the next one never asked.
            conn.send(Kind.LINKS_READY, wire.links_ready(1))
            conn.expect(Kind.TOPOLOGY_COMPLETE)
            with wire.Conn("127.0.0.1", master.port) as second:
                second.send(Kind.HELLO, wire.hello(p2p_port=p2p_port + 1))
                second.expect(Kind.WELCOME)
                conn.send(Kind.VOTE_TOPOLOGY, wire.vote())
                topology = conn.expect(Kind.TOPOLOGY)
                assert sorted(m["reachable"] for m in topology["members"]) == [0, 1]


@pytest.mark.timeout(60)
def test_a_query_before_hello_is_refused() -> None:
    with pccl.MasterNode("127.0.0.1:0", daemon=True) as master:
        master.run()
        with wire.Conn("127.0.0.1", master.port) as conn:
            conn.send(Kind.REACHABILITY_QUERY)
            error = conn.expect(Kind.ERROR)
            assert error["code"] == wire.Code.INVALID_ARGUMENT
            assert "ReachabilityQuery before Hello" in error["message"]
            assert conn.closed_by_peer()


@pytest.mark.timeout(30)
def test_waiting_for_an_answer_that_cannot_come_times_out() -> None:
    with pccl.Communicator("127.0.0.1:9") as comm:  # never connected: nobody asked
        with pytest.raises(pccl.PCCLTimeoutError, match="has not answered"):
            comm.wait_for_reachability(timeout=0.2)
