"""Runs in an environment with numpy only, torch only, or both (test_imports.py): imports
pccl, then has two communicators of one process all-reduce and sync shared state with the
tensors that environment has. Prints "ok <what it used>" on success.

    python import_check.py numpy|torch|both
"""

from __future__ import annotations

import importlib.util
import sys
import threading


def main(kind: str) -> None:
    have = {m: importlib.util.find_spec(m) is not None for m in ("numpy", "torch")}
    want = {"numpy": {"numpy": True, "torch": False}, "torch": {"numpy": False, "torch": True},
            "both": {"numpy": True, "torch": True}}[kind]
    assert have == want, f"environment has {have}, expected {want}"

    import pccl

    assert "numpy" not in sys.modules and "torch" not in sys.modules, "import pccl pulled them"
    assert pccl.cuda.is_available() is False

    def tensor(value: float):
        if have["torch"]:
            import torch

            return torch.full((1000,), value, dtype=torch.float32)
        import numpy as np

        return np.full(1000, value, dtype=np.float32)

    with pccl.MasterNode("127.0.0.1:0") as master:
        address = f"127.0.0.1:{master.port}"
        comms = [pccl.Communicator(address) for _ in range(2)]
        comms[0].connect(timeout=20)  # the first peer is the run at once
        joining = threading.Thread(target=comms[1].connect, kwargs={"timeout": 20})
        joining.start()  # returns once the first peer admits it
        comms[0].wait_for_world(2, timeout=20)
        joining.join()
        data = [tensor(i + 1.0) for i in range(2)]
        states = [pccl.SharedState([pccl.TensorInfo.from_torch(tensor(i), "w") if have["torch"]
                                    else pccl.TensorInfo.from_numpy(tensor(i), "w")])
                  for i in range(2)]
        results: list[object] = [None, None]

        def step(i: int) -> None:
            info = comms[i].all_reduce(data[i], data[i], op=pccl.ReduceOp.SUM, timeout=20)
            states[i].revision = 1
            sync = comms[i].sync_shared_state(states[i], timeout=20)
            results[i] = (info.local_world_size, sync.rx_bytes)

        threads = [threading.Thread(target=step, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r[0] for r in results] == [2, 2], results  # type: ignore[index]
        assert all(float(d[0]) == 3.0 and float(d[-1]) == 3.0 for d in data), data
        # One of the two different states won; the other peer received its 4000 bytes.
        assert sorted(r[1] for r in results) == [0, 4000], results  # type: ignore[index]
        w = [s.tensor_infos[0]._tensor for s in states]
        assert float(w[0][0]) == float(w[1][0])
        for c in comms:
            c.close()
    if have["torch"] and not have["numpy"]:
        import torch
        from pccl.diloco import DiLoCo  # noqa: F401 - DiLoCo needs torch only

        assert pccl.DataType.from_torch_dtype(torch.bfloat16) is pccl.DataType.BFLOAT16
    print("ok", "torch" if have["torch"] else "numpy", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
