"""pccl across an emulated WAN: three peers and a master in their own network namespaces,
every packet between them delayed 20 ms each way (RTT 40 ms) and capped at 200 Mbit/s per
direction by the lab's link emulator (bench/wan/network.py, bench/wan/wanemu.cc).

Checks that all-reduce results stay exact (integer-valued data, compared with numpy) when
the bytes take tens of milliseconds per hop, and that a SIGKILLed peer is still detected
fast by the survivors, whose retry then succeeds. Needs root, /dev/net/tun, `ip` and g++
(the emulator is built on first use); skips with the reason otherwise.
"""

from __future__ import annotations

import functools
import hashlib
import time
from typing import Any

import numpy as np
import pccl
import pytest
from cluster import Cluster, notify
from pccl import ReduceOp

from bench.lib.netns import enter_netns
from bench.wan.network import Lab, requirements

TOPOLOGY = "peers=3 master=own rtt=40ms rate=200mbit window=1MiB"
KILL_COUNT = 8 << 20  # 32 MiB of float32: about a second on these links, time to kill mid-way

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def lab() -> Any:
    reason = requirements()
    if reason is not None:
        pytest.skip(reason)
    with Lab(TOPOLOGY) as running:
        yield running


def enter_peer_netns(namespaces: list[str], index: int) -> None:
    """Peer prelude (runs in the peer process): move into peer `index`'s namespace."""
    enter_netns(namespaces[index])


def wan_cluster(lab: Lab, **kwargs: Any) -> Cluster:
    peers = lab.top.peers()
    return Cluster(len(peers), master_address="0.0.0.0:0", connect_host=lab.master_ip(),
                   master_prefix=["ip", "netns", "exec", lab.netns("master")],
                   peer_prelude=functools.partial(enter_peer_netns,
                                                  [lab.netns(p) for p in peers]),
                   **kwargs)


# --- functions that run inside the peers ------------------------------------------------------

def inputs(index: int, count: int, dtype: Any, salt: int) -> np.ndarray:
    """Peer `index`'s integer-valued input: sums of three stay exact in every dtype used."""
    rng = np.random.default_rng(1000 * salt + index)
    return rng.integers(-1000, 1000, count).astype(dtype)


def digest(x: np.ndarray) -> str:
    return hashlib.sha256(x.tobytes()).hexdigest()


def reduce_cases(comm: pccl.Communicator, index: int,
                 cases: list[tuple[int, str, str]]) -> list[tuple[str, float]]:
    """All-reduces each (count, dtype, op) case; returns (digest, seconds) per case."""
    out = []
    for salt, (count, dtype, op) in enumerate(cases):
        x = inputs(index, count, np.dtype(dtype), salt)
        t0 = time.monotonic()
        comm.all_reduce(x, x, op=ReduceOp[op], timeout=30)
        out.append((digest(x), time.monotonic() - t0))
    return out


def sum_or_fail(comm: pccl.Communicator, index: int, survivors: list[int]) -> dict[str, Any]:
    """A big SUM that a kill interrupts, then one retry over `survivors`."""
    x = inputs(index, KILL_COUNT, np.float32, 0)
    original = x.copy()
    notify("starting", index)
    try:
        comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=30)
        return {"first": "no error"}
    except pccl.PCCLError as e:
        first = type(e).__name__
    failed_at = time.monotonic()
    intact = bool(np.array_equal(x, original))
    info = comm.all_reduce(x, x, op=ReduceOp.SUM, timeout=30)
    expected = sum(inputs(i, KILL_COUNT, np.float32, 0) for i in survivors)
    return {"first": first, "failed_at": failed_at, "intact": intact,
            "world": info.local_world_size, "exact": bool(np.array_equal(x, expected))}


# --- tests --------------------------------------------------------------------------------------

CASES = [(1, "float32", "SUM"), (1000, "float32", "SUM"), (4097, "int32", "MAX"),
         (1 << 20, "float32", "SUM"), (3 << 20, "float64", "MIN")]


def expected_digest(count: int, dtype: str, op: str, salt: int, world: int) -> str:
    parts = [inputs(i, count, np.dtype(dtype), salt) for i in range(world)]
    fn = {"SUM": np.sum, "MAX": np.max, "MIN": np.min}[op]
    x = fn(np.stack(parts), axis=0).astype(np.dtype(dtype))
    return digest(x)


def test_all_reduce_exact_across_the_wan(lab: Lab) -> None:
    with wan_cluster(lab) as c:
        results = c.run(reduce_cases, CASES, timeout=50)
    for salt, (count, dtype, op) in enumerate(CASES):
        want = expected_digest(count, dtype, op, salt, c.world)
        got = [r[salt][0] for r in results]
        assert got == [want] * c.world, f"case {count} {dtype} {op}: results differ from numpy"
    seconds = [max(r[i][1] for r in results) for i in range(len(CASES))]
    print("\n[wan] all-reduce seconds per case (RTT 40 ms): " +
          ", ".join(f"{n} {d} {o}: {s:.3f}" for (n, d, o), s in zip(CASES, seconds)))
    stats = lab.stats()
    assert stats["write_errors"] == 0
    assert sum(link["tx_bytes"] for link in stats["links"].values()) > 3 * (1 << 20)


def next_link_stripes(comm: pccl.Communicator, index: int) -> tuple[int, float]:
    comm.all_reduce(np.ones(1 << 16, np.float32), np.zeros(1 << 16, np.float32),
                    op=ReduceOp.SUM, timeout=30)
    link = comm.stats().links[0]
    return link.stripes, link.rtt_s


def test_a_long_link_stripes_over_the_whole_pool(lab: Lab) -> None:
    # Over 40 ms each connection's rate is capped at window / RTT: every connection of the
    # pool carries segments (on loopback only 2 do: test_stats.py).
    with wan_cluster(lab, pool_size=4) as c:
        results = c.run(next_link_stripes, timeout=40)
    for stripes, rtt_s in results:
        assert rtt_s >= 0.035, rtt_s
        assert stripes == 4


def test_killed_peer_detected_and_retry_succeeds(lab: Lab) -> None:
    victim = 2
    with wan_cluster(lab, heartbeat_timeout=3.0) as c:
        survivors = [i for i in range(c.world) if i != victim]
        c.start(sum_or_fail, survivors, peers=survivors)
        c.start(sum_or_fail, survivors, peers=[victim])
        for _ in range(c.world):
            assert c.events.get(timeout=30)[0] == "starting"
        killed_at = time.monotonic()
        c.kill(victim)
        results = c.collect(survivors, timeout=45)
    for r in results:
        assert r["first"] == "PeerLostError", r
        assert r["intact"], "the in-place input changed although the all-reduce failed"
        assert r["world"] == len(survivors) and r["exact"], r
    latency = max(r["failed_at"] for r in results) - killed_at
    print(f"\n[wan] survivors failed {latency:.3f} s after SIGKILL (RTT 40 ms)")
    assert latency < 5.0
