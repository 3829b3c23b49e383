"""The WAN lab's command line: build a topology, run commands in its nodes, tear down.

    python -m bench.wan.lab run "peers=2 rtt=100ms rate=400mbit window=512KiB" \
        --bg master 'python -m pccl.master --listen-address 0.0.0.0:48148' \
        --node p0 'python train.py --master $MASTER' --node p1 '...' \
        --fault "3s blackhole p0-p1 5s" --fault "10s reset p0-p1"
    python -m bench.wan.lab selfcheck [--rtt 50 100] [--rate 400mbit] [--window 512KiB]
    python -m bench.wan.lab cleanup      # namespaces left behind by killed processes
    python -m bench.wan.lab build        # compile the emulator into build/wan/

`run` starts the --bg shell lines, then the --node ones, each in its node's namespace with
$MASTER (the master's address:48148) and $IP_<NODE> set; it waits for the --node lines,
kills the rest, and prints the emulator's per-link counters. Each --fault "AT FAULT" runs
FAULT (bench/wan/faults.py: blackhole, heal, flap, loss, set, reset, restore) AT seconds
after the --node lines started. The lab itself is
bench/wan/network.py (wiring), bench/wan/topology.py (the topology language) and
bench/wan/probes.py (the self-check); namespaces come from bench/lib/netns.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

from bench.lib import netns
from bench.wan.faults import seconds_with_unit
from bench.wan.network import Lab, build_emulator, requirements
from bench.wan.probes import selfcheck


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="build a topology, run one command per node, tear down")
    p.add_argument("topology", help='e.g. "peers=3 rtt=100ms rate=400mbit window=512KiB"')
    p.add_argument("--node", action="append", nargs=2, metavar=("NODE", "COMMAND"), default=[],
                   help="run COMMAND (a shell line) in NODE; repeatable; $MASTER, $IP_<NODE>"
                        " are set")
    p.add_argument("--bg", action="append", nargs=2, metavar=("NODE", "COMMAND"), default=[],
                   help="like --node, but not waited for (e.g. the master); killed at the end")
    p.add_argument("--fault", action="append", default=[], metavar='"AT FAULT"',
                   help='e.g. "3s blackhole p0-p1 5s", "2s loss p0 5%% 10s", "4s reset p0-p1";'
                        " AT is counted from the start of the --node lines; repeatable")
    p.add_argument("--timeout", type=float, default=600)
    c = sub.add_parser("selfcheck", help="measure RTT, throughput and forwarding rate")
    c.add_argument("--rtt", type=float, nargs="+", default=[50, 100], help="ms")
    c.add_argument("--rate", default="400mbit")
    c.add_argument("--window", default="512KiB")
    c.add_argument("--mtu", type=int, default=65000)
    c.add_argument("--duration", type=float, default=5.0, help="seconds per throughput check")
    sub.add_parser("cleanup", help="delete namespaces left by dead processes (labs, shaped networks)")
    sub.add_parser("build", help="build the emulator")
    args = parser.parse_args(argv)

    if args.cmd == "build":
        print(build_emulator())
        return 0
    reason = requirements()
    if reason is not None:
        print(f"bench.wan.lab: {reason}", file=sys.stderr)
        return 2
    if args.cmd == "cleanup":
        print("\n".join(netns.cleanup_stale()) or "nothing to clean")
        return 0
    if args.cmd == "selfcheck":
        return selfcheck(args)
    faults = []
    for text in args.fault:
        at, _, line = text.strip().partition(" ")
        try:
            faults.append((seconds_with_unit(at), line))
        except ValueError as e:
            parser.error(f"--fault {text!r}: {e}")
    with Lab(args.topology) as lab:
        env = dict(os.environ)
        if lab.top.master is not None:
            env["MASTER"] = f"{lab.master_ip()}:48148"
        for node in lab.top.nodes:
            env[f"IP_{node.upper()}"] = lab.ip(node)
        for node, cmd in args.bg:
            lab.popen(node, ["sh", "-c", cmd], env=env)
        procs = [(node, lab.popen(node, ["sh", "-c", cmd], env=env)) for node, cmd in args.node]
        failed: list[str] = []
        timers = [threading.Timer(at, _apply_fault, (lab, at, line, failed)) for at, line in faults]
        for timer in timers:
            timer.daemon = True
            timer.start()
        rc = 0
        deadline = time.monotonic() + args.timeout
        for node, proc in procs:
            try:
                code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"bench.wan.lab: {node}: timed out", file=sys.stderr)
                code = 124
            print(f"bench.wan.lab: {node} exited {code}", file=sys.stderr)
            rc = rc or code
        for timer in timers:
            timer.cancel()
        print(json.dumps(lab.stats(), indent=1))
        return rc or (1 if failed else 0)


def _apply_fault(lab: Lab, at: float, line: str, failed: list[str]) -> None:
    try:
        lab.fault(line)
        print(f"bench.wan.lab: {at:g} s: {line}", file=sys.stderr)
    except (ValueError, RuntimeError, OSError) as e:
        failed.append(line)
        print(f"bench.wan.lab: {at:g} s: {line}: failed: {e}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
