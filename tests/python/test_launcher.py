"""pccl-run: real peers through the launcher, a failing peer, Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

PEER_SCRIPT = '''
import os, sys, time
import numpy as np
import pccl
comm = pccl.Communicator(os.environ["PCCL_MASTER_ADDR"])
comm.connect(timeout=60)
world = int(os.environ["PCCL_WORLD_SIZE"])
comm.wait_for_world(world, timeout=60)
x = np.ones(8, dtype=np.float32)
comm.all_reduce(x, x, op=pccl.ReduceOp.SUM)
print(f"sum={x[0]}", flush=True)
comm.close()
sys.exit(int(sys.argv[1]) if os.environ["PCCL_PEER_INDEX"] == "1" else 0)
'''

SLEEPER = '''
import os, sys, time
print(f"pid={os.getpid()}", flush=True)
while True:
    time.sleep(1)
'''


def run_launcher(script: Path, *args: str, peers: int = 2) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pccl.launcher", "-n", str(peers), str(script),
                           *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.timeout(150)
def test_peers_run_the_script_with_prefixed_output(tmp_path: Path) -> None:
    script = tmp_path / "peer.py"
    script.write_text(PEER_SCRIPT)
    done = run_launcher(script, "0")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[peer 0] sum=2.0" in done.stdout
    assert "[peer 1] sum=2.0" in done.stdout


@pytest.mark.timeout(150)
def test_a_failing_peer_makes_the_launcher_fail(tmp_path: Path) -> None:
    script = tmp_path / "peer.py"
    script.write_text(PEER_SCRIPT)
    done = run_launcher(script, "3")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "peer 1 failed with status 3" in done.stdout


@pytest.mark.timeout(60)
def test_ctrl_c_leaves_no_process_behind(tmp_path: Path) -> None:
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    with subprocess.Popen([sys.executable, "-m", "pccl.launcher", "-n", "2", str(script)],
                          stdout=subprocess.PIPE, text=True) as launcher:
        assert launcher.stdout is not None
        pids = []
        for line in launcher.stdout:  # read until both peers said who they are
            if "pid=" in line:
                pids.append(int(line.split("pid=")[1]))
                if len(pids) == 2:
                    break
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=30) == 130
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


JOIN_SCRIPT = '''
import os, time
import numpy as np
import pccl
comm = pccl.Communicator(os.environ["PCCL_MASTER_ADDR"])
comm.connect(timeout=60)  # the late peer returns once peer 0 admits it
comm.wait_for_world(2, timeout=60)
x = np.ones(8, dtype=np.float32)
comm.all_reduce(x, x, op=pccl.ReduceOp.SUM)
print(f"index={os.environ['PCCL_PEER_INDEX']} world={os.environ['PCCL_WORLD_SIZE']} "
      f"sum={x[0]}", flush=True)
comm.close()
'''

KILL_SCRIPT = '''
import os, time
import numpy as np
import pccl
comm = pccl.Communicator(os.environ["PCCL_MASTER_ADDR"])
comm.connect(timeout=60)
comm.wait_for_world(2, timeout=60)
x = np.ones(8, dtype=np.float32)
comm.all_reduce(x, x, op=pccl.ReduceOp.SUM)
print("both admitted", flush=True)
if os.environ["PCCL_PEER_INDEX"] == "1":
    time.sleep(120)  # the launcher kills this peer
deadline = time.monotonic() + 60
while time.monotonic() < deadline:  # peer 0 all-reduces until its partner is gone
    try:
        comm.all_reduce(x, x, op=pccl.ReduceOp.SUM, timeout=10)
    except (pccl.PeerLostError, pccl.TooFewPeersError) as e:
        print(f"partner gone: {type(e).__name__}", flush=True)
        break
    time.sleep(0.05)
comm.close()
'''


@pytest.mark.timeout(150)
def test_spawn_later_starts_a_peer_that_joins_the_run(tmp_path: Path) -> None:
    script = tmp_path / "join.py"
    script.write_text(JOIN_SCRIPT)
    done = subprocess.run([sys.executable, "-m", "pccl.launcher", "-n", "1", "--spawn-later",
                           "1", str(script)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[pccl-run] started peer 1" in done.stdout
    # the late peer has the next index and sees the launch-time world size
    assert "[peer 0] index=0 world=1 sum=2.0" in done.stdout
    assert "[peer 1] index=1 world=1 sum=2.0" in done.stdout


@pytest.mark.timeout(150)
def test_kill_sigkills_a_peer_and_the_run_still_succeeds(tmp_path: Path) -> None:
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    done = subprocess.run([sys.executable, "-m", "pccl.launcher", "-n", "2", "--kill", "1@5",
                           str(script)], capture_output=True, text=True, timeout=120,
                          check=False)
    # a peer killed on purpose does not make the launcher fail
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[pccl-run] killed peer 1" in done.stdout
    assert "[peer 1] both admitted" in done.stdout
    assert "[peer 0] partner gone:" in done.stdout


AUTH_SCRIPT = '''
import os
import numpy as np
import pccl
address = os.environ["PCCL_MASTER_ADDR"]
if os.environ["PCCL_PEER_INDEX"] == "0":
    # A process that does not hold the run's secret, at the same master.
    stranger = pccl.Communicator(address, secret="not the secret of this run")
    try:
        stranger.connect(timeout=20)
        print("stranger admitted", flush=True)
    except pccl.AuthenticationError:
        print("stranger refused", flush=True)
    finally:
        stranger.close()
comm = pccl.Communicator(address)  # the secret and transport come from the environment
comm.connect(timeout=60)
comm.wait_for_world(2, timeout=60)
x = np.ones(8, dtype=np.float32)
comm.all_reduce(x, x, op=pccl.ReduceOp.SUM)
source = ("file" if os.environ.get("PCCL_RUN_SECRET_FILE") else
          "env" if os.environ.get("PCCL_RUN_SECRET") else "none")
print(f"sum={x[0]} secret={source} transport={os.environ.get('PCCL_TRANSPORT', 'plain')}",
      flush=True)
comm.close()
'''


@pytest.mark.timeout(150)
def test_a_master_started_by_the_launcher_gets_a_fresh_secret(tmp_path: Path) -> None:
    script = tmp_path / "auth.py"
    script.write_text(AUTH_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCCL_")}
    done = subprocess.run([sys.executable, "-m", "pccl.launcher", "-n", "2", str(script)],
                          capture_output=True, text=True, timeout=120, check=False, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[peer 0] stranger refused" in done.stdout
    for index in (0, 1):
        assert f"[peer {index}] sum=2.0 secret=env transport=plain" in done.stdout


@pytest.mark.timeout(150)
def test_secret_file_and_transport_reach_the_master_and_every_peer(tmp_path: Path) -> None:
    script = tmp_path / "auth.py"
    script.write_text(AUTH_SCRIPT)
    secret = tmp_path / "secret"
    secret.write_text("a secret the operator chose, 40 bytes\n")
    env = dict(os.environ, PCCL_RUN_SECRET="the environment's secret loses to the file")
    done = subprocess.run([sys.executable, "-m", "pccl.launcher", "-n", "2", "--secret-file",
                           str(secret), "--transport", "encrypted", str(script)],
                          capture_output=True, text=True, timeout=120, check=False, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[peer 0] stranger refused" in done.stdout
    for index in (0, 1):
        assert f"[peer {index}] sum=2.0 secret=file transport=encrypted" in done.stdout
    missing = subprocess.run([sys.executable, "-m", "pccl.launcher", "-n", "1", "--secret-file",
                              str(tmp_path / "nowhere"), str(script)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 2 and "--secret-file" in missing.stderr
