"""Bit parity end to end: peers train a small torch MLP with Adam, averaging gradients with
all_reduce and syncing the whole training state (parameters, exp_avg, exp_avg_sq and the
step counters) every step; a fourth peer joins mid-run with a different initialisation.

Continuing peers must never receive a byte after their first sync (they advance
deterministically), every peer must hold bit-identical state at every revision, and the
joiner must receive everything on its first sync and agree with the others from then on.
"""

from __future__ import annotations

import time
from typing import Any

import pccl
import pytest
from cluster import Cluster, notify

torch = pytest.importorskip("torch")

IN, HIDDEN, OUT = 16, 32, 4
BATCH = 64
FIRST_STEPS = 3     # steps of the first three peers before the joiner is started
EXTRA_STEPS = 5     # steps after the joiner's admission, all four peers together
MAX_WAIT_S = 45.0   # how long the first peers keep training while the joiner starts
JOINER = 3


def build(model_seed: int) -> tuple[Any, Any, list[Any], pccl.SharedState]:
    """The model, its Adam optimizer with state initialised in place, and the SharedState
    of every tensor (parameters and all optimizer tensors, step counters included)."""
    torch.manual_seed(model_seed)
    model = torch.nn.Sequential(torch.nn.Linear(IN, HIDDEN), torch.nn.Tanh(),
                                torch.nn.Linear(HIDDEN, OUT))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    # Adam creates its state lazily on the first step; create it now so that the tensors
    # exist (and keep their memory) before they are registered. Adam updates all of them
    # in place, so the registered addresses stay valid.
    for p in model.parameters():
        opt.state[p] = {"step": torch.tensor(0.0, dtype=torch.float32),
                        "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
    tensors, infos = [], []
    for name, p in model.named_parameters():
        tensors.append(p.data)
        infos.append(pccl.TensorInfo.from_torch(p.data, name))
        for key in ("exp_avg", "exp_avg_sq", "step"):
            tensors.append(opt.state[p][key])
            infos.append(pccl.TensorInfo.from_torch(opt.state[p][key], f"{name}.{key}"))
    return model, opt, tensors, pccl.SharedState(infos)


def hashes(tensors: list[Any]) -> tuple[int, ...]:
    return tuple(pccl.kernels.hash64(t.reshape(-1)) for t in tensors)


def train(comm: pccl.Communicator, index: int, joiner: bool) -> list[tuple[Any, ...]]:
    """Trains until EXTRA_STEPS steps after the joiner's admission. Returns per step
    (revision, rx_bytes, tx_bytes, world, hashes of all shared tensors, total bytes)."""
    torch.set_num_threads(1)
    # The first peers share one initialisation; the joiner's differs, so it must receive.
    model, opt, tensors, state = build(model_seed=1234 if joiner else 0)
    total_bytes = sum(info.nbytes for info in state.tensor_infos)
    gen = torch.Generator().manual_seed(100 + index)  # different data on every peer
    w_true = torch.randn(IN, OUT, generator=torch.Generator().manual_seed(7))
    params = list(model.parameters())
    steps: list[tuple[Any, ...]] = []
    admitted_at: int | None = None  # the revision of the first sync with the joiner
    first = True
    started = time.monotonic()
    while True:
        # A joint call; the joiner skips it on its first step (the members are past theirs).
        if not (joiner and first) and comm.are_peers_pending():
            comm.update_topology()
        world = comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE)
        x = torch.randn(BATCH, IN, generator=gen)
        y = torch.tanh(x @ w_true) + 0.1 * torch.randn(BATCH, OUT, generator=gen)
        opt.zero_grad(set_to_none=False)
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        comm.all_reduce(flat, flat, op=pccl.ReduceOp.AVG)
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        opt.step()
        if joiner and first:
            state.revision = 0  # any revision: a joiner's first sync is outdated and adopts
        else:
            state.revision += 1
        info = comm.sync_shared_state(state, timeout=60)
        steps.append((state.revision, info.rx_bytes, info.tx_bytes, world,
                      hashes(tensors), total_bytes))
        first = False
        if admitted_at is None and world >= 4:
            admitted_at = state.revision
        if admitted_at is not None and state.revision >= admitted_at + EXTRA_STEPS - 1:
            return steps
        if not joiner and world < 4:
            if time.monotonic() - started > MAX_WAIT_S:
                raise TimeoutError("the joiner was not admitted in time")
            if len(steps) >= FIRST_STEPS:
                if len(steps) == FIRST_STEPS:
                    notify("phase1", index)
                time.sleep(0.02)  # keep training, but leave CPU for the joiner to start


@pytest.mark.timeout(90)
def test_adam_training_bit_parity_with_joiner() -> None:
    t0 = time.monotonic()
    with Cluster(3) as c:
        running = c.start(train, False)
        for _ in range(3):  # all three trained FIRST_STEPS steps: the joiner joins mid-run
            assert c.events.get(timeout=30)[0] == "phase1"
        joiner = c.add_peer(JOINER, 2, 0, wait_world=False)
        c.expect_ready(joiner, timeout=60)
        joined = c.start(train, True, peers=[joiner])
        results = c.collect(running, timeout=60) + c.collect(joined, timeout=60)

    by_revision: dict[int, set[tuple[int, ...]]] = {}
    for peer, steps in enumerate(results):
        revisions = [s[0] for s in steps]
        assert revisions == list(range(revisions[0], revisions[0] + len(steps))), (peer, revisions)
        for revision, _, _, _, digests, _ in steps:
            by_revision.setdefault(revision, set()).add(digests)
        if peer != JOINER:
            assert revisions[0] == 1
            assert len(steps) >= FIRST_STEPS + EXTRA_STEPS
            # identical init and deterministic updates: nothing ever moves to a first peer
            assert [s[1] for s in steps[1:]] == [0] * (len(steps) - 1), (peer, steps)
            assert steps[0][3] == 3 and steps[-1][3] == 4
    # every peer ends at the same revision
    assert len({steps[-1][0] for steps in results}) == 1
    joiner_steps = results[JOINER]
    assert len(joiner_steps) == EXTRA_STEPS
    # its first sync received every byte: all its tensors differed (init, moments, step)
    assert joiner_steps[0][1] == joiner_steps[0][5] > 0
    # ... and the first peers sent exactly that, in that round only
    first_revision = joiner_steps[0][0]
    sent = [s[2] for steps in results[:JOINER] for s in steps if s[0] == first_revision]
    assert sum(sent) == joiner_steps[0][1], sent
    assert all(s[2] == 0 for steps in results for s in steps if s[0] != first_revision)
    assert [s[3] for s in joiner_steps] == [4] * EXTRA_STEPS
    assert [s[1] for s in joiner_steps[1:]] == [0] * (EXTRA_STEPS - 1)
    # bit parity: at every revision, every peer that synced it holds the same tensors
    for revision, digests in by_revision.items():
        assert len(digests) == 1, f"peers disagree at revision {revision}"
    # the joiner's hashes equal everyone's from its first sync on
    reference = {s[0]: s[4] for s in results[0]}
    for revision, _, _, _, digests, _ in joiner_steps:
        assert digests == reference[revision]
    # the training actually moved the state (hashes change from step to step)
    assert len({s[4] for s in results[0]}) == len(results[0])
    assert time.monotonic() - t0 < 60
