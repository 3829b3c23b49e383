"""ReduceMode.VERIFIED (csrc/pccl/comm/exact_allreduce.cc), 4 peers in real processes.

Honest peers: VERIFIED, VERIFIED | PRIVATE and EXACT give the same bytes. A peer started with
the test-only fault switch (PCCL_TEST_CORRUPT_STEP) flips a bit of one segment it sends in a
VERIFIED sum: a reduce-scatter partial it forwards, the chunk it owns (a wrong reduction),
or an all-gather copy it forwards. Every peer raises IntegrityError naming that link (or
that owner), nobody's output changes, and once that peer is gone the retry among the
survivors is exact.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pccl
import pytest
from cluster import Cluster
from pccl import ReduceMode, ReduceOp

WORLD = 4
COUNT = 300_000  # about 1.2 MB of residues: several segments per chunk
FAULTY = 1
SENTINEL = -7.0


def peer_input(index: int) -> np.ndarray:
    rng = np.random.default_rng(50 + index)
    return (rng.standard_normal(COUNT) * 100).astype(np.float32)


def every_mode(comm: pccl.Communicator, index: int) -> dict[str, bytes]:
    x = peer_input(index)
    results = {}
    for name, mode in (("exact", ReduceMode.EXACT), ("verified", ReduceMode.VERIFIED),
                       ("verified+private", ReduceMode.VERIFIED | ReduceMode.PRIVATE)):
        out = np.empty_like(x)
        comm.all_reduce(x, out, op=ReduceOp.SUM, mode=mode, timeout=60)
        results[name] = out.tobytes()
    out = np.empty_like(x)
    comm.all_reduce_async(x, out, op=ReduceOp.SUM, tag=5, mode=ReduceMode.VERIFIED,
                          timeout=60).wait()
    results["verified async"] = out.tobytes()
    return results


@pytest.mark.timeout(120)
def test_verified_sums_are_the_exact_sums() -> None:
    with Cluster(WORLD) as c:
        per_peer = c.run(every_mode, timeout=90)
    distinct = {r for p in per_peer for r in p.values()}
    assert len(distinct) == 1, f"{len(distinct)} different results"


# --- a corrupting member -----------------------------------------------------------------------

def corrupt_from_the_start(index: int) -> None:
    """Peer prelude: the faulty peer's fault switch, set before pccl reads its parameters."""
    if index == FAULTY:
        os.environ["PCCL_TEST_CORRUPT_STEP"] = os.environ["TEST_VERIFIED_STEP"]


def falsified(comm: pccl.Communicator, index: int) -> dict[str, Any]:
    x = peer_input(index)
    out = np.full_like(x, SENTINEL)
    ring = comm.ring_order()
    try:
        comm.all_reduce(x, out, op=ReduceOp.SUM, mode=ReduceMode.VERIFIED, timeout=60)
        error = None
    except pccl.IntegrityError as e:
        error = str(e)
    in_place = x.copy()
    try:
        comm.all_reduce(in_place, in_place, op=ReduceOp.SUM, mode=ReduceMode.VERIFIED,
                        timeout=60)
        in_place_error = None
    except pccl.IntegrityError as e:
        in_place_error = str(e)
    return {"peer_id": comm.peer_id, "ring": ring, "error": error,
            "in_place_error": in_place_error,
            "untouched": bool(np.all(out == SENTINEL)) and bool(np.array_equal(in_place, x))}


def retry_without_the_faulty_peer(comm: pccl.Communicator, index: int) -> dict[str, bytes]:
    x = peer_input(index)
    for _ in range(5):  # the first calls may still run on the dead peer's ring
        try:
            out = np.empty_like(x)
            comm.all_reduce(x, out, op=ReduceOp.SUM, mode=ReduceMode.VERIFIED, timeout=30)
            break
        except pccl.PeerLostError:
            continue
    exact = np.empty_like(x)
    comm.all_reduce(x, exact, op=ReduceOp.SUM, mode=ReduceMode.EXACT, timeout=30)
    return {"verified": out.tobytes(), "exact": exact.tobytes()}


def peer_name(result: dict[str, Any], peer_id: int) -> str:
    return f"peer {peer_id} (rank {result['ring'].index(peer_id)})"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("step,where", [(1, "reduce-scatter"), (3, "owner"),
                                        (4, "all-gather")])
def test_a_corrupting_member_is_caught_and_named_before_anyone_commits(
        step: int, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # With 4 peers the ring's steps are 0-2 (reduce-scatter; the faulty peer forwards a
    # partial at 1), 3 (it sends the chunk it owns) and 4-5 (it forwards all-gather copies).
    monkeypatch.setenv("TEST_VERIFIED_STEP", str(step))
    with Cluster(WORLD, peer_prelude=corrupt_from_the_start) as c:
        results = c.run(falsified, timeout=90)
        faulty = results[FAULTY]
        ring = faulty["ring"]
        culprit = peer_name(faulty, faulty["peer_id"])
        successor = peer_name(faulty, ring[(ring.index(faulty["peer_id"]) + 1) % WORLD])
        expected = {"reduce-scatter": f"from {culprit} to {successor}, in the reduce-scatter",
                    "owner": f"in its reduction by its owner, {culprit}",
                    "all-gather": f"from {culprit} to {successor}, in the all-gather"}[where]
        for r in results:
            for error in (r["error"], r["in_place_error"]):
                assert error is not None and expected in error, (expected, error)
                assert "1 of 4 chunks failed" in error, error
            assert r["untouched"], "an output changed although the sum did not add up"
        assert c.kill(FAULTY)
        survivors = [i for i in range(WORLD) if i != FAULTY]
        retried = c.run(retry_without_the_faulty_peer, peers=survivors, timeout=90)
    assert len({r["verified"] for r in retried} | {r["exact"] for r in retried}) == 1
    total = sum(peer_input(i).astype(np.float64) for i in survivors)
    got = np.frombuffer(retried[0]["verified"], dtype=np.float32)
    assert float(np.max(np.abs(got - total))) <= 1e-6 * float(np.max(np.abs(total)))
