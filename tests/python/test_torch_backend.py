"""The torch.distributed backend "pccl" (pccl.torch) against Gloo, in real processes.

One launch runs torch_backend_worker.py in 3 pccl ranks (init via env://) and, at the
same time, in 3 Gloo ranks (init via tcp://); every check of the worker then compares
the two runs' saved outputs: exact where the op is exact, within float tolerance where
the summation order differs, and bit-identical across pccl's ranks. Starting a torch
process costs seconds, so the checks share that one launch. Set-up and failure paths run
their ranks as threads of the test process instead.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pccl
import pytest

torch = pytest.importorskip("torch")
from torch_backend_worker import data

WORLD = 3
WORKER = Path(__file__).with_name("torch_backend_worker.py")
PACKAGE_ROOT = Path(pccl.__file__).resolve().parent.parent
LAUNCH_TIMEOUT_S = 90

Run = list[dict[str, Any]]  # per rank: check name -> output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(backend: str, world: int, out: Path, *, scenario: str = "all",
           init: str = "tcp") -> list[subprocess.Popen]:
    """Starts `world` worker ranks; init "env" sets MASTER_ADDR/MASTER_PORT for env://."""
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT),
                                                      env.get("PYTHONPATH")]))
    if init == "env":
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        init_method = "env://"
    else:
        init_method = f"tcp://127.0.0.1:{port}"
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for rank in range(world):
        with open(out / f"{backend}.{rank}.log", "w") as log:
            procs.append(subprocess.Popen(
                [sys.executable, str(WORKER), backend, str(rank), str(world), init_method,
                 str(out), scenario], env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def collect(procs: list[subprocess.Popen], backend: str, out: Path) -> Run:
    """Waits for the ranks (bounded) and loads what each saved; a failed rank fails the
    test with its log."""
    deadline = time.monotonic() + LAUNCH_TIMEOUT_S
    try:
        for proc in procs:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for rank, proc in enumerate(procs):
        if proc.returncode != 0:
            log = (out / f"{backend}.{rank}.log").read_text()[-4000:]
            pytest.fail(f"{backend} rank {rank} exited with {proc.returncode}:\n{log}")
    return [torch.load(out / f"{backend}_{rank}.pt") for rank in range(len(procs))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    out = tmp_path_factory.mktemp("torch_backend")
    pccl_procs = launch("pccl", WORLD, out, init="env")
    gloo_procs = launch("gloo", WORLD, out)
    return {"pccl": collect(pccl_procs, "pccl", out), "gloo": collect(gloo_procs, "gloo", out)}


def outputs(run: Run, prefix: str, rank: int = 0) -> list[str]:
    """Names of rank `rank`'s tensor outputs that start with `prefix`."""
    return [name for name, value in run[rank].items()
            if name.startswith(prefix) and isinstance(value, torch.Tensor)]


def assert_matches_gloo(pccl_out: torch.Tensor, gloo_out: torch.Tensor, name: str) -> None:
    assert pccl_out.dtype == gloo_out.dtype and pccl_out.shape == gloo_out.shape, name
    if "normal/" in name or "ddp/" in name:  # summation order differs from Gloo's
        torch.testing.assert_close(pccl_out, gloo_out, rtol=1e-5, atol=1e-6, msg=name)
    elif name.endswith("/AVG"):  # one division of an exact sum; allow one rounding
        torch.testing.assert_close(pccl_out, gloo_out, msg=name)
    else:
        assert torch.equal(pccl_out, gloo_out), name


# --- the checks -----------------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_collectives_match_gloo(runs: dict[str, Run]) -> None:
    for rank in range(WORLD):
        assert runs["pccl"][rank]["backend"] == "pccl"
        assert runs["pccl"][rank]["world_size"] == WORLD
        names = [n for n in outputs(runs["pccl"], "", rank)
                 if n.split("/")[0] in ("all_reduce", "all_reduce_normal", "broadcast",
                                        "reduce", "all_gather", "all_gather_single",
                                        "reduce_scatter", "reduce_scatter_single")
                 and n != "broadcast/strided"]  # Gloo broadcasts strided views wrongly
        assert len(names) > 60
        assert f"reduce/{rank}/SUM" in names
        for name in names:
            gloo_out = runs["gloo"][rank][name]
            assert isinstance(gloo_out, torch.Tensor), (name, gloo_out)
            assert_matches_gloo(runs["pccl"][rank][name], gloo_out, f"rank {rank}: {name}")


@pytest.mark.timeout(120)
def test_pccl_ranks_get_bit_identical_results(runs: dict[str, Run]) -> None:
    replicated = [n for n in outputs(runs["pccl"], "")  # reduce, reduce_scatter: per rank
                  if not n.startswith(("reduce", "per_rank/"))]
    for name in replicated:
        for rank in range(1, WORLD):
            assert torch.equal(runs["pccl"][rank][name], runs["pccl"][0][name]), name


@pytest.mark.timeout(120)
def test_set_reduce_mode_makes_sums_exact(runs: dict[str, Run]) -> None:
    for op_name in ("SUM", "AVG"):
        name = f"exact/float32/{op_name}"
        got = runs["pccl"][0][name]
        inputs = [data(name, rank, got.shape, torch.float32, integral=False).double()
                  for rank in range(WORLD)]
        exact = sum(inputs) / (WORLD if op_name == "AVG" else 1)
        largest = max(float(t.abs().max()) for t in inputs)
        # 2 n^2 M / (p - 1), the AVG's division, and the rounding(s) to float32.
        bound = 2 * WORLD**2 * largest / (4294967291 - 1) + exact.abs() * 2.0**-23
        assert bool(((got.double() - exact).abs() <= bound).all()), name


@pytest.mark.timeout(120)
def test_strided_and_odd_tensors(runs: dict[str, Run]) -> None:
    reference = sum(data("all_reduce/strided", r, (9, 7), torch.float32).t()
                    for r in range(WORLD))
    source = data("broadcast/strided", WORLD - 1, (5, 6), torch.float64)[:, ::2]
    for result in runs["pccl"]:
        assert torch.equal(result["all_reduce/strided"], reference)
        assert torch.equal(result["broadcast/strided"], source)
        assert result["all_reduce/scalar"].item() == WORLD
        assert result["all_reduce/empty"].shape == (0,)


@pytest.mark.timeout(120)
def test_reduce_scatter_single_leaves_its_input(runs: dict[str, Run]) -> None:
    for rank, result in enumerate(runs["pccl"]):
        for op in ("SUM", "MAX"):
            name = f"reduce_scatter_single/{op}"
            assert torch.equal(result[name + "/input_kept"],
                               data(name, rank, (WORLD * 11,), torch.int64))


@pytest.mark.timeout(120)
def test_async_work(runs: dict[str, Run]) -> None:
    for rank in range(WORLD):
        result = runs["pccl"][rank]
        assert result["async/completed"].all()
        assert result["async/future_value_is_tensor"].all()
        assert result["async/timed_wait"].item()
        for name in outputs(runs["pccl"], "async/"):
            if name not in ("async/completed", "async/future_value_is_tensor",
                            "async/timed_wait"):
                assert torch.equal(result[name], runs["gloo"][rank][name]), name
        assert torch.equal(result["async/chained"],
                           2 * sum(data("async/chained", r, (5,), torch.float32)
                                   for r in range(WORLD)))


@pytest.mark.timeout(120)
def test_subgroup_and_object_collectives(runs: dict[str, Run]) -> None:
    members = range(1, WORLD)
    reference = sum(data("subgroup", r, (1037,), torch.float32) for r in members)
    for rank in range(WORLD):
        result = runs["pccl"][rank]
        if rank in members:
            assert torch.equal(result["subgroup/all_reduce"], reference)
        else:
            assert "subgroup/all_reduce" not in result
        assert result["objects/all_gather"] == [{"rank": r, "name": "x" * r}
                                                for r in range(WORLD)]
        assert result["objects/broadcast"] == {"from": WORLD - 1,
                                               "list": list(range(WORLD + 2))}


@pytest.mark.timeout(120)
def test_gather_scatter_and_all_to_all_match_gloo(runs: dict[str, Run]) -> None:
    for rank in range(WORLD):
        pccl_out, gloo_out = runs["pccl"][rank], runs["gloo"][rank]
        names = outputs(runs["pccl"], "per_rank/", rank)
        assert len(names) >= 7, names
        for name in names:
            assert_matches_gloo(pccl_out[name], gloo_out[name], f"rank {rank}: {name}")
        for name in ("per_rank/gather_object", "per_rank/scatter_object_list"):
            assert pccl_out[name] == gloo_out[name], name
        # A functional collective finds the group by its name; a subgroup can be destroyed.
        assert torch.equal(pccl_out["functional/all_reduce"],
                           sum(data("functional", r, (5,), torch.float32) for r in range(WORLD)))
        (group_name,) = pccl_out["destroyed_subgroup_name"]
        assert isinstance(group_name, str) and group_name

@pytest.mark.timeout(120)
def test_send_recv_and_batch_isend_irecv_match_gloo(runs: dict[str, Run]) -> None:
    for rank in range(WORLD):
        pccl_out, gloo_out = runs["pccl"][rank], runs["gloo"][rank]
        names = outputs(runs["pccl"], "per_rank/p2p/", rank)
        # ring; from rank 0; tagged; any source
        expected = 1 + (rank > 0) + (rank == WORLD - 1) + (rank == 0)
        assert len(names) == expected, names
        assert names == outputs(runs["gloo"], "per_rank/p2p/", rank)
        for name in names:
            assert_matches_gloo(pccl_out[name], gloo_out[name], f"rank {rank}: {name}")
    # dist.recv without src returned each sender's rank once.
    assert runs["pccl"][0]["p2p/any_source_ranks"] == list(range(1, WORLD))


@pytest.mark.timeout(120)
def test_refused_calls_raise_clear_errors_on_every_rank(runs: dict[str, Run]) -> None:
    for rank in range(WORLD):
        result = runs["pccl"][rank]
        assert result["refused/band_float"][:2] == ("error", "ValueError")
        assert "does not support ReduceOp.BAND" in result["refused/band_float"][2]
        for name in ("refused/avg_int", "all_reduce/torch.int32/AVG"):
            assert result[name][:2] == ("error", "TypeError")
            assert "cannot average" in result[name][2]
            assert runs["gloo"][rank][name][0] == "error"  # Gloo refuses it too
        assert result["refused/bool_sum"][:2] == ("error", "TypeError")
        assert "torch.bool" in result["refused/bool_sum"][2]
        assert result["refused/sparse"][:2] == ("error", "TypeError")
        assert "does not support torch.sparse_coo tensors" in result["refused/sparse"][2]
        # Nothing was sent, nobody hangs: the group still works afterwards.
        assert torch.equal(result["refused/then_ok"], torch.full((3,), float(sum(range(WORLD)))))


@pytest.mark.timeout(120)
def test_ddp_matches_gloo_and_is_bit_identical_across_ranks(runs: dict[str, Run]) -> None:
    names = outputs(runs["pccl"], "ddp/")
    assert len(names) == 8  # weight and bias of two layers, parameters and gradients
    for name in names:
        for rank in range(WORLD):
            assert_matches_gloo(runs["pccl"][rank][name], runs["gloo"][rank][name],
                                f"rank {rank}: {name}")
            assert torch.equal(runs["pccl"][rank][name], runs["pccl"][0][name]), name


# --- set-up paths ---------------------------------------------------------------------------

def groups_in_threads(world: int, timeout_s: float = 30) -> list[Any]:
    """`world` ProcessGroupPCCLs of one run, each built in its own thread of this process
    (their constructors block until all joined); `timeout_s`: the groups' timeout."""
    import torch.distributed as dist
    from pccl.torch import ProcessGroupPCCL

    store = dist.HashStore()
    groups: list[Any] = [None] * world

    def build(rank: int) -> None:
        try:
            groups[rank] = ProcessGroupPCCL(store, rank, world,
                                            datetime.timedelta(seconds=timeout_s))
        except BaseException as e:  # noqa: BLE001 - raised below
            groups[rank] = e

    threads = [threading.Thread(target=build, args=(rank,)) for rank in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=45)
    for group in groups:
        if not hasattr(group, "allreduce"):
            for other in groups:
                if hasattr(other, "shutdown"):
                    other.shutdown()
            raise AssertionError(f"building the groups failed: {groups}")
    return groups


@pytest.mark.timeout(60)
def test_external_master_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from pccl.torch import MASTER_ADDR_ENV

    with pccl.MasterNode("127.0.0.1:0") as master:
        monkeypatch.setenv(MASTER_ADDR_ENV, master.address)
        groups = groups_in_threads(2)
        try:
            tensors = [torch.full((3,), float(rank)) for rank in range(2)]
            works = [g.allreduce([t]) for g, t in zip(groups, tensors)]
            for work in works:
                work.wait()
        finally:
            for group in reversed(groups):  # rank 0 last, as it would stop its own master
                group.shutdown()
    for tensor in tensors:
        assert torch.equal(tensor, torch.full((3,), 1.0))


def all_reduced(groups: list[Any], inputs: list[Any]) -> list[Any]:
    tensors = [t.clone() for t in inputs]
    for work in [g.allreduce([t]) for g, t in zip(groups, tensors)]:
        work.wait()
    return tensors


@pytest.mark.timeout(60)
def test_reduce_modes_give_exact_sums_whatever_the_rank_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pccl.torch import REDUCE_MODE_ENV

    monkeypatch.setenv(REDUCE_MODE_ENV, "private")
    groups = groups_in_threads(3)
    try:
        assert all(g.reduce_mode == pccl.ReduceMode.PRIVATE for g in groups)
        gen = torch.Generator().manual_seed(0)
        inputs = [torch.randn(20_000, generator=gen) * 10.0 ** (3 * rank) for rank in range(3)]
        private = all_reduced(groups, inputs)
        for g in groups:
            g.reduce_mode = pccl.ReduceMode.EXACT
        rotated = all_reduced(groups, [inputs[(rank + 1) % 3] for rank in range(3)])
        for g in groups:
            g.reduce_mode = pccl.ReduceMode.DEFAULT
        plain = all_reduced(groups, inputs)
    finally:
        for group in reversed(groups):
            group.shutdown()
    # PRIVATE and EXACT, the inputs at other ranks: the same bytes on every rank.
    assert all(torch.equal(t, private[0]) for t in private + rotated)
    exact = sum(t.double() for t in inputs)
    largest = max(float(t.abs().max()) for t in inputs)
    bound = 2 * 3**2 * largest / (4294967291 - 1) + exact.abs() * 2.0**-24
    assert bool(((private[0].double() - exact).abs() <= bound).all())
    # The default ring sum is a float32 sum: close, but not what the exact modes promise.
    torch.testing.assert_close(plain[0], private[0], rtol=1e-5, atol=1e-2)
    monkeypatch.setenv(REDUCE_MODE_ENV, "approximate")
    with pytest.raises(ValueError, match="PCCL_REDUCE_MODE must be one of"):
        from pccl.torch._backend import reduce_mode_from_env
        reduce_mode_from_env()


@pytest.mark.timeout(60)
def test_the_master_of_rank_0_refuses_whoever_lacks_the_groups_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PCCL_RUN_SECRET", raising=False)
    monkeypatch.delenv("PCCL_RUN_SECRET_FILE", raising=False)
    groups = groups_in_threads(2)
    try:
        master = groups[0]._rendezvous._master
        assert master is not None
        # Neither without a secret nor with another one does a stranger get in.
        for secret in (None, "some other run's secret, 32 b"):
            with pccl.Communicator(master.address, secret=secret) as stranger:
                with pytest.raises(pccl.AuthenticationError):
                    stranger.connect(timeout=10)
        tensors = [torch.full((3,), float(rank)) for rank in range(2)]
        for work in [g.allreduce([t]) for g, t in zip(groups, tensors)]:
            work.wait()
        assert all(torch.equal(t, torch.full((3,), 1.0)) for t in tensors)
    finally:
        for group in reversed(groups):
            group.shutdown()


@pytest.mark.timeout(60)
def test_a_lost_rank_fails_the_survivors_collectives() -> None:
    groups = groups_in_threads(3)
    try:
        works = [groups[rank].allreduce([torch.ones(1000)]) for rank in range(2)]
        groups[2].shutdown()  # leaves the run instead of joining the all-reduce
        for work in works:
            with pytest.raises(pccl.PeerLostError):
                work.wait()
            assert work.is_completed() and not work.is_success()
            assert isinstance(work.exception(), pccl.PeerLostError)
        # pccl would carry on with the two survivors; torch's group of three must not.
        # Once the survivors know (pccl applies the new topology in the background), every
        # later collective is refused at launch.
        deadline = time.monotonic() + 30
        while any(g._comm.get_attribute(pccl.Attribute.LOCAL_WORLD_SIZE) != 2
                  for g in groups[:2]):
            assert time.monotonic() < deadline, "the survivors never saw the new topology"
            time.sleep(0.01)
            for g in groups[:2]:
                g._comm._refresh_attributes()
        for rank in range(2):
            with pytest.raises(pccl.PeerLostError, match="2 of the process group's 3"):
                groups[rank].allreduce([torch.ones(3)]).wait()
    finally:
        for group in reversed(groups):
            group.shutdown()


@pytest.mark.timeout(60)
def test_a_collective_past_the_groups_timeout_raises_torchs_timeout_error() -> None:
    # torch's own test suite (test_barrier_timeout_*) expects a RuntimeError that says
    # " Timed out " (or " timeout ") no sooner than the group's timeout.
    groups = groups_in_threads(2, timeout_s=2)
    try:
        started = time.monotonic()
        work = groups[0].barrier()  # rank 1 never joins
        with pytest.raises(RuntimeError, match=" Timed out after 2 s ") as caught:
            work.wait()
        assert time.monotonic() - started >= 1.9
        assert isinstance(caught.value, pccl.PCCLTimeoutError)
    finally:
        for group in reversed(groups):
            group.shutdown()


@pytest.mark.timeout(60)
def test_rendezvous_times_out_with_a_clear_error() -> None:
    import torch.distributed as dist
    from pccl.torch._rendezvous import Rendezvous

    started = time.monotonic()
    with pytest.raises(TimeoutError, match="only 1 of 2 ranks joined the pccl run"):
        Rendezvous(dist.HashStore(), 0, 2, datetime.timedelta(seconds=1))
    assert time.monotonic() - started < 10


@pytest.mark.timeout(60)
def test_a_group_of_one_returns_its_inputs() -> None:
    import torch.distributed as dist
    from pccl.torch import ProcessGroupPCCL

    pg = ProcessGroupPCCL(dist.HashStore(), 0, 1, datetime.timedelta(seconds=30))
    try:
        tensor = torch.arange(5.0)
        opts = dist.AllreduceOptions()
        opts.reduceOp = dist.ReduceOp.AVG
        pg.allreduce([tensor], opts).wait()
        gathered = torch.zeros(5)
        pg.all_gather_single(gathered, tensor).wait()
        scattered = torch.zeros(5)
        pg.reduce_scatter_single(scattered, tensor).wait()
        pg.barrier().wait()
        for result in (tensor, gathered, scattered):
            assert torch.equal(result, torch.arange(5.0))
        # The names torch before 2.13 calls for all_gather_into_tensor/reduce_scatter_tensor.
        gathered, scattered = torch.zeros(5), torch.zeros(5)
        pg._allgather_base(gathered, tensor).wait()
        pg._reduce_scatter_base(scattered, tensor).wait()
        assert torch.equal(gathered, torch.arange(5.0))
        assert torch.equal(scattered, torch.arange(5.0))
        with pytest.raises(ValueError, match="all_gather_single needs an output of 1 x 5"):
            pg.all_gather_single(torch.zeros(3), tensor)
        opts.reduceOp = dist.ReduceOp.BXOR
        with pytest.raises(ValueError, match="does not support ReduceOp.BXOR"):
            pg.allreduce([tensor], opts)
    finally:
        pg.shutdown()


@pytest.mark.timeout(60)
def test_import_pccl_does_not_import_torch() -> None:
    code = "import sys, pccl; assert 'torch' not in sys.modules, 'pccl imported torch'"
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=30)


@pytest.mark.timeout(120)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_are_staged_through_host_memory(tmp_path: Path) -> None:
    world = 2
    results = collect(launch("pccl", world, tmp_path, scenario="cuda"), "pccl", tmp_path)
    for rank, result in enumerate(results):
        assert result["cuda/all_reduce/device"].startswith("cuda")
        assert torch.equal(result["cuda/all_reduce"],
                           sum(data("cuda/all_reduce", r, (1037,), torch.float32)
                               for r in range(world)))
        assert torch.equal(result["cuda/broadcast"],
                           data("cuda/broadcast", world - 1, (1037,), torch.int64))
        assert torch.equal(result["cuda/all_gather"],
                           torch.stack([data("cuda/all_gather", r, (7,), torch.float32)
                                        for r in range(world)]))
        scattered = sum(data("cuda/reduce_scatter", r, (5 * world,), torch.float32)
                        for r in range(world))
        assert torch.equal(result["cuda/reduce_scatter"], scattered[5 * rank:5 * rank + 5])
        assert torch.equal(result["cuda/async"],
                           sum(data("cuda/async", r, (1037,), torch.float32) * 2
                               for r in range(world)))
        for name in ("weight", "bias"):
            mean = sum(r[f"cuda/ddp/local_grad/{name}"] for r in results) / world
            assert torch.allclose(result[f"cuda/ddp/grad/{name}"], mean, atol=1e-6)
            assert torch.equal(result[f"cuda/ddp/grad/{name}"],
                               results[0][f"cuda/ddp/grad/{name}"])


@pytest.mark.timeout(60)
def test_a_timed_wait_ends_with_the_future_or_its_timeout() -> None:
    from pccl.torch._work import PcclWork
    from torch.futures import Future

    pending: Future[list[Any]] = Future()
    work = PcclWork(pending)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="not finished after"):
        work.wait(datetime.timedelta(milliseconds=200))
    assert 0.15 < time.monotonic() - started < 10  # waited for its timeout, not forever
    # Completed from another thread while a timed wait runs: it returns then, not later.
    threading.Timer(0.1, lambda: pending.set_result([torch.ones(1)])).start()
    started = time.monotonic()
    assert work.wait(datetime.timedelta(seconds=30))
    assert time.monotonic() - started < 10
