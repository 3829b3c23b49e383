"""Modular-arithmetic kernels (csrc/pccl/kernels/modular.h): arithmetic in Z_p, p < 2^32.

Residues are uint32 numpy arrays (or torch tensors) holding values in [0, p). Kernels that
take residues do not check that their inputs are below p; an input >= p gives a
deterministic but meaningless result. Every function takes the modulus either as an int
or as a :class:`Modulus`, which validates p and keeps its Barrett constants.

The building blocks of exact and secure aggregation::

    m = Modulus(4294967291)
    fixed_encode(res, grads, m, frac_bits=16)          # floats -> Z_p
    mask_generate(mask, m, key=k, stream_id=peer_pair)  # pairwise mask, same on both peers
    mod_add(res, mask, m)                               # (the other peer subtracts it)
    ...                                                 # sum residues mod p across peers
    fixed_decode(out, total, m, frac_bits=16)           # Z_p -> floats
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pccl import _core
from pccl._enums import DataType
from pccl._tensors import as_array

_k = _core.kernels

__all__ = [
    "MAX_FRAC_BITS",
    "MAX_MASK_INDEX",
    "Modulus",
    "chacha20_block",
    "fixed_decode",
    "fixed_encode",
    "mask_generate",
    "mod_add",
    "mod_mul",
    "mod_mul_acc",
    "mod_reduce",
    "mod_sub",
]

#: Largest accepted ``frac_bits`` of fixed_encode / fixed_decode.
MAX_FRAC_BITS = 64
#: mask_generate covers element indices [0, MAX_MASK_INDEX) of a stream.
MAX_MASK_INDEX = 1 << 56
_MIN_P = 2
_MAX_P = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1


class Modulus:
    """A modulus p in [2, 2^32 - 1] with its Barrett constants, computed once.

    Args:
        p: The modulus. Need not be prime for the arithmetic; secure aggregation and linear
            hashes want a prime (e.g. 2**31 - 1 or 4294967291, the largest prime < 2^32).

    Raises:
        TypeError: p is not an int.
        ValueError: p is out of range.
    """

    __slots__ = ("_native",)

    def __init__(self, p: int) -> None:
        p = _int_arg(p, "p")
        if not _MIN_P <= p <= _MAX_P:
            raise ValueError(f"p must be in [2, 2**32 - 1], got {p}")
        self._native = _k.Modulus(p)

    @property
    def p(self) -> int:
        """The modulus."""
        return int(self._native.p)

    @property
    def mu(self) -> int:
        """floor(2^64 / p), the Barrett constant."""
        return int(self._native.mu)

    @property
    def half(self) -> int:
        """(p - 1) // 2: the largest magnitude a centred residue represents."""
        return int(self._native.half)

    @property
    def max_accept(self) -> int:
        """Largest 64-bit draw mask_generate accepts: 2^64 - 1 - (2^64 mod p)."""
        return int(self._native.max_accept)

    def reduce(self, x: int) -> int:
        """x mod p by Barrett reduction, for 0 <= x < 2^64."""
        x = _int_arg(x, "x")
        if not 0 <= x <= _U64_MAX:
            raise ValueError(f"x must be in [0, 2**64), got {x}")
        return int(self._native.reduce(x))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Modulus) and other.p == self.p

    def __hash__(self) -> int:
        return hash((Modulus, self.p))

    def __repr__(self) -> str:
        return f"Modulus({self.p})"


ModulusLike = Modulus | int


def _int_arg(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


def _modulus(modulus: ModulusLike) -> Any:
    if isinstance(modulus, Modulus):
        return modulus._native
    if isinstance(modulus, bool) or not isinstance(modulus, (int, np.integer)):
        raise TypeError(f"modulus must be a Modulus or an int, got {type(modulus).__name__}")
    return Modulus(int(modulus))._native


def _residues(obj: Any, name: str, *, writable: bool = False) -> np.ndarray:
    array, dtype = as_array(obj, name, writable=writable)
    if dtype is not DataType.UINT32:
        raise TypeError(f"{name} must hold uint32 residues, got {dtype.name}")
    return array


def _same_length(a_name: str, a: np.ndarray, b_name: str, b: np.ndarray) -> None:
    if a.size != b.size:
        raise ValueError(f"{a_name} has {a.size} elements but {b_name} has {b.size}")


def _float_array(obj: Any, name: str, *, writable: bool = False) -> tuple[np.ndarray, DataType]:
    array, dtype = as_array(obj, name, writable=writable)
    if dtype not in (DataType.FLOAT, DataType.DOUBLE):
        raise TypeError(f"{name} must be float32 or float64, got {dtype.name}")
    return array, dtype


def _frac_bits(frac_bits: Any) -> int:
    value = _int_arg(frac_bits, "frac_bits")
    if not 0 <= value <= MAX_FRAC_BITS:
        raise ValueError(f"frac_bits must be in [0, {MAX_FRAC_BITS}], got {value}")
    return value


def mod_reduce(dst: Any, src: Any, modulus: ModulusLike) -> None:
    """dst[i] = src[i] mod p for uint64 src (any values) into uint32 dst."""
    m = _modulus(modulus)
    d = _residues(dst, "dst", writable=True)
    s, st = as_array(src, "src")
    if st is not DataType.UINT64:
        raise TypeError(f"src must be uint64, got {st.name}")
    _same_length("dst", d, "src", s)
    _k.mod_reduce(m, d, s)


def mod_add(dst: Any, src: Any, modulus: ModulusLike) -> None:
    """dst[i] = (dst[i] + src[i]) mod p in place, on uint32 residues."""
    _binary(_k.mod_add, dst, src, modulus)


def mod_sub(dst: Any, src: Any, modulus: ModulusLike) -> None:
    """dst[i] = (dst[i] - src[i]) mod p in place, on uint32 residues."""
    _binary(_k.mod_sub, dst, src, modulus)


def mod_mul(dst: Any, src: Any, modulus: ModulusLike) -> None:
    """dst[i] = (dst[i] * src[i]) mod p in place, on uint32 residues."""
    _binary(_k.mod_mul, dst, src, modulus)


def _binary(kernel: Any, dst: Any, src: Any, modulus: ModulusLike) -> None:
    m = _modulus(modulus)
    d = _residues(dst, "dst", writable=True)
    s = _residues(src, "src")
    _same_length("dst", d, "src", s)
    kernel(m, d, s)


def mod_mul_acc(acc: Any, a: Any, b: Any, modulus: ModulusLike) -> None:
    """acc[i] = (acc[i] + a[i] * b[i]) mod p in place, on uint32 residues."""
    m = _modulus(modulus)
    c = _residues(acc, "acc", writable=True)
    x = _residues(a, "a")
    y = _residues(b, "b")
    _same_length("acc", c, "a", x)
    _same_length("acc", c, "b", y)
    _k.mod_mul_acc(m, c, x, y)


def fixed_encode(
    dst: Any, src: Any, modulus: ModulusLike, *, frac_bits: int, saturate: bool = False
) -> None:
    """Encodes floats as fixed-point residues: dst[i] = round_half_even(src[i] * 2^frac_bits)
    mod p, negatives as p - |v|.

    Representable are values v with |v| <= (p - 1) // 2; the encoding error of those is at
    most 2^-(frac_bits + 1). A sum of n encodings decodes exactly while the integer sum
    stays within that range.

    Args:
        dst: uint32 output residues.
        src: float32 or float64 input, same length.
        modulus: p or a Modulus.
        frac_bits: Fractional bits F, in [0, 64].
        saturate: If True, values beyond the range encode as +-(p - 1) // 2; if False
            (default), such a value fails the call.

    Raises:
        ValueError: NaN or Inf in src (always), or an out-of-range value when not
            saturating; the message names the first bad index. dst is then unspecified.
        TypeError: wrong dtypes.
    """
    m = _modulus(modulus)
    d = _residues(dst, "dst", writable=True)
    s, st = _float_array(src, "src")
    _same_length("dst", d, "src", s)
    f = _frac_bits(frac_bits)
    if not isinstance(saturate, (bool, np.bool_)):
        raise TypeError(f"saturate must be a bool, got {type(saturate).__name__}")
    _k.fixed_encode(m, d, s, _core.DataType(st), f, bool(saturate))


def fixed_decode(dst: Any, src: Any, modulus: ModulusLike, *, frac_bits: int) -> None:
    """Decodes residues: dst[i] = c / 2^frac_bits with c = r - p if r > (p - 1) // 2 else r.

    The division is exact in float64; float32 output is rounded to nearest even once.

    Args:
        dst: float32 or float64 output.
        src: uint32 residues in [0, p), same length.
        modulus: p or a Modulus.
        frac_bits: Fractional bits F, in [0, 64].
    """
    m = _modulus(modulus)
    d, dt = _float_array(dst, "dst", writable=True)
    s = _residues(src, "src")
    _same_length("dst", d, "src", s)
    _k.fixed_decode(m, d, s, _core.DataType(dt), _frac_bits(frac_bits))


def mask_generate(
    dst: Any,
    modulus: ModulusLike,
    *,
    key: bytes,
    stream_id: int,
    offset: int = 0,
) -> None:
    """Fills dst with pseudo-random residues uniform in [0, p), keyed by (key, stream_id).

    Element i gets the mask of absolute index offset + i, so any sub-range of a stream can
    be generated on its own and two peers with the same key get the same masks. The PRF is
    ChaCha20 (RFC 8439) with rejection sampling (see csrc/pccl/kernels/modular.h).

    Args:
        dst: uint32 output.
        modulus: p or a Modulus.
        key: 32 bytes of secret key.
        stream_id: Stream number in [0, 2^64), e.g. one per peer pair and step.
        offset: Absolute index of dst[0]; offset + len(dst) <= 2^56.
    """
    _mask_generate(dst, modulus, key, stream_id, offset, None)


def _mask_generate(
    dst: Any,
    modulus: ModulusLike,
    key: Any,
    stream_id: Any,
    offset: Any,
    max_accept: int | None,
) -> None:
    m = _modulus(modulus)
    d = _residues(dst, "dst", writable=True)
    key_bytes = _key(key)
    stream = _int_arg(stream_id, "stream_id")
    if not 0 <= stream <= _U64_MAX:
        raise ValueError(f"stream_id must be in [0, 2**64), got {stream}")
    start = _int_arg(offset, "offset")
    if start < 0 or start + d.size > MAX_MASK_INDEX:
        raise ValueError(
            f"offset must be >= 0 with offset + len(dst) <= 2**56, got offset {start} "
            f"and {d.size} elements"
        )
    _k.mask_generate(m, d, key_bytes, stream, start, max_accept)


def _key(key: Any) -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError(f"key must be bytes, got {type(key).__name__}")
    key_bytes = bytes(key)
    if len(key_bytes) != 32:
        raise ValueError(f"key must be 32 bytes, got {len(key_bytes)}")
    return key_bytes


def chacha20_block(key: bytes, counter: int, nonce: bytes) -> bytes:
    """The RFC 8439 ChaCha20 block function: 64 keystream bytes (the masks' PRF)."""
    key_bytes = _key(key)
    c = _int_arg(counter, "counter")
    if not 0 <= c < 1 << 32:
        raise ValueError(f"counter must be in [0, 2**32), got {c}")
    if not isinstance(nonce, (bytes, bytearray, memoryview)):
        raise TypeError(f"nonce must be bytes, got {type(nonce).__name__}")
    if len(bytes(nonce)) != 12:
        raise ValueError(f"nonce must be 12 bytes, got {len(bytes(nonce))}")
    return bytes(_k.chacha20_block(key_bytes, c, bytes(nonce)))
