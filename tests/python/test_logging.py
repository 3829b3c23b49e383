"""The core's log lines go through Python's logging (logger "pccl"; pccl/_logging.py).

Each case runs in a fresh interpreter, whose master logs "master: epoch 1 ..." at INFO when
the first peer joins: with PCCL_LOG_LEVEL=info and no logging configured the line reaches
stderr in the core's format with a timestamp; with the application's own handler it
reaches that handler as a record of logger "pccl" (level, time) and not stderr; at the
default level (WARNING) it is filtered out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, logging, sys, time
    records = []
    class Keep(logging.Handler):
        def emit(self, record):
            records.append({"name": record.name, "level": record.levelname,
                            "created": record.created, "message": record.getMessage()})
    if sys.argv[1] == "configured":
        logging.basicConfig(handlers=[Keep()], level=logging.DEBUG)
    import pccl
    started = time.time()
    with pccl.MasterNode("127.0.0.1:0") as master:
        with pccl.Communicator(master.address) as comm:
            comm.connect(timeout=30)
            # Configured: wait for the record. Otherwise the line goes to stderr, at the
            # latest when the interpreter exits (pccl/_logging.py flushes the queue then).
            deadline = time.time() + (10 if sys.argv[1] == "configured" else 0)
            while time.time() < deadline and not any("epoch 1" in r["message"] for r in records):
                time.sleep(0.05)
    print(json.dumps({"started": started, "records": records}))
""")


def run(mode: str, level: str | None) -> tuple[dict, str]:
    env = dict(os.environ)
    env.pop("PCCL_LOG_LEVEL", None)
    if level is not None:
        env["PCCL_LOG_LEVEL"] = level
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@pytest.mark.timeout(120)
def test_core_lines_reach_stderr_in_the_core_format_when_nothing_is_configured() -> None:
    _, stderr = run("plain", "info")
    lines = [line for line in stderr.splitlines() if "master: epoch 1" in line]
    assert lines, stderr
    # "[pccl INFO pid 123 2026-12-05 22:40:00,123] master: epoch 1 ..."
    assert lines[0].startswith("[pccl INFO pid ") and "] master: epoch 1" in lines[0], lines
    _, quiet = run("plain", None)
    assert "master: epoch 1" not in quiet  # INFO is below the default level


@pytest.mark.timeout(120)
def test_core_lines_are_records_of_logger_pccl_where_logging_is_configured() -> None:
    result, stderr = run("configured", "info")
    epoch = [r for r in result["records"] if "master: epoch 1" in r["message"]]
    assert epoch and epoch[0]["name"] == "pccl" and epoch[0]["level"] == "INFO", result
    # Stamped when the core logged it: after the script started, within seconds.
    assert result["started"] <= epoch[0]["created"] <= result["started"] + 30
    assert "[pccl" not in stderr  # the application's handler only, no second copy


STRANGERS = textwrap.dedent("""
    import json, logging, socket, time
    records = []
    class Keep(logging.Handler):
        def emit(self, record):
            if "p2p connection from" in record.getMessage():
                records.append({"level": record.levelname, "message": record.getMessage()})
    logging.basicConfig(handlers=[Keep()], level=logging.DEBUG)
    import pccl

    def wait_for(n):
        deadline = time.time() + 10
        while time.time() < deadline and len(records) < n:
            time.sleep(0.02)

    with pccl.MasterNode("127.0.0.1:0") as master:
        with pccl.Communicator(master.address) as comm:
            comm.connect(timeout=30)
            with socket.create_connection(("127.0.0.1", comm.p2p_port)):
                pass  # hangs up before saying anything
            wait_for(1)
            with socket.create_connection(("127.0.0.1", comm.p2p_port)) as s:
                s.sendall(b"GET / HTTP/1.1" + bytes(64))  # not a pccl frame
                s.settimeout(10)
                try:
                    while s.recv(4096):  # until the peer closes it
                        pass
                except OSError:  # reset instead of closed: refused all the same
                    pass
            wait_for(2)
    print(json.dumps(records))
""")


@pytest.mark.timeout(120)
def test_a_stranger_is_a_warning_and_a_dialer_that_hung_up_is_not() -> None:
    """A connection to a peer's listener that breaks off (a peer giving up on the ring it
    dialled for, or leaving) is logged at INFO; one the listener refuses (not pccl's
    protocol, a wrong secret or addressee) is a WARNING."""
    env = dict(os.environ, PCCL_LOG_LEVEL="info")
    out = subprocess.run([sys.executable, "-c", STRANGERS], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["level"] for r in records] == ["INFO", "WARNING"], records
    assert "dropped" in records[0]["message"] and "dropped" in records[1]["message"], records
