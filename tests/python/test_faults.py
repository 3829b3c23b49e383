"""Fault tolerance with real processes: peers SIGKILLed, SIGSTOPped, closing, a dying master.

Every test runs a master and peer processes (cluster.py) and asserts the error class each
survivor raises, how fast it raises it, that inputs are intact, and that the retry over the
survivors gives the exact sum of their inputs (integer-valued floats, so every order of
summation is exact). Peers post "about to start" through Cluster.events; the test sends a
signal only after every peer has posted, and never sleeps to wait for an event. Latencies
are measured with time.monotonic(), which is one clock for every process of the machine,
and printed (pytest -s); the only timed assertions are the spec's fail-fast bounds.

The chaos test runs for PCCL_CHAOS_SECONDS (default 60); PCCL_CHAOS_SECONDS=0 or
`-k "not chaos"` skips it locally.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import time
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import pccl
import pytest
from cluster import Cluster, notify, wait_for_world
from pccl import ReduceOp

BIG_COUNT = 16 << 20  # 64 MiB of float32
HEARTBEAT_TIMEOUT = 1.5  # a short master heartbeat timeout keeps the SIGSTOP tests short
CHAOS_SECONDS = float(os.environ.get("PCCL_CHAOS_SECONDS", "60"))


def base(count: int) -> np.ndarray:
    """Integer-valued float32 data that varies along the array (small: sums stay exact)."""
    return (np.arange(count, dtype=np.int64) % 1999 - 999).astype(np.float32)


def contribution(index: int, count: int, salt: int = 0) -> np.ndarray:
    """Peer `index`'s input: base scaled by index + 1, so that a missing or doubled
    contribution changes the sum."""
    return (base(count) + salt) * np.float32(index + 1)


def expected_sum(indices: list[int], count: int, salt: int = 0) -> np.ndarray:
    return (base(count) + salt) * np.float32(sum(i + 1 for i in indices))


def report(name: str, **values: float) -> None:
    print(f"\n[faults] {name}: " + ", ".join(f"{k}={v:.3f}" for k, v in values.items()))


# --- functions that run inside the peers ------------------------------------------------------

def fail_then_retry(comm: pccl.Communicator, index: int, survivors: list[int],
                    count: int, victim_stall: float = 0.0,
                    restore: bool = True, quantized: bool = False) -> dict[str, Any]:
    """In-place SUM that a fault interrupts, then one retry over `survivors`.

    A survivor starts its all-reduce (all_reduce_async binds it to the current ring at
    once) before it says "starting", so the signal always lands while its operation waits
    on the victim. The victim (victim_stall > 0) says "starting" and waits that long before
    joining, so the survivors cannot finish before the signal (a fast machine could
    otherwise complete the whole all-reduce before the test process delivers it).
    `restore` False: the all-reduce runs without its restore copy, and the peer recomputes
    its input before the retry, as DiLoCo can. `quantized`: the interrupted call is quantized
    to uint8 (whose float32 partial sums accumulate in the caller's tensor); the retry is
    not, so that its sum is exact."""
    x = contribution(index, count)
    original = x.copy()
    started = time.monotonic()
    if victim_stall > 0:
        notify("starting", index)
        time.sleep(victim_stall)  # killed, or stopped and kicked, meanwhile
    try:
        # Errors before anything is sent (the victim, kicked while stopped) raise here.
        quantization = pccl.QuantizationOptions(pccl.DataType.UINT8) if quantized else None
        handle = comm.all_reduce_async(x, x, op=ReduceOp.SUM, timeout=30,
                                       restore_input=restore,
                                       quantization_options=quantization)
        if victim_stall == 0:
            notify("starting", index)
        handle.result()
        first = "no error"
    except pccl.PCCLError as e:
        first = type(e).__name__
        first_message = str(e)
    failed_at = time.monotonic()
    out: dict[str, Any] = {"first": first, "started": started, "failed_at": failed_at,
                           "intact": bool(np.array_equal(x, original))}
    if first == "no error":
        return out
    out["message"] = first_message
    if not restore:
        x = contribution(index, count)
    try:
        info = comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=30)
    except pccl.PCCLError as e:
        out["retry"] = f"{type(e).__name__}: {e}"
        return out
    out.update(retry="ok", retried_at=time.monotonic(), world=info.local_world_size,
               exact=bool(np.array_equal(x, expected_sum(survivors, count))))
    return out


def stopped_peer_after_resume(comm: pccl.Communicator, index: int) -> tuple[str, str]:
    """Runs in the stopped peer once resumed: the error of its next call."""
    x = np.ones(16, dtype=np.float32)
    try:
        comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=10)
        return "no error", ""
    except pccl.PCCLError as e:
        return type(e).__name__, str(e)


def rejoin_as_new_peer(comm: pccl.Communicator, index: int, address: str,
                       world: int) -> tuple[int, float]:
    """A kicked peer connects again with a new Communicator and all-reduces with the rest."""
    with pccl.Communicator(address, p2p_connection_pool_size=2) as fresh:
        fresh.connect(timeout=30)
        wait_for_world(fresh, world, time.monotonic() + 30)
        x = np.full(8, index + 1, dtype=np.float64)
        info = fresh.all_reduce(x, x, op=ReduceOp.SUM, timeout=30)
        return info.local_world_size, float(x[0])


def admit_and_sum(comm: pccl.Communicator, index: int, world: int) -> tuple[int, float]:
    wait_for_world(comm, world, time.monotonic() + 30)
    x = np.full(8, index + 1, dtype=np.float64)
    info = comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=30)
    return info.local_world_size, float(x[0])


def small_sum(comm: pccl.Communicator, index: int) -> tuple[int, float]:
    x = np.full(1024, index + 1, dtype=np.float32)
    info = comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=30)
    return info.local_world_size, float(x[0])


def close_comm(comm: pccl.Communicator, index: int) -> None:
    comm.close()


def next_step_after_leave(comm: pccl.Communicator, index: int) -> tuple[str, int, float]:
    """The next step after a peer left: at most one PeerLostError, then success."""
    x = np.full(1024, index + 1, dtype=np.float32)
    first = "ok"
    try:
        info = comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=30)
    except pccl.PeerLostError:
        first = "PeerLostError"
        info = comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=30)
    return first, info.local_world_size, float(x[0])


def wait_pending(comm: pccl.Communicator, index: int) -> None:
    deadline = time.monotonic() + 30
    while not comm.are_peers_pending(timeout=10):
        if time.monotonic() > deadline:
            raise TimeoutError("no pending peer appeared")
        time.sleep(0.005)  # polling the master while the joiner process starts


def vote_then_step(comm: pccl.Communicator, index: int,
                   world: int) -> tuple[int, tuple[int, float, list[int]]]:
    """update_topology() (announced first), then steps until the run has `world` peers."""
    notify("voting", index)
    comm.update_topology(timeout=15)
    voted_world = comm.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE)
    return voted_world, settle_and_sum(comm, index, world)


def settle_and_sum(comm: pccl.Communicator, index: int, world: int) -> tuple[int, float, list[int]]:
    """Admits pending peers until the run has `world` peers, then a SUM of index + 1."""
    wait_for_world(comm, world, time.monotonic() + 30)
    x = np.full(64, index + 1, dtype=np.float64)
    while True:
        try:
            info = comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=30)
            break
        except pccl.PeerLostError:
            continue
    return info.local_world_size, float(x[0]), [comm.get_attribute(a) for a in pccl.Attribute]


def loop_until_master_dies(comm: pccl.Communicator, index: int) -> dict[str, Any]:
    x = np.ones(1 << 20, dtype=np.float32)
    notify("looping", index)
    while True:
        try:
            comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=10)
            x[:] = 1
        except pccl.PCCLError as e:
            failed_at = time.monotonic()
            first = type(e).__name__
            break
    later = []
    for call in (lambda: comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=5),
                 lambda: comm.are_peers_pending(timeout=5),
                 lambda: comm.update_topology(timeout=5)):
        t0 = time.monotonic()
        try:
            call()
            later.append(("no error", 0.0))
        except pccl.PCCLError as e:
            later.append((type(e).__name__, time.monotonic() - t0))
    return {"first": first, "failed_at": failed_at, "later": later}


def alone_after_kill(comm: pccl.Communicator, index: int) -> list[str]:
    x = np.ones(4096, dtype=np.float32)
    names = []
    for _ in range(2):  # the first call may still see the dead peer's epoch
        try:
            comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=10)
            names.append("no error")
        except pccl.PCCLError as e:
            names.append(type(e).__name__)
    descriptor = pccl.ReduceOpDescriptor.from_numpy(
        x, x, pccl.ReduceDescriptor(x.size, ReduceOp.SUM, 5,
                                    pccl.ReduceOperandDescriptor(pccl.DataType.FLOAT),
                                    pccl.QuantizationOptions(
                                        algorithm=pccl.QuantizationAlgorithm.NONE)))
    try:
        comm.all_reduce_multiple_with_retry([descriptor], timeout=10)
        names.append("no error")
    except pccl.PCCLError as e:
        names.append(type(e).__name__)
    names.append("intact" if np.all(x == 1) else "changed")
    return names


MULTI_TAGS = 8
MULTI_COUNT = 2 << 20  # 8 MiB of float32 per tag


def multiple_with_retry(comm: pccl.Communicator, index: int, survivors: list[int]) -> dict[str, Any]:
    tensors = [contribution(index, MULTI_COUNT, salt=tag) for tag in range(MULTI_TAGS)]
    descriptors = [
        pccl.ReduceOpDescriptor.from_numpy(
            t, t, pccl.ReduceDescriptor(MULTI_COUNT, ReduceOp.SUM, tag,
                                        pccl.ReduceOperandDescriptor(pccl.DataType.FLOAT),
                                        pccl.QuantizationOptions(
                                            algorithm=pccl.QuantizationAlgorithm.NONE)))
        for tag, t in enumerate(tensors)]
    notify("starting", index)
    info = comm.all_reduce_multiple_with_retry(descriptors, max_in_flight=4, timeout=60)
    exact = [bool(np.array_equal(t, expected_sum(survivors, MULTI_COUNT, salt=tag)))
             for tag, t in enumerate(tensors)]
    return {"world": info.local_world_size, "tx": info.tx_bytes, "exact": exact,
            "done_at": time.monotonic()}


# --- tests --------------------------------------------------------------------------------------

def _signal_mid_all_reduce(c: Cluster, victim: int, sig: int, restore: bool = True,
                           quantized: bool = False) -> tuple[float, list[dict]]:
    survivors = [i for i in range(c.world) if i != victim]
    c.start(fail_then_retry, survivors, BIG_COUNT, 0.0, restore, quantized, peers=survivors)
    c.start(fail_then_retry, survivors, BIG_COUNT, 5.0, restore, quantized, peers=[victim])
    for _ in range(c.world):
        assert c.events.get(timeout=60)[0] == "starting"
    signalled_at = time.monotonic()
    c.kill(victim, sig)
    return signalled_at, c.collect(survivors, timeout=90)


def _check_survivors(results: list[dict], signalled_at: float, bound: float, name: str,
                     restore: bool = True) -> None:
    for r in results:
        assert r["first"] == "PeerLostError", r.get("message")
        if restore:  # without the restore copy the input may hold anything: recomputed
            assert r["intact"], "the in-place input changed although the all-reduce failed"
        assert r["retry"] == "ok", r
        assert r["world"] == 3 and r["exact"], r
    latencies = [r["failed_at"] - signalled_at for r in results]
    retries = [r["retried_at"] - signalled_at for r in results]
    report(name, max_error_latency_s=max(latencies), min_error_latency_s=min(latencies),
           max_time_to_retry_success_s=max(retries))
    assert max(latencies) < bound, f"survivors failed {latencies} s after the signal"


@pytest.mark.timeout(120)
def test_sigkill_mid_all_reduce_fails_fast_and_retry_is_exact() -> None:
    with Cluster(4) as c:
        signalled_at, results = _signal_mid_all_reduce(c, victim=2, sig=signal.SIGKILL)
        _check_survivors(results, signalled_at, 1.0, "SIGKILL -> survivors' error")
        assert c.master is not None and c.master.running


@pytest.mark.timeout(120)
def test_sigkill_mid_all_reduce_without_restore_retries_from_recomputed_input() -> None:
    with Cluster(4) as c:
        signalled_at, results = _signal_mid_all_reduce(c, victim=2, sig=signal.SIGKILL,
                                                       restore=False)
        _check_survivors(results, signalled_at, 1.0, "SIGKILL, no restore -> error",
                         restore=False)


@pytest.mark.timeout(120)
def test_sigkill_mid_quantized_all_reduce_gives_the_input_back() -> None:
    with Cluster(4) as c:
        signalled_at, results = _signal_mid_all_reduce(c, victim=2, sig=signal.SIGKILL,
                                                       quantized=True)
        _check_survivors(results, signalled_at, 1.0, "SIGKILL, quantized -> error")


@pytest.mark.timeout(120)
def test_sigstop_detected_by_heartbeat_then_kicked_peer_rejoins() -> None:
    with Cluster(4, heartbeat_timeout=HEARTBEAT_TIMEOUT) as c:
        victim = 1
        signalled_at, results = _signal_mid_all_reduce(c, victim, signal.SIGSTOP)
        _check_survivors(results, signalled_at, HEARTBEAT_TIMEOUT + 1.0,
                         "SIGSTOP -> survivors' error")
        os.kill(c.pids[victim], signal.SIGCONT)
        # The call it was stopped in fails (kicked or its ring gone); its next one is Kicked.
        interrupted = c.collect([victim], timeout=30)[0]
        assert interrupted["first"] in ("KickedError", "PeerLostError"), interrupted
        assert c.run(stopped_peer_after_resume, peers=[victim], timeout=30)[0][0] == "KickedError"
        survivors = [i for i in range(4) if i != victim]
        c.start(rejoin_as_new_peer, c.address, 4, peers=[victim])
        c.start(admit_and_sum, 4, peers=survivors)
        results = c.collect(survivors + [victim], timeout=60)
        assert results == [(4, 10.0)] * 4


@pytest.mark.timeout(90)
def test_peer_closing_between_steps() -> None:
    with Cluster(4) as c:
        assert c.run(small_sum) == [(4, 10.0)] * 4
        c.run(close_comm, peers=[3])
        results = c.run(next_step_after_leave, peers=[0, 1, 2])
        for first, world, value in results:
            assert first in ("ok", "PeerLostError")  # the retry then succeeded
            assert (world, value) == (3, 6.0)
        assert c.run(small_sum, peers=[0, 1, 2]) == [(3, 6.0)] * 3


@pytest.mark.timeout(90)
def test_peer_closing_during_update_topology() -> None:
    with Cluster(3) as c:
        joiner = c.add_peer(3, 2, 0, wait_world=False)
        c.run(wait_pending, peers=[0, 1, 2])  # a joint call of every member
        c.start(vote_then_step, 3, peers=[0])
        assert c.events.get(timeout=30)[0] == "voting"
        c.run(close_comm, peers=[1])  # leaves while member 0's vote is open
        c.start(vote_then_step, 3, peers=[2])
        assert c.events.get(timeout=30)[0] == "voting"
        c.expect_ready(joiner, timeout=30)  # admitted
        c.start(settle_and_sum, 3, peers=[joiner])
        # update_topology() returned on both voters (within its 15 s deadline: a hang raises
        # PCCLTimeoutError), and all three then agree on the run.
        voted = c.collect([0, 2], timeout=60)
        assert all(w in (2, 3) for w, _ in voted), voted
        results = [r for _, r in voted] + c.collect([joiner], timeout=60)
        for world, value, attributes in results:
            assert (world, value) == (3, 1 + 3 + 4)
            assert attributes == [3, 3, 1, 3]


WARM_SHIFTS = 50  # transfers each peer makes before the master is killed


def shift_until_master_dies(comm: pccl.Communicator, index: int) -> dict[str, Any]:
    """Async send/recv around the ring (send_async to the next peer, recv_async from the
    previous one, as a pipeline's stages do) until one fails. A transfer that works needs
    no master (its receiver decides), so the calls in flight when the master dies may
    still succeed; a failed one waits for its verdict, handed to it by the thread that
    reads the master's messages (ExecutePairThen), which must end it when the master dies
    instead of leaving it waiting. A call made after that fails at its start."""
    ids = sorted(comm.ring_order())
    me = ids.index(comm.peer_id)
    out = np.ones(1 << 16, dtype=np.float32)
    into = np.empty_like(out)
    notify("looping", index)
    calls = 0
    while True:
        errors = []
        handles = []
        for start in (lambda: comm.send_async(out, ids[(me + 1) % len(ids)], timeout=10),
                      lambda: comm.recv_async(into, ids[(me - 1) % len(ids)], timeout=10)):
            try:
                handles.append(start())
            except pccl.PCCLError as e:
                errors.append(type(e).__name__)
        for handle in handles:
            try:
                handle.result()
            except pccl.PCCLError as e:
                errors.append(type(e).__name__)
        if errors:
            return {"errors": errors, "failed_at": time.monotonic(), "calls": calls}
        calls += 1
        if calls == WARM_SHIFTS:
            notify("warm", index)


def reduce_until_master_dies(comm: pccl.Communicator, index: int) -> dict[str, Any]:
    """Two in-place all_reduce_async calls at a time (as DDP overlaps its buckets) until one
    fails. A plain all-reduce's verdict is handed to it by the thread that reads the
    master's messages (ExecuteThen), which also puts the input back when the verdict is a
    failure: when the master dies, that thread must still end every call, each failed one
    with its input intact."""
    count = 1 << 14
    buckets = [np.empty(count, dtype=np.float32) for _ in range(2)]
    notify("looping", index)
    calls = 0
    while True:
        for tag, x in enumerate(buckets):
            x.fill(index + 1 + tag)
        handles = [comm.all_reduce_async(x, x, op=ReduceOp.SUM, tag=tag, timeout=10)
                   for tag, x in enumerate(buckets)]
        errors, intact, summed = [], [], []
        for tag, (handle, x) in enumerate(zip(handles, buckets)):
            try:
                info = handle.result()
                world = info.local_world_size
                # Members 0 .. world-1 (this test never changes the ring) add index + 1 + tag.
                summed.append(bool(np.all(x == world * (world + 1) / 2 + world * tag)))
            except pccl.PCCLError as e:
                errors.append(type(e).__name__)
                intact.append(bool(np.all(x == index + 1 + tag)))
        if errors:
            return {"errors": errors, "intact": intact, "summed": summed,
                    "failed_at": time.monotonic(), "calls": calls}
        assert all(summed), summed
        calls += 1
        if calls == WARM_SHIFTS:
            notify("warm", index)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("loop", [shift_until_master_dies, reduce_until_master_dies],
                         ids=["send_recv", "all_reduce"])
def test_master_killed_ends_pending_async_calls(loop: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PCCL_MASTER_RESUME_S", "0")  # a lost master ends the run
    with Cluster(3, master_process=True) as c:
        c.start(loop)
        # Every peer makes calls before the kill, so that it lands among them (in any
        # order: each peer's events travel through its own queue feeder).
        events = sorted(c.events.get(timeout=30)[0] for _ in range(6))
        assert events == ["looping"] * 3 + ["warm"] * 3, events
        killed_at = time.monotonic()
        c.kill_master(signal.SIGKILL)
        results = c.collect(list(range(3)), timeout=60)
    for r in results:
        assert r["calls"] >= WARM_SHIFTS, r
        # Either call of the last round may be one whose verdict came before the kill (it
        # succeeded); each one that failed names the master.
        assert set(r["errors"]) == {"MasterUnavailableError"}, r
        assert r["failed_at"] - killed_at < 10.0, r
        if loop is reduce_until_master_dies:  # in place: a failed one has its input back
            assert r["intact"] and all(r["intact"]) and all(r["summed"]), r


@pytest.mark.timeout(90)
def test_master_killed_every_peer_raises_master_unavailable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Without resuming (test_master_restart.py has the default, which reconnects), a lost
    # master ends the run for every peer at once.
    monkeypatch.setenv("PCCL_MASTER_RESUME_S", "0")
    with Cluster(3, master_process=True) as c:
        c.start(loop_until_master_dies)
        for _ in range(3):
            assert c.events.get(timeout=30)[0] == "looping"
        killed_at = time.monotonic()
        c.kill_master(signal.SIGKILL)
        results = c.collect(list(range(3)), timeout=60)
        for r in results:
            assert r["first"] == "MasterUnavailableError", r
            for name, seconds in r["later"]:
                assert name == "MasterUnavailableError" and seconds < 1.0, r["later"]
        report("master SIGKILL -> peers' error",
               max_error_latency_s=max(r["failed_at"] - killed_at for r in results))


@pytest.mark.timeout(60)
def test_alone_after_the_other_peer_dies_raises_too_few_peers() -> None:
    with Cluster(2) as c:
        assert c.run(small_sum) == [(2, 3.0)] * 2
        c.kill(1)
        names = c.run(alone_after_kill, peers=[0], timeout=30)[0]
        assert names[0] in ("PeerLostError", "TooFewPeersError"), names
        assert names[1:] == ["TooFewPeersError", "TooFewPeersError", "intact"], names


@pytest.mark.timeout(120)
def test_all_reduce_multiple_with_retry_survives_sigkill() -> None:
    with Cluster(4) as c:
        victim = 3
        survivors = [0, 1, 2]
        c.start(multiple_with_retry, survivors)
        for _ in range(4):
            assert c.events.get(timeout=60)[0] == "starting"
        killed_at = time.monotonic()
        c.kill(victim)
        results = c.collect(survivors, timeout=90)
        for r in results:
            assert r["world"] == 3 and r["exact"] == [True] * MULTI_TAGS, r
        report("all_reduce_multiple_with_retry SIGKILL -> all done",
               max_seconds=max(r["done_at"] - killed_at for r in results))


# --- chaos ---------------------------------------------------------------------------------------

CHAOS_COUNT = 1 << 18  # 1 MiB of float32 per step
CHAOS_CALL_TIMEOUT = 8.0


def chaos_loop(comm: pccl.Communicator, index: int, address: str, end_at: float,
               joined: bool = False) -> dict[str, Any]:
    """All-reduces until the group agrees the run is over, surviving anything but SIGKILL.

    Each step first agrees on its number: a MAX all-reduce of (next step, wants to stop),
    so joiners and reconnected peers adopt the run's count and the group stops together.
    The step's data is base(step) in the first half (the sum must be exactly world *
    base(step)) and peer-specific integers in the second (every peer must end with the
    same hash). Each completed step is posted to Cluster.events at once, so steps of
    peers killed later still count.
    """
    step = 0
    longest = 0.0
    errors: Counter[str] = Counter()
    half = CHAOS_COUNT // 2

    def timed(call: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal longest
        t0 = time.monotonic()
        try:
            return call(*args, timeout=CHAOS_CALL_TIMEOUT, **kwargs)
        finally:
            longest = max(longest, time.monotonic() - t0)

    # Admitted just now (a spawned peer, or a kicked one that connected again): the members
    # are past this step's joint are_peers_pending().
    rejoined = joined
    while True:
        try:
            if not rejoined and timed(comm.are_peers_pending):
                timed(comm.update_topology)
            rejoined = False
            agree = np.array([step, 1.0 if time.monotonic() > end_at else 0.0])
            timed(comm.all_reduce, agree, agree, op=ReduceOp.MAX, tag=1)
            if agree[1] > 0:
                break
            step = int(agree[0])
            x = np.empty(CHAOS_COUNT, dtype=np.float32)
            x[:half] = base(half) + step % 7
            x[half:] = np.random.default_rng([step, comm.peer_id]).integers(
                -100, 100, CHAOS_COUNT - half)
            info = timed(comm.all_reduce, x, x, op=ReduceOp.SUM, tag=0)
            world = info.local_world_size
            exact = bool(np.array_equal(x[:half], (base(half) + step % 7) * np.float32(world)))
            notify("step", index, step, world, pccl.kernels.hash64(x), exact)
            step += 1
        except (pccl.PeerLostError, pccl.PCCLTimeoutError) as e:
            errors[type(e).__name__] += 1
        except pccl.TooFewPeersError:
            errors["TooFewPeersError"] += 1
            if time.monotonic() > end_at:
                break
            time.sleep(0.02)  # alone: poll for joiners (are_peers_pending above)
        except pccl.KickedError:
            errors["KickedError"] += 1
            comm.close()
            # Connect again as a new peer (it may be stopped and kicked again meanwhile).
            while time.monotonic() < end_at:
                comm = pccl.Communicator(address, p2p_connection_pool_size=2)
                try:
                    timed(comm.connect)
                    rejoined = True
                    break
                except (pccl.KickedError, pccl.PCCLTimeoutError) as e:
                    errors[f"connect: {type(e).__name__}"] += 1
                    comm.close()
            else:
                break
    comm.close()
    return {"longest_call_s": longest, "errors": dict(errors), "last_step": step}


@pytest.mark.skipif(CHAOS_SECONDS <= 0, reason="PCCL_CHAOS_SECONDS=0")
@pytest.mark.timeout(CHAOS_SECONDS + 90)
def test_chaos_kill_stop_spawn() -> None:
    rng = random.Random(20240607)
    with Cluster(5, heartbeat_timeout=HEARTBEAT_TIMEOUT) as c:
        end_at = time.monotonic() + CHAOS_SECONDS
        c.start(chaos_loop, c.address, end_at)
        killed: set[int] = set()
        stopped: dict[int, float] = {}  # index -> when to SIGCONT
        actions: Counter[str] = Counter()
        messages: list[tuple[Any, ...]] = []

        def drain(seconds: float) -> None:
            """Collects the peers' step reports for `seconds` (the chaos's pacing)."""
            until = time.monotonic() + seconds
            while (left := until - time.monotonic()) > 0:
                try:
                    messages.append(c.events.get(timeout=left))
                except queue.Empty:
                    return

        def running() -> list[int]:
            return [i for i in range(len(c.procs)) if i not in killed and i not in stopped]

        # The driver acts every 1-2 s until shortly before the end (so that the last
        # joiners are admitted and the last stopped peers resumed before the run stops).
        while time.monotonic() < end_at - 5:
            drain(rng.uniform(1.0, 2.0))
            now = time.monotonic()
            for i, when in list(stopped.items()):
                if now >= when:
                    c.kill(i, signal.SIGCONT)
                    del stopped[i]
            action = rng.choice(["kill", "stop", "spawn"])
            alive = running()
            if action == "spawn" or len(alive) <= 3:
                if len(alive) + len(stopped) < 7:
                    index = c.add_peer(len(c.procs), 2, 0, wait_world=False, rejoin=True)
                    c.start(chaos_loop, c.address, end_at, True, peers=[index])
                    actions["spawn"] += 1
            elif action == "kill":
                victim = rng.choice(alive)
                c.kill(victim, signal.SIGKILL)
                killed.add(victim)
                actions["kill"] += 1
            else:
                victim = rng.choice(alive)
                c.kill(victim, signal.SIGSTOP)
                # Sometimes shorter than the heartbeat timeout (a stall), sometimes longer
                # (the peer is kicked and reconnects).
                stopped[victim] = now + rng.uniform(0.5, 3.0)
                actions["stop"] += 1
        for i in stopped:
            c.kill(i, signal.SIGCONT)
        stopped.clear()

        summaries = []
        for i in range(len(c.procs)):
            if i in killed:
                continue
            while not c.conns[i].poll(0.1):
                drain(0.1)  # keep the peers' event pipes from filling up
            reply = c._recv(i, timeout=60)
            if reply[0] == "ready":  # a spawned peer: its connect() reply comes first
                reply = c._recv(i, timeout=60)
            assert reply[0] == "ok", f"peer {i} crashed: {reply}"
            summaries.append(reply[1])
        assert c.master is not None and c.master.running
        drain(0.5)

        steps: dict[int, set[tuple[int, int]]] = defaultdict(set)
        reporters: Counter[int] = Counter()
        for message in messages:
            if message[0] != "step":
                continue
            _, index, step, world, digest, exact = message
            assert exact, f"peer {index} step {step}: inexact result"
            steps[step].add((world, digest))
            reporters[step] += 1
        for step, outcomes in steps.items():
            assert len(outcomes) == 1, f"step {step}: peers disagree: {outcomes}"
            world = next(iter(outcomes))[0]
            assert reporters[step] <= world, f"step {step} completed twice"
        longest = max(s["longest_call_s"] for s in summaries)
        errors: Counter[str] = Counter()
        for s in summaries:
            errors.update(s["errors"])
        print(f"\n[faults] chaos: {CHAOS_SECONDS:.0f} s, actions {dict(actions)}, "
              f"{len(steps)} steps completed, longest call {longest:.2f} s, "
              f"survivors' errors {dict(errors)}")
        assert longest <= CHAOS_CALL_TIMEOUT + 1.0, f"a call took {longest:.2f} s"
        assert len(steps) >= 2 * CHAOS_SECONDS, f"only {len(steps)} steps in {CHAOS_SECONDS} s"
