"""Spawned worker processes of the multi-process benchmarks, each with one pipe.

A worker reports with tuples on its pipe: (kind, ...) when it has done something, or
("error", message, traceback) when it failed (`report_error`). The parent collects one
reply of a kind from every worker with `gather`, which fails fast (BenchError) on an
error reply, a worker that died, or a deadline; `stop_workers` ends them, gracefully
(None on the pipe) or not.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from multiprocessing.connection import Connection, wait
from collections.abc import Callable
from typing import Any, cast

ctx = mp.get_context("spawn")


class BenchError(Exception):
    """A benchmark run failed: a worker's error, death or missed deadline."""


def spawn_ranks(target: Callable[..., None], backend: str, world: int,
                setup: dict[str, Any]) -> tuple[list[Connection], list[Any]]:
    """Starts `world` workers `target(pipe, backend, rank, world, setup)`; returns the
    parent's pipes and the processes, by rank. Gloo ranks get GLOO_SOCKET_IFNAME=lo (the
    environment is inherited at spawn and restored here afterwards)."""
    conns: list[Connection] = []
    procs: list[Any] = []
    env_before = dict(os.environ)
    if backend == "gloo":
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    try:
        for rank in range(world):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=target, args=(child, backend, rank, world, setup),
                               daemon=True, name=f"{backend}-{rank}")
            proc.start()
            child.close()
            conns.append(parent)
            procs.append(proc)
    except BaseException:
        stop_workers(conns, procs, graceful=False)
        raise
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    return conns, procs


def report_error(conn: Connection, e: BaseException) -> None:
    """In a worker: sends ("error", message, traceback) to the parent, if it still listens."""
    try:
        conn.send(("error", f"{type(e).__name__}: {e}", traceback.format_exc()))
    except OSError:
        pass


def gather(conns: list[Connection], procs: list[Any], kind: str, timeout: float,
           what: str, names: list[str] | None = None) -> list[tuple[Any, ...]]:
    """One reply of `kind` from every worker, in order, within `timeout` seconds. `what`
    names the group in errors, `names` the workers (default: their index)."""
    names = names or [f"process {i}" for i in range(len(conns))]
    replies: dict[int, tuple[Any, ...]] = {}
    deadline = time.monotonic() + timeout
    while len(replies) < len(conns):
        left = deadline - time.monotonic()
        if left <= 0:
            missing = [names[i] for i in range(len(conns)) if i not in replies]
            raise BenchError(f"{what}: no {kind!r} from {', '.join(missing)} within "
                             f"{timeout:.0f} s")
        pending = [c for i, c in enumerate(conns) if i not in replies]
        for conn in cast("list[Connection]", wait(pending, timeout=min(left, 1.0))):
            i = conns.index(conn)
            try:
                reply: tuple[Any, ...] = conn.recv()
            except EOFError:
                raise BenchError(f"{what}: {names[i]} died (exit code "
                                 f"{procs[i].exitcode})") from None
            if reply[0] == "error":
                raise BenchError(f"{what}: {names[i]}: {reply[1]}\n{reply[2]}")
            if reply[0] != kind:
                raise BenchError(f"{what}: {names[i]}: expected {kind!r}, got {reply[0]!r}")
            replies[i] = reply
        for i, proc in enumerate(procs):
            if i not in replies and not proc.is_alive() and not conns[i].poll():
                raise BenchError(f"{what}: {names[i]} exited with code {proc.exitcode}")
    return [replies[i] for i in range(len(conns))]


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
