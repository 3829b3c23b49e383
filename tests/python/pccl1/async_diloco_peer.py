"""Async DiLoCo written against PCCL 1.0's API, as upstream's examples do it (no
pccl.diloco): outer parameters are shared state; each outer step all-reduces the
pseudo-gradient on a background thread while the next inner phase runs, and applies it
one step late. A late joiner receives the outer parameters, then (having no all-reduce of
its own in flight) syncs once more, RECEIVE_ONLY, to pick up the result the members
applied meanwhile.

Prints one JSON line per outer step: {"revision", "world", "hash"} (hash of the outer
parameters, which must be equal on every peer at every revision). Usage:
    python async_diloco_peer.py MASTER_ADDRESS SEED OUTER_STEPS
"""

import hashlib
import json
import sys
import threading
import time

import torch
from pccl import (
    Attribute,
    Communicator,
    DataType,
    QuantizationAlgorithm,
    QuantizationOptions,
    ReduceDescriptor,
    ReduceOp,
    ReduceOpDescriptor,
    ReduceOperandDescriptor,
    SharedState,
    SharedStateSyncStrategy,
    TensorInfo,
)

DIM = 4096
INNER_STEPS = 5


def main() -> None:
    address, seed, outer_steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.manual_seed(0)
    outer = [torch.randn(DIM), torch.randn(DIM // 2)]  # identical on the founding peers
    if seed > 1:
        for t in outer:
            t.add_(1.0)  # a joiner's own init differs: it must receive the run's
    local = [t.clone() for t in outer]
    target = torch.Generator().manual_seed(seed)
    goals = [torch.randn(t.shape, generator=target) for t in outer]  # each peer's own data
    state = SharedState([TensorInfo.from_torch(t, f"outer.{i}") for i, t in enumerate(outer)])
    state.revision = 0

    communicator = Communicator(address, 0)
    communicator.connect(n_attempts=15)
    thread = None
    pseudo = [torch.zeros_like(t) for t in outer]
    in_flight = None
    first = True
    late = False
    while state.revision < outer_steps:
        topology_updated = first
        world = communicator.get_attribute(Attribute.GLOBAL_WORLD_SIZE)
        if not first or world == 1:
            if communicator.are_peers_pending():
                if thread is not None:
                    thread.join()  # the all-reduce in flight completes on the old ring
                communicator.update_topology()
                topology_updated = True
        first = False
        world = communicator.get_attribute(Attribute.GLOBAL_WORLD_SIZE)
        if world < 2:
            time.sleep(0.05)
            continue
        if topology_updated:  # new peers catch up; members move no bytes
            communicator.sync_shared_state(state)
            if state.revision > 0 and in_flight is None:
                late = True
        strategy = SharedStateSyncStrategy.ENFORCE_POPULAR
        if thread is not None:  # apply the previous step's average, one step late
            thread.join()
            thread = None
            with torch.no_grad():
                for o, d in zip(outer, in_flight):
                    o.sub_(d)
            in_flight = None
        elif late:  # nothing of our own in flight: eavesdrop on the members' result
            strategy = SharedStateSyncStrategy.RECEIVE_ONLY
            late = False
        state.revision += 1
        communicator.sync_shared_state(state, strategy)
        print(json.dumps({"revision": state.revision, "world": world,
                          "hash": digest(outer)}), flush=True)
        for lo, o in zip(local, outer):
            lo.copy_(o)
        for _ in range(INNER_STEPS):  # inner phase: move towards this peer's goal
            with torch.no_grad():
                for lo, g in zip(local, goals):
                    lo.add_(0.1 * (g - lo))
        with torch.no_grad():
            for p, o, lo in zip(pseudo, outer, local):
                torch.sub(o, lo, out=p)
        in_flight = [p.clone() for p in pseudo]
        descriptors = [
            ReduceOpDescriptor.from_torch(
                d, d, ReduceDescriptor(count=d.numel(), op=ReduceOp.AVG, tag=i,
                                       operand_descriptor=ReduceOperandDescriptor(
                                           datatype=DataType.FLOAT),
                                       quantization_options=QuantizationOptions(
                                           quantized_datatype=DataType.FLOAT,
                                           algorithm=QuantizationAlgorithm.NONE)))
            for i, d in enumerate(in_flight)]
        thread = threading.Thread(
            target=communicator.all_reduce_multiple_with_retry, args=(descriptors,),
            kwargs={"max_in_flight": 2})
        thread.start()
        time.sleep(0.05)  # the inner phase of the next step overlaps the all-reduce
    if thread is not None:
        thread.join()


def digest(tensors: list[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


if __name__ == "__main__":
    main()
