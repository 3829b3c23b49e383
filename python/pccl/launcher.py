"""pccl-run: start a local master and N peer processes running a script.

    pccl-run -n 3 train.py --lr 0.1
    pccl-run -n 3 --spawn-later 20 --kill 1@30 train.py     # a late joiner, a crash

Every peer runs `python script.py args...` with these environment variables:
PCCL_MASTER_ADDR (host:port of the master), PCCL_PEER_INDEX (0, 1, ... in start order) and
PCCL_WORLD_SIZE (peers started at launch). Output lines are prefixed with `[peer i]`.

The run is authenticated (docs/security.md): with --secret-file, every peer gets
PCCL_RUN_SECRET_FILE; else a secret already in the environment (PCCL_RUN_SECRET or
PCCL_RUN_SECRET_FILE) passes through; else, when pccl-run starts the master itself, it makes
a fresh secret for the run and gives it to its master and, as PCCL_RUN_SECRET, to every
peer. --transport encrypted (or PCCL_TRANSPORT) encrypts every connection.
Ctrl-C or SIGTERM stops every peer (SIGTERM, then SIGKILL after a grace period) and the
master. The exit status is 0 if every peer exited 0 (peers killed with --kill excepted),
else the first failing peer's status (128 + signal number for a signal).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, cast

from pccl._auth import (SECRET_ENV, SECRET_FILE_ENV, TRANSPORT_ENV, new_run_secret,
                        read_secret_file, secret_in_environment)
from pccl.master import MasterNode

GRACE_SECONDS = 5.0


def _pump(prefix: str, stream: IO[bytes], out: IO[str], lock: threading.Lock) -> None:
    for raw in iter(stream.readline, b""):
        line = raw.decode(errors="replace").rstrip("\n")
        with lock:
            out.write(f"{prefix} {line}\n")
            out.flush()


class _Peer:
    def __init__(self, index: int, argv: list[str], env: dict[str, str], lock: threading.Lock):
        self.index = index
        self.killed_on_purpose = False
        # Its own session, so that stopping it also stops whatever it started.
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        output = cast(IO[bytes], self.proc.stdout)
        self.pump = threading.Thread(target=_pump, daemon=True,
                                     args=(f"[peer {index}]", output, sys.stdout, lock))
        self.pump.start()

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass  # already gone

    def exit_status(self) -> int:
        code = self.proc.returncode
        return 128 - code if code is not None and code < 0 else int(code or 0)


def _parse_kill(text: str) -> tuple[int, float]:
    try:
        peer, at = text.split("@")
        return int(peer), float(at)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--kill takes PEER@SECONDS, got {text!r}") from None


def _run_auth(args: argparse.Namespace) -> tuple[dict[str, str], bytes | None]:
    """The variables that carry the run's secret and transport to the peers, and the secret
    for a master started here (None: the environment's). Raises OSError if --secret-file
    cannot be read."""
    env: dict[str, str] = {}
    if args.transport is not None:
        env[TRANSPORT_ENV] = args.transport
    if args.secret_file is not None:
        path = os.path.abspath(args.secret_file)
        secret = read_secret_file(path)
        env[SECRET_FILE_ENV] = path
        env[SECRET_ENV] = ""  # the file wins over a secret the environment may hold
        return env, secret
    if args.master is None and not secret_in_environment():
        env[SECRET_ENV] = new_run_secret()
        return env, env[SECRET_ENV].encode()
    return env, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pccl-run", description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--peers", type=int, required=True, help="peers to start")
    parser.add_argument("--master", default=None, metavar="HOST:PORT",
                        help="use this master instead of starting one on 127.0.0.1")
    parser.add_argument("--spawn-later", type=float, action="append", default=[],
                        metavar="SECONDS", help="start one more peer after SECONDS (repeatable)")
    parser.add_argument("--kill", type=_parse_kill, action="append", default=[],
                        metavar="PEER@SECONDS", help="SIGKILL peer PEER after SECONDS")
    parser.add_argument("--secret-file", metavar="PATH",
                        help="file holding the run secret (default: PCCL_RUN_SECRET, "
                             "PCCL_RUN_SECRET_FILE, else a fresh one for a master started here)")
    parser.add_argument("--transport", choices=("plain", "encrypted"),
                        help="plain or encrypted (default: PCCL_TRANSPORT, else plain)")
    parser.add_argument("script", help="the Python script every peer runs")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    args = parser.parse_args(argv)
    if args.peers < 1:
        parser.error("-n must be at least 1")

    try:
        run_env, master_secret = _run_auth(args)
    except OSError as e:
        parser.error(f"--secret-file: {e}")

    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    master = None
    peers: list[_Peer] = []
    lock = threading.Lock()
    try:
        if args.master is None:
            # Closed below, even on errors. With secret=None it reads the environment.
            master = MasterNode("127.0.0.1:0", daemon=True, secret=master_secret,
                                transport=args.transport)
            master.run()
            address = f"127.0.0.1:{master.port}"
        else:
            address = args.master
        print(f"[pccl-run] master {address}; {args.peers} peers", flush=True)

        def start_peer() -> None:
            env = dict(os.environ, **run_env, PCCL_MASTER_ADDR=address,
                       PCCL_PEER_INDEX=str(len(peers)), PCCL_WORLD_SIZE=str(args.peers))
            peers.append(_Peer(len(peers), [sys.executable, args.script, *args.args], env, lock))

        for _ in range(args.peers):
            start_peer()
        started = time.monotonic()
        spawns = sorted(args.spawn_later)
        kills = sorted(args.kill, key=lambda k: k[1])
        while not stop.is_set():
            elapsed = time.monotonic() - started
            while spawns and spawns[0] <= elapsed:
                spawns.pop(0)
                start_peer()
                print(f"[pccl-run] started peer {len(peers) - 1}", flush=True)
            while kills and kills[0][1] <= elapsed:
                index, _ = kills.pop(0)
                if 0 <= index < len(peers) and peers[index].proc.poll() is None:
                    peers[index].killed_on_purpose = True
                    peers[index].proc.kill()
                    print(f"[pccl-run] killed peer {index}", flush=True)
            if all(p.proc.poll() is not None for p in peers) and not spawns:
                break
            stop.wait(0.1)
    finally:
        for p in peers:
            if p.proc.poll() is None:
                p.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for p in peers:
            try:
                p.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.signal_group(signal.SIGKILL)
                p.proc.wait()
            p.pump.join(timeout=1.0)
        if master is not None:
            master.close()
        for s, handler in previous.items():
            signal.signal(s, handler)

    if stop.is_set():
        print("[pccl-run] interrupted: every peer stopped", flush=True)
        return 130
    for p in peers:
        if not p.killed_on_purpose and p.exit_status() != 0:
            print(f"[pccl-run] peer {p.index} failed with status {p.exit_status()}", flush=True)
            return p.exit_status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
