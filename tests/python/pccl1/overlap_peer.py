"""A PCCL 1.0-style data-parallel loop that overlaps communication with compute: every
step's gradients are all-reduced by all_reduce_multiple_with_retry on a background thread
while the main thread "computes"; the main thread admits joiners with the documented
pattern (are_peers_pending(), then join the thread, then update_topology()). The run's
step number and a stop flag travel with the gradients (a MAX), so a joiner adopts the
step and every peer stops after the same step, the first after STOP_FILE appears.

Prints one JSON line per step: {"step", "world", "exact"}. Usage:
    python overlap_peer.py MASTER_ADDRESS STOP_FILE
"""

import json
import os
import sys
import threading
import time

import numpy as np
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
)

N_TENSORS = 3
COUNT = 1 << 16
STEP_TAG = 99


def describe(tensor: np.ndarray, op: ReduceOp, tag: int, dtype: DataType) -> ReduceOpDescriptor:
    return ReduceOpDescriptor.from_numpy(
        tensor, tensor,
        ReduceDescriptor(count=tensor.size, op=op, tag=tag,
                         operand_descriptor=ReduceOperandDescriptor(datatype=dtype),
                         quantization_options=QuantizationOptions(
                                           quantized_datatype=DataType.FLOAT,
                                           algorithm=QuantizationAlgorithm.NONE)))


def main() -> None:
    address, stop_file = sys.argv[1], sys.argv[2]
    communicator = Communicator(address, 0)
    communicator.connect(n_attempts=15)
    thread = None
    work: dict = {}
    step = 0  # the step this peer contributes next; a joiner learns the run's
    stop = False
    it = 0
    while not stop:
        it += 1
        world = communicator.get_attribute(Attribute.GLOBAL_WORLD_SIZE)
        if it > 1 or world == 1:
            if communicator.are_peers_pending():
                if thread is not None:
                    thread.join()
                    thread = None
                    step, stop = finish(work)
                communicator.update_topology()
        world = communicator.get_attribute(Attribute.GLOBAL_WORLD_SIZE)
        if world < 2:
            time.sleep(0.05)
            continue
        if thread is not None:  # the previous step's all-reduce
            thread.join()
            thread = None
            step, stop = finish(work)
            if stop:
                break
        # Every peer contributes ones: the sum is the world size everywhere.
        grads = [np.ones(COUNT, dtype=np.float32) for _ in range(N_TENSORS)]
        counter = np.array([step, float(os.path.exists(stop_file))], dtype=np.float64)
        descriptors = [describe(g, ReduceOp.SUM, i, DataType.FLOAT) for i, g in enumerate(grads)]
        descriptors.append(describe(counter, ReduceOp.MAX, STEP_TAG, DataType.DOUBLE))
        work = {"grads": grads, "counter": counter}

        def reduce(descriptors=descriptors, work=work) -> None:
            work["info"] = communicator.all_reduce_multiple_with_retry(descriptors,
                                                                      max_in_flight=2)

        thread = threading.Thread(target=reduce)
        thread.start()
        time.sleep(0.02)  # compute
    if thread is not None:
        thread.join()
        finish(work)


def finish(work: dict) -> tuple[int, bool]:
    """Reports a completed step; returns the next step number and whether to stop."""
    info = work["info"]
    exact = all(bool(np.all(g == info.local_world_size)) for g in work["grads"])
    run_step = int(work["counter"][0])
    print(json.dumps({"step": run_step, "world": info.local_world_size, "exact": exact}),
          flush=True)
    return run_step + 1, bool(work["counter"][1] > 0)


if __name__ == "__main__":
    main()
