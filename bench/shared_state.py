"""Shared-state transfer to a joiner on loopback: pccl sync_shared_state vs plain TCP.

Usage: python -m bench.shared_state [--mib 1024] [--tensors 16] [--sources 1 3]
                                    [--strategy receive_only|enforce_popular]
                                    [--tcp-streams 1 4] [--repeat 3] [--pool-size K]
                                    [--json out.json]

Measures how fast a joining peer receives `--mib` MiB of shared state (float32, split into
`--tensors` equal tensors) from 1 and from 3 source peers, next to plain TCP transfers of
the same bytes measured in the same run.

  pccl  A MasterNode in this process and S spawned source peers holding identical content;
        they admit each other, sync once among themselves at revision 1 (nothing moves),
        and wait. A joiner process holding different content (every tensor differs)
        connects; the sources admit it with are_peers_pending()/update_topology(). Then
        every peer calls sync_shared_state at once: the sources at revision 2 (ENFORCE_
        POPULAR), the joiner at revision 0 with --strategy, so it adopts the sources'
        content and fetches every tensor. Timed: the joiner's sync_shared_state call
        (election round trip included). Verified: the joiner's rx_bytes equals the state
        size and its per-tensor XXH64 hashes equal the sources'. With --repeat N
        (default 3) the joiner scribbles over its tensors and syncs again (an outdated
        peer at revision 0) N-1 more times. A last sync in which the joiner already
        holds the content ("no fetch", rx 0) shows the cost of a sync without transfer:
        every peer hashes its whole state, and the election round trip.
  tcp   Two spawned processes and K pre-connected loopback sockets; the sender sendall()s
        the same number of bytes, split into K stripes (one thread per socket), into the
        receiver's pre-touched buffer with recv_into(). Timed: on the receiver, from the
        start signal to the last byte. Verified by hash.

GB/s = bytes / time / 1e9 (for "no fetch": state bytes / time). "of tcp" = GB/s / GB/s of
the fastest single-socket TCP repetition (the issue's target for pccl: at least 70 %);
"of best" = against the fastest TCP transfer of any socket count.
Buffers are allocated and filled before anything is timed; each process holds one copy
of the state (S + 1 processes at once for pccl, 2 for tcp). Exits non-zero if a
verification fails or anything times out; children are killed on every failure path.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from bench.lib.common import emit_json
from bench.lib.data import digests, make_state
from bench.lib.procs import BenchError, ctx, gather, report_error, stop_workers

TIMEOUT = 300.0  # seconds for any one step (start-up, admission, a transfer)


# --- pccl peers --------------------------------------------------------------------------------

def _admit_until(comm: Any, world: int, deadline: float) -> None:
    comm.wait_for_world(world, timeout=max(0.001, deadline - time.monotonic()))


def _source_main(conn: Connection, address: str, sources: int, n_tensors: int, numel: int,
                 pool_size: int) -> None:
    try:
        import pccl

        arrays = make_state(1, n_tensors, numel)
        state = pccl.SharedState([pccl.TensorInfo.from_numpy(a, f"t{i}")
                                  for i, a in enumerate(arrays)])
        comm = pccl.Communicator(address, 0, pool_size)
        comm.connect(timeout=TIMEOUT)
        _admit_until(comm, sources, time.monotonic() + TIMEOUT)
        state.revision = 1
        info = comm.sync_shared_state(state, timeout=TIMEOUT)
        if info.rx_bytes != 0:
            raise RuntimeError(f"identical sources received {info.rx_bytes} bytes")
        conn.send(("ready", digests(arrays)))
        while True:
            job = conn.recv()
            if job is None:
                break
            if job[0] == "admit":
                _admit_until(comm, job[1], time.monotonic() + TIMEOUT)
                conn.send(("admitted",))
            elif job[0] == "sync":
                state.revision += 1
                t0 = time.perf_counter()
                info = comm.sync_shared_state(state, timeout=TIMEOUT)
                dt = time.perf_counter() - t0
                conn.send(("synced", dt, info.tx_bytes, info.rx_bytes, state.revision))
        comm.close()
    except EOFError:
        return
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        report_error(conn, e)


def _joiner_main(conn: Connection, address: str, n_tensors: int, numel: int,
                 pool_size: int, strategy: str) -> None:
    try:
        import pccl

        arrays = make_state(2, n_tensors, numel)
        state = pccl.SharedState([pccl.TensorInfo.from_numpy(a, f"t{i}")
                                  for i, a in enumerate(arrays)])
        comm = pccl.Communicator(address, 0, pool_size)
        conn.send(("allocated",))
        comm.connect(timeout=TIMEOUT)  # returns once the sources admitted us
        conn.send(("ready",))
        strat = {"receive_only": pccl.SharedStateSyncStrategy.RECEIVE_ONLY,
                 "enforce_popular": pccl.SharedStateSyncStrategy.ENFORCE_POPULAR}[strategy]
        rep = 0
        while True:
            job = conn.recv()
            if job is None:
                break
            if rep > 0 and job[1]:  # make every tensor differ again (not timed)
                for a in arrays:
                    a[:64] += 1.0
            state.revision = 0  # outdated: adopts the group's content
            t0 = time.perf_counter()
            info = comm.sync_shared_state(state, strat, timeout=TIMEOUT)
            dt = time.perf_counter() - t0
            conn.send(("synced", dt, info.tx_bytes, info.rx_bytes, state.revision,
                       digests(arrays)))
            rep += 1
        comm.close()
    except EOFError:
        return
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        report_error(conn, e)


# --- plain TCP -----------------------------------------------------------------------------

def _stripes(n_bytes: int, k: int) -> list[tuple[int, int]]:
    step = -(-n_bytes // k)
    return [(o, min(n_bytes, o + step)) for o in range(0, n_bytes, step)]


def _tcp_receiver_main(conn: Connection, n_tensors: int, numel: int, streams: int) -> None:
    try:
        buf = np.concatenate(make_state(2, n_tensors, numel))  # touched, like the joiner's
        view = memoryview(buf.view(np.uint8))
        listener = socket.create_server(("127.0.0.1", 0), backlog=streams)
        conn.send(("port", listener.getsockname()[1]))
        socks = [listener.accept()[0] for _ in range(streams)]
        listener.close()
        order = [int.from_bytes(s.recv(1), "little") for s in socks]  # stripe index
        socks = [s for _, s in sorted(zip(order, socks))]
        conn.send(("ready",))
        if conn.recv() is None:
            return
        errors: list[BaseException] = []

        def pull(sock: socket.socket, lo: int, hi: int) -> None:
            try:
                while lo < hi:
                    got = sock.recv_into(view[lo:hi])
                    if got == 0:
                        raise ConnectionError("sender closed early")
                    lo += got
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=pull, args=(s, lo, hi))
                   for s, (lo, hi) in zip(socks, _stripes(len(view), streams))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        if errors:
            raise errors[0]
        import pccl

        parts = np.split(buf, n_tensors)
        conn.send(("done", dt, len(view), [pccl.kernels.hash64(p) for p in parts]))
        for s in socks:
            s.close()
    except EOFError:
        return
    except BaseException as e:  # noqa: BLE001
        report_error(conn, e)


def _tcp_sender_main(conn: Connection, n_tensors: int, numel: int, streams: int) -> None:
    try:
        buf = np.concatenate(make_state(1, n_tensors, numel))
        view = memoryview(buf.view(np.uint8))
        port = conn.recv()
        socks = []
        for i in range(streams):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(bytes([i]))
            socks.append(s)
        conn.send(("ready",))
        if conn.recv() is None:
            return
        threads = [threading.Thread(target=s.sendall, args=(view[lo:hi],))
                   for s, (lo, hi) in zip(socks, _stripes(len(view), streams))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        conn.send(("done",))
        conn.recv()  # wait for the parent before closing the sockets
        for s in socks:
            s.close()
    except EOFError:
        return
    except BaseException as e:  # noqa: BLE001
        report_error(conn, e)


# --- the parent ---------------------------------------------------------------------------

class Procs:
    """Spawned children with one pipe each; killed on close."""

    def __init__(self) -> None:
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        self.names: list[str] = []

    def spawn(self, name: str, target: Any, *args: Any) -> Connection:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=target, args=(child, *args), daemon=True, name=name)
        proc.start()
        child.close()
        self.conns.append(parent)
        self.procs.append(proc)
        self.names.append(name)
        return parent

    def expect(self, conn: Connection, kind: str, timeout: float = TIMEOUT) -> tuple[Any, ...]:
        """The next reply of `conn`'s child, which must be of `kind`, within `timeout` s."""
        i = self.conns.index(conn)
        return gather([conn], [self.procs[i]], kind, timeout, "shared_state", [self.names[i]])[0]

    def close(self, graceful: bool = True) -> None:
        stop_workers(self.conns, self.procs, graceful=graceful)


def run_pccl(sources: int, n_tensors: int, numel: int, pool_size: int, strategy: str,
             repeat: int) -> list[dict[str, Any]]:
    import pccl

    master = pccl.MasterNode("127.0.0.1:0", daemon=True)
    master.run()
    address = f"127.0.0.1:{master.port}"
    procs = Procs()
    try:
        t0 = time.monotonic()
        src = [procs.spawn(f"source-{i}", _source_main, address, sources, n_tensors, numel,
                           pool_size) for i in range(sources)]
        expected = [procs.expect(c, "ready")[1] for c in src]
        if any(d != expected[0] for d in expected):
            raise BenchError("the sources' content differs")
        joiner = procs.spawn("joiner", _joiner_main, address, n_tensors, numel, pool_size,
                             strategy)
        procs.expect(joiner, "allocated")
        for c in src:
            c.send(("admit", sources + 1))
        procs.expect(joiner, "ready")
        for c in src:
            procs.expect(c, "admitted")
        print(f"# pccl {sources} source(s): set up in {time.monotonic() - t0:.1f} s",
              file=sys.stderr, flush=True)
        rows = []
        for rep in range(repeat + 1):  # the last one: the joiner already holds the content
            fetch = rep < repeat
            for c in src:
                c.send(("sync",))
            joiner.send(("sync", fetch))
            j = procs.expect(joiner, "synced")
            s = [procs.expect(c, "synced") for c in src]
            _, dt, tx, rx, revision, got = j
            n_bytes = n_tensors * numel * 4
            ok = (got == expected[0] and rx == (n_bytes if fetch else 0)
                  and all(r[4] == revision for r in s))
            rows.append({"kind": "pccl" if fetch else "pccl-nofetch", "sources": sources,
                         "streams": None, "rep": rep,
                         "bytes": n_bytes, "time_s": dt, "gbps": n_bytes / dt / 1e9,
                         "rx_bytes": rx, "joiner_tx_bytes": tx, "source_tx_bytes": [r[2] for r in s],
                         "source_time_s": [r[1] for r in s], "revision": revision,
                         "strategy": strategy, "verified": ok})
            print(f"# pccl {sources} source(s) {'rep ' + str(rep) if fetch else 'no fetch'}: "
                  f"{dt:.3f} s, "
                  f"{n_bytes / dt / 1e9:.3f} GB/s, rx {rx}, tx by source {[r[2] for r in s]}"
                  f"{'' if ok else '  VERIFICATION FAILED'}", file=sys.stderr, flush=True)
        procs.close(graceful=True)
        return rows
    finally:
        procs.close(graceful=False)
        master.close()


def run_tcp(streams: int, n_tensors: int, numel: int, repeat: int) -> list[dict[str, Any]]:
    expected = digests(make_state(1, n_tensors, numel))
    rows = []
    for rep in range(repeat):
        procs = Procs()
        try:
            rx = procs.spawn("tcp-receiver", _tcp_receiver_main, n_tensors, numel, streams)
            tx = procs.spawn("tcp-sender", _tcp_sender_main, n_tensors, numel, streams)
            tx.send(procs.expect(rx, "port")[1])
            procs.expect(rx, "ready")
            procs.expect(tx, "ready")
            rx.send("go")
            tx.send("go")
            _, dt, n_bytes, got = procs.expect(rx, "done")
            procs.expect(tx, "done")
            ok = got == expected
            rows.append({"kind": "tcp", "sources": 1, "streams": streams, "rep": rep,
                         "bytes": n_bytes, "time_s": dt, "gbps": n_bytes / dt / 1e9,
                         "rx_bytes": n_bytes, "verified": ok})
            print(f"# tcp {streams} socket(s) rep {rep}: {dt:.3f} s, "
                  f"{n_bytes / dt / 1e9:.3f} GB/s{'' if ok else '  VERIFICATION FAILED'}",
                  file=sys.stderr, flush=True)
            procs.close(graceful=True)
        finally:
            procs.close(graceful=False)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    def best(kind: str, key: Any) -> dict[str, Any]:
        group = [r for r in rows if r["kind"] == kind and key(r)]
        return max(group, key=lambda r: r["gbps"])

    tcp = {r["streams"]: best("tcp", lambda x, s=r["streams"]: x["streams"] == s)
           for r in rows if r["kind"] == "tcp"}
    tcp1 = tcp.get(1)
    tcp_best = max(tcp.values(), key=lambda r: r["gbps"]) if tcp else None
    print(f"{'transfer':26} {'size':>8} {'time':>8} {'GB/s':>7} {'of tcp':>7} {'of best':>7} ok")
    for r in rows:
        if r["kind"] == "tcp":
            label = f"tcp {r['streams']} socket(s) (rep {r['rep']})"
        elif r["kind"] == "pccl-nofetch":
            label = f"pccl {r['sources']} src, no fetch"
        else:
            label = (f"pccl {r['sources']} source(s)"
                     + (" (join)" if r["rep"] == 0 else f" (rep {r['rep']})"))
        transfer = r["kind"] != "pccl-nofetch"
        r["fraction_of_tcp"] = r["gbps"] / tcp1["gbps"] if tcp1 and transfer else None
        r["fraction_of_best_tcp"] = (r["gbps"] / tcp_best["gbps"] if tcp_best and transfer
                                     else None)
        f1 = "-" if r["fraction_of_tcp"] is None else format(r["fraction_of_tcp"], ".0%")
        fb = "-" if r["fraction_of_best_tcp"] is None else format(r["fraction_of_best_tcp"], ".0%")
        print(f"{label:26} {r['bytes'] / (1 << 20):6.0f}Mi {r['time_s']:7.3f}s "
              f"{r['gbps']:7.3f} {f1:>7} {fb:>7} {'yes' if r['verified'] else 'NO'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="state size in MiB (default 1024)")
    parser.add_argument("--tensors", type=int, default=16, help="tensors in the state")
    parser.add_argument("--sources", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--strategy", choices=["receive_only", "enforce_popular"],
                        default="receive_only", help="the joiner's strategy")
    parser.add_argument("--tcp-streams", type=int, nargs="*", default=[1, 4],
                        help="plain TCP variants: sockets per transfer (none: skip)")
    parser.add_argument("--repeat", type=int, default=3, help="transfers per configuration")
    parser.add_argument("--pool-size", type=int, default=0,
                        help="pccl p2p_connection_pool_size (default 0: the library default)")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    if args.mib < 1 or args.tensors < 1 or args.repeat < 1:
        parser.error("--mib, --tensors and --repeat must be >= 1")
    if any(s < 1 for s in args.sources) or any(k < 1 for k in args.tcp_streams):
        parser.error("--sources and --tcp-streams must be >= 1")
    n_bytes = args.mib << 20
    if n_bytes % (4 * args.tensors):
        parser.error("--mib MiB must split into --tensors float32 tensors")
    numel = n_bytes // 4 // args.tensors

    meta = {"cpus": os.cpu_count(), "mib": args.mib, "tensors": args.tensors,
            "tensor_bytes": numel * 4, "strategy": args.strategy, "pool_size": args.pool_size,
            "timing": "pccl: the joiner's sync_shared_state call; tcp: receiver, start signal "
                      "to last byte, sockets connected beforehand"}
    rows: list[dict[str, Any]] = []
    failed = False
    started = time.monotonic()
    try:
        for streams in args.tcp_streams:
            rows += run_tcp(streams, args.tensors, numel, args.repeat)
        for sources in args.sources:
            rows += run_pccl(sources, args.tensors, numel, args.pool_size, args.strategy,
                             args.repeat)
    except (BenchError, OSError, KeyboardInterrupt) as e:
        print(f"bench.shared_state: {e}", file=sys.stderr)
        failed = True
    meta["seconds"] = time.monotonic() - started
    failed = failed or not all(r["verified"] for r in rows)
    print(f"{meta['cpus']} CPUs; {args.mib} MiB in {args.tensors} float32 tensors; joiner "
          f"strategy {args.strategy}; GB/s = bytes / time / 1e9; of tcp = vs 1 TCP socket")
    print_table(rows)
    for sources in args.sources:
        joins = [r for r in rows if r["kind"] == "pccl" and r["sources"] == sources]
        if joins and joins[0].get("fraction_of_tcp") is not None:
            meta[f"join_fraction_of_tcp_{sources}_sources"] = joins[0]["fraction_of_tcp"]
    if rows:
        meta["median_tcp_gbps"] = statistics.median(
            [r["gbps"] for r in rows if r["kind"] == "tcp"] or [0.0])
    emit_json({"meta": meta, "rows": rows}, args.json)
    if failed:
        print("bench.shared_state: FAILED (verification or run error)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
