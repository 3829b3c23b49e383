"""No honest message is limited by a frame cap: a joiner of a shared state of 2,000
tensors with long names, held by 5 sources, receives exactly its bytes (the master's sync
plan for it is well over the old 1 MiB frame cap)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pccl
import pytest
from cluster import Cluster, wait_for_world

TENSORS = 2000
NUMEL = 64
SOURCES = 5
# Long keys, as a model's parameter names and optimizer state are: ~100 bytes each, so
# the joiner's plan (every key once per source) is about 2000 x 5 x 140 bytes = 1.4 MB.
KEY = "model.decoder.layers.{:04d}.self_attention.linear_qkv.weight.exp_avg_sq.shard-{:02d}-of-08"


def state(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(NUMEL).astype(np.float32) for _ in range(TENSORS)]


def sync(comm: pccl.Communicator, index: int, seed: int, revision: int) -> dict[str, Any]:
    arrays = state(seed)
    shared = pccl.SharedState([pccl.TensorInfo.from_numpy(a, KEY.format(i, i % 8))
                               for i, a in enumerate(arrays)])
    shared.revision = revision
    info = comm.sync_shared_state(shared, timeout=60)
    return {"rx": info.rx_bytes, "tx": info.tx_bytes, "revision": shared.revision,
            "digest": [pccl.kernels.hash64(a) for a in arrays]}


def admit(comm: pccl.Communicator, index: int, world: int) -> None:
    wait_for_world(comm, world, time.monotonic() + 60)


@pytest.mark.timeout(180)
def test_joiner_of_2000_tensors_from_5_sources_gets_exactly_its_bytes() -> None:
    with Cluster(SOURCES) as c:
        # The sources agree (same seed) at revision 1.
        assert {r["revision"] for r in c.run(sync, 1, 1, timeout=120)} == {1}
        admitting = c.start(admit, SOURCES + 1)
        joiner = c.add_peer(SOURCES, 2, 0, wait_world=False)
        c.expect_ready(joiner, timeout=60)
        c.collect(admitting)
        running = c.start(sync, 1, 2, peers=list(range(SOURCES)))
        joined = c.start(sync, 99, 0, peers=[joiner])  # its own content, outdated revision
        sources = c.collect(running, timeout=120)
        received = c.collect(joined, timeout=120)[0]
    expected = state(1)
    assert received["rx"] == TENSORS * NUMEL * 4
    assert received["revision"] == 2
    assert received["digest"] == [pccl.kernels.hash64(a) for a in expected]
    assert sum(s["tx"] for s in sources) == TENSORS * NUMEL * 4
    assert all(s["rx"] == 0 for s in sources)
