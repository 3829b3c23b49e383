"""Small helpers every benchmark shares: sizes, bus traffic, free ports, tables and JSON."""

from __future__ import annotations

import argparse
import json
import re
import socket
from pathlib import Path
from typing import Any


def parse_size(text: str) -> int:
    """Bytes from '4KiB', '16MiB', '1GiB', '16M' or a plain number (binary units); an
    argparse type: a positive multiple of 4 (whole float32 elements)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)(i?B?)\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r}; use e.g. 4KiB, 16MiB, 4096")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2).upper()]
    n = int(float(m.group(1)) * scale)
    if n <= 0 or n % 4:
        raise argparse.ArgumentTypeError(f"size {text!r} must be a positive multiple of 4 bytes")
    return n


def size_name(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale}{unit}"
    return f"{n}B"


def bus_factor(world: int) -> float:
    """Bytes a ring all-reduce puts on each link per byte of input: 2(n-1)/n (NCCL-tests)."""
    return 2.0 * (world - 1) / world


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for rendezvous that need one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dash(value: Any, spec: str = "") -> str:
    """A table cell: `value` formatted with `spec`, or '-' when there is none."""
    return "-" if value is None else format(value, spec)


def emit_json(result: Any, path: Path | str | None, *, indent: int = 1,
              echo: bool = True) -> None:
    """Writes `result` as JSON to `path` (if given) and, if `echo`, to stdout."""
    text = json.dumps(result, indent=indent)
    if path:
        Path(path).write_text(text)
    if echo:
        print(text)


DTYPES = ("float32", "bfloat16", "float16")
QUANTIZED = ("none", "uint8", "uint16")


def numpy_dtype(name: str) -> Any:
    """The numpy dtype of a --dtype choice (DTYPES); bfloat16 comes from ml_dtypes."""
    import numpy as np

    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def quantization(name: str) -> Any:
    """pccl's QuantizationOptions for a --quantized choice (QUANTIZED; MIN_MAX), or None."""
    if name == "none":
        return None
    import pccl

    return pccl.QuantizationOptions(pccl.DataType[name.upper()],
                                    pccl.QuantizationAlgorithm.MIN_MAX)
