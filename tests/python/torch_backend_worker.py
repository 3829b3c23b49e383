"""One rank of a torch.distributed job for test_torch_backend.py.

    python torch_backend_worker.py BACKEND RANK WORLD INIT_METHOD OUT_DIR [SCENARIO]

Runs the same checks with any backend ("pccl" or "gloo") and saves what every
collective produced to OUT_DIR/BACKEND_RANK.pt: a dict from a check's name to its output
tensor(s), or to ("error", type name, message) where the call raised. The test compares
the pccl run against the Gloo run and pccl's ranks against each other. Inputs depend only
on (check name, rank), so both runs see the same data.

Scenarios: "all" (collectives, async work, refused calls, DDP) and "cuda" (collectives
on CUDA tensors, staged through host memory).
"""

from __future__ import annotations

import datetime
import sys
import zlib
from collections.abc import Callable
from typing import Any

import pccl.torch  # noqa: F401 - registers the "pccl" backend
import torch
import torch.distributed as dist

Results = dict[str, Any]
OPS = {"SUM": dist.ReduceOp.SUM, "AVG": dist.ReduceOp.AVG, "PRODUCT": dist.ReduceOp.PRODUCT,
       "MIN": dist.ReduceOp.MIN, "MAX": dist.ReduceOp.MAX}
COUNT = 1037  # odd, so ring chunks are uneven
# torch 2.13 names these all_gather_single and reduce_scatter_single; earlier versions
# have only the older names (which 2.13 keeps as aliases).
all_gather_single = getattr(dist, "all_gather_single", dist.all_gather_into_tensor)
reduce_scatter_single = getattr(dist, "reduce_scatter_single", dist.reduce_scatter_tensor)


def data(name: str, rank: int, shape: tuple[int, ...], dtype: torch.dtype, *,
         integral: bool = True) -> torch.Tensor:
    """Rank `rank`'s input for check `name`. Integral values (small, so sums and products
    stay exact in every dtype and order) unless `integral` is False (normal floats)."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()) * 16 + rank)
    if not integral:
        return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    low, high = (0, 4) if dtype == torch.uint8 else (-3, 4)
    return torch.randint(low, high, shape, generator=g).to(dtype)


def attempt(results: Results, name: str, fn: Callable[..., Any], *args: Any) -> None:
    """Stores fn(*args) under `name`, or the error it raised."""
    try:
        results[name] = fn(*args)
    except Exception as e:  # noqa: BLE001 - recorded for the test to judge
        results[name] = ("error", type(e).__name__, str(e))


def all_reduce(tensor: torch.Tensor, op: Any) -> torch.Tensor:
    dist.all_reduce(tensor, op=op)
    return tensor


# --- checks -------------------------------------------------------------------------------

def check_all_reduce(rank: int, results: Results) -> None:
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
                  torch.int32, torch.int8, torch.uint8):
        for op_name, op in OPS.items():
            name = f"all_reduce/{dtype}/{op_name}"
            attempt(results, name, all_reduce, data(name, rank, (COUNT,), dtype), op)
    for op_name in ("SUM", "AVG"):  # real gradients: results differ by summation order
        name = f"all_reduce_normal/float32/{op_name}"
        attempt(results, name, all_reduce,
                data(name, rank, (COUNT,), torch.float32, integral=False), OPS[op_name])
    # A strided view (staged through a contiguous copy) and a 0-d tensor.
    strided = data("all_reduce/strided", rank, (9, 7), torch.float32).t()
    results["all_reduce/strided"] = all_reduce(strided, dist.ReduceOp.SUM).clone()
    results["all_reduce/scalar"] = all_reduce(torch.tensor(float(rank + 1)), dist.ReduceOp.MAX)
    results["all_reduce/empty"] = all_reduce(torch.zeros(0), dist.ReduceOp.SUM)


def check_exact(rank: int, results: Results) -> None:
    """pccl only: SUM and AVG in ReduceMode.EXACT, set through pccl.torch.set_reduce_mode."""
    import pccl
    import pccl.torch

    pccl.torch.set_reduce_mode(pccl.ReduceMode.EXACT)
    for op_name in ("SUM", "AVG"):
        name = f"exact/float32/{op_name}"
        attempt(results, name, all_reduce,
                data(name, rank, (COUNT,), torch.float32, integral=False), OPS[op_name])
    pccl.torch.set_reduce_mode(pccl.ReduceMode.DEFAULT)


def check_broadcast(rank: int, world: int, results: Results) -> None:
    for src in range(world):
        for dtype in (torch.float32, torch.bfloat16, torch.int64, torch.bool):
            name = f"broadcast/{src}/{dtype}"
            tensor = data(name, rank, (COUNT,), torch.int64).to(dtype)
            dist.broadcast(tensor, src=src)
            results[name] = tensor
    strided = data("broadcast/strided", rank, (5, 6), torch.float64)[:, ::2]
    dist.broadcast(strided, src=world - 1)
    results["broadcast/strided"] = strided.clone()


def check_reduce(rank: int, world: int, results: Results) -> None:
    for op_name in ("SUM", "MAX"):
        for dst in range(world):
            name = f"reduce/{dst}/{op_name}"
            tensor = data(name, rank, (COUNT,), torch.float32)
            dist.reduce(tensor, dst=dst, op=OPS[op_name])
            if rank == dst:  # other ranks' tensors are unspecified afterwards
                results[name] = tensor


def check_all_gather(rank: int, world: int, results: Results) -> None:
    for dtype in (torch.float32, torch.int8, torch.bfloat16):
        name = f"all_gather/{dtype}"
        outputs = [torch.zeros((3, 5), dtype=dtype) for _ in range(world)]
        dist.all_gather(outputs, data(name, rank, (3, 5), torch.int64).to(dtype))
        results[name] = torch.stack(outputs)
    output = torch.zeros(world * 7, dtype=torch.float64)
    all_gather_single(output, data("all_gather_single", rank, (7,), torch.float64))
    results["all_gather_single"] = output


def check_reduce_scatter(rank: int, world: int, results: Results) -> None:
    for op_name in ("SUM", "MAX"):
        name = f"reduce_scatter/{op_name}"
        inputs = [data(f"{name}/{i}", rank, (4, 3), torch.float32) for i in range(world)]
        output = torch.zeros((4, 3))
        dist.reduce_scatter(output, inputs, op=OPS[op_name])
        results[name] = output
        name = f"reduce_scatter_single/{op_name}"
        single = data(name, rank, (world * 11,), torch.int64)
        output = torch.zeros(11, dtype=torch.int64)
        reduce_scatter_single(output, single, op=OPS[op_name])
        results[name] = output
        results[name + "/input_kept"] = single  # the input must not be overwritten


def check_async(rank: int, results: Results) -> None:
    tensors = [data(f"async/{i}", rank, (COUNT * (i + 1),), torch.float32) for i in range(3)]
    works = [dist.all_reduce(t, async_op=True) for t in tensors]
    bcast = data("async/broadcast", rank, (10,), torch.int32)
    works.append(dist.broadcast(bcast, src=1, async_op=True))
    for work in reversed(works):
        work.wait()
    results["async/completed"] = torch.tensor([w.is_completed() for w in works])
    results["async/future_value_is_tensor"] = torch.tensor(
        [works[i].get_future().value()[0] is tensors[i] and works[i].result()[0] is tensors[i]
         for i in range(3)])
    timed = dist.all_reduce(torch.ones(3), async_op=True)
    results["async/timed_wait"] = torch.tensor(timed.wait(datetime.timedelta(seconds=30)))
    for i, t in enumerate(tensors):
        results[f"async/{i}"] = t
    results["async/broadcast"] = bcast
    # A callback chained on the future, as DDP's comm hooks do.
    doubled = dist.all_reduce(data("async/chained", rank, (5,), torch.float32),
                              async_op=True).get_future().then(lambda f: f.value()[0] * 2)
    results["async/chained"] = doubled.wait()
    dist.barrier()


def check_groups_and_objects(rank: int, world: int, results: Results) -> None:
    """A subgroup (its own pccl run, mastered by its first rank) and the object
    collectives torch builds from all_gather and broadcast."""
    members = list(range(1, world))
    group = dist.new_group(members)
    if rank in members:
        tensor = data("subgroup", rank, (COUNT,), torch.float32)
        dist.all_reduce(tensor, group=group)
        results["subgroup/all_reduce"] = tensor
    objects: list[Any] = [None] * world
    dist.all_gather_object(objects, {"rank": rank, "name": "x" * rank})
    results["objects/all_gather"] = objects
    payload = [{"from": rank, "list": list(range(rank + 3))}]
    dist.broadcast_object_list(payload, src=world - 1)
    results["objects/broadcast"] = payload[0]


def check_rooted_and_all_to_all(rank: int, world: int, results: Results) -> None:
    """gather, scatter, all_to_all (even and uneven), their object forms, a functional
    collective (it finds the group by name) and a subgroup destroyed. Outputs differ per rank:
    named per_rank/."""
    for root in (0, world - 1):
        name = f"per_rank/gather/{root}"
        gathered = [torch.zeros(COUNT) for _ in range(world)] if rank == root else None
        dist.gather(data(name, rank, (COUNT,), torch.float32), gathered, dst=root)
        results[name] = torch.stack(gathered) if gathered else torch.zeros(0)
        name = f"per_rank/scatter/{root}"
        out = torch.zeros(7, 3, dtype=torch.int32)
        pieces = [data(name, r, (7, 3), torch.int32) for r in range(world)]
        dist.scatter(out, pieces if rank == root else None, src=root)
        results[name] = out
    name = "per_rank/all_to_all"
    inputs = [data(f"{name}/{r}", rank, (3,), torch.float64) for r in range(world)]
    outputs = [torch.zeros(3, dtype=torch.float64) for _ in range(world)]  # Gloo: one size
    dist.all_to_all(outputs, inputs)
    results[name] = torch.cat(outputs)
    name = "per_rank/all_to_all_single"
    single = torch.zeros(world * 4, dtype=torch.int64)
    dist.all_to_all_single(single, data(name, rank, (world * 4,), torch.int64))
    results[name] = single
    name = "per_rank/all_to_all_single/uneven"
    send_splits = [(rank + r) % 3 + 1 for r in range(world)]
    recv_splits = [(r + rank) % 3 + 1 for r in range(world)]
    uneven = torch.zeros(sum(recv_splits), 2)
    dist.all_to_all_single(uneven, data(name, rank, (sum(send_splits), 2), torch.float32),
                           recv_splits, send_splits)
    results[name] = uneven
    objects: list[Any] = [None] * world if rank == 0 else []
    dist.gather_object({"rank": rank}, objects if rank == 0 else None, dst=0)
    results["per_rank/gather_object"] = objects
    received: list[Any] = [None]
    dist.scatter_object_list(received, [{"to": r} for r in range(world)] if rank == 1 else None,
                             src=1)
    results["per_rank/scatter_object_list"] = received[0]
    import torch.distributed._functional_collectives as functional
    summed = functional.all_reduce(data("functional", rank, (5,), torch.float32), "sum",
                                   dist.group.WORLD)
    results["functional/all_reduce"] = functional.wait_tensor(summed)
    sub = dist.new_group(list(range(world)))
    results["destroyed_subgroup_name"] = (dist.distributed_c10d._get_process_group_name(sub),)
    # Every rank has the subgroup before any destroys it: Gloo's reference run failed once
    # in CI when ranks 1 and 2 closed the subgroup's connections while rank 0 was still
    # connecting them ("connectFullMesh failed ... Connection closed by peer").
    dist.barrier()
    dist.destroy_process_group(sub)


def check_point_to_point(rank: int, world: int, results: Results) -> None:
    """send/recv from rank 0 to every rank, a ring exchange with batch_isend_irecv, tagged
    isend/irecv received out of send order, and recvs from any source on rank 0. Outputs
    differ per rank: named per_rank/p2p/."""
    for dst in range(1, world):
        name = f"per_rank/p2p/send_recv/{dst}"
        if rank == 0:
            dist.send(data(name, dst, (COUNT,), torch.float32), dst)
        elif rank == dst:
            got = torch.zeros(COUNT)
            dist.recv(got, 0)
            results[name] = got
    name = "per_rank/p2p/batch_ring"
    outgoing = data(name, rank, (5, 3), torch.int64)
    incoming = torch.zeros(5, 3, dtype=torch.int64)
    ops = [dist.P2POp(dist.isend, outgoing, (rank + 1) % world),
           dist.P2POp(dist.irecv, incoming, (rank - 1) % world)]
    for work in dist.batch_isend_irecv(ops):
        work.wait()
    results[name] = incoming
    name = "per_rank/p2p/tagged"
    if rank == 0:  # two sends to the last rank, received in the other order by tag
        works = [dist.isend(data(f"{name}/{tag}", 0, (4,), torch.float64), world - 1, tag=tag)
                 for tag in (1, 2)]
        for work in works:
            work.wait()
    elif rank == world - 1:
        second, first = torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
        later = dist.irecv(second, 0, tag=2)
        dist.recv(first, 0, tag=1)
        later.wait()
        results[name] = torch.cat([first, second])
    name = "per_rank/p2p/any_source"
    if rank == 0:  # every other rank sends once; rank 0 takes them as they come
        got = [torch.zeros(2, dtype=torch.int32) for _ in range(1, world)]
        sources = [dist.recv(t, tag=9) for t in got]
        results[name] = torch.stack([g for _, g in sorted(zip(sources, got))])
        results["p2p/any_source_ranks"] = sorted(sources)
    else:
        dist.send(torch.full((2,), rank, dtype=torch.int32), 0, tag=9)
    dist.barrier()


def check_refused(rank: int, results: Results) -> None:
    """Calls a backend may refuse; each must raise on every rank, then the group must still
    work."""
    attempt(results, "refused/band_float", all_reduce, torch.ones(4), dist.ReduceOp.BAND)
    attempt(results, "refused/avg_int", all_reduce, torch.ones(4, dtype=torch.int64),
            dist.ReduceOp.AVG)
    attempt(results, "refused/bool_sum", all_reduce, torch.ones(4, dtype=torch.bool),
            dist.ReduceOp.SUM)
    if dist.get_backend() == "pccl":  # Gloo reduces sparse tensors
        sparse = torch.sparse_coo_tensor([[0, 2]], [1.0, 2.0], (4,))
        attempt(results, "refused/sparse", all_reduce, sparse, dist.ReduceOp.SUM)
    results["refused/then_ok"] = all_reduce(torch.full((3,), float(rank)), dist.ReduceOp.SUM)


def check_ddp(rank: int, results: Results) -> None:
    """A few SGD steps of a small model under DDP. Every rank starts from different weights:
    DDP must broadcast rank 0's at construction."""
    torch.manual_seed(100 + rank)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4))
    # Tiny buckets: several all-reduces in flight per backward pass.
    ddp = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.001)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1000 + rank)
    for _ in range(4):
        x = torch.randn(16, 8, generator=g)
        y = torch.randn(16, 4, generator=g)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(ddp(x), y).backward()
        optimizer.step()
    for name, p in model.named_parameters():
        results[f"ddp/param/{name}"] = p.detach().clone()
        results[f"ddp/grad/{name}"] = p.grad.detach().clone()


def check_cuda(rank: int, world: int, results: Results) -> None:
    device = torch.device("cuda", rank % torch.cuda.device_count())
    tensor = data("cuda/all_reduce", rank, (COUNT,), torch.float32).to(device)
    dist.all_reduce(tensor)
    results["cuda/all_reduce"] = tensor.cpu()
    results["cuda/all_reduce/device"] = str(tensor.device)
    tensor = data("cuda/broadcast", rank, (COUNT,), torch.int64).to(device)
    dist.broadcast(tensor, src=world - 1)
    results["cuda/broadcast"] = tensor.cpu()
    outputs = [torch.zeros(7, device=device) for _ in range(world)]
    dist.all_gather(outputs, data("cuda/all_gather", rank, (7,), torch.float32).to(device))
    results["cuda/all_gather"] = torch.stack(outputs).cpu()
    output = torch.zeros(5, device=device)
    dist.reduce_scatter_tensor(
        output, data("cuda/reduce_scatter", rank, (5 * world,), torch.float32).to(device))
    results["cuda/reduce_scatter"] = output.cpu()
    # Async on a side stream: the input is produced by a kernel on that stream, and the
    # result must be in place once wait() returns, before any synchronize.
    side = torch.cuda.Stream(device)
    with torch.cuda.stream(side):
        tensor = data("cuda/async", rank, (COUNT,), torch.float32).to(device) * 2
        work = dist.all_reduce(tensor, async_op=True)
        work.wait()
        results["cuda/async"] = (tensor + 0).cpu()
    # DDP on a CUDA model: its gradients are the mean of each rank's local gradients.
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4).to(device)
    local = torch.nn.Linear(8, 4).to(device)
    local.load_state_dict(model.state_dict())
    ddp = torch.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.001)
    g = torch.Generator().manual_seed(2000 + rank)
    x = torch.randn(16, 8, generator=g).to(device)
    y = torch.randn(16, 4, generator=g).to(device)
    torch.nn.functional.mse_loss(ddp(x), y).backward()
    torch.nn.functional.mse_loss(local(x), y).backward()
    for name, p in model.named_parameters():
        results[f"cuda/ddp/grad/{name}"] = p.grad.detach().cpu()
        results[f"cuda/ddp/local_grad/{name}"] = dict(local.named_parameters())[name].grad.cpu()


def main(argv: list[str]) -> None:
    backend, rank, world, init_method, out_dir = argv[:5]
    scenario = argv[5] if len(argv) > 5 else "all"
    rank, world = int(rank), int(world)
    dist.init_process_group(backend=backend, init_method=init_method, world_size=world,
                            rank=rank, timeout=datetime.timedelta(seconds=60))
    results: Results = {"world_size": dist.get_world_size(), "backend": dist.get_backend()}
    if scenario == "all":
        check_all_reduce(rank, results)
        check_broadcast(rank, world, results)
        check_reduce(rank, world, results)
        check_all_gather(rank, world, results)
        check_reduce_scatter(rank, world, results)
        check_async(rank, results)
        check_groups_and_objects(rank, world, results)
        check_rooted_and_all_to_all(rank, world, results)
        check_point_to_point(rank, world, results)
        check_refused(rank, results)
        check_ddp(rank, results)
        if backend == "pccl":
            check_exact(rank, results)
    elif scenario == "cuda":
        check_cuda(rank, world, results)
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    dist.barrier()
    dist.destroy_process_group()
    torch.save(results, f"{out_dir}/{backend}_{rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1:])
