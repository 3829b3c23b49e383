"""CUDA tensors through torch.distributed: backend "pccl" (staged through host memory) vs
Gloo (which also reduces on the host), and pccl on CPU tensors of the same size.

Usage: python -m bench.torch_cuda [--world 2] [--sizes 1MiB 16MiB 64MiB] [--iters 5]

Needs a CUDA device (every rank uses device rank % device_count). For every backend the
script starts `world` ranks (subprocesses of this script, tcp:// rendezvous on loopback).
Each rank runs, per size: one verified all-reduce (integer-valued float32 inputs that
differ per rank, so the sum is exact and is compared element by element), then `iters`
timed in-place SUM all-reduces with torch.cuda.synchronize() before and after the loop.
time/op = max over ranks of (loop wall / iters). The "pccl-cpu" row runs the same on CPU
tensors: the difference to "pccl" is what staging through host memory costs. Exits
non-zero when a verification fails or a rank does not finish in time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.lib.common import free_port, parse_size, size_name

BACKENDS = [("pccl", "cuda"), ("gloo", "cuda"), ("pccl", "cpu")]
RANK_TIMEOUT_S = 300


def rank_main(backend: str, device_kind: str, rank: int, world: int, port: int,
              sizes: list[int], iters: int, out: str) -> None:
    import pccl.torch  # noqa: F401 - registers the "pccl" backend
    import torch
    import torch.distributed as dist

    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=120))
    device = (torch.device("cuda", rank % torch.cuda.device_count())
              if device_kind == "cuda" else torch.device("cpu"))
    sync = torch.cuda.synchronize if device_kind == "cuda" else (lambda: None)
    times = {}
    for size in sizes:
        count = size // 4
        x = torch.arange(count, dtype=torch.float32, device=device) % 1000 + rank
        dist.all_reduce(x)
        expected = (torch.arange(count, dtype=torch.float32, device=device) % 1000) * world \
            + sum(range(world))
        if not torch.equal(x, expected):
            raise SystemExit(f"rank {rank}: wrong sum at {size_name(size)}")
        x.zero_()
        dist.barrier()
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(x)
        sync()
        times[size] = (time.perf_counter() - start) / iters
        if torch.count_nonzero(x).item() != 0:
            raise SystemExit(f"rank {rank}: zeros did not stay zero at {size_name(size)}")
    dist.destroy_process_group()
    Path(out).write_text(json.dumps({str(k): v for k, v in times.items()}))


def run_backend(backend: str, device_kind: str, world: int, sizes: list[int],
                iters: int) -> dict[int, float]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        outs = [os.path.join(tmp, f"{rank}.json") for rank in range(world)]
        procs = [subprocess.Popen([sys.executable, "-m", "bench.torch_cuda", "--rank",
                                   backend, device_kind, str(rank), str(world), str(port),
                                   ",".join(map(str, sizes)), str(iters), outs[rank]])
                 for rank in range(world)]
        deadline = time.monotonic() + RANK_TIMEOUT_S
        try:
            for proc in procs:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise SystemExit(f"{backend}/{device_kind}: a rank did not finish in time")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if any(proc.returncode != 0 for proc in procs):
            raise SystemExit(f"{backend}/{device_kind}: a rank failed")
        per_rank = [json.loads(Path(o).read_text()) for o in outs]
    return {size: max(r[str(size)] for r in per_rank) for size in sizes}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--rank":
        b, d, rank, world, port, sizes, iters, out = sys.argv[2:10]
        rank_main(b, d, int(rank), int(world), int(port),
                  [int(s) for s in sizes.split(",")], int(iters), out)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--sizes", nargs="+", default=["1MiB", "16MiB", "64MiB"])
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    import torch
    if not torch.cuda.is_available():
        raise SystemExit("bench.torch_cuda needs a CUDA device")
    sizes = [parse_size(s) for s in args.sizes]
    print(f"{torch.cuda.get_device_name(0)}, world {args.world}, torch {torch.__version__}")
    results = {f"{b}/{d}": run_backend(b, d, args.world, sizes, args.iters)
               for b, d in BACKENDS}
    print(f"{'size':>8} " + " ".join(f"{name:>14}" for name in results) + "   (ms/op)")
    for size in sizes:
        print(f"{size_name(size):>8} "
              + " ".join(f"{results[name][size] * 1e3:14.2f}" for name in results))


if __name__ == "__main__":
    main()
