"""Heap allocations per call, by layer: what a steady stream of collectives asks of malloc.

`--world` peers (2; one master) run `--calls` collectives of one kind, each result
checked; peer 0 runs under heaptrack (Debian's `heaptrack`: it records every malloc,
calloc, realloc and operator new with its stack). The run is made twice, with two call counts, and the
allocations per call are the difference between them over the difference in calls: what
connecting, warming the pools and exiting cost cancels out. Each allocation is put in one
of two layers by its stack:

  core       a frame of csrc/pccl (link, algo, comm, net, proto: the C++ library); the
             innermost one names the site
  outside    none: the interpreter, numpy, the call's Python code, and pybind11's glue in
             csrc/bindings (heaptrack names no symbol of the glue, so it cannot be told
             apart from the interpreter here)

    python -m bench.allocations [--kinds all_reduce ...] [--calls 100 300] [--world 2]
                                [--json out.json]

Kinds: all_reduce (blocking, in place, with the restore copy), all_reduce_async (the same,
started in the background and waited for), all_reduce_async_norestore (restore_input
False), all_reduce_async_bf16 (bfloat16), all_reduce_async_uint8 (quantized MIN_MAX),
broadcast_async, all_gather_async, reduce_scatter_async, gather_async, scatter_async,
all_to_all_async, send_recv_async (each peer sends to the next in the ring and receives
from the previous one, both at once). With 3 or more peers, gather, scatter and all_to_all
run over the pair links.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from bench.lib.common import emit_json, numpy_dtype

KINDS = ("all_reduce", "all_reduce_async", "all_reduce_async_norestore",
         "all_reduce_async_bf16", "all_reduce_async_uint8", "broadcast_async",
         "all_gather_async", "reduce_scatter_async", "gather_async", "scatter_async",
         "all_to_all_async", "send_recv_async")
COUNT = 300_000  # elements per call: 1.2 MB of float32, a DDP bucket's size
LAYERS = ("core", "outside")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _peer(address: str, rank: int, world: int, kind: str, calls: int) -> None:
    """One of `world` peers: `calls` collectives of `kind`, each result checked (exits 1 on
    a wrong one). Peer r contributes r + 1 everywhere, so a SUM is world(world + 1)/2."""
    import pccl

    comm = pccl.Communicator(address, p2p_connection_pool_size=4)
    comm.connect(timeout=60)
    comm.wait_for_world(world, timeout=60)
    order = comm.ring_order()
    me = order.index(comm.peer_id)
    after, before = order[(me + 1) % world], order[(me - 1) % world]
    dtype = numpy_dtype("bfloat16" if kind == "all_reduce_async_bf16" else "float32")
    mine = float(rank + 1)
    total = float(world * (world + 1) // 2)
    everyone = {float(r + 1) for r in range(world)}
    is_root = comm.peer_id == order[0]  # the broadcast's and the gather's
    t = np.empty(COUNT, dtype)
    gathered = np.empty(world * COUNT, dtype)
    both = np.empty(world * COUNT, dtype)
    sent = np.empty(COUNT, dtype)
    sum_op = pccl.ReduceOp.SUM

    def blocks_hold_everyone(x: np.ndarray) -> bool:
        """Each block of x is one value throughout, and the blocks hold every peer's."""
        firsts = [float(x[b * COUNT]) for b in range(world)]
        lasts = [float(x[(b + 1) * COUNT - 1]) for b in range(world)]
        return firsts == lasts and set(firsts) == everyone

    for i in range(calls):
        t.fill(mine)
        if kind == "all_reduce":
            comm.all_reduce(t, t, op=sum_op)
            ok = t[0] == total and t[-1] == total
        elif kind.startswith("all_reduce_async"):
            restore = kind != "all_reduce_async_norestore"
            quantized = pccl.QuantizationOptions() if kind.endswith("uint8") else None
            comm.all_reduce_async(t, t, op=sum_op, restore_input=restore,
                                  quantization_options=quantized).result()
            ok = t[0] == total and t[-1] == total  # small integers: exact in uint8 too
        elif kind == "broadcast_async":
            t.fill(7.0 if is_root else mine)
            comm.broadcast_async(t, root=order[0]).result()
            ok = t[0] == 7.0 and t[-1] == 7.0
        elif kind == "all_gather_async":
            comm.all_gather_async(t, gathered).result()
            ok = blocks_hold_everyone(gathered)
        elif kind == "gather_async":
            comm.gather_async(t, gathered if is_root else None, root=order[0]).result()
            ok = not is_root or blocks_hold_everyone(gathered)
        elif kind == "scatter_async":  # block b (ascending peer id) holds b + 1
            if is_root and i == 0:  # the send buffer is left as it is: filled once
                gathered.reshape(world, COUNT)[:] = np.arange(1, world + 1, dtype=dtype)[:, None]
            comm.scatter_async(gathered if is_root else None, t, root=order[0]).result()
            ok = t[0] == t[-1] == float(sorted(order).index(comm.peer_id) + 1)
        elif kind == "all_to_all_async":
            gathered.fill(mine)
            comm.all_to_all_async(gathered, both).result()
            ok = blocks_hold_everyone(both)
        elif kind == "reduce_scatter_async":
            gathered.fill(mine)
            comm.reduce_scatter_async(gathered, t, op=sum_op).result()
            ok = t[0] == total and t[-1] == total
        elif kind == "send_recv_async":  # to the next peer, from the previous one
            sent.fill(mine)
            t.fill(0.0)
            sending = comm.send_async(sent, after, tag=1)
            receiving = comm.recv_async(t, before, tag=1)
            sending.result()
            receiving.result()
            ok = t[0] == t[-1] and float(t[0]) in everyone - {mine}
        else:
            raise SystemExit(f"unknown kind {kind}")
        if not ok:
            print(f"peer {rank}: wrong result at call {i}", file=sys.stderr)
            raise SystemExit(1)
    # No peer leaves before every transfer is done: a departure changes the ring, and a
    # change of ring fails the pair transfers still in flight (send/recv between two others).
    last = np.zeros(1, np.float32)
    comm.all_reduce(last, last, op=sum_op)
    comm.close()


def _stacks(trace: str) -> collections.Counter[str]:
    """heaptrack's trace as stack -> allocations (its flame-graph output: root first)."""
    with tempfile.NamedTemporaryFile("r", suffix=".stacks") as out:
        subprocess.run(["heaptrack_print", "-f", trace, "--print-allocators", "0",
                        "--print-peaks", "0", "--print-leaks", "0", "--print-temporary", "0",
                        "-F", out.name, "--flamegraph-cost-type", "allocations"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        counts: collections.Counter[str] = collections.Counter()
        for line in out:
            stack, _, n = line.rstrip().rpartition(" ")
            # Addresses differ from run to run (ASLR): a frame without a symbol is "?".
            counts[re.sub(r"0x[0-9a-f]+", "?", stack)] += int(n)
        return counts


def layer_of(stack: str) -> tuple[str, str]:
    """(layer, site: the innermost pccl frame) of one stack (frames root first)."""
    frames = [f for f in stack.split(";") if "pccl::" in f and "pccl::bindings" not in f]
    if not frames:
        return "outside", ""
    return "core", re.sub(r"\(.*", "", frames[-1]).strip()


def _run(kind: str, calls: int, workdir: str, world: int = 2) -> collections.Counter[str]:
    import pccl

    master = pccl.MasterNode("127.0.0.1:0", daemon=True)
    master.run()
    address = f"127.0.0.1:{master.port}"
    trace = os.path.join(workdir, f"{kind}-{world}-{calls}")
    me = [sys.executable, "-m", "bench.allocations", "--peer", address, kind, str(calls),
          str(world)]
    # From the repository root, whatever the caller's directory (the tests run it too).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get(
        "PYTHONPATH")])))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(subprocess.Popen(["heaptrack", "-o", trace] + me + ["0"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        procs += [subprocess.Popen(me + [str(rank)], env=env, stderr=subprocess.PIPE)
                  for rank in range(1, world)]
        deadline = time.monotonic() + 300
        for p in procs:
            _, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if p.returncode != 0:
                raise RuntimeError(f"{kind}: a peer failed ({p.returncode}): "
                                   f"{err.decode(errors='replace')[-2000:]}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        master.close()
    return _stacks(trace + ".zst")


def measure(kind: str, calls: tuple[int, int], world: int = 2) -> dict[str, Any]:
    """Allocations per call of `kind` among `world` peers by layer, and the core's sites."""
    with tempfile.TemporaryDirectory() as workdir:
        few, many = (_run(kind, n, workdir, world) for n in calls)
    per_call = (calls[1] - calls[0])
    layers: collections.Counter[str] = collections.Counter()
    sites: collections.Counter[str] = collections.Counter()
    for stack in set(few) | set(many):
        extra = many[stack] - few[stack]
        if extra == 0:
            continue
        layer, site = layer_of(stack)
        layers[layer] += extra
        if layer == "core":
            sites[site] += extra
    return {
        "kind": kind,
        "world": world,
        "per_call": {k: round(layers[k] / per_call, 2) for k in LAYERS},
        "core_sites": {k: round(v / per_call, 2) for k, v in sites.most_common(12)
                       if abs(v) / per_call >= 0.05},
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        address, kind, calls, world, rank = sys.argv[2:7]
        _peer(address, int(rank), int(world), kind, int(calls))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--calls", nargs=2, type=int, default=[100, 300])
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if shutil.which("heaptrack") is None:
        raise SystemExit("needs heaptrack (apt-get install heaptrack)")
    rows = [measure(kind, tuple(args.calls), args.world) for kind in args.kinds]
    print(f"Heap allocations per call ({args.calls[0]} and {args.calls[1]} calls of {COUNT} "
          f"elements, {args.world} peers):\n")
    print("| kind | core | outside | core sites (0.05 per call or more) |")
    print("|---|---|---|---|")
    for r in rows:
        p = r["per_call"]
        sites = ", ".join(f"{k} {v}" for k, v in r["core_sites"].items()) or "-"
        print(f"| {r['kind']} | {p['core']} | {p['outside']} | {sites} |")
    emit_json({"date": datetime.date.today().isoformat(), "rows": rows}, args.json, echo=False)


if __name__ == "__main__":
    main()
