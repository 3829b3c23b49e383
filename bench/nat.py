"""Peers behind NAT (bench/lib/nat_lab.py): a relayed link next to a direct one, the relay's
CPU per GB, and the time to admit a peer behind each kind of NAT.

Usage: python -m bench.nat [--size 64MiB] [--iters 8] [--admits 3] [--json out.json]

Needs root, `ip` and `nft`. One master process (`python -m pccl.master`, default settings,
so its relay runs) in the lab's public namespace. Per case, two fresh peer processes: the
first in the public namespace, the second where the case says:

  direct       public + public: both links direct
  eim          public + behind the endpoint-independent NAT: the link into the NATed peer
               is opened by hole punching (through the master relay's rendezvous)
  sym          public + behind the symmetric NAT: the same (the NATed end's dial reaches
               the public end's listener)
  eim-relayed  as eim with hole punching off (PCCL_PUNCH_MS=0 in the peers): the link into
               the NATed peer is relayed by the master
  sym-relayed  as sym, relayed

Admission: the second peer's connect() (Hello, the master's vote among the members, the
ring links of the new topology, through the relay where needed), `--admits` times per
case, each with fresh processes; the median is reported.

Throughput: both peers run one verified all-reduce (integer-valued float32 that differ per
peer, compared element by element), then `--iters` timed in-place SUM all-reduces of
`--size` zeros (checked to stay zero). time/op = max over the two peers; busbw = size /
time (2 peers: each link carries the whole buffer once per op). Relay CPU: the master
process's user+system CPU seconds during the timed loop (from /proc), per GB it relayed
(size x iters in the -relayed cases: one link of two is relayed), minus the same process's
CPU in the direct case (heartbeats and verdicts, which every case has). Exits non-zero when a verification
fails or anything times out.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from bench.lib import nat_lab, netns
from bench.lib.common import emit_json, parse_size, size_name

CASES = ("direct", "eim", "sym", "eim-relayed", "sym-relayed")
TIMEOUT_S = 120


def peer_main(conn: Connection, master: str, index: int, size: int, iters: int,
              measure: bool, punch: bool) -> None:
    if not punch:
        os.environ["PCCL_PUNCH_MS"] = "0"  # before pccl reads its parameters
    import numpy as np
    import pccl

    try:
        comm = pccl.Communicator(master)
        t0 = time.monotonic()
        if index == 0:
            comm.connect(timeout=TIMEOUT_S)
            conn.send(("connected",))
            comm.wait_for_world(2, timeout=TIMEOUT_S)
        else:
            comm.connect(timeout=TIMEOUT_S)
        admit_s = time.monotonic() - t0
        if not measure:
            conn.send(("admitted", admit_s))
            conn.recv()
            comm.close()
            return
        count = size // 4
        x = (np.arange(count, dtype=np.float32) % 1000) + index
        comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, timeout=TIMEOUT_S)
        expected = (np.arange(count, dtype=np.float32) % 1000) * 2 + 1
        if not np.array_equal(x, expected):
            raise RuntimeError("the verified all-reduce came out wrong")
        x[:] = 0
        conn.send(("warm",))
        conn.recv()  # go
        start = time.perf_counter()
        for _ in range(iters):
            comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, timeout=TIMEOUT_S)
        per_op = (time.perf_counter() - start) / iters
        if np.count_nonzero(x):
            raise RuntimeError("zeros did not stay zero")
        conn.send(("done", per_op, admit_s, [tuple(link) for link in comm.link_info()]))
        conn.recv()
        comm.close()
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        conn.send(("error", f"{type(e).__name__}: {e}"))


def expect(conn: Connection, kind: str, who: str) -> tuple[Any, ...]:
    if not conn.poll(TIMEOUT_S):
        raise SystemExit(f"{who} did not answer within {TIMEOUT_S} s")
    message = conn.recv()
    if message[0] == "error":
        raise SystemExit(f"{who} failed: {message[1]}")
    if message[0] != kind:
        raise SystemExit(f"{who} said {message!r}, expected {kind!r}")
    return tuple(message)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_pair(net: netns.Namespaces, names: dict[str, str], case: str, master: str,
               size: int, iters: int, measure: bool) -> list[Connection]:
    conns = []
    where = case.split("-")[0]
    for index, kind in enumerate(("public", "public" if where == "direct" else where)):
        parent, child = mp.get_context("spawn").Pipe()
        net.spawn(names[kind], peer_main, (child, master, index, size, iters, measure,
                                           not case.endswith("-relayed")))
        child.close()
        conns.append(parent)
        if index == 0:
            expect(parent, "connected", "the first peer")
    return conns


def run_case(net: netns.Namespaces, names: dict[str, str], case: str, master: str,
             master_pid: int, size: int, iters: int, admits: int) -> dict[str, Any]:
    admit_times = []
    for _ in range(admits):
        conns = start_pair(net, names, case, master, size, iters, measure=False)
        admit_times.append(expect(conns[1], "admitted", f"{case}: the joiner")[1])
        expect(conns[0], "admitted", f"{case}: the first peer")
        for c in conns:
            c.send(None)
        net.stop_processes()
    conns = start_pair(net, names, case, master, size, iters, measure=True)
    for i, c in enumerate(conns):
        expect(c, "warm", f"{case}: peer {i}")
    cpu_before = cpu_seconds(master_pid)
    for c in conns:
        c.send("go")
    done = [expect(c, "done", f"{case}: peer {i}") for i, c in enumerate(conns)]
    master_cpu = cpu_seconds(master_pid) - cpu_before
    for c in conns:
        c.send(None)
    per_op = max(d[1] for d in done)
    routes = sorted({(("first", "second")[i], link[1], link[2])
                     for i, d in enumerate(done) for link in d[3]})
    return {"case": case, "admit_s": admit_times, "admit_median_s": statistics.median(admit_times),
            "time_per_op_s": per_op, "busbw_GBps": size / per_op / 1e9,
            "master_cpu_s": master_cpu, "routes": routes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="64MiB")
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--admits", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    reason = nat_lab.unavailable_reason()
    if reason is not None:
        raise SystemExit(f"bench.nat: {reason}")
    size = parse_size(args.size)
    results = []
    with netns.Namespaces() as net:
        names = nat_lab.build(net)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        master_proc = subprocess.Popen(
            netns.Namespaces.command(names["public"], [sys.executable, "-m", "pccl.master",
                                                       "--listen-address", "0.0.0.0:0"]),
            stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
        try:
            assert master_proc.stdout is not None
            line = master_proc.stdout.readline()
            if "listening on" not in line:
                raise SystemExit(f"the master did not start: {line!r}")
            master = f"{nat_lab.PUBLIC_IP}:{int(line.rsplit(':', 1)[1])}"
            for case in CASES:
                results.append(run_case(net, names, case, master, master_proc.pid, size,
                                        args.iters, args.admits))
                net.stop_processes()
        finally:
            master_proc.kill()
            master_proc.wait(timeout=10)
    baseline_cpu = results[0]["master_cpu_s"] / (results[0]["time_per_op_s"] * args.iters)
    print(f"NAT lab, 2 peers, {size_name(size)} float32 SUM, {args.iters} timed ops, "
          f"median of {args.admits} admissions")
    print(f"{'case':>11} {'admit s':>8} {'ms/op':>8} {'busbw GB/s':>11} {'relay cpu-s/GB':>15}"
          "  routes (first/second peer: next link)")
    for r in results:
        relayed_gb = size * args.iters / 1e9
        wall = r["time_per_op_s"] * args.iters
        relay_cpu = (r["master_cpu_s"] - baseline_cpu * wall) / relayed_gb
        relayed = r["case"].endswith("-relayed")
        r["relay_cpu_s_per_GB"] = relay_cpu if relayed else None
        routes = ", ".join(f"{who}:{route}" for who, d, route in r["routes"] if d == "next")
        print(f"{r['case']:>11} {r['admit_median_s']:8.2f} {r['time_per_op_s'] * 1e3:8.1f} "
              f"{r['busbw_GBps']:11.2f} "
              f"{f'{relay_cpu:.2f}' if relayed else '-':>15}  {routes}")
    emit_json({"size": size, "iters": args.iters, "results": results}, args.json, echo=False)


if __name__ == "__main__":
    main()
