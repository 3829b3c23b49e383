"""pccl under WAN chaos: a DiLoCo-shaped run in the WAN lab while a seeded schedule breaks it.

Usage: sudo python -m bench.wan_chaos [--minutes 10] [--seed 1] [--json out.json]
           [--size 16MiB] [--tensors 4] [--compute 2] [--rate 200mbit] [--window 1MiB]
           [--every 6 12] [--log-dir DIR]

The lab (bench/wan/): peers eu0 eu1 eu2 (RTT 40 ms between them), us0 us1 (RTT 40 ms
between them, 100 ms to eu), two spare nodes x0 x1 for joiners (40 ms to eu, 100 ms to
us), and the master in its own namespace in eu (`python -m pccl.master`, heartbeat timeout
3 s); every node pair is capped at `--rate` per direction, TCP buffers at `--window`.

Five peers start (one per eu/us node) and run an outer loop shaped like DiLoCo's
(python/pccl/diloco/helper.py), with pccl's default timeouts and knobs:

  P  are_peers_pending() (joint), update_topology() if it says so
  A  agree on the step number: MAX all-reduce of (next step, past the end?), so joiners and
     reconnected peers adopt the run's count and everyone stops together
  C  "compute": sleep `--compute` seconds (the inner steps)
  E  all_reduce_multiple_with_retry() of `--tensors` float32 tensors, `--mib` MiB in all,
     AVG (`--size` in all); a failed all-reduce is retried on the new ring inside the call

Every call that fails with PeerLostError / PCCLTimeoutError is retried in place (as the
DiLoCo helper does); KickedError and MasterUnavailableError: the peer closes its
Communicator and connects again with a new one (its first step skips P, which the members
are past). A freshly admitted peer (a joiner) does the same.

Verification, exact: every input is an integer multiple of 2520 (= lcm(1..10)), so sums
stay exact in float32 and AVG's division by the world (<= 7 here) is exact too. Each tensor
holds (1) an indicator block: 2520 at the contributing process's slot, so the average
names exactly which processes contributed (2520 / world each); (2) a peer-specific block
(integers seeded by step, tensor and process), checked against the exact average of the
contributors named by (1); (3) the bulk, the same on every peer, checked to come back
unchanged. Each peer reports its result's XXH64 per tensor; the driver checks that every
peer that completed a step got the same digests and contributors, and that no step was
completed by more peers than its world.

The fault schedule (random.Random(--seed)): every `--every` seconds (uniform) one of
  reset          lab.reset_link() of a ring pair: RST to both ends of every connection
  reset-master   the same between one peer and the master (that peer loses its master)
  blackhole-link a peer pair, both directions, 2-8 s
  blackhole-node every link of one peer node (its master link too), 1-6 s
  blackhole-master the master's node, 1-6 s
  loss           a 5-10 % loss burst on one peer node's links or one pair, 3-10 s
  kill           SIGKILL a peer; a new process joins in its node 3-10 s later
  stop           SIGSTOP a peer for 1-6 s, then SIGCONT
  join           a new peer in a spare node
keeping at least three peers running; the last 20 s are quiet (everything healed, stopped
peers resumed) so the run ends together.

Reported: steps completed (and that every one was exact and identical on every peer that
completed it), the longest stall (time between consecutive completed steps) with the
faults in force during it, the time from each fault to the next completed step (and from
its end), and every KickedError / MasterUnavailableError classified: expected (the peer
was SIGSTOPped; its node or the master's was blackholed for at least the heartbeat
timeout less one heartbeat interval, halved: 1.125 s, since with TCP's retransmission
backoff the silence either side sees can reach twice the blackhole plus one interval; its
master link was reset; or the master removed it after 3 link breaks in 2 minutes, as
designed) or a healthy peer kicked (the goal is 0).
A table and JSON; exits 1 if a step was wrong, a healthy peer was kicked, or a peer hung.
`--log-dir DIR`: every process's pccl log (PCCL_LOG_LEVEL=info) goes to DIR.
Needs root (see bench/wan/network.py).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.lib.common import dash, emit_json, parse_size, size_name
from bench.lib.procs import BenchError, ctx, report_error
from bench.wan.network import Lab, requirements

UNIT = 2520  # lcm(1..10): AVG over up to 10 peers of multiples of UNIT stays exact
SLOTS = 256  # indicator slots: process ids 0..255
SPECIFIC = 1 << 16  # peer-specific elements per tensor
AGREE_TAG = 1 << 20
HEARTBEAT_TIMEOUT = 3.0  # the master's (pccl's default)
# A blackhole this long may end a membership: a beat lost at its start is retransmitted
# with exponential backoff, so the silence either side sees can reach about twice the
# blackhole plus one heartbeat interval (timeout / 4). Shorter ones must not kick anyone.
KICKING_BLACKHOLE_S = (HEARTBEAT_TIMEOUT - HEARTBEAT_TIMEOUT / 4) / 2
PEER_NODES = ["eu0", "eu1", "eu2", "us0", "us1"]
SPARE_NODES = ["x0", "x1"]
QUIET_S = 20.0  # no new faults this long before the end
MAX_LIVE = 7


# --- inside the peers ----------------------------------------------------------------------

def _bulk(numel: int, tensor: int) -> np.ndarray:
    """The part of a tensor that every peer holds alike (before the step's offset)."""
    k = (np.arange(numel, dtype=np.int64) * (7 + 2 * tensor)) % 1001 - 500
    return (k * UNIT).astype(np.float32)


def _specific(step: int, tensor: int, pid: int, n: int) -> np.ndarray:
    k = np.random.default_rng([step, tensor, pid]).integers(-200, 201, n)
    return (k * UNIT).astype(np.float32)


class Tensors:
    """The step's tensors of one process and their exact check."""

    def __init__(self, pid: int, total_bytes: int, count: int):
        self.pid = pid
        numel = total_bytes // 4 // count
        if numel < SLOTS + 2:
            raise ValueError(f"tensors of {numel} elements are too small")
        self.spec = min(SPECIFIC, numel - SLOTS - 1)
        self.xs = [np.empty(numel, np.float32) for _ in range(count)]
        self.bulks = [_bulk(numel - SLOTS - self.spec, t) for t in range(count)]

    def fill(self, step: int) -> None:
        offset = np.float32((step % 5) * UNIT)
        for t, x in enumerate(self.xs):
            x[:SLOTS] = 0
            x[self.pid] = UNIT
            x[SLOTS:SLOTS + self.spec] = _specific(step, t, self.pid, self.spec)
            np.add(self.bulks[t], offset, out=x[SLOTS + self.spec:])

    def check(self, step: int) -> tuple[bool, list[tuple[int, ...]]]:
        """(exact?, contributors per tensor) of the averaged tensors."""
        ok = True
        who = []
        offset = np.float32((step % 5) * UNIT)
        for t, x in enumerate(self.xs):
            ind = x[:SLOTS]
            contributors = tuple(int(i) for i in np.flatnonzero(ind))
            world = len(contributors)
            who.append(contributors)
            if world == 0 or UNIT % world or not np.all(ind[list(contributors)] == UNIT // world):
                ok = False
                continue
            want = sum(_specific(step, t, p, self.spec).astype(np.int64) for p in contributors)
            ok &= bool(np.array_equal(x[SLOTS:SLOTS + self.spec].astype(np.int64),
                                      want // world))
            ok &= bool(np.array_equal(x[SLOTS + self.spec:], self.bulks[t] + offset))
        return ok, who


def _worker_main(conn: Connection, pid: int, node: str, address: str, end_at: float,
                 cfg: dict[str, Any]) -> None:
    """One peer process: the outer loop of the module docstring, reporting to `conn`."""
    if cfg["log_dir"]:
        os.environ["PCCL_LOG_LEVEL"] = "info"
        fd = os.open(os.path.join(cfg["log_dir"], f"peer{pid}-{node}.log"),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
    try:
        _worker_loop(conn, pid, address, end_at, cfg)
    except BaseException as e:  # noqa: BLE001 - reported to the driver
        report_error(conn, e)


def _worker_loop(conn: Connection, pid: int, address: str, end_at: float,
                 cfg: dict[str, Any]) -> None:
    import pccl

    tensors = Tensors(pid, cfg["bytes"], cfg["tensors"])
    descriptors = [
        pccl.ReduceOpDescriptor.from_numpy(
            x, x, pccl.ReduceDescriptor(x.size, pccl.ReduceOp.AVG, tag,
                                        pccl.ReduceOperandDescriptor(pccl.DataType.FLOAT),
                                        pccl.QuantizationOptions(
                                            algorithm=pccl.QuantizationAlgorithm.NONE)))
        for tag, x in enumerate(tensors.xs)]
    longest = 0.0

    def post(*msg: Any) -> None:
        conn.send(msg)

    def call(name: str, fn: Any, *args: Any, retries: int = 20, **kwargs: Any) -> Any:
        """fn(*args), retried in place after PeerLostError / PCCLTimeoutError."""
        nonlocal longest
        for attempt in range(retries + 1):
            t0 = time.monotonic()
            try:
                return fn(*args, **kwargs)
            except (pccl.PeerLostError, pccl.PCCLTimeoutError) as e:
                post("error", pid, name, type(e).__name__, time.monotonic(),
                     time.monotonic() - t0, str(e)[:300])
                if attempt == retries:
                    raise
            except pccl.PCCLError as e:
                if not isinstance(e, pccl.TooFewPeersError):
                    post("error", pid, name, type(e).__name__, time.monotonic(),
                         time.monotonic() - t0, str(e)[:300])
                raise
            finally:
                longest = max(longest, time.monotonic() - t0)
        raise AssertionError("unreachable")

    def connect() -> Any:
        while time.monotonic() < end_at:
            comm = pccl.Communicator(address, 0, cfg["pool"])
            t0 = time.monotonic()
            try:
                comm.connect(n_attempts=1, timeout=cfg["timeout"])
                post("admitted", pid, time.monotonic(), time.monotonic() - t0)
                return comm
            except (pccl.KickedError, pccl.MasterUnavailableError, pccl.PCCLTimeoutError) as e:
                post("error", pid, "connect", type(e).__name__, time.monotonic(),
                     time.monotonic() - t0, str(e)[:300])
                comm.close()
                time.sleep(0.5)
        return None

    comm = connect()
    step = 0
    fresh = True  # admitted just now: the members are past this step's P
    while comm is not None:
        try:
            if not fresh and call("are_peers_pending", comm.are_peers_pending,
                                  timeout=cfg["timeout"]):
                call("update_topology", comm.update_topology, timeout=cfg["timeout"])
            fresh = False
            agree = np.array([step, 1.0 if time.monotonic() > end_at else 0.0])
            call("agree", comm.all_reduce, agree, agree, op=pccl.ReduceOp.MAX, tag=AGREE_TAG,
                 timeout=cfg["timeout"])
            if agree[1] > 0:
                break
            step = int(agree[0])
            time.sleep(cfg["compute"])
            tensors.fill(step)
            t0 = time.monotonic()
            info = call("all_reduce_multiple", comm.all_reduce_multiple_with_retry,
                        descriptors, max_in_flight=cfg["tensors"], timeout=cfg["step_timeout"],
                        retries=2)
            t1 = time.monotonic()
            exact, who = tensors.check(step)
            post("step", pid, step, tuple(len(w) for w in who), tuple(who),
                 tuple(pccl.kernels.hash64(x) for x in tensors.xs), exact, t1, t1 - t0,
                 info.local_world_size)
            step += 1
        except pccl.TooFewPeersError:
            if time.monotonic() > end_at:
                break
            time.sleep(0.2)  # alone: P admits joiners
        except (pccl.PeerLostError, pccl.PCCLTimeoutError):
            pass  # retries exhausted: start the step over
        except (pccl.KickedError, pccl.MasterUnavailableError) as e:
            post("lost", pid, type(e).__name__, time.monotonic(), str(e)[:300])
            comm.close()
            comm = connect()
            fresh = True
    if comm is not None:
        comm.close()
    post("done", pid, {"longest_call_s": longest, "last_step": step})


# --- the driver ----------------------------------------------------------------------------

@dataclass
class Fault:
    kind: str
    target: str  # "eu0", "eu0-us1", "master", "peer 3"
    start: float
    seconds: float = 0.0  # how long it is in force (0: instantaneous)
    nodes: tuple[str, ...] = ()
    pid: int | None = None
    detail: str = ""

    @property
    def end(self) -> float:
        return self.start + self.seconds


@dataclass
class Worker:
    pid: int
    node: str
    proc: Any
    conn: Connection
    started: float
    state: str = "running"  # running, stopped, killed, done, hung
    summary: dict[str, Any] = field(default_factory=dict)


class Chaos:
    def __init__(self, lab: Lab, args: argparse.Namespace):
        self.lab, self.args = lab, args
        self.rng = random.Random(args.seed)
        self.workers: list[Worker] = []
        self.faults: list[Fault] = []
        self.messages: list[tuple[Any, ...]] = []
        self.actions: list[tuple[float, int, str, Any]] = []  # heap: (when, seq, what, arg)
        self.seq = 0
        self.t0 = time.monotonic()
        self.master_proc: subprocess.Popen[str] | None = None
        self.address = ""
        self.end_at = 0.0
        self.warm_at = 0.0
        self.cfg = {"bytes": args.size, "tensors": args.tensors, "compute": args.compute,
                    "pool": 0, "timeout": 60.0, "step_timeout": 180.0,
                    "log_dir": str(args.log_dir) if args.log_dir else ""}

    # -- processes -------------------------------------------------------------------------

    def start_master(self) -> None:
        port = 48148
        stderr: Any = subprocess.DEVNULL
        env = dict(os.environ)
        if self.args.log_dir:
            stderr = open(self.args.log_dir / "master.log", "a")  # noqa: SIM115 - the child's
            env["PCCL_LOG_LEVEL"] = "info"
        self.master_proc = self.lab.popen(
            "master", [sys.executable, "-m", "pccl.master", "--listen-address",
                       f"0.0.0.0:{port}", "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT)],
            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        line = self.master_proc.stdout.readline() if self.master_proc.stdout else ""
        if "listening on" not in line:
            raise BenchError(f"the master did not start: {line!r}")
        self.address = f"{self.lab.master_ip()}:{port}"

    def spawn(self, node: str) -> Worker:
        pid = len(self.workers)
        if pid >= SLOTS:
            raise BenchError("too many processes for the indicator block")
        parent, child = ctx.Pipe()
        proc = self.lab.process(node, _worker_main,
                                (child, pid, node, self.address, self.end_at, self.cfg))
        child.close()
        w = Worker(pid, node, proc, parent, time.monotonic())
        self.workers.append(w)
        return w

    def live(self, *states: str) -> list[Worker]:
        states = states or ("running",)
        return [w for w in self.workers if w.state in states]

    def free_nodes(self) -> list[str]:
        taken = {w.node for w in self.live("running", "stopped")}
        return [n for n in PEER_NODES + SPARE_NODES if n not in taken]

    # -- the event loop --------------------------------------------------------------------

    def later(self, when: float, what: str, arg: Any) -> None:
        self.seq += 1
        heapq.heappush(self.actions, (when, self.seq, what, arg))

    def pump(self, until: float) -> None:
        """Reads the workers' posts and runs due actions until `until`."""
        while True:
            now = time.monotonic()
            while self.actions and self.actions[0][0] <= now:
                _, _, what, arg = heapq.heappop(self.actions)
                self.act(what, arg)
            if now >= until:
                return
            nxt = min([until] + [a[0] for a in self.actions[:1]])
            conns = [w.conn for w in self.workers if w.state in ("running", "stopped")]
            ready = wait(conns, timeout=max(0.0, min(nxt - now, 0.5))) if conns else []
            if not conns:
                time.sleep(max(0.0, min(nxt - now, 0.5)))
            for ready_conn in ready:
                w = next(w for w in self.workers if w.conn is ready_conn)
                try:
                    msg: tuple[Any, ...] = w.conn.recv()
                except (EOFError, OSError):
                    if w.state in ("running", "stopped"):
                        w.state = "died"
                        self.messages.append(("died", w.pid, time.monotonic(),
                                              w.proc.exitcode))
                    continue
                self.messages.append(msg)
                if msg[0] == "done":
                    w.state, w.summary = "done", msg[2]
                elif msg[0] == "error" and len(msg) == 3:  # report_error: the worker crashed
                    w.state = "crashed"
                    print(f"# peer {w.pid} crashed: {msg[1]}\n{msg[2]}", file=sys.stderr)

    def act(self, what: str, arg: Any) -> None:
        if what == "cont":
            w = arg
            if w.state == "stopped":
                os.kill(w.proc.pid, signal.SIGCONT)
                w.state = "running"
        elif (what == "respawn" and time.monotonic() < self.end_at - QUIET_S
              and arg in self.free_nodes() and len(self.live("running", "stopped")) < MAX_LIVE):
            w = self.spawn(arg)
            self.faults.append(Fault("join", arg, time.monotonic(), nodes=(arg,), pid=w.pid,
                                     detail="replaces a killed peer"))

    # -- faults ---------------------------------------------------------------------------

    # (kind, weight) of the seeded schedule
    KINDS: ClassVar[list[tuple[str, float]]] = [
        ("reset", 2.0), ("reset-master", 0.5), ("blackhole-link", 2.0), ("blackhole-node", 1.5),
        ("blackhole-master", 1.0), ("loss", 1.5), ("kill", 1.0), ("stop", 1.5), ("join", 1.0)]

    def fault(self) -> None:
        rng = self.rng
        kinds, weights = zip(*self.KINDS)
        kind = rng.choices(kinds, weights)[0]
        running = self.live()
        if kind in ("kill", "stop") and len(running) <= 3:
            kind = "join"
        if kind == "join" and (not self.free_nodes() or
                               len(self.live("running", "stopped")) >= MAX_LIVE):
            kind = "reset"
        nodes = sorted({w.node for w in running})
        now = time.monotonic()
        if kind == "reset":
            a, b = rng.sample(nodes, 2)
            done = self.lab.reset_link(a, b)
            f = Fault(kind, f"{a}-{b}", now, nodes=(a, b), detail=str(done))
        elif kind == "reset-master":
            a = rng.choice(nodes)
            done = self.lab.reset_link(a, "master")
            f = Fault(kind, f"{a}-master", now, nodes=(a,), detail=str(done))
        elif kind == "blackhole-link":
            a, b = rng.sample(nodes, 2)
            secs = rng.uniform(2, 8)
            self.lab.blackhole(a, b, secs)
            f = Fault(kind, f"{a}-{b}", now, secs, nodes=(a, b))
        elif kind == "blackhole-node":
            a = rng.choice(nodes)
            secs = rng.uniform(1, 6)
            self.lab.blackhole(a, None, secs)
            f = Fault(kind, a, now, secs, nodes=(a,))
        elif kind == "blackhole-master":
            secs = rng.uniform(1, 6)
            self.lab.blackhole("master", None, secs)
            f = Fault(kind, "master", now, secs, nodes=("master",))
        elif kind == "loss":
            secs, loss = rng.uniform(3, 10), rng.uniform(0.05, 0.10)
            if rng.random() < 0.5:
                a = rng.choice(nodes)
                self.lab.loss_burst(a, None, loss, secs)
                f = Fault(kind, a, now, secs, nodes=(a,), detail=f"{loss:.0%}")
            else:
                a, b = rng.sample(nodes, 2)
                self.lab.loss_burst(a, b, loss, secs)
                f = Fault(kind, f"{a}-{b}", now, secs, nodes=(a, b), detail=f"{loss:.0%}")
        elif kind == "kill":
            w = rng.choice(running)
            os.kill(w.proc.pid, signal.SIGKILL)
            w.state = "killed"
            f = Fault(kind, f"peer {w.pid}@{w.node}", now, nodes=(w.node,), pid=w.pid)
            self.later(now + rng.uniform(3, 10), "respawn", w.node)
        elif kind == "stop":
            w = rng.choice(running)
            secs = rng.uniform(1, 6)
            os.kill(w.proc.pid, signal.SIGSTOP)
            w.state = "stopped"
            f = Fault(kind, f"peer {w.pid}@{w.node}", now, secs, nodes=(w.node,), pid=w.pid)
            self.later(now + secs, "cont", w)
        else:  # join
            node = rng.choice(self.free_nodes())
            w = self.spawn(node)
            f = Fault(kind, f"peer {w.pid}@{node}", now, nodes=(node,), pid=w.pid)
        self.faults.append(f)
        print(f"# {now - self.t0:7.1f} s  {f.kind:16} {f.target:14} "
              f"{f.seconds:4.1f} s {f.detail}  (running: {len(self.live())})",
              file=sys.stderr, flush=True)

    # -- the run --------------------------------------------------------------------------

    def run(self) -> None:
        a = self.args
        self.start_master()
        self.t0 = time.monotonic()
        self.end_at = self.t0 + a.minutes * 60
        for node in PEER_NODES:
            self.spawn(node)
        # Faults start once the five are admitted and stepping (or after 60 s regardless).
        first = self.t0 + 60
        while time.monotonic() < first:
            self.pump(time.monotonic() + 0.5)
            if any(m[0] == "step" and m[3] and min(m[3]) == len(PEER_NODES)
                   for m in self.messages):
                break
        self.warm_at = time.monotonic()
        print(f"# {self.warm_at - self.t0:7.1f} s  five peers stepping; faults start",
              file=sys.stderr, flush=True)
        next_fault = time.monotonic() + self.rng.uniform(*a.every)
        while next_fault < self.end_at - QUIET_S:
            self.pump(next_fault)
            self.fault()
            next_fault = time.monotonic() + self.rng.uniform(*a.every)
        self.pump(self.end_at - QUIET_S)
        self.lab.restore()
        for w in self.live("stopped"):
            self.act("cont", w)
        self.pump(self.end_at)
        # The peers stop together at the next step; each call has a deadline.
        deadline = self.end_at + self.cfg["step_timeout"] + 60
        while self.live("running", "stopped") and time.monotonic() < deadline:
            self.pump(time.monotonic() + 0.5)
        for w in self.live("running", "stopped"):
            w.state = "hung"
            print(f"# peer {w.pid}@{w.node} did not finish by the deadline", file=sys.stderr)

    def close(self) -> None:
        for w in self.workers:
            if w.proc.is_alive():
                try:
                    os.kill(w.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                w.proc.kill()
                w.proc.join(timeout=5)
            w.conn.close()
        if self.master_proc is not None:
            self.master_proc.terminate()
            try:
                self.master_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.master_proc.kill()
            if self.master_proc.stdout:
                self.master_proc.stdout.close()


# --- analysis ------------------------------------------------------------------------------

def analyse(ch: Chaos) -> dict[str, Any]:
    t0 = ch.t0
    problems: list[str] = []
    by_step: dict[int, list[tuple[Any, ...]]] = {}
    for m in ch.messages:
        if m[0] == "step":
            by_step.setdefault(m[2], []).append(m)
    steps = []  # (done at, step, worlds)
    for step, reports in sorted(by_step.items()):
        outcomes = {(r[3], r[4], r[5]) for r in reports}
        if len(outcomes) != 1:
            problems.append(f"step {step}: peers disagree: {sorted(outcomes)[:3]}")
        if not all(r[6] for r in reports):
            problems.append(f"step {step}: inexact on peers {[r[1] for r in reports if not r[6]]}")
        worlds = reports[0][3]
        if len(reports) > max(worlds):
            problems.append(f"step {step}: completed by {len(reports)} peers, world {worlds}")
        if not all({r[1] for r in reports} <= set(c) for c in reports[0][4]):
            problems.append(f"step {step}: a peer completed it without contributing")
        steps.append((min(r[7] for r in reports), step, worlds))
    steps.sort()
    done_times = [s[0] for s in steps]

    def next_step(t: float) -> float | None:
        return next((d for d in done_times if d > t), None)

    def in_force(a: float, b: float) -> list[Fault]:
        return [f for f in ch.faults if f.start < b and max(f.end, f.start + 0.5) > a]

    # The longest stall between completed steps, once the faults started.
    times = [ch.warm_at] + [d for d in done_times if d > ch.warm_at]
    gaps = sorted(((b - a, a, b) for a, b in itertools.pairwise(times)), reverse=True)
    stalls = [{"seconds": g, "from_s": a - t0, "to_s": b - t0,
               "faults": [f"{f.kind} {f.target} at {f.start - t0:.1f} s"
                          f"{f' for {f.seconds:.1f} s' if f.seconds else ''}"
                          for f in in_force(a - 1, b)]} for g, a, b in gaps[:5]]

    # Every KickedError / MasterUnavailableError: expected, or a healthy peer kicked.
    kicks = []
    for m in ch.messages:
        if m[0] != "lost":
            continue
        _, pid, name, t, message = m
        node = ch.workers[pid].node
        why = None
        if "broke" in message and "times" in message:
            why = "removed after repeated link breaks (by design)"
        for f in ch.faults:
            if why is not None:
                break
            if not f.start - 1 <= t <= f.end + max(5.0, f.seconds) + 3:
                continue
            if f.kind == "stop" and f.pid == pid:
                why = f"SIGSTOPped {f.seconds:.1f} s"
            elif (f.kind == "blackhole-node" and node in f.nodes
                  and f.seconds >= KICKING_BLACKHOLE_S):
                why = f"its node blackholed {f.seconds:.1f} s"
            elif f.kind == "blackhole-master" and f.seconds >= KICKING_BLACKHOLE_S:
                why = f"master blackholed {f.seconds:.1f} s"
            elif f.kind == "reset-master" and node in f.nodes:
                why = "its master link was reset"
        kicks.append({"peer": pid, "node": node, "error": name, "at_s": t - t0,
                      "expected": why is not None, "why": why or "HEALTHY PEER KICKED",
                      "message": message,
                      "faults_near": [f"{f.kind} {f.target} at {f.start - t0:.1f} s"
                                      for f in in_force(t - 15, t + 1)]})

    fault_rows = []
    for f in ch.faults:
        after_start, after_end = next_step(f.start), next_step(f.end)
        near = [m for m in ch.messages if m[0] == "error" and len(m) > 4
                and f.start <= m[4] <= f.end + 10]
        fault_rows.append({
            "at_s": f.start - t0, "kind": f.kind, "target": f.target, "seconds": f.seconds,
            "detail": f.detail,
            "next_step_after_start_s": None if after_start is None else after_start - f.start,
            "next_step_after_end_s": None if after_end is None else after_end - f.end,
            "errors_within_10s": len(near)})

    errors: dict[str, int] = {}
    for m in ch.messages:
        if m[0] == "error" and len(m) > 3:
            key = f"{m[2]}: {m[3]}"
            errors[key] = errors.get(key, 0) + 1
    worlds = [min(s[2]) for s in steps]
    return {
        "steps": len(steps), "verified": not problems, "problems": problems[:20],
        "steps_after_faults_start": sum(1 for d in done_times if d > ch.warm_at),
        "world_min": min(worlds, default=0), "world_median": statistics.median(worlds or [0]),
        "world_max": max(worlds, default=0),
        "step_seconds_median": statistics.median(
            [m[8] for m in ch.messages if m[0] == "step"] or [0]),
        "longest_stalls": stalls, "faults": fault_rows, "kicks": kicks,
        "healthy_kicked": sum(1 for k in kicks if not k["expected"]),
        "errors": errors,
        "longest_call_s": max((w.summary.get("longest_call_s", 0) for w in ch.workers),
                              default=0),
        "processes": [{"peer": w.pid, "node": w.node, "end": w.state,
                       "started_s": w.started - t0} for w in ch.workers],
        "hung": [w.pid for w in ch.workers if w.state == "hung"],
        "crashed": [w.pid for w in ch.workers if w.state in ("crashed", "died")],
    }


def print_report(res: dict[str, Any], meta: dict[str, Any]) -> None:
    print(f"wan_chaos: {meta['minutes']:g} min, seed {meta['seed']}, {meta['topology']}")
    print(f"workload: {meta['tensors']} x {meta['tensor_size']} float32 AVG per step "
          f"(all_reduce_multiple_with_retry), {meta['compute_s']:g} s compute between steps")
    print()
    print("-> step: seconds from the fault (from its end) to the next step any peer completed;"
          " errors: failed calls within 10 s of its end")
    print(f"{'at s':>7} {'fault':16} {'target':15} {'for s':>5} {'-> step s':>9} "
          f"{'end -> step s':>13} {'errors':>6}")
    for f in res["faults"]:
        print(f"{f['at_s']:7.1f} {f['kind']:16} {f['target']:15} {f['seconds']:5.1f} "
              f"{dash(f['next_step_after_start_s'], '9.2f'):>9} "
              f"{dash(f['next_step_after_end_s'], '13.2f'):>13} {f['errors_within_10s']:6d}")
    print()
    print(f"steps completed: {res['steps']} ({res['steps_after_faults_start']} under faults), "
          f"world min/median/max {res['world_min']}/{res['world_median']:g}/"
          f"{res['world_max']}, median all-reduce {res['step_seconds_median']:.2f} s")
    print(f"every step exact and identical on the peers that completed it: "
          f"{'yes' if res['verified'] else 'NO: ' + '; '.join(res['problems'][:3])}")
    for i, s in enumerate(res["longest_stalls"][:3]):
        print(f"{'longest stall' if i == 0 else 'next':>13}: {s['seconds']:.2f} s "
              f"({s['from_s']:.1f}-{s['to_s']:.1f} s), faults in force: "
              f"{', '.join(s['faults']) or 'none'}")
    print(f"longest single call: {res['longest_call_s']:.2f} s")
    expected = [k for k in res["kicks"] if k["expected"]]
    print(f"healthy peers kicked: {res['healthy_kicked']} "
          f"(expected losses of the master or kicks: {len(expected)})")
    for k in res["kicks"]:
        print(f"  {k['at_s']:7.1f} s peer {k['peer']}@{k['node']}: {k['error']} - {k['why']}"
              + ("" if k["expected"] else f"; near: {k['faults_near']}; {k['message'][:150]}"))
    if res["hung"] or res["crashed"]:
        print(f"hung peers: {res['hung']}, crashed or died: {res['crashed']}")
    print("failed calls (call: error x count): "
          + ", ".join(f"{k} x{v}" for k, v in sorted(res["errors"].items())))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--size", type=parse_size, default=parse_size("16MiB"),
                        help="bytes all-reduced per step, all tensors together (16MiB)")
    parser.add_argument("--tensors", type=int, default=4)
    parser.add_argument("--compute", type=float, default=2.0, help="seconds between steps")
    parser.add_argument("--rate", default="200mbit")
    parser.add_argument("--window", default="1MiB")
    parser.add_argument("--every", type=float, nargs=2, default=[6.0, 12.0],
                        metavar=("MIN", "MAX"), help="seconds between faults (uniform)")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="write every process's pccl log (info) here")
    args = parser.parse_args()
    if args.minutes * 60 < QUIET_S + 30:
        parser.error("--minutes too short")
    reason = requirements()
    if reason is not None:
        print(f"bench.wan_chaos: skipped: {reason}", file=sys.stderr)
        return 2
    if args.log_dir:
        args.log_dir.mkdir(parents=True, exist_ok=True)
    topology = (f"regions=eu:3,us:2,x:2 master=own rtt=40ms rate={args.rate} "
                f"window={args.window} eu-us:rtt=100ms us-x:rtt=100ms seed={args.seed}")
    meta = {"minutes": args.minutes, "seed": args.seed, "topology": topology,
            "tensors": args.tensors, "tensor_size": size_name(args.size // args.tensors),
            "bytes_per_step": args.size, "compute_s": args.compute,
            "heartbeat_timeout_s": HEARTBEAT_TIMEOUT, "every_s": args.every,
            "cpus": os.cpu_count()}
    failed = False
    with Lab(topology) as lab:
        chaos = Chaos(lab, args)
        try:
            chaos.run()
        except (BenchError, OSError, RuntimeError, KeyboardInterrupt) as e:
            print(f"bench.wan_chaos: {e}", file=sys.stderr)
            failed = True
        finally:
            chaos.close()
        res = analyse(chaos)
    meta["seconds"] = time.monotonic() - chaos.t0
    print_report(res, meta)
    emit_json({"meta": meta, "result": res}, args.json)
    failed |= (not res["verified"] or res["healthy_kicked"] > 0 or bool(res["hung"])
               or bool(res["crashed"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
