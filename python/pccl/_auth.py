"""The `secret` and `transport` arguments of MasterNode and Communicator, checked alike.

The core does the work (csrc/pccl/auth/handshake.h): it resolves an empty secret from
PCCL_RUN_SECRET or PCCL_RUN_SECRET_FILE and an empty transport from PCCL_TRANSPORT, and
refuses a secret shorter than MIN_SECRET_BYTES. docs/security.md tells what each protects.
"""

from __future__ import annotations

import os
import secrets

MIN_SECRET_BYTES = 16
TRANSPORTS = ("plain", "encrypted")
SECRET_ENV = "PCCL_RUN_SECRET"
SECRET_FILE_ENV = "PCCL_RUN_SECRET_FILE"
TRANSPORT_ENV = "PCCL_TRANSPORT"


def secret_in_environment() -> bool:
    """Whether PCCL_RUN_SECRET or PCCL_RUN_SECRET_FILE names a secret for this process."""
    return bool(os.environ.get(SECRET_ENV) or os.environ.get(SECRET_FILE_ENV))


def new_run_secret() -> str:
    """A fresh secret for a run whose master this process starts (256 random bits)."""
    return secrets.token_hex(32)


def read_secret_file(path: str) -> bytes:
    """The secret in file `path` as the core reads PCCL_RUN_SECRET_FILE: its bytes without
    one trailing newline (\\n or \\r\\n)."""
    with open(path, "rb") as f:
        data = f.read()
    if data.endswith(b"\n"):
        data = data[:-1]
    if data.endswith(b"\r"):
        data = data[:-1]
    return data


def check_secret(secret: object) -> str | bytes:
    """`secret` as the core takes it ("" for None: the environment decides)."""
    if secret is None:
        return ""
    if not isinstance(secret, (str, bytes)):
        raise TypeError(f"secret must be a str, bytes or None, got {type(secret).__name__}")
    size = len(secret.encode()) if isinstance(secret, str) else len(secret)
    if size < MIN_SECRET_BYTES:
        raise ValueError(f"the run secret is {size} bytes; it must be at least "
                         f"{MIN_SECRET_BYTES} (e.g. secrets.token_hex(16))")
    return secret


def check_transport(transport: object) -> str:
    """`transport` as the core takes it ("" for None: PCCL_TRANSPORT, else plain)."""
    if transport is None:
        return ""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS} or None, got {transport!r}")
    return str(transport)
