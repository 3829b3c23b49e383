"""Shared by the multi-process benchmarks: stopping the worker processes they started."""

from __future__ import annotations

import time
from typing import Any


def stop_workers(conns: list[Any], procs: list[Any], *, graceful: bool) -> None:
    """Asks every worker to exit (None on its pipe) when `graceful`, waits up to 15 s in all,
    then kills whatever is still alive and closes the pipes."""
    if graceful:
        for conn in conns:
            try:
                conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + 15
        for proc in procs:
            proc.join(timeout=max(0.1, deadline - time.monotonic()))
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
    for conn in conns:
        conn.close()
