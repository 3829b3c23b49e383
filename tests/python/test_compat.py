"""PCCL 1.0's Python API, call by call, where it is easy to get wrong: error forms and the
point at which they are raised, enum values, aliases of the earlier API, and the master's
command. Multi-peer scripts in PCCL 1.0's style are in test_pccl1_scripts.py."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pccl
import pytest
import torch
from pccl import Result

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def alone() -> Iterator[pccl.Communicator]:
    """A connected communicator that is the run's only peer."""
    with pccl.MasterNode("127.0.0.1:0") as master, \
            pccl.Communicator(f"127.0.0.1:{master.port}") as comm:
        comm.connect(timeout=10)
        yield comm


@pytest.fixture
def pair() -> Iterator[tuple[pccl.Communicator, pccl.Communicator]]:
    """Two communicators of one process that make up a run (threads stand in for peers)."""
    with pccl.MasterNode("127.0.0.1:0") as master:
        address = f"127.0.0.1:{master.port}"
        with pccl.Communicator(address) as a, pccl.Communicator(address) as b:
            a.connect(timeout=10)
            t = threading.Thread(target=b.connect, kwargs={"timeout": 10})
            t.start()
            a.wait_for_world(2, timeout=10)
            t.join()
            yield a, b


def test_all_reduce_async_raises_at_the_call_when_it_cannot_start(
        alone: pccl.Communicator) -> None:
    x = torch.ones(8)
    with pytest.raises(pccl.TooFewPeersError) as e:
        alone.all_reduce_async(x, x, op=pccl.ReduceOp.SUM)
    assert e.value.result is Result.TOO_FEW_PEERS
    assert torch.equal(x, torch.ones(8))  # nothing was touched
    unconnected = pccl.Communicator("127.0.0.1:1")
    with pytest.raises(pccl.InvalidUsageError, match="connect"):
        unconnected.all_reduce_async(x, x, op=pccl.ReduceOp.SUM)
    unconnected.close()


def test_are_peers_pending_alone_is_answered_and_update_topology_returns(
        alone: pccl.Communicator) -> None:
    assert alone.are_peers_pending(timeout=5) is False
    alone.update_topology(timeout=5)


def test_wait_for_world_waits_for_the_joiner_without_asking_again_and_again() -> None:
    # wait_for_world's query is held by the master until a peer is pending (no polling): a
    # query per second of waiting at most (the wait's cap), plus the one that is answered,
    # where polling every 10 ms asked about 100 times a second.
    with pccl.MasterNode("127.0.0.1:0") as master:
        address = f"127.0.0.1:{master.port}"
        with pccl.Communicator(address) as a, pccl.Communicator(address) as b:
            a.connect(timeout=10)
            waited: list[float] = []

            def wait() -> None:
                start = time.monotonic()
                a.wait_for_world(2, timeout=30)
                waited.append(time.monotonic() - start)

            waiting = threading.Thread(target=wait)
            waiting.start()
            # The joiner comes 2 s late: a timer, not a sleep in the test's thread.
            timer = threading.Timer(2.0, b.connect, kwargs={"timeout": 20})
            timer.start()
            waiting.join(timeout=40)
            timer.join(timeout=40)
            assert not waiting.is_alive() and len(waited) == 1
            assert a.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) == 2
            assert b.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) == 2
            assert waited[0] >= 1.5  # it did wait for the late joiner
            assert master.status()["counters"]["pending_queries"] <= waited[0] + 2


def test_optimize_topology_alone_raises_with_invalid_usage(alone: pccl.Communicator) -> None:
    with pytest.raises(pccl.PCCLError) as e:
        alone.optimize_topology(timeout=5)
    assert e.value.result is Result.INVALID_USAGE


def test_attribute_values_are_pccl1s(alone: pccl.Communicator) -> None:
    assert [int(a) for a in pccl.Attribute] == [1, 2, 3, 4]
    assert alone.get_attribute(pccl.Attribute.GLOBAL_WORLD_SIZE) == 1
    assert alone.current_world_size() == 1  # the earlier API's name


def test_pcclerror_accepts_pccl1s_constructor_and_check() -> None:
    e = pccl.PCCLError(Result.INVALID_USAGE, "pcclUpdateTopology")
    assert e.result is Result.INVALID_USAGE
    assert "pcclUpdateTopology" in str(e) and "INVALID_USAGE" in str(e)
    pccl.PCCLError.check(Result.SUCCESS, "f")
    with pytest.raises(pccl.PCCLError) as raised:
        pccl.PCCLError.check(int(Result.TOO_FEW_PEERS), "f")
    assert raised.value.result is Result.TOO_FEW_PEERS
    mine = pccl.PeerLostError("peer gone")  # pccl's own form still works
    assert mine.result is Result.RANK_CONNECTION_LOST and str(mine) == "peer gone"


def test_sync_with_collectives_in_flight_says_pending_async_ops(
        pair: tuple[pccl.Communicator, pccl.Communicator]) -> None:
    a, b = pair
    x = np.ones(1 << 10, dtype=np.float32)
    handle = a.all_reduce_async(x, x, op=pccl.ReduceOp.SUM, timeout=10)
    state = pccl.SharedState([pccl.TensorInfo.from_numpy(np.zeros(4), "w")])
    with pytest.raises(pccl.InvalidUsageError) as e:
        a.sync_shared_state(state)
    assert e.value.result is Result.PENDING_ASYNC_OPS
    y = np.ones(1 << 10, dtype=np.float32)
    b.all_reduce(y, y, op=pccl.ReduceOp.SUM, timeout=10)
    assert handle.result().local_world_size == 2 and x[0] == 2


def test_earlier_api_aliases(alone: pccl.Communicator) -> None:
    info = pccl.ReduceInfo(3, 10, 20)
    assert info.world_size == 3
    x = torch.ones(5)
    with pytest.raises(pccl.TooFewPeersError):  # numel= is accepted, then alone
        alone.all_reduce_async(x, x, numel=5, op=pccl.ReduceOp.SUM)
    with pytest.raises(ValueError, match="numel"):
        alone.all_reduce(x, x, numel=4, op=pccl.ReduceOp.SUM)
    state = pccl.SharedState([pccl.TensorInfo.from_torch(torch.zeros(2), "w")])
    state.push_revision()
    state.push_revision()
    assert state.revision == 2
    assert pccl.DeviceType.from_torch_device_type("cuda") is pccl.DeviceType.CUDA
    assert pccl.DeviceType.from_torch_device_type("mps") is None


def test_mixed_tensor_kinds_are_refused(alone: pccl.Communicator) -> None:
    with pytest.raises(TypeError, match="one kind"):
        alone.all_reduce(torch.ones(4), np.ones(4, dtype=np.float32), op=pccl.ReduceOp.SUM)


def test_module_attributes() -> None:
    assert isinstance(pccl.__version__, str) and pccl.__version__
    assert pccl.cuda.is_available() is False
    assert pccl.cuda.is_cuda_available is False
    assert "cuda" in pccl.__all__


def test_connect_without_master_says_failed_to_connect() -> None:
    comm = pccl.Communicator("127.0.0.1:1")
    with pytest.raises(pccl.MasterUnavailableError, match="Failed to connect to the master node"):
        comm.connect(n_attempts=1, timeout=5)
    comm.close()


def test_python_dash_m_pccl_master_runs_without_warnings() -> None:
    out = subprocess.run([sys.executable, "-W", "error", "-m", "pccl.master", "--help"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "RuntimeWarning" not in out.stderr
    assert "--listen-address" in out.stdout


def test_with_master_node_stops_at_block_end_and_collected_nodes_keep_serving() -> None:
    with pccl.MasterNode("127.0.0.1:0") as node:
        assert node.running
    assert not node.running
    # A node dropped while serving keeps serving (PCCL 1.0 blocks in __del__ instead);
    # interrupt() through a second reference stops it.
    node = pccl.MasterNode("127.0.0.1:0")
    node.run()
    server = node._server
    del node
    assert server is not None and server.running
    server.interrupt()
    server.join()
    assert not server.running


def test_raw_pointer_descriptors_are_accepted(
        pair: tuple[pccl.Communicator, pccl.Communicator]) -> None:
    a, b = pair
    arrays = [np.full(64, i + 1, dtype=np.float32) for i in range(2)]

    def raw(x: np.ndarray) -> pccl.ReduceOpDescriptor:
        return pccl.ReduceOpDescriptor(
            x.ctypes.data, x.ctypes.data,
            pccl.ReduceDescriptor(64, pccl.ReduceOp.SUM, 0,
                                  pccl.ReduceOperandDescriptor(pccl.DataType.FLOAT),
                                  pccl.QuantizationOptions(
                                      pccl.DataType.FLOAT,
                                      pccl.QuantizationAlgorithm.NONE)))

    out: list[pccl.ReduceInfo] = []
    t = threading.Thread(
        target=lambda: out.append(b.all_reduce_multiple_with_retry([raw(arrays[1])])))
    t.start()
    info = a.all_reduce_multiple_with_retry([raw(arrays[0])])
    t.join()
    assert info.local_world_size == 2 and out[0].local_world_size == 2
    assert all(np.all(x == 3) for x in arrays)


def test_importing_pccl_does_not_import_torch_or_numpy() -> None:
    code = ("import sys, pccl; assert 'torch' not in sys.modules, 'torch'; "
            "assert 'numpy' not in sys.modules, 'numpy'; pccl.kernels")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
