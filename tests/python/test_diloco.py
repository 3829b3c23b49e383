"""DiLoCo and async DiLoCo (pccl.diloco) with real peer processes.

Three peers with different initialisations train a small MLP on their own data; a fourth
joins mid-run, or one is SIGKILLed mid-run. Checked at every outer step: the outer state
(parameters and momentum buffers) hashes alike on every peer, revisions advance by one,
members receive nothing after their first sync, the joiner receives the whole state and
agrees from its first step on, and the held-out loss of the outer model goes down.
"""

from __future__ import annotations

import time
from typing import Any

import pccl
import pytest
from cluster import Cluster, notify

torch = pytest.importorskip("torch")

IN, HIDDEN, OUT = 16, 32, 4
BATCH = 32
INNER_STEPS = 5
FIRST_STEPS = 3    # outer steps of the first peers before the test acts (join or kill)
EXTRA_STEPS = 4    # outer steps after the joiner's admission / after the loss of a peer
MAX_WAIT_S = 40.0  # how long the first peers keep training while the test acts
JOINER = 3


def task(seed: int, n: int) -> tuple[Any, Any]:
    """A regression task everyone shares (w_true); `seed` picks the samples."""
    w_true = torch.randn(IN, OUT, generator=torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, IN, generator=gen)
    return x, torch.tanh(x @ w_true) + 0.05 * torch.randn(n, OUT, generator=gen)


def train(comm: pccl.Communicator, index: int, asynchronous: bool, joiner: bool,
          until: str, quantized: bool = False, mode: int = 0) -> list[tuple[Any, ...]]:
    """Outer steps until the test's event (`until`: "join" or "loss") is EXTRA_STEPS steps
    old; `quantized`: uint8 pseudo-gradients; `mode`: their pccl.ReduceMode. Returns per
    step (revision, hashes, world, held-out loss, sync rx, sync tx); the first entry is
    start()'s, with world -1."""
    from pccl.diloco import DiLoCo  # needs torch

    torch.set_num_threads(1)
    torch.manual_seed(1000 + index)  # every peer starts from different weights
    model = torch.nn.Sequential(torch.nn.Linear(IN, HIDDEN), torch.nn.Tanh(),
                                torch.nn.Linear(HIDDEN, OUT))
    inner = torch.optim.Adam(model.parameters(), lr=3e-3)
    quantization = pccl.QuantizationOptions(pccl.DataType.UINT8) if quantized else None
    diloco = DiLoCo(model, inner, comm, asynchronous=asynchronous, quantization=quantization,
                    mode=pccl.ReduceMode(mode))
    x_eval, y_eval = task(99, 256)
    gen = torch.Generator().manual_seed(100 + index)  # own data on every peer
    w_true = torch.randn(IN, OUT, generator=torch.Generator().manual_seed(7))

    def held_out() -> float:
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(model(x_eval), y_eval))

    s = diloco.start()
    steps: list[tuple[Any, ...]] = [(diloco.step, diloco.state_hashes(), -1, held_out(),
                                     s.sync_rx_bytes, s.sync_tx_bytes)]
    event_at = diloco.step if joiner else None  # the step after which the event happened
    started = time.monotonic()
    while event_at is None or diloco.step < event_at + EXTRA_STEPS:
        for _ in range(INNER_STEPS):
            x = torch.randn(BATCH, IN, generator=gen)
            y = torch.tanh(x @ w_true) + 0.05 * torch.randn(BATCH, OUT, generator=gen)
            inner.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            inner.step()
        info = diloco.outer_step()
        steps.append((info.step, diloco.state_hashes(), info.world, held_out(),
                      info.sync_rx_bytes, info.sync_tx_bytes))
        if event_at is None:
            if (until == "join" and info.admitted) or (until == "loss" and 0 < info.world < 3):
                event_at = info.step
            elif time.monotonic() - started > MAX_WAIT_S:
                raise TimeoutError(f"no {until} within {MAX_WAIT_S} s")
            elif len(steps) > FIRST_STEPS:
                if len(steps) == FIRST_STEPS + 1:
                    notify("phase1", index)
                time.sleep(0.02)  # keep training, but leave CPU to the test's action
    diloco.close()
    return steps


def check_parity(results: list[list[tuple[Any, ...]]]) -> dict[int, tuple[int, ...]]:
    """Every peer holds the same outer state at every revision it reached; revisions advance
    by one per outer step. Returns the hashes by revision."""
    by_revision: dict[int, set[tuple[int, ...]]] = {}
    for peer, steps in enumerate(results):
        revisions = [s[0] for s in steps[1:]]
        assert revisions == list(range(steps[0][0] + 1, steps[0][0] + len(steps))), \
            (peer, revisions)
        for s in steps:
            by_revision.setdefault(s[0], set()).add(s[1])
    for revision, digests in by_revision.items():
        assert len(digests) == 1, f"peers disagree at revision {revision}"
    assert len({steps[-1][0] for steps in results}) == 1, "peers stopped at different steps"
    return {r: next(iter(d)) for r, d in by_revision.items()}


def run_with_joiner(asynchronous: bool) -> list[list[tuple[Any, ...]]]:
    with Cluster(3) as c:
        running = c.start(train, asynchronous, False, "join")
        for _ in range(3):  # all three trained FIRST_STEPS outer steps
            assert c.events.get(timeout=40)[0] == "phase1"
        joiner = c.add_peer(JOINER, 2, 0, wait_world=False)
        c.expect_ready(joiner, timeout=60)
        joined = c.start(train, asynchronous, True, "join", peers=[joiner])
        return c.collect(running, timeout=60) + c.collect(joined, timeout=60)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_diloco_parity_loss_and_late_joiner(asynchronous: bool) -> None:
    results = run_with_joiner(asynchronous)
    check_parity(results)
    members, joiner = results[:JOINER], results[JOINER]
    for steps in members:
        # founding start(): the oldest peer's initialisation won; then every member advances
        # identically and receives nothing (the joiner's arrival included)
        assert steps[0][0] == 0
        assert [s[4] for s in steps[1:]] == [0] * (len(steps) - 1), steps
        assert [s[2] for s in steps[1:FIRST_STEPS + 1]] == \
            ([3] * FIRST_STEPS if not asynchronous else [0] + [3] * (FIRST_STEPS - 1))
        assert steps[-1][2] == 4
        # the held-out loss of the outer model went down (with the paper's outer lr 0.7 and
        # momentum 0.9 it oscillates a little, and where the joiner lands depends on timing)
        losses = [s[3] for s in steps]
        assert min(losses[2:]) < 0.5 * losses[1] and losses[-1] < losses[1], losses
    # the joiner received the whole outer state on start() and agreed from then on
    assert joiner[0][0] > FIRST_STEPS - 1
    assert joiner[0][4] > 0 and joiner[0][5] == 0
    assert len(joiner) == EXTRA_STEPS + 1
    if asynchronous:
        # ... and, having missed the result in flight, the outer state again at its first
        # outer step (the second sync); nothing after that
        assert joiner[1][2] == 0 and joiner[1][4] > 0
        assert [s[4] for s in joiner[2:]] == [0] * (EXTRA_STEPS - 1)
        assert [s[2] for s in joiner[2:]] == [4] * (EXTRA_STEPS - 1)
    else:
        assert [s[4] for s in joiner[1:]] == [0] * EXTRA_STEPS
        assert [s[2] for s in joiner[1:]] == [4] * EXTRA_STEPS
    # from the joiner's arrival on, the members sent exactly what the joiner received
    received = {s[0]: s[4] for s in joiner}
    sent: dict[int, int] = {}
    for steps in members:
        for s in steps:
            if s[0] >= joiner[0][0]:
                sent[s[0]] = sent.get(s[0], 0) + s[5]
    assert {r: n for r, n in sent.items() if n} == {r: n for r, n in received.items() if n}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("asynchronous,quantized,mode",
                         [(False, False, 0), (True, True, 0), (True, False, 2)],
                         ids=["sync", "async-uint8", "async-private"])
def test_diloco_survives_sigkilled_peer(asynchronous: bool, quantized: bool, mode: int) -> None:
    """Survivors retry on each other and go on, bit-identical (also with quantized
    pseudo-gradients: every peer gets the same dequantized bytes; and with private ones:
    masked, exact sums)."""
    with Cluster(3) as c:
        running = c.start(train, asynchronous, False, "loss", quantized, mode)
        for _ in range(3):
            assert c.events.get(timeout=40)[0] == "phase1"
        assert c.kill(2)
        outcomes = c.outcomes(running[:2], timeout=60)
    assert [o[0] for o in outcomes] == ["ok", "ok"], outcomes
    results = [o[1] for o in outcomes]
    check_parity(results)
    for steps in results:
        worlds = [s[2] for s in steps[1:]]
        assert 3 in worlds and worlds[-1] == 2, worlds
        losses = [s[3] for s in steps]
        assert min(losses[2:]) < 0.5 * losses[1] and losses[-1] < losses[1], losses


@pytest.mark.timeout(60)
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_alone_a_peer_applies_its_own_pseudo_gradient(asynchronous: bool) -> None:
    """World of one: the outer step is the outer optimizer applied to this peer's own
    pseudo-gradient (checked against a plain torch SGD)."""
    from pccl.diloco import DiLoCo

    with pccl.MasterNode("127.0.0.1:0") as master:
        master.run()
        with pccl.Communicator(f"127.0.0.1:{master.port}") as comm:
            comm.connect(timeout=30)
            torch.manual_seed(0)
            model = torch.nn.Linear(4, 3)
            diloco = DiLoCo(model, torch.optim.SGD(model.parameters(), lr=0.1), comm,
                            asynchronous=asynchronous)
            assert diloco.start().sync_rx_bytes == 0
            reference = [p.detach().clone() for p in model.parameters()]
            ref_opt = torch.optim.SGD(reference, lr=0.7, momentum=0.9, nesterov=True)

            def ref_apply(delta: list[Any]) -> None:
                for r, d in zip(reference, delta):
                    r.grad = d
                ref_opt.step()

            in_flight: list[Any] | None = None  # async: applied one step late
            for step in range(1, 4):
                with torch.no_grad():
                    for p in model.parameters():
                        p.add_(0.01 * step)  # stands in for the inner phase
                if asynchronous:
                    if in_flight is not None:
                        ref_apply(in_flight)
                    in_flight = [r - p.detach() for r, p in zip(reference, model.parameters())]
                else:
                    ref_apply([r - p.detach() for r, p in zip(reference, model.parameters())])
                info = diloco.outer_step()
                assert info.step == step
                assert info.world == (0 if asynchronous and step == 1 else 1)
                for o, r, p in zip(diloco.outer_parameters, reference, model.parameters()):
                    assert torch.equal(o, r)
                    assert torch.equal(p, o)  # the next inner phase starts from outer
            diloco.close()


def test_outer_optimizer_state_is_shared_in_place() -> None:
    """Momentum buffers exist (zeros) before the first step, are registered as shared state,
    and keep their memory across steps; an optimizer that replaces them is refused."""
    from pccl.diloco import OuterState, default_outer_optimizer

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    state = OuterState(model, default_outer_optimizer)
    names = [info.name for info in state.shared.tensor_infos]
    assert names == ["outer/0.weight", "outer_opt/0.weight/momentum_buffer", "outer/0.bias",
                     "outer_opt/0.bias/momentum_buffer", "outer/1.weight",
                     "outer_opt/1.weight/momentum_buffer", "outer/1.bias",
                     "outer_opt/1.bias/momentum_buffer"]
    assert all(torch.equal(p, q) for p, q in zip(state.outer, model.parameters()))
    assert all(not t.any() for t in state.tensors[1::2])
    flat = state.new_buffer()
    flat.fill_(1.0)
    state.apply(flat)  # moves the outer parameters by lr * (1 + momentum) with Nesterov
    assert all(torch.allclose(o, p.detach() - 0.7 * 1.9) for o, p in
               zip(state.outer, model.parameters()))

    class Replacing(torch.optim.SGD):
        def step(self, closure: Any = None) -> Any:
            super().step(closure)
            for p in self.state:  # new tensors for the momentum buffers on every step
                self.state[p]["momentum_buffer"] = self.state[p]["momentum_buffer"].clone()

    bad = OuterState(model, lambda params: Replacing(params, lr=0.1, momentum=0.9))
    with pytest.raises(RuntimeError, match="replaced a state tensor"):
        bad.apply(flat)
