"""fp32 broadcast, all-gather, reduce-scatter, gather, scatter, all-to-all and send/recv on
loopback: pccl vs torch.distributed Gloo.

Usage: python -m bench.collectives [--world 2 4] [--sizes 1MiB 16MiB 64MiB 256MiB]
                                   [--ops broadcast all_gather reduce_scatter gather scatter
                                          all_to_all send_recv send_recv_any]
                                   [--iters N] [--repeat K] [--json out.json] [--quick]
                                   [--restore]

  --quick   smoke run: world 2, sizes 1MiB 4MiB, a fifth of the iterations (at least 4).
  --repeat  measures every (op, size) K times, pccl and Gloo taking turns, and reports each
            backend's median run (JSON: every run's time in repeat_times_s). Single runs
            on this 2-core machine swing by 10-20 %, more than most of the gaps measured.
  --restore pccl's broadcast runs with restore_input=True: its receivers copy their buffer
            first, so that a failed broadcast gives it back (the default, as Gloo, does not).

"size" is, per op: the broadcast buffer's bytes; the all-gather's and the gather's OUTPUT
bytes (each peer contributes size/N); the reduce-scatter's and the scatter's INPUT bytes
(each peer receives size/N); the all-to-all's buffer (N blocks each way). When size/N is
not a whole number of float32 the block is rounded down (JSON: actual_bytes). The root of
gather and scatter is rank 0 (Gloo's dist.gather / dist.scatter; all-to-all:
dist.all_to_all_single). send_recv: every rank sends its buffer (size) to the next rank
and receives the previous rank's at the same time; send_recv_any receives it from any
source (only the previous rank sends to it).

For every world size the script starts one group of N spawned processes per backend and
keeps both for every op and size of that world size; each (op, size) then runs on pccl,
then on Gloo, so that the two share the same machine conditions
(bench/lib/collectives_peers.py):

  pccl  a MasterNode in this process, N Communicator peers admitted with
        are_peers_pending()/update_topology(); comm.broadcast(x, root=<lowest peer id>),
        comm.all_gather(send, recv), comm.reduce_scatter(send, recv, op=SUM); blocks in
        ascending peer id.
  gloo  torch.distributed, backend "gloo", tcp://127.0.0.1 rendezvous; dist.broadcast(x,
        src=0), dist.all_gather_into_tensor(out, inp), dist.reduce_scatter_tensor(out, inp)
        (or dist.reduce_scatter(out, inputs), or all_reduce + slice, labelled "*" in the
        table, whichever this torch's Gloo supports; probed at start-up).

Per (op, size, backend) every peer: fills inputs that differ per rank (integer-valued
float32, a different pattern per block, so sums are exact and misplaced blocks show), runs
a verified warm-up call (compared element by element with the result computed locally:
broadcast = the root's data; all-gather = every rank's block in rank / peer-id order;
reduce-scatter = the exact sum of this rank's block), more warm-up calls up to 1 MiB, a
tiny all-reduce as a barrier, then `iters` timed calls (about 1 GiB of payload: 200 at
<= 5 MiB, 64 at 16 MiB, 4 at 256 MiB; --iters overrides), re-checks the last timed result,
and makes one more verified call with other inputs.

time/op = max over peers of the mean (loop wall / iters); "gloo/pccl" = Gloo time / pccl
time (> 1: pccl is faster). tx/theory = mean over peers of the bytes each pccl peer sent
per op (ReduceInfo.tx_bytes) / the algorithm's figure: broadcast: the root and every
peer but the one just before the root in the ring send `size`, that one 0 (mean
size(N-1)/N); all-gather and reduce-scatter: every peer sends (N-1) x size/N; gather,
scatter and all-to-all send each block once, straight to its destination: gather: every
peer but the root its block; scatter: the root N-1 blocks; all-to-all: every peer N-1. The JSON
holds every peer's time, tx and theory. Exits non-zero if any verification fails or
anything times out; children are killed on every failure path.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.lib.collectives_peers import OPS, CollGroup, layout
from bench.lib.common import dash, emit_json, free_port, parse_size, size_name
from bench.lib.procs import BenchError

DEFAULT_SIZES = ["1MiB", "16MiB", "64MiB", "256MiB"]
QUICK_SIZES = ["1MiB", "4MiB"]
BACKENDS = ["pccl", "gloo"]
SETUP_ATTEMPTS = 3  # a group that fails to start is started again this many times in all


def default_iters(n_bytes: int) -> int:
    """About 1 GiB of payload per measurement: 200 at <= 5 MiB, 64 at 16 MiB, 4 at 256 MiB."""
    return max(4, min(200, (1 << 30) // n_bytes))


# --- groups ----------------------------------------------------------------------------------

class Backends:
    """The groups (and the pccl master) of one world size; closes them all."""

    def __init__(self, restore: bool, pool_size: int = 0) -> None:
        self.groups: dict[str, CollGroup] = {}
        self.master: Any = None
        self.restore = restore  # pccl's broadcast keeps its restore copy
        self.pool_size = pool_size  # pccl's connections per link (0: its default, 8)

    def start(self, backend: str, world: int, meta: dict[str, Any]) -> CollGroup:
        """Starts `backend`'s group, again up to SETUP_ATTEMPTS times if setup fails."""
        for attempt in range(1, SETUP_ATTEMPTS + 1):
            try:
                group = CollGroup(backend, world, self._setup(backend))
                self.groups[backend] = group
                return group
            except BenchError as e:
                # pccl admission has been seen to fail now and then (bench/all_reduce.py):
                # start the whole group again rather than give up the run.
                first = str(e).splitlines()[0]
                print(f"# world {world}: {backend} setup attempt {attempt} failed: {first}",
                      file=sys.stderr, flush=True)
                meta["setup_failures"].append({"backend": backend, "world": world,
                                               "error": first})
                if backend == "pccl":
                    self._close_master()
                if attempt == SETUP_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _setup(self, backend: str) -> dict[str, Any]:
        if backend == "gloo":
            return {"port": free_port()}
        import pccl

        self.master = pccl.MasterNode("127.0.0.1:0", daemon=True)
        self.master.run()
        return {"address": f"127.0.0.1:{self.master.port}", "restore": self.restore,
                "pool_size": self.pool_size}

    def _close_master(self) -> None:
        if self.master is not None:
            self.master.close()
            self.master = None

    def close(self, *, graceful: bool) -> None:
        for group in self.groups.values():
            group.close(graceful=graceful)
        self.groups = {}
        self._close_master()


# --- reporting -----------------------------------------------------------------------------

def summarize(backend: str, op: str, world: int, n_bytes: int, iters: int,
              results: list[dict[str, Any]]) -> dict[str, Any]:
    """One row: the slowest peer's mean time per op, verification, and (pccl) tx bytes."""
    t = max(r["wall"] for r in results) / iters
    actual = layout(op, n_bytes, world)[1] * 4
    row: dict[str, Any] = {
        "backend": backend, "op": op, "world": world, "bytes": n_bytes,
        "actual_bytes": actual, "size": size_name(n_bytes), "iters": iters, "time_s": t,
        "median_time_s": max(r["median"] for r in results), "algbw_gbps": actual / t / 1e9,
        "verified": all(r["ok"] for r in results),
        "peers": [{k: r.get(k) for k in ("rank", "peer_id", "wall", "median", "checks",
                                         "tx_per_op", "theory_tx")} for r in results],
    }
    if backend == "pccl":
        tx = [r["tx_per_op"] for r in results]
        theory = [r["theory_tx"] for r in results]
        row["tx_mean_per_peer"] = sum(tx) / world
        row["theory_mean_per_peer"] = sum(theory) / world
        row["tx_over_theory"] = (sum(tx) / sum(theory)) if sum(theory) else None
        # each peer's own tx against its own figure (a broadcast's split is uneven)
        row["tx_worst_peer_deviation"] = max(abs(a - b) for a, b in zip(tx, theory)) / actual
    return row


def print_table(world: int, rows: list[dict[str, Any]], rs_label: str | None) -> None:
    pccl = {(r["op"], r["bytes"]): r for r in rows if r["backend"] == "pccl"}
    gloo = {(r["op"], r["bytes"]): r for r in rows if r["backend"] == "gloo"}
    keys = list(dict.fromkeys((r["op"], r["bytes"]) for r in rows))
    print(f"\nworld {world}" + (f"  (gloo reduce_scatter: {rs_label})" if rs_label else ""))
    print(f"{'op':16} {'size':>7} {'iters':>5} {'pccl ms':>9} {'gloo ms':>9} "
          f"{'gloo/pccl':>9} {'tx/theory':>9} {'pccl GB/s':>9} {'gloo GB/s':>9} ok")
    for op, n in keys:
        p, g = pccl.get((op, n)), gloo.get((op, n))
        ratio = g["time_s"] / p["time_s"] if p and g else None
        if p and g:
            p["gloo_over_pccl"] = ratio
        first = p or g
        assert first is not None
        ok = all(r["verified"] for r in (p, g) if r)
        label = op + ("*" if op == "reduce_scatter" and rs_label == "all_reduce+slice" else "")
        print(f"{label:16} {first['size']:>7} {first['iters']:5d} "
              f"{dash(p and p['time_s'] * 1e3, '.3f'):>9} "
              f"{dash(g and g['time_s'] * 1e3, '.3f'):>9} "
              f"{dash(ratio, '.2f'):>9} {dash(p and p['tx_over_theory'], '.3f'):>9} "
              f"{dash(p and p['algbw_gbps'], '.3f'):>9} {dash(g and g['algbw_gbps'], '.3f'):>9} "
              f"{'yes' if ok else 'NO'}")


# --- main ----------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--world", type=int, nargs="+", default=None,
                        help="world sizes (default 2 4; --quick: 2)")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=None,
                        help=f"default {' '.join(DEFAULT_SIZES)} "
                             f"(--quick: {' '.join(QUICK_SIZES)})")
    parser.add_argument("--ops", nargs="+", default=list(OPS), choices=OPS)
    parser.add_argument("--iters", type=int, default=None,
                        help="timed ops per measurement (default: about 1 GiB, 4..200)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per (op, size), pccl and Gloo taking turns; the median "
                             "run of each is reported (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: world 2, sizes 1MiB 4MiB, fewer iterations")
    parser.add_argument("--pool-size", type=int, default=0,
                        help="pccl's connections per link (default 0: pccl's default, 8)")
    parser.add_argument("--restore", action="store_true",
                        help="pccl's broadcast with restore_input=True (a copy per call)")
    args = parser.parse_args()
    args.world = args.world or ([2] if args.quick else [2, 4])
    if any(w < 2 for w in args.world):
        parser.error("--world sizes must be >= 2")
    if args.iters is not None and args.iters < 1:
        parser.error("--iters must be >= 1")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    args.sizes = args.sizes or [parse_size(s) for s in (QUICK_SIZES if args.quick
                                                         else DEFAULT_SIZES)]
    for w in args.world:
        for n in args.sizes:
            if n // 4 < w:
                parser.error(f"size {n} B is less than one float32 per peer at world {w}")
    return args


def iters_for(args: argparse.Namespace, n_bytes: int) -> int:
    if args.iters is not None:
        return int(args.iters)
    return max(4, default_iters(n_bytes) // 5) if args.quick else default_iters(n_bytes)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median time (the lower one of an even count), with every run's time and
    verified only if every run was."""
    row = dict(sorted(runs, key=lambda r: r["time_s"])[(len(runs) - 1) // 2])
    row["repeat_times_s"] = [r["time_s"] for r in runs]
    row["verified"] = all(r["verified"] for r in runs)
    return row


def run_world(args: argparse.Namespace, world: int, backends: Backends,
              meta: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Every (op, size) of one world size, pccl then Gloo each (--repeat times, taking
    turns); appends each backend's median run to `rows`."""
    for backend in BACKENDS:
        t0 = time.monotonic()
        group = backends.start(backend, world, meta)
        print(f"# world {world}: {backend} ready in {time.monotonic() - t0:.1f} s "
              f"{group.info}", file=sys.stderr, flush=True)
        meta["worlds"].setdefault(str(world), {})[backend] = group.peer_info
    for op in args.ops:
        for n_bytes in args.sizes:
            iters = iters_for(args, n_bytes)
            runs: dict[str, list[dict[str, Any]]] = {backend: [] for backend in BACKENDS}
            for _ in range(args.repeat):
                for backend in BACKENDS:
                    results = backends.groups[backend].run(op, n_bytes, iters)
                    row = summarize(backend, op, world, n_bytes, iters, results)
                    runs[backend].append(row)
                    tx = (f", tx/theory {row['tx_over_theory']:.3f}"
                          if row.get("tx_over_theory") is not None else "")
                    print(f"# {backend} world {world} {op} {row['size']}: "
                          f"{row['time_s'] * 1e3:.3f} ms/op{tx}"
                          f"{'' if row['verified'] else '  VERIFICATION FAILED'}",
                          file=sys.stderr, flush=True)
            rows.extend(median_run(runs[backend]) for backend in BACKENDS)


def main() -> int:
    args = parse_args()
    meta: dict[str, Any] = {"cpus": os.cpu_count(), "setup_failures": [], "worlds": {},
                            "timing": "max over peers of mean op time (loop wall / iters)"}
    tables: list[tuple[int, list[dict[str, Any]], str | None]] = []
    failed = False
    started = time.monotonic()
    backends = Backends(args.restore, args.pool_size)
    try:
        for world in args.world:
            world_rows: list[dict[str, Any]] = []
            tables.append((world, world_rows, None))  # shown even if the world fails
            run_world(args, world, backends, meta, world_rows)
            gloo = backends.groups["gloo"].info
            meta.setdefault("torch", gloo["torch"])
            meta["gloo_reduce_scatter"] = gloo["reduce_scatter"]
            meta.setdefault("pccl_isa", backends.groups["pccl"].info["isa"])
            rs = gloo["reduce_scatter"] if "reduce_scatter" in args.ops else None
            tables[-1] = (world, world_rows, rs)
            backends.close(graceful=True)
    except (BenchError, OSError, KeyboardInterrupt) as e:
        print(f"bench.collectives: {e}", file=sys.stderr)
        failed = True
    finally:
        backends.close(graceful=False)

    rows = [r for _, done, _ in tables for r in done]
    failed |= any(not r["verified"] for r in rows)
    meta["seconds"] = time.monotonic() - started
    print(f"{meta['cpus']} CPUs; pccl ISA {meta.get('pccl_isa', '?')}, torch "
          f"{meta.get('torch', '?')}; time/op = {meta['timing']}; gloo/pccl = Gloo time / "
          f"pccl time (>1: pccl faster); tx/theory = pccl mean tx bytes per peer / the "
          f"algorithm's figure; GB/s = size / time")
    for world, world_rows, rs in tables:
        print_table(world, world_rows, rs)
    if args.json:
        emit_json({"meta": meta, "rows": rows}, args.json, echo=False)
    if failed:
        print("bench.collectives: FAILED (verification or run error)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
