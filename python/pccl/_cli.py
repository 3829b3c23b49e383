"""What the `pccl_master` and `pccl_relay` commands share: reading a secret file given on
the command line, and serving until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from pccl._auth import read_secret_file


def secret_from_file(parser: argparse.ArgumentParser, path: str | None,
                     option: str) -> bytes | None:
    """The secret in `path` (None if no path was given); a parser error if unreadable."""
    if path is None:
        return None
    try:
        return read_secret_file(path)
    except OSError as e:
        parser.error(f"{option}: {e}")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An Event that SIGINT or SIGTERM sets while the block runs; the previous handlers
    come back after it."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
