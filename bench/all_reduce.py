"""fp32 SUM all-reduce on loopback: pccl vs torch.distributed Gloo vs a plain-socket ring.

Usage: python -m bench.all_reduce [--world 2 4] [--sizes 4KiB 1MiB 16MiB 64MiB 256MiB]
                                  [--backends pccl gloo ceiling] [--iters N] [--pool-size K]
                                  [--json out.json] [--quick]
       python -m bench.all_reduce --quant ...   quantized vs float32 on capped uplinks
                                                (see quant_main below; needs root)

For every world size the script starts one group of N spawned processes per backend and
keeps them for the whole world size; sizes then run interleaved (size 1 on every backend,
then size 2, ...) so that the backends share the same machine conditions. The backends
(bench/lib/loopback.py):

  pccl     a MasterNode in this process, N Communicator peers admitted with
           are_peers_pending()/update_topology(); comm.all_reduce(x, x, op=SUM).
  pccl-auth       (optional) the same in a run with a secret: authenticated connections.
  pccl-encrypted  (optional) the same with transport="encrypted": every frame sealed.
  pccl-exact      (optional) the same with mode=ReduceMode.EXACT.
  pccl-private    (optional) the same with mode=ReduceMode.PRIVATE.
  pccl-verified   (optional) the same with mode=ReduceMode.VERIFIED.
  pccl-norestore  (optional) the same with restore_input=False (no restore copy).
  pccl-uint8      (optional) the same quantized to uint8 (MIN_MAX); not verified (lossy).
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
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.lib.common import bus_factor, dash, emit_json, free_port, parse_size, size_name
from bench.lib.loopback import PCCL_AUTH, Group
from bench.lib.procs import BenchError
from bench.lib.shaped import ShapedNetwork, run_plan, slowest, unavailable_reason

DEFAULT_SIZES = ["4KiB", "1MiB", "16MiB", "64MiB", "256MiB"]
QUICK_SIZES = ["4KiB", "64KiB", "1MiB"]
BACKENDS = ["pccl", "gloo", "ceiling"]
ALL_BACKENDS = ["pccl", "pccl-norestore", "pccl-auth", "pccl-encrypted", "pccl-exact",
                "pccl-private", "pccl-verified", "pccl-uint8", "gloo", "ceiling"]
SETUP_ATTEMPTS = 3  # a group that fails to start is started again this many times in all


def default_iters(n_bytes: int) -> int:
    """About 1 GiB of payload per measurement: 200 at <= 5 MiB, 64 at 16 MiB, 4 at 256 MiB."""
    return max(4, min(200, (1 << 30) // n_bytes))


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
    print(f"{'backend':14} {'world':>5} {'size':>7} {'iters':>5} {'time/op':>10} "
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
        print(f"{r['backend']:14} {r['world']:5d} {r['size']:>7} {r['iters']:5d} {t_text:>10} "
              f"{r['algbw_gbps']:7.3f} {r['busbw_gbps']:7.3f} "
              f"{dash(frac, '.0%'):>7} {r['cores']:5.2f} "
              f"{r['cpu_s_per_bus_gb']:8.2f} {'-' if vs is None else format(vs, '.2f') + 'x':>7} "
              f"{ok}")


# --- main ----------------------------------------------------------------------------------

def main() -> int:
    if "--quant" in sys.argv[1:]:  # the shaped-network quantization benchmark
        return quant_main(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=None,
                        help=f"default {' '.join(DEFAULT_SIZES)}")
    parser.add_argument("--iters", type=int, default=None,
                        help="timed ops per measurement (default: by size, 200 small .. 4 at 256 MiB)")
    parser.add_argument("--pool-size", type=int, default=0,
                        help="pccl p2p_connection_pool_size (default 0: the library default)")
    parser.add_argument("--backends", nargs="+", default=BACKENDS, choices=ALL_BACKENDS,
                        help="pccl-auth: a run with a secret; pccl-encrypted: "
                             "transport='encrypted' (default: %(default)s)")
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
    masters: list[Any] = []  # the pccl variants' masters of the current world size
    groups: list[Group] = []
    failed = False
    started = time.monotonic()
    try:
        for world in args.world:
            groups = []
            for backend in args.backends:
                t0 = time.monotonic()
                for attempt in range(1, SETUP_ATTEMPTS + 1):
                    if backend in PCCL_AUTH:  # a fresh master per world: epochs from scratch
                        import pccl

                        secret, transport = PCCL_AUTH[backend]
                        master = pccl.MasterNode("127.0.0.1:0", daemon=True, secret=secret,
                                                 transport=transport)
                        master.run()
                        masters.append(master)
                        setup = {"address": f"127.0.0.1:{master.port}",
                                 "pool_size": args.pool_size, "secret": secret,
                                 "transport": transport, "variant": backend}
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
                        if backend in PCCL_AUTH:
                            masters.pop().close()
                        if attempt == SETUP_ATTEMPTS:
                            raise
                print(f"# world {world}: {backend} ready in {time.monotonic() - t0:.1f} s "
                      f"{groups[-1].info}", file=sys.stderr, flush=True)
                if backend in PCCL_AUTH:
                    meta["pccl_isa"] = groups[-1].info["isa"]
                if backend == "gloo":
                    meta["torch"] = groups[-1].info["torch"]
            for n_bytes in sizes:
                iters = iters_for(n_bytes)
                for group in groups:
                    c0 = time.process_time()
                    results = group.run(n_bytes, iters)
                    mcpu = time.process_time() - c0 if group.backend in PCCL_AUTH else None
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
            while masters:
                masters.pop().close()
    except (BenchError, OSError, KeyboardInterrupt) as e:
        print(f"bench.all_reduce: {e}", file=sys.stderr)
        failed = True
    finally:
        for group in groups:
            group.close(graceful=False)
        while masters:
            masters.pop().close()

    meta["seconds"] = time.monotonic() - started
    if "pccl_isa" in meta:
        print(f"pccl: ISA {meta['pccl_isa']}, p2p_connection_pool_size {pool_text}")
    print(f"{meta['cpus']} CPUs; time/op = {meta['timing']}; busbw = algbw x 2(n-1)/n; "
          f"cores = peer CPU time / loop wall; cpu-s/GB per GB of bus traffic; "
          f"vs gloo = Gloo time / this time")
    print_table(rows)
    emit_json({"meta": meta, "rows": rows}, args.json)
    if failed:
        print("bench.all_reduce: FAILED (verification or run error)", file=sys.stderr)
        return 1
    return 0


# --- --quant: quantized vs float32 on bandwidth-limited links --------------------------------

def quant_main(argv: list[str]) -> int:
    """Quantized vs float32 all-reduce on capped uplinks (`--quant`; needs root).

    Every peer sits in its own network namespace behind one router, with its uplink capped
    by tc htb (bench/lib/shaped.py), as on a home or cloud link. The same Gaussian float32
    tensors are all-reduced (SUM) as plain float32, and quantized to uint16 and uint8
    (MIN_MAX); prints the slowest peer's median time, the speed-up over float32, the bytes
    each peer sent, and the relative RMS error against the exact float64 sum (float32 must
    be exact to rounding).
    """
    parser = argparse.ArgumentParser(description=(quant_main.__doc__ or "").splitlines()[0])
    parser.add_argument("--quant", action="store_true", help="(selects this benchmark)")
    parser.add_argument("--peers", type=int, default=3)
    parser.add_argument("--uplink-mbit", type=float, default=500)
    parser.add_argument("--size", type=parse_size, default=32 << 20)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"quantized bench skipped: {reason}", file=sys.stderr)
        return 2
    hosts = [f"p{i}" for i in range(args.peers)]
    kinds = [None, "uint16", "uint8"]
    plan = [{"op": "allreduce", "bytes": args.size, "iters": args.iters, "quant": q} for q in kinds]
    with ShapedNetwork({"R": hosts}, inter_region_mbit=None, uplink_mbit=args.uplink_mbit) as net:
        outputs = run_plan(net, hosts, plan)
    rows = []
    for step, kind in enumerate(kinds):
        times = slowest(outputs, step)
        rows.append({"wire": kind or "float32", "median_s": statistics.median(times),
                     "times": times, "tx_bytes": max(o[step]["tx_bytes"] for o in outputs),
                     "rel_rms_error": max(o[step]["rel_rms_error"] for o in outputs)})
    base = rows[0]["median_s"]
    print(f"{args.peers} peers, uplinks capped at {args.uplink_mbit:g} Mbit/s, "
          f"{args.size >> 20} MiB float32 SUM, MIN_MAX quantization")
    print(f"{'wire':>8} {'median s':>9} {'speed-up':>9} {'MiB sent/peer':>14} {'rel RMS err':>12}")
    for r in rows:
        r["speedup"] = base / r["median_s"]
        print(f"{r['wire']:>8} {r['median_s']:9.3f} {r['speedup']:8.2f}x "
              f"{r['tx_bytes'] / (1 << 20):14.1f} {r['rel_rms_error']:12.2e}")
    ok = rows[0]["rel_rms_error"] < 1e-6 and all(r["rel_rms_error"] < 0.05 for r in rows)
    if not ok:
        print("RESULT CHECK FAILED", file=sys.stderr)
    emit_json({"peers": args.peers, "uplink_mbit": args.uplink_mbit, "bytes": args.size,
               "rows": rows}, args.json, indent=2, echo=False)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
