"""pccl's exceptions: each class says what the caller should do next.

Every failure of the core arrives here as a status code (pccl._core.StatusCode, defined by
csrc/pccl/common/status.h) and is turned into one exception by `error_for_status`, the
only place that maps codes to classes. All of them derive from PCCLError, which carries
upstream's `Result` code.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator

from pccl import _core


class Result(enum.IntEnum):
    """PCCL 1.0's result codes."""

    SUCCESS = 0
    NOT_INITIALIZED = 1
    INTERNAL_ERROR = 2
    INVALID_ARGUMENT = 3
    INVALID_USAGE = 4
    TOO_FEW_PEERS = 5
    MASTER_CONNECTION_FAILED = 6
    RANK_CONNECTION_FAILED = 7
    RANK_CONNECTION_LOST = 8
    NO_SHARED_STATE_AVAILABLE = 9
    PENDING_ASYNC_OPS = 10
    UPDATE_TOPOLOGY_FAILED = 11
    TOPOLOGY_OPTIMIZATION_FAILED = 12


class PCCLError(Exception):
    """Base class of pccl's errors.

    `PCCLError(message, result=None, status=None)`; PCCL 1.0's form
    `PCCLError(result, func_name)` works too.

    Attributes:
        result: upstream's Result code for this failure.
        status: the core's status code (an int), or None for errors raised in Python.
    """

    default_result = Result.INTERNAL_ERROR

    def __init__(self, message: str | Result, result: Result | str | None = None,
                 status: int | None = None):
        if isinstance(message, Result):  # PCCL 1.0: PCCLError(result, func_name)
            message, result = f"{result} failed with error: {message.name}", message
        if not isinstance(result, Result):
            result = None
        super().__init__(message)
        self.result: Result = result if result is not None else self.default_result
        self.status = status

    @staticmethod
    def check(result: int | Result, func_name: str = "pccl") -> None:
        """Raises the PCCLError of a Result code unless it is SUCCESS (PCCL 1.0's helper)."""
        code = Result(result)
        if code is not Result.SUCCESS:
            raise PCCLError(code, func_name)


class InvalidUsageError(PCCLError, ValueError):
    """The call is wrong (bad arguments, wrong state, peers that disagree): fix the call."""

    default_result = Result.INVALID_USAGE


class PeerLostError(PCCLError):
    """A peer died, hung or left during the operation, or the master connection dropped
    while pccl reconnects to resume the run: retry it; inputs are intact."""

    default_result = Result.RANK_CONNECTION_LOST


class TooFewPeersError(PCCLError):
    """Fewer than two peers: drop this step and wait for peers to join."""

    default_result = Result.TOO_FEW_PEERS


class PCCLTimeoutError(PCCLError, TimeoutError):
    """The call's deadline passed before it could finish."""

    default_result = Result.RANK_CONNECTION_LOST


class MasterUnavailableError(PCCLError, ConnectionError):
    """The master cannot be reached: at connect(), or after a lost master stayed away
    longer than PCCL_MASTER_RESUME_S (default 60 s; 0: at once) while this peer tried to
    resume the run. The run is over for this Communicator: create a new one."""

    default_result = Result.MASTER_CONNECTION_FAILED


class KickedError(PCCLError):
    """The master removed this peer (it was presumed dead): create a new Communicator."""

    default_result = Result.RANK_CONNECTION_LOST


class AuthenticationError(PCCLError, PermissionError):
    """The other end does not know the run secret, or this process does not, or they use
    different ones or different transports: give every process of the run the same secret
    and transport."""

    default_result = Result.MASTER_CONNECTION_FAILED


class DataLossError(PCCLError):
    """Received data failed verification."""

    default_result = Result.INTERNAL_ERROR


class IntegrityError(DataLossError):
    """A ReduceMode.VERIFIED all-reduce did not add up: a member falsified what it reduced
    or forwarded. The message names the chunk and the ring link (or the peer) where it went
    wrong; nobody applied the result. Remove the suspect peer, then retry."""


# The core's status codes -> exception class and upstream Result.
_S = _core.StatusCode
_BY_STATUS: dict[int, tuple[type[PCCLError], Result]] = {
    _S.INVALID_ARGUMENT: (InvalidUsageError, Result.INVALID_ARGUMENT),
    _S.OUT_OF_RANGE: (InvalidUsageError, Result.INVALID_ARGUMENT),
    _S.FAILED_PRECONDITION: (InvalidUsageError, Result.INVALID_USAGE),
    _S.ABORTED: (PeerLostError, Result.RANK_CONNECTION_LOST),
    _S.UNAVAILABLE: (MasterUnavailableError, Result.MASTER_CONNECTION_FAILED),
    _S.DEADLINE_EXCEEDED: (PCCLTimeoutError, Result.RANK_CONNECTION_LOST),
    _S.DATA_LOSS: (DataLossError, Result.INTERNAL_ERROR),
    _S.INTERNAL: (PCCLError, Result.INTERNAL_ERROR),
    _S.TOO_FEW_PEERS: (TooFewPeersError, Result.TOO_FEW_PEERS),
    _S.KICKED: (KickedError, Result.RANK_CONNECTION_LOST),
    _S.UNAUTHENTICATED: (AuthenticationError, Result.MASTER_CONNECTION_FAILED),
    _S.INTEGRITY: (IntegrityError, Result.INTERNAL_ERROR),
}


def error_for_status(status: int, message: str) -> PCCLError:
    """The exception for a core status code (called by the compiled core)."""
    cls, result = _BY_STATUS.get(status, (PCCLError, Result.INTERNAL_ERROR))
    return cls(message, result, status)


@contextlib.contextmanager
def result_on_failure(result: Result) -> Iterator[None]:
    """Gives the PCCLErrors raised inside (except InvalidUsageError) upstream's Result code
    for the call, e.g. UPDATE_TOPOLOGY_FAILED for update_topology(): PCCL 1.0 reports one
    code per call where pccl's classes say why."""
    try:
        yield
    except InvalidUsageError:
        raise
    except PCCLError as e:
        e.result = result
        raise


def result_for_status(status: int) -> Result:
    """Upstream's Result code for a core status code (OK is SUCCESS)."""
    if status == _S.OK:
        return Result.SUCCESS
    return _BY_STATUS.get(status, (PCCLError, Result.INTERNAL_ERROR))[1]
