"""pccl vs torch.distributed Gloo across an emulated WAN (the lab in bench/wan/).

Usage: sudo python -m bench.wan_bench [--rtt 50 100] [--pools 1 2 4 8 16 32] [--world 3]
           [--rate 400mbit] [--window 512KiB] [--big 128MiB] [--many 16x8MiB] [--iters 2]
           [--cases sweep gloo latency join loss transport modes] [--loss 0.1%] [--join 256MiB]
           [--cc reno]
           [--json out.json] [--png out.png] [--quick]

Per RTT the script builds one lab: `world` peers p0.. plus a joiner node and the pccl
master in its own namespace ("master"), all in one region, every node pair linked with
one-way delay RTT/2 and `--rate` per direction, TCP buffers capped at `--window` in every
namespace (so one stream moves about 0.75 x window / RTT: Linux advertises ~3/4 of the
buffer). The master is one WAN round trip away from every peer. Then:

  sweep    pccl fp32 SUM all-reduce for every pool size (Communicator(...,
           p2p_connection_pool_size=K), a fresh group of peer processes and a fresh
           master per K): one `--big` tensor (comm.all_reduce), and `--many` tensors at
           once (all_reduce_async with distinct tags, then wait for all).
  gloo     the same two workloads with torch.distributed Gloo (one TCP connection per peer
           pair; async_op=True for the many-tensor case), rendezvous on p0.
  latency  4 KiB all-reduce, pccl (default pool) and Gloo, reported in RTTs. The target for
           pccl: ring hops (2(n-1) one-way delays = n-1 RTTs) + one master round trip.
  join     (first RTT only) a joiner is admitted and receives `--join` bytes of shared state
           (16 float32 tensors; RECEIVE_ONLY) from the `world` peers: time from its
           connect() to the end of its sync_shared_state, split into both; default pool
           and the largest pool of the sweep.
  loss     (first RTT only) a second lab with `--loss` random loss on every link: the big
           all-reduce with the default pool and the largest pool, results verified.
  transport  (not by default) the big, many and latency workloads with the default pool in a
           run without a secret ("pccl"), with one on the plain transport ("pccl-auth") and
           encrypted ("pccl-enc"), one after the other in the same lab: what
           authentication and encryption cost.
  modes    (not by default) the big and latency workloads with the default pool in the
           default mode ("pccl") and in ReduceMode.EXACT, PRIVATE and VERIFIED
           ("pccl-exact", "pccl-private", "pccl-verified"), one after the other in the same
           lab: what the exact modes cost on a WAN link.

Every timed op is verified: inputs are integer-valued float32 (bench/lib/data.py's
pattern, different per rank, tensor and iteration), every peer checks the exact sum after
each op. Before each op the peers refill their inputs and pass a 1-element all-reduce as a
barrier (both untimed). time/op = mean over iterations of the slowest peer's time;
busbw = bytes x 2(n-1)/n / time (NCCL-tests); "of cap" = busbw / (rate / 8). The emulator's
drop counters over each case are in the JSON. Needs root (see bench/wan/network.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from bench.lib.common import bus_factor, emit_json, parse_size, size_name
from bench.lib.data import check_sum, digests, fill_input, make_state
from bench.lib.procs import BenchError, ctx, gather, report_error, stop_workers
from bench.wan.network import Lab, requirements
from bench.wan.topology import Topology, parse_fraction, parse_rate

BARRIER_TAG = 1 << 20
STATE_TENSORS = 16


# --- inside the peers ----------------------------------------------------------------------

class PcclWorker:
    def __init__(self, rank: int, world: int, setup: dict[str, Any]):
        import pccl

        self.pccl = pccl
        self.rank, self.world = rank, world
        self.comm = pccl.Communicator(setup["address"], 0, setup["pool_size"],
                                      secret=setup.get("secret"),
                                      transport=setup.get("transport"))
        self.comm.connect(timeout=120)
        self.comm.wait_for_world(world, timeout=120)
        self._one = np.zeros(1, np.float32)
        self.mode = pccl.ReduceMode(setup.get("mode", 0))

    def barrier(self) -> None:
        self.comm.all_reduce(self._one, self._one, op=self.pccl.ReduceOp.SUM, tag=BARRIER_TAG,
                             timeout=300)

    def all_reduce(self, xs: list[np.ndarray], timeout: float) -> None:
        SUM = self.pccl.ReduceOp.SUM
        if len(xs) == 1:
            self.comm.all_reduce(xs[0], xs[0], op=SUM, timeout=timeout, mode=self.mode)
            return
        handles = [self.comm.all_reduce_async(x, x, op=SUM, tag=k, timeout=timeout,
                                              mode=self.mode)
                   for k, x in enumerate(xs)]
        for h in handles:
            h.result()

    def join_sources(self, state_bytes: int, world: int) -> dict[str, Any]:
        """Hold shared state, admit the joiner, sync (the joiner fetches from us)."""
        arrays = make_state(1, STATE_TENSORS, state_bytes // 4 // STATE_TENSORS)
        pccl = self.pccl
        state = pccl.SharedState([pccl.TensorInfo.from_numpy(a, f"t{i}")
                                  for i, a in enumerate(arrays)])
        state.revision = 1
        self.comm.sync_shared_state(state, timeout=300)
        self.barrier()  # everyone holds the state: the parent may start the joiner
        _send(("joinready",))
        self.comm.wait_for_world(world, timeout=300)
        state.revision = 2
        info = self.comm.sync_shared_state(state, timeout=600)
        return {"tx": info.tx_bytes}

    def close(self) -> None:
        self.comm.close()


class GlooWorker:
    def __init__(self, rank: int, world: int, setup: dict[str, Any]):
        import datetime

        os.environ["GLOO_SOCKET_IFNAME"] = "eth0"
        import torch
        import torch.distributed as dist

        self.torch, self.dist = torch, dist
        self.rank, self.world = rank, world
        dist.init_process_group("gloo", init_method=f"tcp://{setup['host']}:{setup['port']}",
                                rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=900))
        self._one = torch.zeros(1, dtype=torch.float32)

    def barrier(self) -> None:
        self.dist.all_reduce(self._one)

    def all_reduce(self, xs: list[np.ndarray], timeout: float) -> None:
        ts = [self.torch.from_numpy(x) for x in xs]
        if len(ts) == 1:
            self.dist.all_reduce(ts[0])
            return
        works = [self.dist.all_reduce(t, async_op=True) for t in ts]
        for w in works:
            w.wait()

    def close(self) -> None:
        self.dist.destroy_process_group()


_conn: Connection | None = None


def _send(msg: tuple[Any, ...]) -> None:
    assert _conn is not None
    _conn.send(msg)


def run_case(worker: Any, n_bytes: int, n_tensors: int, iters: int, warm: int) -> dict[str, Any]:
    xs = [np.empty(n_bytes // 4, np.float32) for _ in range(n_tensors)]
    ok, times = True, []
    timeout = 120 + n_bytes * n_tensors * 2 / 0.5e6  # no slower than 0.5 MB/s
    for it in range(warm + iters):
        salts = [1 + it * n_tensors + k for k in range(n_tensors)]
        for x, salt in zip(xs, salts):
            fill_input(x, worker.rank, salt)
        worker.barrier()
        t0 = time.perf_counter()
        worker.all_reduce(xs, timeout)
        dt = time.perf_counter() - t0
        ok &= all(check_sum(x, worker.world, salt) for x, salt in zip(xs, salts))
        if it >= warm:
            times.append(dt)
    return {"times": times, "ok": ok}


def _worker_main(conn: Connection, backend: str, rank: int, world: int,
                 setup: dict[str, Any]) -> None:
    global _conn
    _conn = conn
    worker = None
    try:
        worker = (PcclWorker if backend == "pccl" else GlooWorker)(rank, world, setup)
        conn.send(("ready",))
        while True:
            job = conn.recv()
            if job is None:
                break
            if job[0] == "case":
                conn.send(("result", run_case(worker, *job[1:])))
            elif job[0] == "join_sources":
                conn.send(("result", worker.join_sources(*job[1:])))
    except EOFError:
        return
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        report_error(conn, e)
        return
    if worker is not None:
        worker.close()


def _joiner_main(conn: Connection, address: str, pool_size: int, state_bytes: int) -> None:
    try:
        import pccl

        arrays = make_state(2, STATE_TENSORS, state_bytes // 4 // STATE_TENSORS)
        state = pccl.SharedState([pccl.TensorInfo.from_numpy(a, f"t{i}")
                                  for i, a in enumerate(arrays)])
        comm = pccl.Communicator(address, 0, pool_size)
        conn.send(("allocated",))
        conn.recv()
        t0 = time.perf_counter()
        comm.connect(timeout=300)  # returns once the peers admitted us
        t1 = time.perf_counter()
        state.revision = 0
        info = comm.sync_shared_state(state, pccl.SharedStateSyncStrategy.RECEIVE_ONLY,
                                      timeout=600)
        t2 = time.perf_counter()
        conn.send(("result", {"admit_s": t1 - t0, "sync_s": t2 - t1, "rx": info.rx_bytes,
                              "digests": digests(arrays)}))
        conn.recv()
        comm.close()
    except EOFError:
        return
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        report_error(conn, e)


# --- the parent ----------------------------------------------------------------------------

class Group:
    """`world` worker processes of one backend, one per peer namespace."""

    def __init__(self, lab: Lab, backend: str, world: int, setup: dict[str, Any]):
        self.lab, self.backend, self.world = lab, backend, world
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        self.name = f"{backend} {setup}"
        try:
            for rank, node in enumerate(lab.top.peers()[:world]):
                parent, child = ctx.Pipe()
                self.procs.append(lab.process(node, _worker_main,
                                              (child, backend, rank, world, setup)))
                child.close()
                self.conns.append(parent)
            gather(self.conns, self.procs, "ready", 300, self.name)
        except BaseException:
            self.close(graceful=False)
            raise

    def case(self, n_bytes: int, n_tensors: int, iters: int, warm: int) -> dict[str, Any]:
        for conn in self.conns:
            conn.send(("case", n_bytes, n_tensors, iters, warm))
        timeout = 300 + (iters + warm) * n_bytes * n_tensors * 2 / 0.5e6
        results = [r[1] for r in gather(self.conns, self.procs, "result", timeout, self.name)]
        per_iter = [max(r["times"][i] for r in results) for i in range(iters)]
        return {"times": per_iter, "time_s": statistics.mean(per_iter),
                "verified": all(r["ok"] for r in results)}

    def close(self, *, graceful: bool) -> None:
        stop_workers(self.conns, self.procs, graceful=graceful)


TRANSPORT_SECRET = "wan bench run secret, 32 bytes!"
# pccl.ReduceMode values of the "modes" case and their backend names (0 keeps "pccl").
MODE_NAMES = {1: "pccl-exact", 3: "pccl-private", 5: "pccl-verified"}


class Master:
    """`python -m pccl.master` in the master's namespace, one per pccl group; `auth`: the
    run secret and transport (None: no secret)."""

    port = 48148

    def __init__(self, lab: Lab, auth: tuple[str, str] | None = None):
        Master.port += 1
        env = dict(os.environ)
        if auth is not None:
            env.update(PCCL_RUN_SECRET=auth[0], PCCL_TRANSPORT=auth[1])
        self.proc = lab.popen("master", [sys.executable, "-m", "pccl.master", "--listen-address",
                                         f"0.0.0.0:{Master.port}"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env=env)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if "listening on" not in line:
            raise BenchError(f"the master did not start: {line!r}")
        self.address = f"{lab.master_ip()}:{Master.port}"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            self.proc.kill()
        if self.proc.stdout:
            self.proc.stdout.close()


def drops(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    out = {"queue": 0, "loss": 0}
    for key, link in after["links"].items():
        old = before["links"].get(key, {})
        out["queue"] += link["drop_queue"] - old.get("drop_queue", 0)
        out["loss"] += link["drop_loss"] - old.get("drop_loss", 0)
    return out


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rows: list[dict[str, Any]] = []
        self.failed = False

    def row(self, lab: Lab, rtt_ms: float, backend: str, pool: int | None,
            workload: str, n_bytes: int, n_tensors: int, res: dict[str, Any],
            stats0: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        world = self.args.world
        total = n_bytes * n_tensors
        busbw = total * bus_factor(world) / res["time_s"]
        cap = lab.top.default.rate / 8
        r = {"rtt_ms": rtt_ms, "loss": lab.top.default.loss, "backend": backend, "pool": pool,
             "workload": workload, "bytes": total, "world": world, "time_s": res["time_s"],
             "times": res["times"], "busbw_MBps": busbw / 1e6,
             "of_cap": busbw / cap if cap else None, "rtts": res["time_s"] / (rtt_ms / 1e3),
             "verified": res["verified"], "drops": drops(stats0, lab.stats())}
        r.update(extra or {})
        self.rows.append(r)
        self.failed |= not res["verified"]
        print(f"# rtt {rtt_ms:g} ms loss {r['loss']:g} {backend:9} pool {pool or '-':>2} "
              f"{workload:>11}: {res['time_s']:.3f} s/op, busbw {busbw / 1e6:.1f} MB/s "
              f"({r['of_cap']:.0%} of cap), {r['rtts']:.1f} RTT"
              f"{'' if res['verified'] else '  VERIFICATION FAILED'}", file=sys.stderr,
              flush=True)

    def workloads(self, lab: Lab, rtt_ms: float, group: Group, backend: str,
                  pool: int | None, which: list[str]) -> None:
        a = self.args
        for name in which:
            if name == "big":
                n_bytes, n_tensors, iters, warm = a.big, 1, a.iters, 0
            elif name == "many":
                n_bytes, n_tensors, iters, warm = a.many[1], a.many[0], a.iters, 0
            else:  # latency
                n_bytes, n_tensors, iters, warm = 4096, 1, a.latency_iters, 2
            stats0 = lab.stats()
            res = group.case(n_bytes, n_tensors, iters, warm)
            label = {"big": f"1x{size_name(n_bytes)}",
                     "many": f"{n_tensors}x{size_name(n_bytes)}", "latency": "4KiB"}[name]
            self.row(lab, rtt_ms, backend, pool, label, n_bytes, n_tensors, res, stats0)

    def pccl_group(self, lab: Lab, rtt_ms: float, pool: int, which: list[str],
                   transport: str | None = None, mode: int = 0) -> None:
        """`transport` None: a run without a secret; "plain" or "encrypted": with one.
        `mode`: the pccl.ReduceMode of every timed all-reduce."""
        auth = None if transport is None else (TRANSPORT_SECRET, transport)
        master = Master(lab, auth)
        group = None
        try:
            setup: dict[str, Any] = {"address": master.address, "pool_size": pool, "mode": mode}
            if auth is not None:
                setup.update(secret=auth[0], transport=auth[1])
            group = Group(lab, "pccl", self.args.world, setup)
            backend = {None: "pccl", "plain": "pccl-auth", "encrypted": "pccl-enc"}[transport]
            backend = MODE_NAMES.get(mode, backend)
            self.workloads(lab, rtt_ms, group, backend, pool, which)
            group.close(graceful=True)
            group = None
        finally:
            if group is not None:
                group.close(graceful=False)
            master.close()

    def gloo_group(self, lab: Lab, rtt_ms: float, which: list[str]) -> None:
        Master.port += 1
        group = Group(lab, "gloo", self.args.world, {"host": lab.ip("p0"), "port": Master.port})
        try:
            self.workloads(lab, rtt_ms, group, "gloo", None, which)
            group.close(graceful=True)
        except BaseException:
            group.close(graceful=False)
            raise

    def join(self, lab: Lab, rtt_ms: float, pool: int) -> None:
        a = self.args
        master = Master(lab)
        group = None
        jconn = jproc = None
        try:
            group = Group(lab, "pccl", a.world, {"address": master.address, "pool_size": pool})
            for conn in group.conns:
                conn.send(("join_sources", a.join, a.world + 1))
            gather(group.conns, group.procs, "joinready", 300, "join sources")
            jconn, child = ctx.Pipe()
            jproc = lab.process("joiner0", _joiner_main, (child, master.address, pool, a.join))
            child.close()
            gather([jconn], [jproc], "allocated", 300, "joiner")
            stats0 = lab.stats()
            jconn.send("go")
            res = gather([jconn], [jproc], "result", 900, "joiner")[0][1]
            src = [r[1] for r in gather(group.conns, group.procs, "result", 900, "sources")]
            want = digests(make_state(1, STATE_TENSORS, a.join // 4 // STATE_TENSORS))
            ok = res["digests"] == want and res["rx"] == a.join
            total = res["admit_s"] + res["sync_s"]
            row = {"rtt_ms": rtt_ms, "loss": lab.top.default.loss, "backend": "pccl",
                   "pool": pool, "workload": f"join {size_name(a.join)}", "bytes": a.join,
                   "world": a.world + 1, "time_s": total, "admit_s": res["admit_s"],
                   "sync_s": res["sync_s"], "sync_MBps": a.join / res["sync_s"] / 1e6,
                   "tx_per_source": [r["tx"] for r in src], "verified": ok,
                   "drops": drops(stats0, lab.stats())}
            self.rows.append(row)
            self.failed |= not ok
            print(f"# rtt {rtt_ms:g} ms join pool {pool}: admitted in {res['admit_s']:.2f} s, "
                  f"{size_name(a.join)} in {res['sync_s']:.2f} s "
                  f"({row['sync_MBps']:.1f} MB/s), sources sent {row['tx_per_source']}"
                  f"{'' if ok else '  VERIFICATION FAILED'}", file=sys.stderr, flush=True)
            jconn.send(None)
            jproc.join(30)
            group.close(graceful=True)
            group = None
        finally:
            if group is not None:
                group.close(graceful=False)
            if jproc is not None and jproc.is_alive():
                jproc.kill()
            if jconn is not None:
                jconn.close()
            master.close()

    def topology(self, rtt_ms: float, loss: float = 0.0) -> str:
        a = self.args
        return (f"regions=p:{a.world},joiner:1 master=own rtt={rtt_ms}ms rate={a.rate} "
                f"window={a.window} loss={loss}" + (f" cc={a.cc}" if a.cc else ""))

    def run(self) -> None:
        a = self.args
        default_pool = int(os.environ.get("PCCL_DEFAULT_POOL_SIZE", "8"))
        for index, rtt_ms in enumerate(a.rtt):
            with Lab(self.topology(rtt_ms)) as lab:
                if "sweep" in a.cases:
                    for pool in a.pools:
                        which = ["big", "many"]
                        if pool == default_pool and "latency" in a.cases:
                            which.append("latency")
                        self.pccl_group(lab, rtt_ms, pool, which)
                elif "latency" in a.cases:
                    self.pccl_group(lab, rtt_ms, default_pool, ["latency"])
                if "gloo" in a.cases:
                    self.gloo_group(lab, rtt_ms, ["big", "many"] +
                                    (["latency"] if "latency" in a.cases else []))
                if "transport" in a.cases:
                    for transport in (None, "plain", "encrypted"):
                        self.pccl_group(lab, rtt_ms, default_pool, ["big", "many", "latency"],
                                        transport)
                if "modes" in a.cases:
                    for mode in (0, *MODE_NAMES):
                        self.pccl_group(lab, rtt_ms, default_pool, ["big", "latency"],
                                        mode=mode)
                if "join" in a.cases and index == 0:
                    for pool in sorted({default_pool, max(a.pools)}):
                        self.join(lab, rtt_ms, pool)
            if "loss" in a.cases and index == 0:
                with Lab(self.topology(rtt_ms, a.loss)) as lab:
                    for pool in sorted({default_pool, max(a.pools)}):
                        self.pccl_group(lab, rtt_ms, pool, ["big"])


def print_table(rows: list[dict[str, Any]], cap_MBps: float) -> None:
    print(f"cap {cap_MBps:.0f} MB/s per direction per peer pair; busbw = bytes x 2(n-1)/n / time")
    print(f"{'rtt':>4} {'loss':>6} {'backend':9} {'pool':>4} {'workload':>12} {'s/op':>8} "
          f"{'busbw MB/s':>10} {'of cap':>6} {'RTTs':>6} {'vs gloo':>7} {'drops q/l':>9} ok")
    gloo = {(r["rtt_ms"], r["workload"]): r for r in rows if r["backend"] == "gloo"}
    for r in rows:
        g = gloo.get((r["rtt_ms"], r["workload"]))
        vs = (g["time_s"] / r["time_s"]) if g is not None and r["backend"] != "gloo" and \
            not r["loss"] else None
        r["speedup_vs_gloo"] = vs
        bus = r.get("busbw_MBps")
        of_cap = r.get("of_cap")
        d = r.get("drops", {})
        print(f"{r['rtt_ms']:4g} {r['loss']:6.2%} {r['backend']:9} {r['pool'] or '-':>4} "
              f"{r['workload']:>12} {r['time_s']:8.3f} "
              f"{'-' if bus is None else format(bus, '.1f'):>10} "
              f"{'-' if of_cap is None else format(of_cap, '.0%'):>6} "
              f"{r.get('rtts', r['time_s'] / (r['rtt_ms'] / 1e3)):6.1f} "
              f"{'-' if vs is None else format(vs, '.1f') + 'x':>7} "
              f"{d.get('queue', 0):>4}/{d.get('loss', 0):<4} {'yes' if r['verified'] else 'NO'}")


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sweeps = sorted({(r["rtt_ms"], r["workload"]) for r in rows
                     if r["backend"] == "pccl" and not r["loss"] and "busbw_MBps" in r
                     and r["workload"] != "4KiB"})
    for rtt, workload in sweeps:
        pts = sorted((r["pool"], r["busbw_MBps"]) for r in rows if r["backend"] == "pccl"
                     and r["rtt_ms"] == rtt and r["workload"] == workload and not r["loss"])
        line, = ax.plot([p for p, _ in pts], [b for _, b in pts], marker="o",
                        label=f"pccl {workload}, RTT {rtt:g} ms")
        for g in rows:
            if g["backend"] == "gloo" and g["rtt_ms"] == rtt and g["workload"] == workload:
                ax.axhline(g["busbw_MBps"], color=line.get_color(), linestyle=":",
                           label=f"Gloo {workload}, RTT {rtt:g} ms")
    caps = {round(r["busbw_MBps"] / r["of_cap"], 3) for r in rows if r.get("of_cap")}
    for cap in caps:
        ax.axhline(cap, color="black", linestyle="--", linewidth=0.8, label="rate cap")
    ax.set_xscale("log", base=2)
    pools = sorted({r["pool"] for r in rows if r["backend"] == "pccl" and r["pool"]})
    ax.set_xticks(pools, [str(p) for p in pools])
    ax.set_xlabel("p2p_connection_pool_size")
    ax.set_ylabel("bus bandwidth (MB/s)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt", type=float, nargs="+", default=[50, 100], help="ms")
    parser.add_argument("--pools", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--world", type=int, default=3)
    parser.add_argument("--rate", default="400mbit")
    parser.add_argument("--window", default="512KiB")
    parser.add_argument("--big", type=parse_size, default=parse_size("128MiB"))
    parser.add_argument("--many", default="16x8MiB", help="COUNTxSIZE")
    parser.add_argument("--iters", type=int, default=2, help="timed ops per bandwidth case")
    parser.add_argument("--latency-iters", type=int, default=10)
    parser.add_argument("--cases", nargs="+", default=["sweep", "gloo", "latency", "join", "loss"],
                        choices=["sweep", "gloo", "latency", "join", "loss", "transport",
                                 "modes"])
    parser.add_argument("--loss", default="0.1%")
    parser.add_argument("--cc", default=None,
                        help="TCP congestion control in the namespaces (default: the host's; "
                             "only net.ipv4.tcp_allowed_congestion_control, e.g. reno)")
    parser.add_argument("--join", type=parse_size, default=parse_size("256MiB"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--png", type=Path, default=None)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: RTT 50, pools 1 4 16, 16MiB / 4x4MiB, join 32MiB")
    args = parser.parse_args(argv)
    count, _, size = args.many.partition("x")
    args.many = (int(count), parse_size(size))
    args.loss = parse_fraction(args.loss)
    if args.quick:
        args.rtt, args.pools, args.big = [50.0], [1, 4, 16], parse_size("16MiB")
        args.many, args.join, args.iters = (4, parse_size("4MiB")), parse_size("32MiB"), 1
    reason = requirements()
    if reason is not None:
        print(f"bench.wan_bench: skipped: {reason}", file=sys.stderr)
        return 2
    bench = Bench(args)
    started = time.monotonic()
    try:
        bench.run()
    except (BenchError, OSError, RuntimeError, KeyboardInterrupt) as e:
        print(f"bench.wan_bench: {e}", file=sys.stderr)
        bench.failed = True
    cap = parse_rate(args.rate) / 8 / 1e6
    print_table(bench.rows, cap)
    meta = {"world": args.world, "rate": args.rate, "window": args.window,
            "cc": args.cc or "host default",
            "master": "own namespace, one WAN RTT from every peer",
            "mtu": Topology().mtu, "seconds": time.monotonic() - started,
            "cpus": os.cpu_count(), "pccl_defaults": {
                "pool": int(os.environ.get("PCCL_DEFAULT_POOL_SIZE", "8")),
                "segment_bytes": os.environ.get("PCCL_SEGMENT_BYTES", "1MiB (default)"),
                "socket_buffer_bytes": os.environ.get("PCCL_SOCKET_BUFFER_BYTES", "0 (default)")}}
    result = {"meta": meta, "rows": bench.rows}
    if args.png:
        if plot(bench.rows, args.png):
            print(f"plot: {args.png}")
        else:
            print("plot: matplotlib is not installed; JSON only", file=sys.stderr)
    emit_json(result, args.json)
    return 1 if bench.failed else 0


if __name__ == "__main__":
    sys.exit(main())
