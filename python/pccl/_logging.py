"""The core's log lines in Python's logging, under the logger "pccl".

The C++ core logs from its own threads (ring links, the master's reactor, ...). Calling into
Python from them would need the GIL at arbitrary moments, during interpreter shutdown too,
so the core queues its lines instead (csrc/pccl/common/logging.h, bounded) and a daemon
thread here drains the queue into `logging.getLogger("pccl")`, each record stamped with the
time the core logged it. The core still filters by PCCL_LOG_LEVEL (default WARNING) before
anything is queued, and the logger takes its level from PCCL_LOG_LEVEL when it is set.

Where the application configured logging (the root logger has handlers), records go there
like any library's. Otherwise a stderr handler on "pccl" prints them as the core always has
("[pccl WARNING pid 123 2026-12-05 22:40:00,123] ..."), so nothing is lost by default.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading

from pccl import _core

logger = logging.getLogger("pccl")

# The core's LogLevel values.
_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}
_ENV_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
               "error": logging.ERROR, "off": logging.CRITICAL + 1}
_lock = threading.Lock()
_started_in: int | None = None  # the pid whose drain thread runs
_stopping = threading.Event()
_thread: threading.Thread | None = None


class _DefaultHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Prints to stderr only while the application has not configured logging itself."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter(
            "[pccl %(levelname)s pid %(process)d %(asctime)s] %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            super().emit(record)


def _emit(lines: list[tuple[int, float, str]]) -> None:
    for level, created, message in lines:
        py_level = _LEVELS.get(level, logging.WARNING)
        if not logger.isEnabledFor(py_level):
            continue
        record = logger.makeRecord(logger.name, py_level, "(pccl core)", 0, message, (), None)
        record.created = created
        record.msecs = (created - int(created)) * 1000
        logger.handle(record)


def _drain() -> None:
    while not _stopping.is_set():
        _emit(_core.take_log_lines(1.0))


def _flush() -> None:
    """At exit, before the interpreter finalizes: stops the drain thread (a daemon thread
    still inside the core then would be torn down mid-call), emits what the core queued
    last; from then on the core writes its lines to stderr directly."""
    _stopping.set()
    _emit(_core.take_log_lines(0.0))
    _core.capture_log_lines(False)  # wakes the drain thread
    if _thread is not None:
        _thread.join(timeout=5)


def start() -> None:
    """Routes the core's lines through `logger` (once per process, again after a fork)."""
    global _started_in, _thread
    with _lock:
        if _started_in == os.getpid():
            return
        first = _started_in is None
        _started_in = os.getpid()
        if first:
            level = os.environ.get("PCCL_LOG_LEVEL", "").strip().lower()
            if level in _ENV_LEVELS:
                logger.setLevel(_ENV_LEVELS[level])
            logger.addHandler(_DefaultHandler())
            atexit.register(_flush)
        _core.capture_log_lines(True)
        _thread = threading.Thread(target=_drain, name="pccl-log", daemon=True)
        _thread.start()


def _after_fork_in_child() -> None:
    """A forked child has no drain thread (and maybe a lock another thread held)."""
    global _lock
    _lock = threading.Lock()
    if _started_in is not None:
        start()


os.register_at_fork(after_in_child=_after_fork_in_child)
