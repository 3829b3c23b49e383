"""DiLoCo vs async DiLoCo vs DDP on the example model: time per outer step and bytes sent.

Usage: python -m bench.diloco [--peers 3] [--inner-steps 40] [--steps 8] [--warmup 2]
                              [--hidden 512] [--repeat 3] [--json out.json]

All modes train examples/diloco_train.py's MLP on the sklearn digits (each peer on its own
shard) with the same per-peer work per "outer step": H = --inner-steps AdamW steps of one
batch each. `--peers` spawned processes per mode, one mode after another, in one run.

  diloco        pccl.diloco.DiLoCo: H local steps, then one outer step (all-reduce of the
                pseudo-gradient, outer SGD step, shared-state sync).
  diloco uint8  the same with uint8 (MIN_MAX) quantized pseudo-gradients.
  async diloco  asynchronous=True: the all-reduce overlaps the next H steps.
  ddp pccl      torch DistributedDataParallel over the "pccl" torch.distributed backend
                (`import pccl.torch`); a gradient all-reduce after every one of the H steps.
                Printed as "pccl backend not available" when that module is missing. A
                MasterNode runs in this process and the workers get its address in
                PCCL_MASTER_ADDR (an assumption about the backend, which is not written
                yet); torch's tcp:// rendezvous uses another port.
  ddp gloo      the same over Gloo.

Time: wall seconds per outer step (H inner steps plus communication), the slowest peer's
mean over --steps timed outer steps after --warmup, and for DiLoCo the part spent inside
outer_step() (blocked on communication, plus the outer optimizer step); the median over
--repeat rounds, the modes interleaved within each round. Bytes sent per peer per outer step:
for DiLoCo measured by pccl (ReduceInfo.tx_bytes of the all-reduces plus the shared-state
syncs' tx_bytes, as pccl counts them); for DDP computed, not measured: a communication
hook records the size of every gradient bucket DDP all-reduces, and a ring all-reduce sends
2(n-1)/n of a bucket's bytes from each peer. Verified: every peer ends with bit-identical
parameters (DiLoCo: outer state hashes; DDP: parameter hashes). Exits non-zero otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.lib.common import dash, emit_json, free_port
from bench.lib.procs import ctx, stop_workers

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300.0


def _example() -> Any:
    """examples/diloco_train.py as a module: the model, data and augmentation."""
    sys.path.insert(0, str(ROOT / "examples"))
    import diloco_train

    return diloco_train


def _inner_steps(model: Any, inner: Any, data: tuple[Any, ...], gen: Any, h: int,
                 batch: int) -> None:
    import torch

    ex = _example()
    x_train, y_train = data[0], data[1]
    for _ in range(h):
        idx = torch.randint(len(x_train), (batch,), generator=gen)
        loss = torch.nn.functional.cross_entropy(model(ex.augment(x_train[idx], gen)), y_train[idx])
        inner.zero_grad()
        loss.backward()
        inner.step()


def _param_hash(tensors: list[Any]) -> tuple[int, ...]:
    import pccl

    return tuple(pccl.kernels.hash64(t.detach().reshape(-1).contiguous()) for t in tensors)


def diloco_worker(rank: int, n: int, address: str, args: dict[str, Any], mode: str
                  ) -> dict[str, Any]:
    import pccl
    import torch
    from pccl.diloco import DiLoCo

    ex = _example()
    data = ex.load_shard(rank, n, 0)
    torch.manual_seed(rank)
    model = ex.build_model(args["hidden"])
    inner = torch.optim.AdamW(model.parameters(), lr=1e-4)
    comm = pccl.Communicator(address, p2p_connection_pool_size=2)
    comm.connect(timeout=60)
    comm.wait_for_world(n)
    quantization = pccl.QuantizationOptions(pccl.DataType.UINT8) if "uint8" in mode else None
    diloco = DiLoCo(model, inner, comm, asynchronous=mode.startswith("async"),
                    quantization=quantization)
    diloco.start()
    gen = torch.Generator().manual_seed(rank)
    times, outer, tx = [], [], []
    for step in range(args["warmup"] + args["steps"]):
        t0 = time.perf_counter()
        _inner_steps(model, inner, data, gen, args["inner_steps"], args["batch"])
        t1 = time.perf_counter()
        info = diloco.outer_step()
        if step >= args["warmup"]:
            times.append(time.perf_counter() - t0)
            outer.append(time.perf_counter() - t1)
            tx.append(info.tx_bytes)
    diloco.close()
    digest = diloco.state_hashes()
    comm.close()
    return {"times": times, "outer": outer, "tx": tx, "hash": digest,
            "params": diloco.state.numel}


def ddp_worker(rank: int, n: int, address: str, args: dict[str, Any], backend: str,
               pccl_master: str | None = None) -> dict[str, Any]:
    import torch
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.nn.parallel import DistributedDataParallel

    if backend == "pccl":
        # Assumed interface: the backend reads the pccl master from PCCL_MASTER_ADDR (as
        # under pccl-run); torch's tcp:// rendezvous is separate.
        os.environ["PCCL_MASTER_ADDR"] = str(pccl_master)
        import pccl.torch  # noqa: F401  registers the backend
    dist.init_process_group(backend, init_method=f"tcp://{address}", rank=rank, world_size=n)
    ex = _example()
    data = ex.load_shard(rank, n, 0)
    torch.manual_seed(0)
    model = DistributedDataParallel(ex.build_model(args["hidden"]))
    bucket_bytes = [0]

    def counting_hook(state, bucket):  # type: ignore[no-untyped-def]  (DDP checks annotations)
        buffer = bucket.buffer()
        bucket_bytes[0] += buffer.numel() * buffer.element_size()
        return allreduce_hook(state, bucket)

    model.register_comm_hook(None, counting_hook)
    inner = torch.optim.AdamW(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(rank)
    times, tx = [], []
    for step in range(args["warmup"] + args["steps"]):
        bucket_bytes[0] = 0
        t0 = time.perf_counter()
        _inner_steps(model, inner, data, gen, args["inner_steps"], args["batch"])
        if step >= args["warmup"]:
            times.append(time.perf_counter() - t0)
            tx.append(bucket_bytes[0] * 2 * (n - 1) / n)  # ring all-reduce, per peer
    digest = _param_hash(list(model.parameters()))
    dist.destroy_process_group()
    return {"times": times, "tx": tx, "hash": digest,
            "params": sum(p.numel() for p in model.parameters())}


def _worker_main(conn: Connection, fn: Any, *fn_args: Any) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
        conn.send(("ok", fn(*fn_args)))
    except BaseException as e:  # noqa: BLE001 - reported to the parent
        conn.send(("error", f"{type(e).__name__}: {e}", traceback.format_exc()))


def run_mode(name: str, n: int, args: dict[str, Any]) -> dict[str, Any]:
    """Runs one mode on n spawned peers; returns its row (or raises on failure)."""
    master = None
    if "diloco" in name or name == "ddp pccl":
        import pccl

        master = pccl.MasterNode("127.0.0.1:0", daemon=True)
        master.run()
    if "diloco" in name:
        address = f"127.0.0.1:{master.port}"
        extra: tuple[Any, ...] = (name,)
        fn = diloco_worker
    else:
        address = f"127.0.0.1:{free_port()}"
        backend = name.split()[1]
        extra = (backend, f"127.0.0.1:{master.port}") if master is not None else (backend,)
        fn = ddp_worker
    conns, procs = [], []
    ok = False
    try:
        for rank in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main,
                                args=(child, fn, rank, n, address, args, *extra))
            proc.start()
            child.close()
            conns.append(parent)
            procs.append(proc)
        results = []
        deadline = time.monotonic() + TIMEOUT
        for rank, conn in enumerate(conns):
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"{name}: peer {rank} did not finish in {TIMEOUT} s")
            reply = conn.recv()
            if reply[0] != "ok":
                raise RuntimeError(f"{name}: peer {rank}: {reply[1]}\n{reply[2]}")
            results.append(reply[1])
        ok = True
    finally:
        stop_workers(conns, procs, graceful=ok)
        if master is not None:
            master.close()
    if len({tuple(r["hash"]) for r in results}) != 1:
        raise RuntimeError(f"{name}: peers ended with different parameters")
    step_s = max(sum(r["times"]) / len(r["times"]) for r in results)
    outer_s = (max(sum(r["outer"]) / len(r["outer"]) for r in results)
               if "outer" in results[0] else None)
    tx = sum(sum(r["tx"]) / len(r["tx"]) for r in results) / len(results)
    return {"mode": name, "peers": n, "inner_steps": args["inner_steps"],
            "params": results[0]["params"], "s_per_outer_step": step_s,
            "s_in_outer_step_call": outer_s,
            "mb_sent_per_peer_per_outer_step": tx / 1e6,
            "bytes": "measured by pccl" if "diloco" in name else "computed from DDP buckets"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--peers", type=int, default=3)
    p.add_argument("--inner-steps", type=int, default=40)
    p.add_argument("--steps", type=int, default=8, help="timed outer steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed outer steps first")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--repeat", type=int, default=3, help="rounds over all modes (median)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    args = {"inner_steps": a.inner_steps, "steps": a.steps, "warmup": a.warmup,
            "batch": a.batch, "hidden": a.hidden}
    try:
        import pccl.torch  # noqa: F401
        have_backend = True
    except ImportError:
        have_backend = False

    modes = ("diloco", "diloco uint8", "async diloco", "ddp pccl", "ddp gloo")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in modes}
    errors: dict[str, str] = {}
    if not have_backend:
        errors["ddp pccl"] = "pccl backend not available"
    for _ in range(a.repeat):  # modes interleaved, so that load changes hit all of them
        for name in modes:
            if name in errors:
                continue
            try:
                runs[name].append(run_mode(name, a.peers, args))
            except Exception as e:  # noqa: BLE001 - reported in the table, exit status 1
                errors[name] = str(e).splitlines()[0]
                print(e, file=sys.stderr)
    rows: list[dict[str, Any]] = []
    for name in modes:
        if name in errors:
            rows.append({"mode": name, "error": errors[name]})
            continue
        row = dict(runs[name][0])
        for key in ("s_per_outer_step", "s_in_outer_step_call"):
            if row[key] is not None:  # the median over repetitions
                row[key] = statistics.median(r[key] for r in runs[name])
        row["repeats"] = len(runs[name])
        rows.append(row)
    failed = any(e != "pccl backend not available" for e in errors.values())

    print(f"\n{a.peers} peers, H = {a.inner_steps} inner steps of batch {a.batch} per outer step, "
          f"MLP 64-{a.hidden}-{a.hidden}-10\n")
    print("| mode | s / outer step | of which in outer_step() | MB sent / peer / outer step "
          "| bytes |")
    print("|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['mode']} | {r['error']} | | | |")
        else:
            inside = r["s_in_outer_step_call"]
            print(f"| {r['mode']} | {r['s_per_outer_step']:.3f} | "
                  f"{dash(inside, '.3f')} | "
                  f"{r['mb_sent_per_peer_per_outer_step']:.2f} | {r['bytes']} |")
    emit_json({"args": args, "peers": a.peers, "rows": rows}, a.json, indent=2, echo=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
