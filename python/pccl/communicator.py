"""The Communicator: one peer of a pccl run (drop-in for PCCL 1.0's).

A peer connects to a master, is admitted into the ring when the accepted peers call
update_topology(), and all-reduces numpy arrays or torch CPU tensors with the others.
Every blocking call has a deadline (`timeout` seconds; default PCCL_TIMEOUT_MS, 60 s) and
releases the GIL. Failures raise pccl.errors classes that say what to do next.

    with pccl.Communicator("127.0.0.1:48148") as comm:
        comm.connect()
        comm.all_reduce(grads, grads, op=pccl.ReduceOp.AVG)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from enum import IntEnum
from typing import Any, NamedTuple

from pccl import _core
from pccl._auth import check_secret, check_transport
from pccl._enums import (CORE_DTYPE, CORE_OP, CORE_QUANT, DataType, QuantizationAlgorithm,
                         ReduceMode, ReduceOp, enum_arg)
from pccl._tensors import Buffer, as_buffer, is_torch_tensor
from pccl._types import (
    Attribute,
    QuantizationOptions,
    ReduceInfo,
    ReduceOpDescriptor,
    ReduceOperandDescriptor,
    SharedStateSyncInfo,
    SharedStateSyncStrategy,
)
from pccl.errors import (
    InvalidUsageError,
    MasterUnavailableError,
    PCCLError,
    PCCLTimeoutError,
    PeerLostError,
    Result,
    TooFewPeersError,
    error_for_status,
    result_for_status,
    result_on_failure,
)
from pccl.shared_state import SharedState

_log = logging.getLogger("pccl")


def _timeout(timeout: float | None, name: str = "timeout") -> float:
    """Seconds for the core; -1 selects the default deadline."""
    if timeout is None:
        return -1.0
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, got {type(timeout).__name__}")
    if not timeout > 0:
        raise ValueError(f"{name} must be positive, got {timeout}")
    return float(timeout)


class _Kind(IntEnum):
    """The collectives besides the all-reduce, as the core numbers them
    (comm::CollectiveKind)."""

    BROADCAST = 1
    ALL_GATHER = 2
    REDUCE_SCATTER = 3
    GATHER = 4
    SCATTER = 5
    ALL_TO_ALL = 6
    SEND = 7
    RECV = 8


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def _tag(tag: Any) -> int:
    if isinstance(tag, bool) or not isinstance(tag, int) or not 0 <= tag < 2**64:
        raise ValueError(f"tag must be an int in [0, 2**64), got {tag!r}")
    return tag


def _reachability(reachable: bool, host: str, port: int, detail: str) -> Reachability:
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return Reachability(bool(reachable), address, str(detail))


def _split_host(address: str) -> str:
    return address[1:-1] if address.startswith("[") and address.endswith("]") else address


class LinkInfo(NamedTuple):
    """One of this peer's ring links (`Communicator.link_info()`).

    `direction` is "next" (this peer sends to `peer_id`) or "prev" (receives from it);
    `route` is "direct" (a TCP connection to the peer's listener), "relayed" (through the
    run's relay, because the peer could not be dialled: behind a NAT or a firewall) or
    "unknown" (no connection yet); `bytes_per_second` is what this peer's latest
    optimize_topology() measured towards `peer_id` (0: not measured).
    """

    peer_id: int
    direction: str
    route: str
    bytes_per_second: int


class LinkStats(NamedTuple):
    """One ring link in `Communicator.stats()`: LinkInfo's fields, then `bytes` (frame
    bytes sent to "next" or received from "prev" since the current ring's links were
    built), `rtt_s` (the kernel's smoothed round-trip time, mean over the pool's
    connections; 0 before any), `retransmits` (TCP segments the pool retransmitted) and
    `stripes` ("next" only: how many of the pool's connections carry this peer's segments:
    the whole pool on a long link, 2 where the smallest RTT is under 2 ms; 0 for "prev")
    and `early_bytes` ("prev" only: of `bytes`, the payload read into memory of its own
    because it came before this peer's operation said where it goes, then copied there;
    0 for "next")."""

    peer_id: int
    direction: str
    route: str
    bytes_per_second: int
    bytes: int
    rtt_s: float
    retransmits: int
    stripes: int
    early_bytes: int


class OperationStats(NamedTuple):
    """One kind of operation in `Communicator.stats()` ("all_reduce", "broadcast",
    "all_gather", "reduce_scatter", "gather", "scatter", "all_to_all", "send", "recv",
    "sync_shared_state", "update_topology", "optimize_topology"): calls that succeeded and failed, their total
    and longest duration in seconds, and a latency histogram as (upper bound in seconds,
    calls) pairs (non-cumulative; the last bound is effectively infinite)."""

    succeeded: int
    failed: int
    total_seconds: float
    max_seconds: float
    latency_buckets: list[tuple[float, int]]


class CommunicatorStats(NamedTuple):
    """`Communicator.stats()`: the ring links (next, then previous) and the operations."""

    links: list[LinkStats]
    operations: dict[str, OperationStats]


class Reachability(NamedTuple):
    """Whether other peers can dial this one (`Communicator.reachability`).

    After connect() the master dials the endpoint this peer advertised (its listener, where
    ring neighbours will dial) and answers: `reachable` says whether that connected, and
    `observed_address` is where the master sees this peer's own connection come from
    ("host:port"; behind a NAT, the NAT's public mapping). `detail` names the endpoint
    dialled and, if it failed, why (refused, or timed out: a NAT or firewall in the way).
    """

    reachable: bool
    observed_address: str
    detail: str


class AsyncReduceHandle:
    """A collective in flight. Keeps its tensors alive until it completes."""

    def __init__(self, work: Any, keep_alive: tuple[Any, ...]):
        self._work = work
        self._keep_alive: tuple[Any, ...] | None = keep_alive
        self._outcome: tuple[bool, int, str, ReduceInfo] | None = None

    def _finish(self) -> tuple[bool, int, str, ReduceInfo]:
        if self._outcome is None:
            ok, status, message, (world, tx, rx) = self._work.wait()
            info = ReduceInfo(world, tx, rx) if ok else ReduceInfo(0, 0, 0)
            self._outcome = (bool(ok), int(status), str(message), info)
            self._keep_alive = None
        return self._outcome

    def wait(self) -> tuple[bool, int, ReduceInfo]:
        """Blocks until done; returns (is_success, status, ReduceInfo) as PCCL 1.0 does.

        `status` is upstream's Result code (0 on success).
        """
        ok, status, _, info = self._finish()
        return ok, int(result_for_status(status)), info

    def result(self) -> ReduceInfo:
        """Blocks until done; returns the ReduceInfo or raises the operation's error."""
        ok, status, message, info = self._finish()
        if not ok:
            raise error_for_status(status, message)
        return info

    def done(self) -> bool:
        """True once the operation has finished (wait() then returns at once)."""
        return self._outcome is not None or bool(self._work.done())

    @property
    def peer(self) -> int:
        """A send's or recv's other end (a recv from any source: the sender's peer id);
        waits for the operation, and raises its error if it failed."""
        self.result()
        return int(self._work.peer())


class Communicator:
    """One peer of a pccl run.

    Args:
        address: the master, "host:port" (hostnames and "[ipv6]:port" work).
        peer_group: collectives and shared state run within a peer group.
        p2p_connection_pool_size: TCP connections per ring neighbour; 0 picks the default (8).
        listen_address: local host the p2p listener binds (default: every interface, IPv6
            and IPv4).
        advertise_address: host other peers should dial to reach this one, when it differs
            from the address the master sees (NAT, containers).
        secret: the run secret, the same as the master's (at least 16 bytes); every
            connection proves it and peers prove who they are to each other
            (docs/security.md). None reads PCCL_RUN_SECRET, then the file named by
            PCCL_RUN_SECRET_FILE; a master or peer with another secret, or none, is refused
            with AuthenticationError.
        transport: "plain" or "encrypted", as the master's (None: PCCL_TRANSPORT, default
            plain); encrypted seals every frame of every connection (needs a secret).
    """

    def __init__(self, address: str, peer_group: int = 0, p2p_connection_pool_size: int = 0, *,
                 listen_address: str | None = None, advertise_address: str | None = None,
                 secret: str | bytes | None = None, transport: str | None = None):
        if not isinstance(address, str):
            raise TypeError(f"address must be a str 'host:port', got {type(address).__name__}")
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"address must look like 'host:port', got {address!r}")
        for name, value, upper in (("peer_group", peer_group, 2**32),
                                   ("p2p_connection_pool_size", p2p_connection_pool_size, 65)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if not 0 <= value < upper:
                raise ValueError(f"{name} must be in [0, {upper}), got {value}")
        if listen_address is not None and not isinstance(listen_address, str):
            raise TypeError("listen_address must be a str or None")
        if advertise_address is not None and not isinstance(advertise_address, str):
            raise TypeError("advertise_address must be a str or None")
        self._args = (address, peer_group, p2p_connection_pool_size,
                      _split_host(listen_address or ""), _split_host(advertise_address or ""),
                      check_secret(secret), check_transport(transport))
        self._core: Any = _core.Communicator(*self._args)
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------

    def connect(self, n_attempts: int = 5, *, timeout: float | None = None) -> None:
        """Registers with the master and waits until admitted into the run.

        The first peer is admitted at once; later peers when the accepted peers call
        update_topology(), which in a DiLoCo run may be minutes away: by default this waits
        for admission without limit (as PCCL 1.0 does) while the master is reachable. An
        unreachable master is retried `n_attempts` times, one second apart.

        Raises:
            MasterUnavailableError: no master after n_attempts ("Failed to connect to the
                master node", as PCCL 1.0 says), or the master went away meanwhile.
            PCCLTimeoutError: not admitted before `timeout`, if one is given.
            AuthenticationError: the master (or this peer) has another run secret, or none;
                not retried.
        """
        if isinstance(n_attempts, bool) or not isinstance(n_attempts, int) or n_attempts < 1:
            raise ValueError(f"n_attempts must be a positive int, got {n_attempts!r}")
        seconds = math.inf if timeout is None else _timeout(timeout)
        self._check_open()
        for attempt in range(1, n_attempts + 1):
            try:
                self._core.connect(seconds)
                return
            except MasterUnavailableError as e:
                _log.warning("connecting to the master failed (attempt %d/%d): %s",
                             attempt, n_attempts, e)
                self._core.close()
                self._core = _core.Communicator(*self._args)
                if attempt == n_attempts:
                    raise MasterUnavailableError(
                        f"Failed to connect to the master node after {n_attempts} attempts: "
                        f"{e}", e.result, e.status) from e
                time.sleep(1.0)

    def close(self) -> None:
        """Leaves the run (the master is told) and stops all threads. Idempotent."""
        if not self._closed:
            self._closed = True
            self._core.close()

    def __enter__(self) -> Communicator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    # -- membership -------------------------------------------------------------------

    def update_topology(self, *, timeout: float | None = None) -> None:
        """Admits pending peers; every accepted peer must call it. Returns at once when no
        peer is pending, so calling it every step (even on a joiner's first step) is safe.

        All-reduces of this peer still in flight (all_reduce_async, or another thread) are
        not waited for: if every peer of the group started them, they finish on the old ring
        before the new peers are admitted; otherwise they fail at once with PeerLostError
        (inputs intact). Start no new collective while it runs.
        """
        self._check_open()
        with result_on_failure(Result.UPDATE_TOPOLOGY_FAILED):
            self._core.update_topology(_timeout(timeout))

    def wait_for_world(self, world: int, *, timeout: float = 60.0) -> None:
        """Admits pending peers until the run has `world` peers (an addition to upstream's
        API). Between admissions it waits for the master to say that a peer is pending (no
        polling while the other processes start).

        For the peers that found a run together: each calls it with the same `world`, since
        admission is a vote of every accepted peer. A peer joining a running run does not
        call it; its connect() returns once the others admit it. It asks the master alone
        (not the joint are_peers_pending()), so members may call it at slightly different
        times. Raises PCCLTimeoutError after `timeout` seconds.
        """
        if isinstance(world, bool) or not isinstance(world, int) or world < 1:
            raise ValueError(f"world must be a positive int, got {world!r}")
        deadline = time.monotonic() + _timeout(timeout)
        while self.get_attribute(Attribute.GLOBAL_WORLD_SIZE) < world:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PCCLTimeoutError(f"the run did not reach {world} peers in {timeout} s")
            if self._wait_for_pending(left):
                self.update_topology(timeout=max(0.001, deadline - time.monotonic()))

    def _wait_for_pending(self, timeout: float) -> bool:
        """True once a peer waits to be admitted: the master, asked by this peer alone,
        answers when one arrives (no polling). False after min(timeout, 1 s): the world can
        also change without a pending peer (a restarted master's recovery brings the
        members back), so callers look at it again. For wait_for_world and the torch
        backend's rendezvous."""
        return bool(self._core.are_peers_pending(min(timeout, 1.0), joint=False, wait=True))

    def are_peers_pending(self, *, timeout: float | None = None) -> bool:
        """True if peers wait to be admitted by update_topology().

        A joint call, as in PCCL 1.0: every accepted peer must call it, and it returns once
        all have, with the same answer everywhere, so all take the same branch. It does not
        wait for collectives in flight (a background thread may keep all-reducing), which is
        what it is for: `if comm.are_peers_pending(): <finish the collectives in flight>;
        comm.update_topology()`.
        """
        self._check_open()
        return bool(self._core.are_peers_pending(_timeout(timeout), joint=True))

    def optimize_topology(self, *, timeout: float | None = None) -> None:
        """Reorders the ring by measured bandwidth; every accepted peer must call it.

        Peers probe each other (a few hundred ms per pair, one probe per peer at a time,
        pairs measured recently are not probed again) and the master adopts the ring order
        whose slowest link is fastest. Waits for this peer's all-reduces in flight first.

        Raises:
            TooFewPeersError: the run has fewer than two peers (PCCL 1.0: INVALID_USAGE).
        """
        seconds = _timeout(timeout)
        self._check_open()
        world = self.get_attribute(Attribute.GLOBAL_WORLD_SIZE)
        if world < 2:
            raise TooFewPeersError(f"optimize_topology() needs at least 2 peers, the run has "
                                   f"{world}", Result.INVALID_USAGE)
        with result_on_failure(Result.TOPOLOGY_OPTIMIZATION_FAILED):
            self._core.optimize_topology(seconds)

    def ring_order(self) -> list[int]:
        """The peer ids of this peer's group in ring order (each peer sends to the next)."""
        self._check_open()
        return list(self._core.ring_order())

    def link_info(self) -> list[LinkInfo]:
        """This peer's links to its ring neighbours (next, then previous): direct or relayed,
        and the bandwidth measured towards each (see LinkInfo). Empty alone in its group."""
        self._check_open()
        return [LinkInfo(int(p), str(d), str(r), int(b)) for p, d, r, b, *_ in self._core.links()]

    def stats(self) -> CommunicatorStats:
        """What this peer moved and ran: per ring link (LinkStats: bytes since the ring was
        built, measured bandwidth, TCP round-trip time and retransmissions from the
        kernel's TCP_INFO) and per operation kind (OperationStats: calls that succeeded and
        failed, and their latency)."""
        self._check_open()
        links = [LinkStats(int(p), str(d), str(r), int(b), int(n), rtt / 1e6, int(retrans),
                           int(stripes), int(early))
                 for p, d, r, b, n, rtt, retrans, stripes, early in self._core.links()]
        operations = {
            str(kind): OperationStats(int(ok), int(failed), float(total), float(longest),
                                      [(float(bound), int(calls)) for bound, calls in buckets])
            for kind, (ok, failed, total, longest, buckets) in self._core.op_stats().items()}
        return CommunicatorStats(links, operations)

    def _refresh_attributes(self) -> None:
        """For pccl's adapters: attributes reflect the topology applied by now, not only as
        of this peer's latest call (see get_attribute)."""
        self._check_open()
        self._core.refresh_view()

    def current_world_size(self) -> int:
        """GLOBAL_WORLD_SIZE, by the name of PCCL's earlier API."""
        return self.get_attribute(Attribute.GLOBAL_WORLD_SIZE)

    def get_attribute(self, attribute: Attribute) -> int:
        """World sizes and peer-group counts of the topology as of this peer's latest call.

        As in PCCL 1.0 the values change only inside calls (connect, update_topology,
        are_peers_pending, optimize_topology, sync_shared_state, a collective's start),
        never in between, so peers that read them between the same two joint calls agree.
        """
        attribute = enum_arg(Attribute, attribute, "attribute")
        self._check_open()
        return int(self._core.get_attribute(_core.Attribute(attribute)))

    # -- collectives ------------------------------------------------------------------

    def all_reduce(self, send: Any, recv: Any, *, op: ReduceOp, tag: int = 0,
                   operand_descriptor: ReduceOperandDescriptor | None = None,
                   quantization_options: QuantizationOptions | None = None,
                   timeout: float | None = None, numel: int | None = None,
                   mode: ReduceMode = ReduceMode.DEFAULT,
                   restore_input: bool = True) -> ReduceInfo:
        """All-reduces `send` into `recv` (they may be the same tensor) across the group.

        Blocks with the GIL released. On failure `send` is intact (in place too), so the
        call can be retried after update_topology(). In place, that costs a copy of the
        tensor per call; `restore_input=False` skips it for callers that recompute their
        input after a failure (DiLoCo recomputes its pseudo-gradient): the tensor then
        holds garbage after a failure.

        With `quantization_options` (MIN_MAX or ZERO_POINT_SCALE into UINT8 or UINT16; float
        data; SUM or AVG) segments travel quantized with per-block parameters, partial sums
        accumulate in float32 (float64 for float64 data) and every peer still ends with
        identical bytes; other combinations raise InvalidUsageError before anything is sent.

        `numel` (PCCL's earlier API) must equal the tensors' element count if given.

        `mode=ReduceMode.EXACT` (SUM or AVG, any dtype): every peer's result is the same
        bytes whatever the ring order, membership history or retries, within about
        n^2 * 4.7e-10 of the largest input's magnitude (integers: exactly, or refused when
        the sum would pass 2^31). `ReduceMode.PRIVATE` (implies EXACT, same result bytes)
        also masks every input so that no other single peer sees it. `ReduceMode.VERIFIED`
        (implies EXACT, combines with PRIVATE) checks the sum with linear hashes and raises
        IntegrityError on every peer, applying nothing, if a member falsified it. Every
        peer of the group must pass the same mode; each runs two collectives on `tag` (the
        scale, then the sum; VERIFIED a third, the check). docs/exact.md says how, and what
        each guarantees.

        Raises:
            PeerLostError: a peer died or hung: retry.
            TooFewPeersError: alone in the group: drop the step.
            IntegrityError: (VERIFIED) the sum did not add up; the message names where.
            InvalidUsageError: bad arguments, or peers that disagree on the operation.
        """
        s, r = self._buffers(send, recv, numel)
        request = self._request(s, r, op, tag, operand_descriptor, quantization_options, mode,
                                restore_input)
        world, tx, rx = self._core.all_reduce(request, _timeout(timeout))
        return ReduceInfo(world, tx, rx)

    def all_reduce_async(self, send: Any, recv: Any, *, op: ReduceOp, tag: int = 0,
                         operand_descriptor: ReduceOperandDescriptor | None = None,
                         quantization_options: QuantizationOptions | None = None,
                         timeout: float | None = None, numel: int | None = None,
                         mode: ReduceMode = ReduceMode.DEFAULT,
                         restore_input: bool = True) -> AsyncReduceHandle:
        """Starts an all-reduce and returns a handle; concurrent ones need distinct tags.
        `mode` and `restore_input` as for all_reduce().

        The handle keeps `send` and `recv` alive until the operation completes; do not
        touch them before wait() or result() returns.

        Raises:
            The errors of all_reduce() that arise before anything is sent (bad arguments,
            TooFewPeersError, MasterUnavailableError, ...) are raised here, at the call, as
            PCCL 1.0 does; failures while it runs come from wait() / result().
        """
        s, r = self._buffers(send, recv, numel)
        request = self._request(s, r, op, tag, operand_descriptor, quantization_options, mode,
                                restore_input)
        work = self._core.all_reduce_async(request, _timeout(timeout))
        return AsyncReduceHandle(work, (send, recv))

    # The ring collectives besides the all-reduce. Peers are named by peer id (the ring
    # order may change between calls); the blocks of a buffer with one block per peer are
    # in ascending peer id, or in the order of `order` (peer ids; every peer must pass the
    # same). Each has the all-reduce's guarantees: one verdict for the group, inputs intact
    # on failure, PeerLostError to retry after update_topology() (a broadcast's receivers'
    # tensors are outputs: see broadcast()).

    def broadcast(self, tensor: Any, *, root: int, tag: int = 0, timeout: float | None = None,
                  restore_input: bool = False) -> ReduceInfo:
        """Copies the tensor of the peer `root` (a peer id) into `tensor` on every peer.

        The bytes travel once along the ring, pipelined in segments (each link carries the
        tensor once). On failure the root's tensor is intact; the others' are outputs and
        may hold part of the root's data, unless `restore_input=True`, which gives them
        back as they were at the cost of a copy of the tensor per call.
        """
        return self.broadcast_async(tensor, root=root, tag=tag, timeout=timeout,
                                    restore_input=restore_input).result()

    def broadcast_async(self, tensor: Any, *, root: int, tag: int = 0,
                        timeout: float | None = None,
                        restore_input: bool = False) -> AsyncReduceHandle:
        """broadcast() started in the background; errors that arise before anything is
        sent are raised here, the rest from the handle."""
        return self._ring_collective(_Kind.BROADCAST, tensor, tensor, root=root, tag=tag,
                                     timeout=timeout, restore_input=restore_input)

    def all_gather(self, send: Any, recv: Any, *, tag: int = 0,
                   order: Sequence[int] | None = None,
                   timeout: float | None = None) -> ReduceInfo:
        """Gathers every peer's `send` into `recv`: world blocks of send's size, one per
        peer, in ascending peer id (or `order`). `send` may be this peer's own block of
        `recv`. Every peer ends with identical bytes.

        Raises:
            InvalidUsageError: recv is not world x send's size on the ring the call runs
                on (on every peer: the group changed since the buffers were sized), or
                `order` does not name the group's peers.
            and those of all_reduce().
        """
        return self.all_gather_async(send, recv, tag=tag, order=order,
                                     timeout=timeout).result()

    def all_gather_async(self, send: Any, recv: Any, *, tag: int = 0,
                         order: Sequence[int] | None = None,
                         timeout: float | None = None) -> AsyncReduceHandle:
        """all_gather() started in the background (see broadcast_async)."""
        return self._ring_collective(_Kind.ALL_GATHER, send, recv, order=order, tag=tag,
                                     timeout=timeout)

    def reduce_scatter(self, send: Any, recv: Any, *, op: ReduceOp, tag: int = 0,
                       order: Sequence[int] | None = None,
                       timeout: float | None = None) -> ReduceInfo:
        """Reduces `send` (world blocks of recv's size, in ascending peer id or `order`)
        across the group with `op`; each peer receives the reduction of its own block in
        `recv`. float16/bfloat16 partial sums travel and accumulate in float32 (the first
        step sends this peer's input as it is). Raises as
        all_gather()."""
        return self.reduce_scatter_async(send, recv, op=op, tag=tag, order=order,
                                         timeout=timeout).result()

    def reduce_scatter_async(self, send: Any, recv: Any, *, op: ReduceOp, tag: int = 0,
                             order: Sequence[int] | None = None,
                             timeout: float | None = None) -> AsyncReduceHandle:
        """reduce_scatter() started in the background (see broadcast_async)."""
        return self._ring_collective(_Kind.REDUCE_SCATTER, send, recv, op=op, order=order,
                                     tag=tag, timeout=timeout)

    def gather(self, send: Any, recv: Any | None, *, root: int, tag: int = 0,
               order: Sequence[int] | None = None,
               timeout: float | None = None) -> ReduceInfo:
        """Gathers every peer's `send` into `recv` on the peer `root` (a peer id): world
        blocks of send's size, in ascending peer id (or `order`). `recv` is the root's
        only (None elsewhere). Each block goes straight to the root. Raises as
        all_gather()."""
        return self.gather_async(send, recv, root=root, tag=tag, order=order,
                                 timeout=timeout).result()

    def gather_async(self, send: Any, recv: Any | None, *, root: int, tag: int = 0,
                     order: Sequence[int] | None = None,
                     timeout: float | None = None) -> AsyncReduceHandle:
        """gather() started in the background (see broadcast_async)."""
        return self._ring_collective(_Kind.GATHER, send, recv, root=root, order=order,
                                     tag=tag, timeout=timeout)

    def scatter(self, send: Any | None, recv: Any, *, root: int, tag: int = 0,
                order: Sequence[int] | None = None,
                timeout: float | None = None) -> ReduceInfo:
        """Sends block k of the root's `send` (world blocks of recv's size, in ascending
        peer id or `order`) to the k-th peer's `recv`. `send` is the root's only (None
        elsewhere). Each block goes straight to its peer. Raises as all_gather()."""
        return self.scatter_async(send, recv, root=root, tag=tag, order=order,
                                  timeout=timeout).result()

    def scatter_async(self, send: Any | None, recv: Any, *, root: int, tag: int = 0,
                      order: Sequence[int] | None = None,
                      timeout: float | None = None) -> AsyncReduceHandle:
        """scatter() started in the background (see broadcast_async)."""
        return self._ring_collective(_Kind.SCATTER, send, recv, root=root, order=order,
                                     tag=tag, timeout=timeout)

    def all_to_all(self, send: Any, recv: Any, *, tag: int = 0,
                   order: Sequence[int] | None = None,
                   timeout: float | None = None) -> ReduceInfo:
        """Block k of every peer's `send` (world equal blocks, in ascending peer id or
        `order`) goes to the k-th peer, into its `recv` block of the sender. `recv` is
        send's size and must not overlap it. Each block goes straight to its peer.
        Raises as all_gather()."""
        return self.all_to_all_async(send, recv, tag=tag, order=order,
                                     timeout=timeout).result()

    def all_to_all_async(self, send: Any, recv: Any, *, tag: int = 0,
                         order: Sequence[int] | None = None,
                         timeout: float | None = None) -> AsyncReduceHandle:
        """all_to_all() started in the background (see broadcast_async)."""
        return self._ring_collective(_Kind.ALL_TO_ALL, send, recv, order=order, tag=tag,
                                     timeout=timeout)

    def send(self, data: Any, to: int, *, tag: int = 0,
             timeout: float | None = None) -> ReduceInfo:
        """Sends `data` to the peer `to` (a peer id of this group), which receives it with
        recv(out, source=<this peer's id>) of the same size and dtype. The n-th send to a
        peer with a tag meets that peer's n-th recv from this one with that tag.

        Synchronous: returns once the receiver has the data, and both ends get the same
        outcome (the receiver decides; a failure is the master's verdict for the two). The bytes travel over links
        of their own between the two (striped over the connection pool), not around the
        ring. Two peers that send to each other before receiving must use send_async and
        recv_async.

        Raises:
            InvalidUsageError: `to` is not another member of the group, or the two ends
                disagree on size or dtype (both ends raise it).
            PeerLostError, PCCLTimeoutError: the transfer failed; `data` is intact and
                both ends may retry.
        """
        return self.send_async(data, to, tag=tag, timeout=timeout).result()

    def send_async(self, data: Any, to: int, *, tag: int = 0,
                   timeout: float | None = None) -> AsyncReduceHandle:
        """send() started in the background; keep `data` untouched until it finishes."""
        return self._pair(_Kind.SEND, data, to, tag=tag, timeout=timeout)

    def recv(self, out: Any, source: int | None, *, tag: int = 0,
             timeout: float | None = None) -> ReduceInfo:
        """Receives into `out` what the peer `source` sends with send(data, to=<this
        peer's id>) (see send()). On failure `out` may hold part of the data.

        `source` None takes the next transfer to this peer with `tag` from whichever
        member's begins first (it then counts as that member's, as if received from it);
        recv_async(out, None).peer names the sender."""
        return self.recv_async(out, source, tag=tag, timeout=timeout).result()

    def recv_async(self, out: Any, source: int | None, *, tag: int = 0,
                   timeout: float | None = None) -> AsyncReduceHandle:
        """recv() started in the background; leave `out` alone until it finishes."""
        return self._pair(_Kind.RECV, out, source, tag=tag, timeout=timeout)

    def _pair(self, kind: _Kind, tensor: Any, peer: int | None, *, tag: int,
              timeout: float | None) -> AsyncReduceHandle:
        """Starts a send or recv on a worker (a recv from any member: peer None)."""
        self._check_open()
        sending = kind is _Kind.SEND
        b = as_buffer(tensor, "data" if sending else "out", writable=not sending)
        name = "to" if sending else "source"
        if peer is None and not sending:
            peer = 0  # the core's "any member"
        elif isinstance(peer, bool) or not isinstance(peer, int) or not 0 < peer < 2**64:
            raise ValueError(f"{name} must be a peer id, got {peer!r}")
        request = _core.AllReduceRequest(
            send=b.ptr if sending else 0, recv=0 if sending else b.ptr, count=b.count,
            dtype=CORE_DTYPE[b.dtype], op=CORE_OP[ReduceOp.SUM], tag=_tag(tag),
            kind=int(kind), recv_count=b.count, peer=peer)
        work = self._core.all_reduce_async(request, _timeout(timeout))
        return AsyncReduceHandle(work, (tensor,))

    def _ring_collective(self, kind: _Kind, send: Any, recv: Any, *, tag: int,
                         timeout: float | None, op: Any = ReduceOp.SUM, root: int = 0,
                         order: Sequence[int] | None = None,
                         restore_input: bool = True) -> AsyncReduceHandle:
        """Starts `kind` on a worker. A gather's recv and a scatter's send may be None (off
        the root)."""
        self._check_open()
        s = None if send is None and kind is _Kind.SCATTER else as_buffer(send, "send")
        r = (None if recv is None and kind is _Kind.GATHER
             else as_buffer(recv, "recv", writable=True))
        if s is not None and r is not None and s.dtype is not r.dtype:
            raise TypeError(f"send has dtype {s.dtype.name} but recv has dtype {r.dtype.name}")
        dtype = s.dtype if s is not None else r.dtype if r is not None else DataType.UINT8
        if isinstance(root, bool) or not isinstance(root, int) or not 0 <= root < 2**64:
            raise ValueError(f"root must be a peer id, got {root!r}")
        ids = [] if order is None else list(order)
        if any(isinstance(i, bool) or not isinstance(i, int) or not 0 < i < 2**64 for i in ids):
            raise ValueError(f"order must be peer ids, got {order!r}")
        if len(set(ids)) != len(ids):
            raise ValueError(f"order names a peer twice: {ids}")
        request = _core.AllReduceRequest(
            send=0 if s is None else s.ptr, recv=0 if r is None else r.ptr,
            count=0 if s is None else s.count, dtype=CORE_DTYPE[dtype],
            op=CORE_OP[enum_arg(ReduceOp, op, "op")], tag=_tag(tag), kind=int(kind),
            recv_count=0 if r is None else r.count, root=root, order=ids,
            restore_input=_flag(restore_input, "restore_input"))
        work = self._core.all_reduce_async(request, _timeout(timeout))
        return AsyncReduceHandle(work, (send, recv))

    def all_reduce_multiple_with_retry(self, descriptors: Sequence[ReduceOpDescriptor], *,
                                       max_in_flight: int = 4,
                                       timeout: float | None = None) -> ReduceInfo:
        """Runs several all-reduces (distinct tags), retrying each until it succeeds.

        At most `max_in_flight` run at once, launched in list order. An all-reduce that
        fails because a peer was lost (PeerLostError, or a PCCLTimeoutError of a hung peer)
        is relaunched; its input is intact, so the retry computes the same result over the
        survivors (it runs on the master's new topology). As in PCCL 1.0 it never admits
        pending peers: that is update_topology()'s job, so this call may run on a
        background thread while the main thread decides when the topology changes.

        Args:
            descriptors: from ReduceOpDescriptor.from_numpy / from_torch; the tensors must
                stay untouched until this returns.
            max_in_flight: how many all-reduces may run concurrently.
            timeout: seconds for the whole call, retries included (default: one
                PCCL_TIMEOUT_MS per attempt).

        Returns:
            The world size of the last successful all-reduce, and the bytes sent and received
            by all successful ones together.

        Raises:
            TooFewPeersError: fewer than two peers remain; drop the step.
            PCCLTimeoutError: `timeout` passed before every all-reduce succeeded.
            PCCLError: any error that a retry cannot cure (InvalidUsageError, KickedError,
                MasterUnavailableError, ...), after the operations in flight finished.
        """
        if isinstance(descriptors, (str, bytes)) or not isinstance(descriptors, Sequence):
            raise TypeError("descriptors must be a sequence of pccl.ReduceOpDescriptor")
        for d in descriptors:
            if not isinstance(d, ReduceOpDescriptor):
                raise TypeError(f"descriptors must hold pccl.ReduceOpDescriptor, got "
                                f"{type(d).__name__}")
        tags = [d.reduce_descriptor.tag for d in descriptors]
        if len(set(tags)) != len(tags):
            raise ValueError(f"descriptors must have distinct tags, got {tags}")
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise TypeError(f"max_in_flight must be an int, got {type(max_in_flight).__name__}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        _timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout

        info = ReduceInfo(0, 0, 0)
        # Pending work in descriptor order: every peer launches the lowest pending index
        # first, and a failed all-reduce goes back into its place at once. Waiting for a
        # whole round to drain before relaunching could deadlock: one peer's round would
        # wait for an all-reduce that another peer only relaunches in its next round.
        pending = list(range(len(descriptors)))
        in_flight: list[tuple[int, AsyncReduceHandle]] = []
        fatal: PCCLError | None = None

        def retry(i: int, e: PCCLError) -> None:
            nonlocal fatal
            _log.info("all-reduce with tag %d failed, will retry: %s",
                      descriptors[i].reduce_descriptor.tag, e)
            if deadline is not None and time.monotonic() >= deadline:
                fatal = fatal or PCCLTimeoutError(
                    f"all_reduce_multiple_with_retry: still failing after {timeout} s: {e}")
            pending.insert(0, i)
            pending.sort()

        while (pending and fatal is None) or in_flight:
            while pending and fatal is None and len(in_flight) < max_in_flight:
                i = pending.pop(0)
                try:
                    in_flight.append((i, self._launch(descriptors[i], deadline)))
                except (PeerLostError, PCCLTimeoutError) as e:
                    # Failed as it started: the others had failed that very operation (a
                    # peer left before this one got to it), which every peer retries alike.
                    retry(i, e)
                except PCCLError as e:  # e.g. TooFewPeersError before anything is sent
                    fatal = e
            if not in_flight:
                break
            i, handle = in_flight.pop(0)
            try:
                done = handle.result()
            except (PeerLostError, PCCLTimeoutError) as e:
                retry(i, e)
            except PCCLError as e:
                fatal = fatal or e
            else:
                info = ReduceInfo(done.local_world_size, info.tx_bytes + done.tx_bytes,
                                  info.rx_bytes + done.rx_bytes)
        if fatal is not None:
            raise fatal
        return info

    def _launch(self, d: ReduceOpDescriptor, deadline: float | None) -> AsyncReduceHandle:
        rd = d.reduce_descriptor
        if d.send is not None and d.recv is not None:
            s, r = self._buffers(d.send, d.recv, None)
            if s.count != rd.count:
                raise ValueError(f"descriptor with tag {rd.tag} says count={rd.count} but its "
                                 f"tensors have {s.count} elements")
        else:  # built from raw addresses, as PCCL 1.0 allows: the caller keeps them valid
            dtype = DataType(rd.operand_descriptor.datatype)
            for name, ptr in (("sendbuf_ptr", d.sendbuf_ptr), ("recvbuf_ptr", d.recvbuf_ptr)):
                if isinstance(ptr, bool) or not isinstance(ptr, int) or (ptr == 0 and rd.count):
                    raise ValueError(f"descriptor with tag {rd.tag}: {name} must be a non-null "
                                     f"address, got {ptr!r}")
            s = Buffer(d.sendbuf_ptr, rd.count, dtype, None)
            r = Buffer(d.recvbuf_ptr, rd.count, dtype, None)
        self._check_open()
        request = self._request(s, r, rd.op, rd.tag, rd.operand_descriptor,
                                rd.quantization_options, rd.mode)
        work = self._core.all_reduce_async(request, _timeout(self._remaining(deadline)))
        return AsyncReduceHandle(work, (d.send, d.recv))

    @staticmethod
    def _remaining(deadline: float | None) -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise PCCLTimeoutError("all_reduce_multiple_with_retry: timeout passed")
        return left

    # -- shared state -----------------------------------------------------------------

    def sync_shared_state(self, shared_state: SharedState,
                          strategy: SharedStateSyncStrategy = SharedStateSyncStrategy.ENFORCE_POPULAR,
                          *, timeout: float | None = None) -> SharedStateSyncInfo:
        """Makes this peer's shared state the group's elected one; every peer of the group
        must call it. Advance `shared_state.revision` by one before each sync (the first
        sync may start at any revision); afterwards it holds the group's revision.

        Strategies: ENFORCE_POPULAR votes and receives; RECEIVE_ONLY never votes nor sends
        and adopts the popular content; SEND_ONLY votes and sends but never receives (the
        sync fails on every peer, naming it, if its content loses the election).

        Raises:
            InvalidUsageError: collectives in flight, keys/sizes/dtypes that differ between
                peers, a revision that jumps by more than one, a losing SEND_ONLY peer.
            PeerLostError: a peer died during the sync: retry.
        """
        self._check_open()
        if not isinstance(shared_state, SharedState):
            raise TypeError(f"shared_state must be a pccl.SharedState, "
                            f"got {type(shared_state).__name__}")
        if isinstance(strategy, bool) or not isinstance(strategy, int):
            raise TypeError(f"strategy must be a pccl.SharedStateSyncStrategy, "
                            f"got {type(strategy).__name__}")
        try:
            strategy = SharedStateSyncStrategy(strategy)
        except ValueError:
            raise ValueError(f"strategy must be a pccl.SharedStateSyncStrategy, "
                             f"got {strategy!r}") from None
        if self._core.collectives_in_flight:
            raise InvalidUsageError("sync_shared_state() called while all-reduces of this peer "
                                    "are in flight; wait for them first",
                                    Result.PENDING_ASYNC_OPS)
        revision, tx, rx = self._core.sync_shared_state(
            shared_state._entries(), shared_state.revision,
            _core.SharedStateSyncStrategy(strategy), _timeout(timeout))
        shared_state.revision = int(revision)
        return SharedStateSyncInfo(int(tx), int(rx))

    def _buffers(self, send: Any, recv: Any, numel: Any) -> tuple[Buffer, Buffer]:
        self._check_open()
        s = as_buffer(send, "send")
        r = as_buffer(recv, "recv", writable=True)
        if type(s.owner) is not type(r.owner) and not (is_torch_tensor(s.owner) and
                                                       is_torch_tensor(r.owner)):
            raise TypeError(f"send and recv must be of one kind, got {type(send).__name__} "
                            f"and {type(recv).__name__}")
        sdt, rdt = s.dtype, r.dtype
        if sdt is not rdt:
            raise TypeError(f"send has dtype {sdt.name} but recv has dtype {rdt.name}")
        if s.count != r.count:
            raise ValueError(f"send has {s.count} elements but recv has {r.count}")
        if numel is not None and (isinstance(numel, bool) or not isinstance(numel, int)
                                  or numel != s.count):
            raise ValueError(f"numel is {numel!r} but the tensors have {s.count} elements")
        return s, r

    @staticmethod
    def _request(s: Buffer, r: Buffer, op: Any, tag: Any,
                 operand_descriptor: ReduceOperandDescriptor | None,
                 quantization_options: QuantizationOptions | None,
                 mode: Any = ReduceMode.DEFAULT,
                 restore_input: Any = True) -> _core.AllReduceRequest:
        sdt = s.dtype
        op = enum_arg(ReduceOp, op, "op")
        mode = enum_arg(ReduceMode, mode, "mode")
        if mode and mode & (ReduceMode.PRIVATE | ReduceMode.VERIFIED):  # DEFAULT: no flag math
            mode |= ReduceMode.EXACT
        tag = _tag(tag)
        if operand_descriptor is not None:
            if not isinstance(operand_descriptor, ReduceOperandDescriptor):
                raise TypeError("operand_descriptor must be a pccl.ReduceOperandDescriptor")
            if DataType(operand_descriptor.datatype) is not sdt:
                raise TypeError(f"operand_descriptor.datatype is "
                                f"{DataType(operand_descriptor.datatype).name} but the tensors "
                                f"are {sdt.name}")
        algorithm, quantized = QuantizationAlgorithm.NONE, DataType.UINT8
        if quantization_options is not None:
            if not isinstance(quantization_options, QuantizationOptions):
                raise TypeError("quantization_options must be a pccl.QuantizationOptions")
            try:
                algorithm = QuantizationAlgorithm(quantization_options.algorithm)
                quantized = DataType(quantization_options.quantized_datatype)
            except ValueError as e:
                raise ValueError(f"quantization_options: {e}") from None
            if algorithm is not QuantizationAlgorithm.NONE and quantized not in (
                    DataType.UINT8, DataType.UINT16):
                raise InvalidUsageError("quantization_options.quantized_datatype must be "
                                        f"UINT8 or UINT16, got {quantized.name}")
        return _core.AllReduceRequest(send=s.ptr, recv=r.ptr, count=s.count,
                                      dtype=CORE_DTYPE[sdt], op=CORE_OP[op], tag=tag,
                                      quant_algorithm=CORE_QUANT[algorithm],
                                      quant_dtype=CORE_DTYPE[quantized], mode=int(mode),
                                      restore_input=_flag(restore_input, "restore_input"))

    def _check_open(self) -> None:
        if self._closed:
            raise InvalidUsageError("the communicator is closed")

    @property
    def peer_id(self) -> int:
        """This peer's id, given by the master on connect()."""
        return int(self._core.peer_id)

    @property
    def p2p_port(self) -> int:
        """The port of this peer's listener for other peers (0 before connect())."""
        return int(self._core.p2p_port)

    @property
    def reachability(self) -> Reachability | None:
        """Whether the master could dial this peer back (see Reachability); None until its
        answer came (a moment after connect(): at most a few seconds behind a NAT)."""
        answer = self._core.reachability
        return None if answer is None else _reachability(*answer)

    def wait_for_reachability(self, *, timeout: float | None = None) -> Reachability:
        """Waits for the master's answer to whether this peer can be dialled (see
        Reachability): a moment after connect(), a few seconds behind a NAT.

        Raises:
            PCCLTimeoutError: no answer within `timeout` seconds (default PCCL_TIMEOUT_MS).
            MasterUnavailableError: the master connection was lost first.
        """
        self._check_open()
        return _reachability(*self._core.wait_reachability(_timeout(timeout)))


__all__ = ["AsyncReduceHandle", "Communicator", "LinkInfo", "PCCLError", "Reachability"]
