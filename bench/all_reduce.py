"""fp32 SUM all-reduce on loopback: pccl vs torch.distributed Gloo vs a plain-socket ring.

Usage: python bench/all_reduce.py [--world 2 4] [--sizes 4KiB 1MiB 16MiB 64MiB 256MiB]
                                  [--backends pccl gloo ceiling] [--iters N] [--pool-size K]
                                  [--json out.json] [--quick]
       python bench/all_reduce.py --quant ...   quantized vs float32 on capped uplinks
                                                (bench/shaped_quant.py; needs root)

For every world size the script starts one group of N spawned processes per backend and
keeps them for the whole world size; sizes then run interleaved (size 1 on every backend,
then size 2, ...) so that the backends share the same machine conditions.

  pccl     a MasterNode in this process, N Communicator peers admitted with
           are_peers_pending()/update_topology(); comm.all_reduce(x, x, op=SUM).
  gloo     torch.distributed, backend "gloo", tcp://127.0.0.1 rendezvous; dist.all_reduce(x).
  ceiling  N processes in a ring of plain TCP sockets; per op each one streams the bytes a
           ring all-reduce puts on one link, 2(n-1)/n x size, to its successor while it
           receives as many from its predecessor. No reduction, no framing: its busbw is
           the most this machine's loopback allows (CPU-bound on small machines).

Per size and backend every peer: runs verified calls (warm-up; integer-valued float32
inputs that differ per rank, so the expected sum is exact and compared element by element),
a tiny all-reduce as a barrier, then `iters` timed in-place all-reduces of a zero-filled
buffer (cost does not depend on values; zeros stay finite however many sums run, and are
checked afterwards), then one more verified call. time/op = max over peers of the mean
(loop wall / iters); the JSON also holds the max over peers of the median op time.

busbw = size / time x 2(n-1)/n (NCCL-tests). "cores" = CPU time (user+sys, all threads,
time.process_time) of all peers during the timed loop / loop wall; cpu-s/GB = CPU seconds
of all peers per GB of bus traffic (size x 2(n-1)/n per op), i.e. cores / busbw. The pccl
master runs in this process; its CPU time over each measurement is in the JSON
(master_cpu_s), not in "cores". Exits non-zero if any verification fails or anything
times out; children are killed on every failure path.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import socket
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import numpy as np

from _procs import stop_workers  # bench/ is the script directory, on sys.path

DEFAULT_SIZES = ["4KiB", "1MiB", "16MiB", "64MiB", "256MiB"]
QUICK_SIZES = ["4KiB", "64KiB", "1MiB"]
BACKENDS = ["pccl", "gloo", "ceiling"]
PATTERN = 256  # period of the verification pattern, in elements
SETUP_ATTEMPTS = 3  # a group that fails to start is started again this many times in all
SETUP_TIMEOUT = 120.0  # seconds for a group to start, rendezvous and (pccl) admit everyone

_ctx = mp.get_context("spawn")


# --- sizes and iteration counts ------------------------------------------------------------

def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)(i?B?)\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r}; use e.g. 4KiB, 16MiB, 4096")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2).upper()]
    n = int(float(m.group(1)) * scale)
    if n <= 0 or n % 4:
        raise argparse.ArgumentTypeError(f"size {text!r} must be a positive multiple of 4 bytes")
    return n


def size_name(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n}B"


def default_iters(n_bytes: int) -> int:
    """About 1 GiB of payload per measurement: 200 at <= 5 MiB, 64 at 16 MiB, 4 at 256 MiB."""
    return max(4, min(200, (1 << 30) // n_bytes))


def warmups(n_bytes: int) -> int:
    return 5 if n_bytes <= (1 << 20) else 1


def bus_factor(world: int) -> float:
    return 2.0 * (world - 1) / world


def op_timeout(n_bytes: int, iters: int) -> float:
    """Deadline of one measurement: generous (assumes only 20 MB/s of bus traffic)."""
    ops = iters + warmups(n_bytes) + 3
    return 60.0 + ops * n_bytes * 2 / 20e6


# --- verification data (used inside the peers) ---------------------------------------------

def _pattern_row() -> np.ndarray:
    return ((np.arange(PATTERN, dtype=np.int64) * 37) % 251 + 1).astype(np.float32)


def _blocks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    full = (x.size // PATTERN) * PATTERN
    return x[:full].reshape(-1, PATTERN), x[full:]


def fill_input(x: np.ndarray, rank: int, salt: int) -> None:
    """Integer-valued input of `rank`: pattern x (rank + 1 + salt); sums are exact."""
    row = _pattern_row() * np.float32(rank + 1 + salt)
    body, tail = _blocks(x)
    body[:] = row
    tail[:] = row[: tail.size]


def check_sum(x: np.ndarray, world: int, salt: int) -> bool:
    coef = sum(r + 1 + salt for r in range(world))
    row = _pattern_row() * np.float32(coef)
    body, tail = _blocks(x)
    return bool((body == row).all() and (tail == row[: tail.size]).all())


# --- one measurement, common to all backends (runs inside each peer) ------------------------

def measure(op: Callable[[], None], tiny: Callable[[], None], x: np.ndarray, rank: int,
            world: int, iters: int, n_warm: int, verify: bool) -> dict[str, Any]:
    """Verified warm-up, barrier, timed loop on zeros, zero check, final verified call."""
    ok = True
    if verify:
        fill_input(x, rank, salt=0)
        op()
        ok &= check_sum(x, world, salt=0)
    for _ in range(n_warm - 1 if verify else n_warm):
        x.fill(0.0)
        op()
    x.fill(0.0)
    tiny()  # barrier: everyone has finished setting up its buffer
    times = []
    c0 = time.process_time()
    t0 = time.perf_counter()
    for _ in range(iters):
        ts = time.perf_counter()
        op()
        times.append(time.perf_counter() - ts)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    if verify:
        ok &= not np.any(x)  # sums of zeros stay zero: catches stray bytes
        fill_input(x, rank, salt=3)
        op()
        ok &= check_sum(x, world, salt=3)
    return {"wall": wall, "cpu": cpu, "median": statistics.median(times), "ok": ok}


# --- backends (run inside the peers) --------------------------------------------------------

class PcclPeer:
    def __init__(self, rank: int, world: int, setup: dict[str, Any]):
        import pccl

        self._pccl = pccl
        self.rank, self.world = rank, world
        self.comm = pccl.Communicator(setup["address"], 0, setup["pool_size"])
        self.comm.connect(timeout=60)
        self.comm.wait_for_world(world, timeout=60)
        self._one = np.zeros(1, np.float32)
        self.info = {"isa": pccl.kernels.active_isa()}

    def run(self, n_bytes: int, iters: int) -> dict[str, Any]:
        x = np.empty(n_bytes // 4, np.float32)
        SUM = self._pccl.ReduceOp.SUM
        timeout = op_timeout(n_bytes, iters)

        def op() -> None:
            self.comm.all_reduce(x, x, op=SUM, timeout=timeout)

        def tiny() -> None:
            self.comm.all_reduce(self._one, self._one, op=SUM, timeout=timeout)

        return measure(op, tiny, x, self.rank, self.world, iters, warmups(n_bytes), True)

    def close(self) -> None:
        self.comm.close()


class GlooPeer:
    def __init__(self, rank: int, world: int, setup: dict[str, Any]):
        import datetime

        import torch
        import torch.distributed as dist

        self.torch, self.dist = torch, dist
        self.rank, self.world = rank, world
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{setup['port']}",
                                rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=120))
        self._one = torch.zeros(1, dtype=torch.float32)
        self.info = {"torch": torch.__version__}

    def run(self, n_bytes: int, iters: int) -> dict[str, Any]:
        x = np.empty(n_bytes // 4, np.float32)
        t = self.torch.from_numpy(x)  # shares memory with x
        dist = self.dist

        def op() -> None:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)

        def tiny() -> None:
            dist.all_reduce(self._one, op=dist.ReduceOp.SUM)

        return measure(op, tiny, x, self.rank, self.world, iters, warmups(n_bytes), True)

    def close(self) -> None:
        self.dist.destroy_process_group()


class CeilingPeer:
    """One process of a plain TCP ring: a sender thread streams to the successor while the
    calling thread receives from the predecessor."""

    def __init__(self, rank: int, world: int, setup: dict[str, Any]):
        self.rank, self.world = rank, world
        ports: list[int] = setup["ports"]
        listener: socket.socket = setup["listener"]
        deadline = time.monotonic() + 60
        nxt = (rank + 1) % world
        while True:
            try:
                self.out = socket.create_connection(("127.0.0.1", ports[nxt]), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        listener.settimeout(60)
        self.inp, _ = listener.accept()
        listener.close()
        for s in (self.out, self.inp):
            s.settimeout(None)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._todo = threading.Semaphore(0)
        self._done = threading.Semaphore(0)
        self._job: tuple[memoryview, int] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._sender, daemon=True)
        self._thread.start()
        self.info: dict[str, Any] = {}

    def _sender(self) -> None:
        while True:
            self._todo.acquire()
            job = self._job
            if job is None:
                return
            buf, n = job
            try:
                while n > 0:
                    k = min(n, len(buf))
                    self.out.sendall(buf[:k])
                    n -= k
            except BaseException as e:  # noqa: BLE001 - re-raised by the receiving thread
                self._error = e
            self._done.release()

    def _stream(self, send: memoryview, recv: memoryview, n: int) -> None:
        self._job = (send, n)
        self._todo.release()
        left = n
        while left > 0:
            got = self.inp.recv_into(recv[: min(left, len(recv))])
            if got == 0:
                raise ConnectionError("ceiling ring: predecessor closed the connection")
            left -= got
        if not self._done.acquire(timeout=300):
            raise TimeoutError("ceiling ring: sender stuck")
        if self._error is not None:
            raise self._error

    def run(self, n_bytes: int, iters: int) -> dict[str, Any]:
        x = np.zeros(n_bytes, np.uint8)
        y = np.zeros(n_bytes, np.uint8)
        send, recv = memoryview(x), memoryview(y)
        link = round(n_bytes * bus_factor(self.world))
        one = memoryview(bytearray(4))

        def op() -> None:
            self._stream(send, recv, link)

        def tiny() -> None:
            self._stream(one, memoryview(bytearray(4)), 4)

        return measure(op, tiny, x.view(np.float32), self.rank, self.world, iters,
                       warmups(n_bytes), verify=False)

    def close(self) -> None:
        self._job = None
        self._todo.release()
        self._thread.join(timeout=5)
        self.out.close()
        self.inp.close()


PEERS = {"pccl": PcclPeer, "gloo": GlooPeer, "ceiling": CeilingPeer}


def _peer_main(conn: Connection, backend: str, rank: int, world: int,
               setup: dict[str, Any]) -> None:
    """A benchmark peer: sets up its backend, then runs ("run", bytes, iters) commands."""
    peer = None
    try:
        if backend == "ceiling":  # tell the parent our port, learn everyone's
            listener = socket.create_server(("127.0.0.1", 0), backlog=4)
            conn.send(("port", listener.getsockname()[1]))
            setup = dict(setup, ports=conn.recv(), listener=listener)
        peer = PEERS[backend](rank, world, setup)
        conn.send(("ready", peer.info))
        while True:
            job = conn.recv()
            if job is None:
                break
            _, n_bytes, iters = job
            conn.send(("result", peer.run(n_bytes, iters)))
    except EOFError:  # the parent is gone
        return
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        try:
            conn.send(("error", f"{type(e).__name__}: {e}", traceback.format_exc()))
        except OSError:
            pass
        return
    if peer is not None:
        peer.close()


# --- the parent: groups of peers -----------------------------------------------------------

class BenchError(Exception):
    pass


class Group:
    """N peer processes of one backend."""

    def __init__(self, backend: str, world: int, setup: dict[str, Any]):
        self.backend, self.world = backend, world
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        env_before = dict(os.environ)
        if backend == "gloo":
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # inherited by spawned children
        try:
            for rank in range(world):
                parent, child = _ctx.Pipe()
                proc = _ctx.Process(target=_peer_main, args=(child, backend, rank, world, setup),
                                    daemon=True, name=f"{backend}-{rank}")
                proc.start()
                child.close()
                self.conns.append(parent)
                self.procs.append(proc)
        finally:
            os.environ.clear()
            os.environ.update(env_before)
        deadline = time.monotonic() + SETUP_TIMEOUT
        try:
            if backend == "ceiling":
                ports = [r[1] for r in self._gather("port", deadline)]
                for conn in self.conns:
                    conn.send(ports)
            self.info = self._gather("ready", deadline)[0][1]
        except BaseException:
            self.close(graceful=False)
            raise

    def _gather(self, kind: str, deadline: float) -> list[tuple[Any, ...]]:
        """One reply of `kind` from every peer, in rank order, before `deadline`."""
        replies: dict[int, tuple[Any, ...]] = {}
        while len(replies) < self.world:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = [r for r in range(self.world) if r not in replies]
                raise BenchError(f"{self.backend} world {self.world}: no {kind!r} from "
                                 f"rank(s) {missing} in time")
            pending = [c for r, c in enumerate(self.conns) if r not in replies]
            for conn in wait(pending, timeout=min(left, 1.0)):
                rank = self.conns.index(conn)
                try:
                    reply = conn.recv()
                except EOFError:
                    raise BenchError(f"{self.backend} rank {rank} died (exit code "
                                     f"{self.procs[rank].exitcode})") from None
                if reply[0] == "error":
                    raise BenchError(f"{self.backend} rank {rank}: {reply[1]}\n{reply[2]}")
                if reply[0] != kind:
                    raise BenchError(f"{self.backend} rank {rank}: expected {kind!r}, got "
                                     f"{reply[0]!r}")
                replies[rank] = reply
            for rank, proc in enumerate(self.procs):
                if rank not in replies and not proc.is_alive() and not self.conns[rank].poll():
                    raise BenchError(f"{self.backend} rank {rank} exited with code "
                                     f"{proc.exitcode}")
        return [replies[r] for r in range(self.world)]

    def run(self, n_bytes: int, iters: int) -> list[dict[str, Any]]:
        for conn in self.conns:
            conn.send(("run", n_bytes, iters))
        deadline = time.monotonic() + op_timeout(n_bytes, iters)
        return [r[1] for r in self._gather("result", deadline)]

    def close(self, *, graceful: bool) -> None:
        stop_workers(self.conns, self.procs, graceful=graceful)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- reporting -----------------------------------------------------------------------------

def summarize(backend: str, world: int, n_bytes: int, iters: int,
              results: list[dict[str, Any]], master_cpu: float | None) -> dict[str, Any]:
    t = max(r["wall"] for r in results) / iters
    wall = max(r["wall"] for r in results)
    cpu = sum(r["cpu"] for r in results)
    algbw = n_bytes / t / 1e9
    busbw = algbw * bus_factor(world)
    bus_gb = n_bytes * bus_factor(world) * iters / 1e9
    row = {
        "backend": backend, "world": world, "bytes": n_bytes, "size": size_name(n_bytes),
        "iters": iters, "time_s": t, "median_time_s": max(r["median"] for r in results),
        "algbw_gbps": algbw, "busbw_gbps": busbw, "cores": cpu / wall,
        "cpu_s_per_bus_gb": cpu / bus_gb, "verified": all(r["ok"] for r in results)
        if backend != "ceiling" else None,
    }
    if master_cpu is not None:
        row["master_cpu_s"] = master_cpu
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    ceil = {(r["world"], r["bytes"]): r["busbw_gbps"] for r in rows if r["backend"] == "ceiling"}
    gloo = {(r["world"], r["bytes"]): r for r in rows if r["backend"] == "gloo"}
    print(f"{'backend':8} {'world':>5} {'size':>7} {'iters':>5} {'time/op':>10} "
          f"{'algbw':>7} {'busbw':>7} {'of ceil':>7} {'cores':>5} {'cpu-s/GB':>8} "
          f"{'vs gloo':>7} ok")
    for r in rows:
        key = (r["world"], r["bytes"])
        frac = r["busbw_gbps"] / ceil[key] if key in ceil else None
        r["fraction_of_ceiling"] = frac
        g = gloo.get(key)
        vs = g["time_s"] / r["time_s"] if g is not None and r["backend"] != "gloo" else None
        r["speedup_vs_gloo"] = vs
        t = r["time_s"]
        t_text = f"{t * 1e3:.3f} ms" if t < 1 else f"{t:.3f} s"
        ok = "-" if r["verified"] is None else ("yes" if r["verified"] else "NO")
        print(f"{r['backend']:8} {r['world']:5d} {r['size']:>7} {r['iters']:5d} {t_text:>10} "
              f"{r['algbw_gbps']:7.3f} {r['busbw_gbps']:7.3f} "
              f"{'-' if frac is None else format(frac, '.0%'):>7} {r['cores']:5.2f} "
              f"{r['cpu_s_per_bus_gb']:8.2f} {'-' if vs is None else format(vs, '.2f') + 'x':>7} "
              f"{ok}")


# --- main ----------------------------------------------------------------------------------

def main() -> int:
    if "--quant" in sys.argv[1:]:  # the shaped-network quantization benchmark
        from shaped_quant import main as quant_main
        return quant_main(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=None,
                        help=f"default {' '.join(DEFAULT_SIZES)}")
    parser.add_argument("--iters", type=int, default=None,
                        help="timed ops per measurement (default: by size, 200 small .. 4 at 256 MiB)")
    parser.add_argument("--pool-size", type=int, default=0,
                        help="pccl p2p_connection_pool_size (default 0: the library default)")
    parser.add_argument("--backends", nargs="+", default=BACKENDS, choices=BACKENDS)
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: sizes {' '.join(QUICK_SIZES)}, fewer iterations")
    args = parser.parse_args()
    if any(w < 2 for w in args.world):
        parser.error("--world sizes must be >= 2")
    if args.iters is not None and args.iters < 1:
        parser.error("--iters must be >= 1")
    sizes = args.sizes or [parse_size(s) for s in (QUICK_SIZES if args.quick else DEFAULT_SIZES)]

    def iters_for(n: int) -> int:
        if args.iters is not None:
            return args.iters
        return max(3, default_iters(n) // 5) if args.quick else default_iters(n)

    pool = args.pool_size or int(os.environ.get("PCCL_DEFAULT_POOL_SIZE", "8"))
    pool_text = f"{pool}" + ("" if args.pool_size else " (library default)")
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {"cpus": os.cpu_count(), "pool_size": pool,
                            "pool_size_arg": args.pool_size, "setup_failures": [], "timing": "max over peers of "
                            "mean op time (loop wall / iters)"}
    master = None
    groups: list[Group] = []
    failed = False
    started = time.monotonic()
    try:
        for world in args.world:
            groups = []
            for backend in args.backends:
                t0 = time.monotonic()
                for attempt in range(1, SETUP_ATTEMPTS + 1):
                    if backend == "pccl":  # a fresh master per world: epochs start from scratch
                        import pccl

                        master = pccl.MasterNode("127.0.0.1:0", daemon=True)
                        master.run()
                        setup = {"address": f"127.0.0.1:{master.port}",
                                 "pool_size": args.pool_size}
                    elif backend == "gloo":
                        setup = {"port": free_port()}
                    else:
                        setup = {}
                    try:
                        groups.append(Group(backend, world, setup))
                        break
                    except BenchError as e:
                        # Seen with pccl: admission fails now and then with "refused the ring
                        # link: P2PHello addressed to peer ..." (a library bug, reported).
                        # Start the whole group again rather than give up the run.
                        print(f"# world {world}: {backend} setup attempt {attempt} failed: "
                              f"{str(e).splitlines()[0]}", file=sys.stderr, flush=True)
                        meta["setup_failures"].append({"backend": backend, "world": world,
                                                       "error": str(e).splitlines()[0]})
                        if master is not None and backend == "pccl":
                            master.close()
                            master = None
                        if attempt == SETUP_ATTEMPTS:
                            raise
                print(f"# world {world}: {backend} ready in {time.monotonic() - t0:.1f} s "
                      f"{groups[-1].info}", file=sys.stderr, flush=True)
                if backend == "pccl":
                    meta["pccl_isa"] = groups[-1].info["isa"]
                if backend == "gloo":
                    meta["torch"] = groups[-1].info["torch"]
            for n_bytes in sizes:
                iters = iters_for(n_bytes)
                for group in groups:
                    c0 = time.process_time()
                    results = group.run(n_bytes, iters)
                    mcpu = time.process_time() - c0 if group.backend == "pccl" else None
                    row = summarize(group.backend, world, n_bytes, iters, results, mcpu)
                    rows.append(row)
                    if row["verified"] is False:
                        failed = True
                    print(f"# {group.backend} world {world} {row['size']}: "
                          f"{row['time_s'] * 1e3:.3f} ms/op, busbw {row['busbw_gbps']:.3f} GB/s"
                          f"{'' if row['verified'] is not False else '  VERIFICATION FAILED'}",
                          file=sys.stderr, flush=True)
            for group in groups:
                group.close(graceful=True)
            groups = []
            if master is not None:
                master.close()
                master = None
    except (BenchError, OSError, KeyboardInterrupt) as e:
        print(f"all_reduce.py: {e}", file=sys.stderr)
        failed = True
    finally:
        for group in groups:
            group.close(graceful=False)
        if master is not None:
            master.close()

    meta["seconds"] = time.monotonic() - started
    if "pccl_isa" in meta:
        print(f"pccl: ISA {meta['pccl_isa']}, p2p_connection_pool_size {pool_text}")
    print(f"{meta['cpus']} CPUs; time/op = {meta['timing']}; busbw = algbw x 2(n-1)/n; "
          f"cores = peer CPU time / loop wall; cpu-s/GB per GB of bus traffic; "
          f"vs gloo = Gloo time / this time")
    print_table(rows)
    result = {"meta": meta, "rows": rows}
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    if failed:
        print("all_reduce.py: FAILED (verification or run error)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
