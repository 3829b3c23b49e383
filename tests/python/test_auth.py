"""Run secrets (csrc/pccl/auth/handshake.h, docs/security.md): who gets into a run, and what
everyone is told when someone does not.

Real processes and sockets on loopback: a master and peers that share a secret; strangers
without it or with another one, at the master and at a peer's listener; a handshake
replayed from a recording; and a protocol version mismatch, seen from both sides. The raw
handshake (`MasterHandshake`) is written here from the protocol's description, with
Python's hashlib and hmac, so the test also checks that description.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pccl
import pytest
import wire
from cluster import Cluster

SECRET = "test run secret, 32 bytes long!!"
OTHER_SECRET = "another secret of the same size!"


def sum_of_indexes(comm: pccl.Communicator, index: int, world: int) -> bool:
    x = np.full(1 << 16, index + 1, np.float32)
    comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, timeout=30)
    return bool(np.all(x == world * (world + 1) / 2))


@pytest.mark.parametrize("transport", ["plain", "encrypted"])
def test_peers_with_the_secret_run_exactly(transport: str) -> None:
    with Cluster(3, secret=SECRET, transport=transport) as c:
        assert c.run(sum_of_indexes, 3) == [True] * 3


def test_master_refuses_peers_without_the_secret() -> None:
    with Cluster(2, secret=SECRET) as c:
        for secret, says in ((None, "must start with the handshake"),
                             (OTHER_SECRET, "could not prove that it knows the run secret")):
            comm = pccl.Communicator(c.address, secret=secret)
            try:
                with pytest.raises(pccl.AuthenticationError, match=says):
                    comm.connect(n_attempts=1, timeout=10)
            finally:
                comm.close()
        # A peer with the transport of another run is refused as well, and nothing of the
        # run was disturbed by any of them.
        comm = pccl.Communicator(c.address, secret=SECRET, transport="encrypted")
        try:
            with pytest.raises(pccl.AuthenticationError, match="transport is plain"):
                comm.connect(n_attempts=1, timeout=10)
        finally:
            comm.close()
        assert c.run(sum_of_indexes, 2) == [True] * 2


def test_peer_with_a_secret_refuses_a_master_without_one() -> None:
    master = pccl.MasterNode("127.0.0.1:0", daemon=True)
    master.run()
    try:
        comm = pccl.Communicator(f"127.0.0.1:{master.port}", secret=SECRET)
        try:
            with pytest.raises(pccl.AuthenticationError, match="this run has no secret"):
                comm.connect(n_attempts=1, timeout=10)
        finally:
            comm.close()
    finally:
        master.close()


def test_secret_and_transport_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        pccl.Communicator("127.0.0.1:1", secret="short")
    with pytest.raises(ValueError, match="transport"):
        pccl.Communicator("127.0.0.1:1", secret=SECRET, transport="tls")
    with pytest.raises(ValueError, match="needs a run secret"):
        pccl.MasterNode("127.0.0.1:0", transport="encrypted").run()
    with pytest.raises(TypeError):
        pccl.MasterNode("127.0.0.1:0", secret=42)  # type: ignore[arg-type]


# --- the handshake by hand --------------------------------------------------------------------

def hkdf(ikm: bytes, salt: bytes, info: bytes, n: int) -> bytes:
    """HKDF-SHA256 (RFC 5869)."""
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, block = b"", b""
    for i in range(1, -(-n // 32) + 1):
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
    return out[:n]


def prefixed(b: bytes) -> bytes:
    return struct.pack("<I", len(b)) + b


class MasterHandshake:
    """The dialer's half of the master link's handshake, as docs/security.md tells it."""

    def __init__(self, secret: str, nonce: bytes | None = None) -> None:
        self.auth_key = hkdf(secret.encode(), b"", b"pccl run secret v2", 32)
        self.nonce = nonce or os.urandom(32)
        self.greeting = wire.greeting(purpose=wire.Kind.HELLO, nonce=self.nonce)

    def proofs(self, challenge: bytes) -> tuple[bytes, bytes]:
        """(acceptor proof it should carry, our proof) for a Challenge payload."""
        cipher, n = challenge[0], struct.unpack_from("<I", challenge, 1)[0]
        nonce_a = challenge[5:5 + n]
        transcript = hashlib.sha256(prefixed(self.greeting)
                                    + prefixed(bytes([cipher]) + nonce_a)).digest()
        okm = hkdf(self.auth_key, transcript, b"pccl handshake v2", 128)
        return okm[:32], okm[32:64]


def challenge_proof(payload: bytes) -> bytes:
    n = struct.unpack_from("<I", payload, 1)[0]
    return payload[5 + n + 4:]


def test_handshake_by_hand_joins_and_its_replay_is_refused() -> None:
    master = pccl.MasterNode("127.0.0.1:0", secret=SECRET, daemon=True)
    master.run()
    try:
        recorded = MasterHandshake(SECRET)
        with wire.Conn("127.0.0.1", master.port) as conn:
            conn.send(wire.Kind.GREETING, recorded.greeting)
            kind, challenge = conn.recv_frame()
            assert kind == wire.Kind.CHALLENGE
            theirs, ours = recorded.proofs(challenge)
            assert challenge_proof(challenge) == theirs  # the master knows the secret
            conn.send(wire.Kind.PROOF, wire.proof(ours))
            assert conn.recv_frame()[0] == wire.Kind.P2P_WELCOME
            conn.send(wire.Kind.HELLO, wire.hello(public_key=bytes(range(32))))
            assert conn.expect(wire.Kind.WELCOME)["accepted"] == 1  # the first peer: admitted
        # Replaying the recorded Greeting and Proof: the master's fresh nonce changes the
        # proof it expects.
        with wire.Conn("127.0.0.1", master.port) as conn:
            conn.send(wire.Kind.GREETING, recorded.greeting)
            kind, challenge = conn.recv_frame()
            assert kind == wire.Kind.CHALLENGE
            conn.send(wire.Kind.PROOF, wire.proof(ours))
            error = conn.expect(wire.Kind.ERROR)
            assert error["code"] == wire.Code.UNAUTHENTICATED
            assert "proof is wrong" in error["message"]
            assert conn.closed_by_peer()
        # A stranger's guess at a proof fares no better.
        with wire.Conn("127.0.0.1", master.port) as conn:
            conn.send(wire.Kind.GREETING, MasterHandshake(OTHER_SECRET).greeting)
            conn.recv_frame()
            conn.send(wire.Kind.PROOF, wire.proof(os.urandom(32)))
            assert conn.expect(wire.Kind.ERROR)["code"] == wire.Code.UNAUTHENTICATED
    finally:
        master.close()


def member_ports(comm: pccl.Communicator, index: int) -> tuple[int, int]:
    return comm.peer_id, comm.p2p_port


def test_peer_listener_refuses_strangers() -> None:
    with Cluster(2, secret=SECRET) as c:
        (peer_a, port_a), (peer_b, _) = c.run(member_ports)
        # A plain hello, as a run without a secret would send it.
        with wire.Conn("127.0.0.1", port_a) as conn:
            conn.send(wire.Kind.P2P_HELLO, struct.pack("<QQQI", 1, peer_b, peer_a, 0))
            kind, payload = conn.recv_frame()
            assert kind == wire.Kind.P2P_WELCOME
            assert payload[0] == 0 and b"this run has a secret" in payload
        # A Greeting from an id the master never announced.
        with wire.Conn("127.0.0.1", port_a) as conn:
            conn.send(wire.Kind.GREETING, wire.greeting(wire.Kind.PROBE_HELLO, 12345, peer_a,
                                                        nonce=os.urandom(32)))
            error = conn.expect(wire.Kind.ERROR)
            assert error["code"] == wire.Code.UNAUTHENTICATED
            assert "not a member of this run" in error["message"]
        # A Greeting that claims to be member B: it gets a Challenge (the acceptor proves
        # first), but without B's private key and the secret no Proof passes.
        with wire.Conn("127.0.0.1", port_a) as conn:
            conn.send(wire.Kind.GREETING, wire.greeting(wire.Kind.PROBE_HELLO, peer_b, peer_a,
                                                        nonce=os.urandom(32)))
            assert conn.recv_frame()[0] == wire.Kind.CHALLENGE
            conn.send(wire.Kind.PROOF, wire.proof(os.urandom(32)))
            assert conn.expect(wire.Kind.ERROR)["code"] == wire.Code.UNAUTHENTICATED
        assert c.run(sum_of_indexes, 2) == [True] * 2  # the members never noticed


# --- protocol versions --------------------------------------------------------------------------

def test_an_older_peer_is_told_the_versions() -> None:
    master = pccl.MasterNode("127.0.0.1:0", daemon=True)
    master.run()
    try:
        with wire.Conn("127.0.0.1", master.port) as conn:
            conn.send_raw(wire.frame(wire.Kind.HELLO, wire.hello(), version=1))
            header = conn.recv_header()
            assert header["version"] == wire.VERSION  # the answer speaks the master's version
            error = wire.decode(header["kind"], conn.recv_payload(header))
            assert error["kind"] == wire.Kind.ERROR
            assert "protocol version 1" in error["message"]
            assert f"this build speaks {wire.VERSION}" in error["message"]
    finally:
        master.close()


def test_a_peer_facing_a_newer_master_says_so() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def newer_master() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(wire.frame(wire.Kind.ERROR, struct.pack("<I", 1) + wire.string("hi"),
                                    version=wire.VERSION + 1))
            conn.recv(4096)  # until the peer hangs up

    thread = threading.Thread(target=newer_master, daemon=True)
    thread.start()
    comm = pccl.Communicator(f"127.0.0.1:{server.getsockname()[1]}")
    try:
        with pytest.raises(pccl.PCCLError,
                           match=f"protocol version {wire.VERSION + 1} .*speaks {wire.VERSION}"):
            comm.connect(n_attempts=1, timeout=10)
    finally:
        comm.close()
        server.close()
        thread.join(timeout=10)


# --- secrets from files ------------------------------------------------------------------------

def test_pccl_master_reads_its_secret_file_and_peers_read_theirs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "run.secret"
    secret_file.write_text(SECRET + "\n")  # one trailing newline is not part of the secret
    master = subprocess.Popen(
        [sys.executable, "-m", "pccl.master", "--listen-address", "127.0.0.1:0",
         "--secret-file", str(secret_file), "--transport", "encrypted"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PCCL_")})
    try:
        assert master.stdout is not None
        line = master.stdout.readline()
        assert "listening on" in line, line
        address = line.strip().rsplit(" ", 1)[1]
        monkeypatch.setenv("PCCL_RUN_SECRET_FILE", str(secret_file))
        monkeypatch.setenv("PCCL_TRANSPORT", "encrypted")
        with pccl.Communicator(address) as comm:  # the secret and transport from the environment
            comm.connect(timeout=30)
            assert comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) == 1
        with pccl.Communicator(address, secret=OTHER_SECRET) as stranger:
            with pytest.raises(pccl.AuthenticationError):
                stranger.connect(timeout=30)
        with pccl.Communicator(address, secret=SECRET, transport="plain") as plain:
            with pytest.raises(pccl.AuthenticationError):
                plain.connect(timeout=30)
    finally:
        master.terminate()
        master.wait(timeout=30)
        if master.stdout is not None:
            master.stdout.close()
        if master.stderr is not None:
            master.stderr.close()
    missing = subprocess.run([sys.executable, "-m", "pccl.master", "--listen-address",
                              "127.0.0.1:0", "--secret-file", str(tmp_path / "nowhere")],
                             capture_output=True, text=True, timeout=30, check=False)
    assert missing.returncode == 2 and "--secret-file" in missing.stderr
