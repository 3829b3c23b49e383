"""How the ranks of a torch process group become one pccl run.

torch hands the backend a c10d store that every rank of the group shares. Rank 0 starts
a pccl master inside its own process (threads, port 0) and publishes the master's address
in that store: its own address on the route to the store's host (which every rank
reaches), loopback on a single machine. The others read it from there. With
PCCL_MASTER_ADDR set, every rank uses that external master instead and nobody starts one.
The run has a secret: PCCL_RUN_SECRET or PCCL_RUN_SECRET_FILE where set (and needed for an
external master that has one), else a fresh one rank 0 makes and shares through the store.
PCCL_TRANSPORT=encrypted encrypts every connection.

Then every rank connects and runs the admission loop: the run grows only when its
accepted peers call update_topology(), so each rank keeps admitting pending peers until
the master counts `world_size` of them. Last, each rank publishes its pccl peer id in the
store and reads everyone's: pccl names peers by id, torch by rank. The whole rendezvous is
bounded by the process group's init timeout.

At shutdown every rank closes its communicator and checks out in the store; rank 0 stops
its master last, once the others have left (or a short grace period has passed), so no
peer loses its master while saying goodbye.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import socket
import time
from typing import Any

import pccl
from pccl._auth import new_run_secret, secret_in_environment

MASTER_ADDR_ENV = "PCCL_MASTER_ADDR"
_MASTER_KEY = "pccl/master_address"
_SECRET_KEY = "pccl/run_secret"
_CHECKOUT_KEY = "pccl/checked_out"
_PEER_ID_KEY = "pccl/peer_id"
_CHECKOUT_GRACE_S = 10.0
_POLL_S = 0.005


class Rendezvous:
    """One rank's membership in the pccl run behind a process group.

    Owns the Communicator and, on rank 0 without an external master, the MasterNode.
    """

    def __init__(self, store: Any, rank: int, world_size: int, timeout: datetime.timedelta):
        self.rank = rank
        self.world_size = world_size
        self._store = store
        self._master: pccl.MasterNode | None = None
        self.peer_ids: list[int] = []  # by rank, once every rank joined
        self._comm: pccl.Communicator | None = None
        deadline = time.monotonic() + timeout.total_seconds()
        try:
            address, secret = self._master_address()
            self._comm = pccl.Communicator(address, secret=secret)
            self._comm.connect(timeout=_left(deadline, address, world_size, 0))
            self._admit_until_full(deadline, address)
            self.peer_ids = self._exchange_peer_ids()
        except BaseException:
            self.close(wait_for_others=False)
            raise

    @property
    def comm(self) -> pccl.Communicator:
        """This rank's peer in the run (admitted, with all world_size peers present)."""
        assert self._comm is not None, "Rendezvous.__init__ raises before this is unset"
        return self._comm

    def _master_address(self) -> tuple[str, bytes | None]:
        """The master's address, and the run secret (None: the environment's, if any).

        Rank 0 starts the master unless PCCL_MASTER_ADDR names one. Without a secret in the
        environment it makes a fresh one for that master and shares it through the store,
        so the run is as closed as torch's store is (docs/security.md)."""
        external = os.environ.get(MASTER_ADDR_ENV)
        if external:
            return external, None
        if self.rank == 0:
            secret = None if secret_in_environment() else new_run_secret().encode()
            host = _local_address_towards(_store_host(self._store))
            self._master = pccl.MasterNode(_bind_address(host), daemon=True, secret=secret)
            self._master.run()
            port = self._master.port
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            self._store.set(_SECRET_KEY, secret or b"")
            self._store.set(_MASTER_KEY, address)
            return address, secret
        address = self._store.get(_MASTER_KEY).decode()  # blocks up to the store's timeout
        return str(address), bytes(self._store.get(_SECRET_KEY)) or None

    def _admit_until_full(self, deadline: float, address: str) -> None:
        while True:
            world = self.comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE)
            if world == self.world_size:
                return
            if world > self.world_size:
                raise RuntimeError(
                    f"pccl backend: the run at {address} has {world} peers but the process "
                    f"group has world_size={self.world_size}; is another job (or, with "
                    f"{MASTER_ADDR_ENV}, another process group) using this master?")
            # Not the joint are_peers_pending(): each rank waits at its own pace for the
            # master to say that a peer is pending, as Communicator.wait_for_world does.
            if self.comm._wait_for_pending(_left(deadline, address, self.world_size, world)):
                self.comm.update_topology(timeout=_left(deadline, address, self.world_size,
                                                        world))

    def _exchange_peer_ids(self) -> list[int]:
        """Every rank's pccl peer id, by rank: the native collectives name peers by id
        (a broadcast's root, the all-gather's block order)."""
        self._store.set(f"{_PEER_ID_KEY}/{self.rank}", str(self.comm.peer_id))
        return [int(self._store.get(f"{_PEER_ID_KEY}/{r}")) for r in range(self.world_size)]

    def close(self, *, wait_for_others: bool = True) -> None:
        """Leaves the run; rank 0 then stops its master once every rank has left (after
        at most a short grace period, and at once when `wait_for_others` is False)."""
        if self._comm is not None:
            self._comm.close()
        self._check_out()
        if self._master is None:
            return
        give_up = time.monotonic() + (_CHECKOUT_GRACE_S if wait_for_others else 0.0)
        while time.monotonic() < give_up and self._checked_out() < self.world_size:
            time.sleep(_POLL_S * 4)
        self._master.close()
        self._master = None

    def _check_out(self) -> None:
        with contextlib.suppress(Exception):  # the store may already be gone at exit
            self._store.add(_CHECKOUT_KEY, 1)

    def _checked_out(self) -> int:
        try:
            return int(self._store.add(_CHECKOUT_KEY, 0))
        except Exception:  # noqa: BLE001 - nobody left to wait for
            return self.world_size


def _left(deadline: float, address: str, world_size: int, world: int) -> float:
    """Seconds left before the init deadline; raises a clear error once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(
            f"pccl backend: only {world} of {world_size} ranks joined the pccl run at "
            f"{address} before the process group's timeout; are all ranks started, and can "
            f"they reach that address?")
    return left


def _store_host(store: Any) -> str:
    """The host of torch's TCPStore under `store`'s prefixes (env://, tcp://), else
    loopback."""
    while store is not None:
        host = getattr(store, "host", None)
        if isinstance(host, str) and host:
            return host
        store = getattr(store, "underlying_store", None)
    return "127.0.0.1"


def _bind_address(host: str) -> str:
    """Where rank 0's master listens: on the advertised address when it is an IP literal
    (loopback stays private to the machine), else on every IPv4 interface."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "0.0.0.0:0"
    return f"[{ip}]:0" if ip.version == 6 else f"{ip}:0"


def _local_address_towards(host: str) -> str:
    """This machine's address on its route to `host`: the address the other ranks, which
    reach the store at `host`, can most likely reach rank 0 at. Connecting a UDP socket
    only picks the route; nothing is sent."""
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, 9, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(sockaddr)
            return str(probe.getsockname()[0])
    except OSError:
        return host
