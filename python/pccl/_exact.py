"""`ReduceMode.EXACT`: float sums that are bit-identical whatever the ring order.

A floating-point ring sum depends on the order in which partial sums meet, so the same
inputs give results that differ in their last bits under another ring order, another
membership or a retry. EXACT takes the order out of the arithmetic:

1. The scale. Every peer contributes max |x| of its input to a MAX all-reduce (one float64,
   on the call's tag): afterwards all know M, the largest magnitude anywhere, and the world
   n of that exchange. The fixed-point scale 2^f is the largest with n * M * 2^f <= (p-1)/2,
   so no sum of n encoded inputs can leave the representable range (and no partial sum of
   fewer). A non-finite input anywhere makes M infinite and every peer refuses the call;
   so does an M too large for f >= 0 (the sum would not fit 31 bits). Nothing is wrapped.
2. The sum. Each peer encodes its input as residues round(x * 2^f) mod p (p = 4294967291,
   the largest prime below 2^32; kernels/modular.h FixedEncode, 4 bytes per element on the
   wire like float32), and the ring adds residues mod p with the Barrett kernels (ModAdd).
   Integer addition mod p is associative and commutative: every peer ends with the same
   residues whatever the ring order, rank or link that carried them.
3. The result: residues decoded to float64 (a residue above (p-1)/2 is negative), divided by
   n for AVG, and rounded once to the caller's dtype. Deterministic, so the same bytes on
   every peer and in every run over the same set of inputs.

Precision: each input is rounded to a multiple of 2^-f, and 2^-f <= 2 n M / (p - 1), so
every element of the sum is within n^2 M / (p - 1) (about n^2 * 2.3e-10 * M) of the exact
sum of the inputs, before the final rounding to the output dtype.

If the group changed between the two steps (a peer lost or admitted), the scale may not
fit the sum's world: the call fails with PeerLostError on every peer and its retry agrees a
fresh scale among the peers then present.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

from pccl import _core
from pccl._enums import DataType, ReduceOp
from pccl._tensors import Buffer
from pccl._types import ReduceInfo
from pccl.errors import InvalidUsageError, PeerLostError

MODULUS = 4294967291  # the largest prime below 2^32
_HALF = (MODULUS - 1) // 2
_MAX_FRAC_BITS = 64  # kernels::kMaxFracBits
_CTYPES = {DataType.FLOAT: ctypes.c_float, DataType.DOUBLE: ctypes.c_double}


def _view(buffer: Buffer) -> Any:
    """A numpy array over the buffer's memory (no copy)."""
    import numpy as np

    array_type = _CTYPES[buffer.dtype] * buffer.count
    return np.ctypeslib.as_array(array_type.from_address(buffer.ptr))


def frac_bits_for(world: int, largest: float) -> int:
    """The largest f with world * largest * 2^f <= (p-1)/2; raises InvalidUsageError if
    there is none (largest too large or not finite)."""
    if not math.isfinite(largest):
        raise InvalidUsageError("ReduceMode.EXACT: an input holds NaN or infinity on some peer")
    if largest == 0.0:
        return _MAX_FRAC_BITS
    f = math.floor(math.log2(_HALF / (world * largest)))
    while f >= 0 and world * largest * 2.0**f > _HALF:  # log2's rounding, made safe
        f -= 1
    if f < 0:
        raise InvalidUsageError(
            f"ReduceMode.EXACT: the sum of {world} inputs up to {largest:g} in magnitude does "
            f"not fit the fixed-point range (at most {_HALF // world} per input); scale the "
            f"inputs down")
    return min(f, _MAX_FRAC_BITS)


def all_reduce_exact(core: Any, s: Buffer, r: Buffer, op: ReduceOp, tag: int,
                     timeout: float) -> ReduceInfo:
    """ReduceMode.EXACT for `core` (a _core.Communicator): see the module docstring."""
    import numpy as np

    from pccl.kernels import modular

    if s.dtype not in _CTYPES:
        raise InvalidUsageError(f"ReduceMode.EXACT reduces float32 and float64 tensors, not "
                                f"{s.dtype.name} (integers are exact with the default mode)")
    if op not in (ReduceOp.SUM, ReduceOp.AVG):
        raise InvalidUsageError(f"ReduceMode.EXACT supports SUM and AVG, not {op.name}")
    x = _view(s)
    finite = bool(np.isfinite(x).all())
    largest = np.array([float(np.max(np.abs(x))) if finite and x.size else
                        (0.0 if finite else math.inf)], dtype=np.float64)
    world, tx, rx = core.all_reduce(_request(largest, largest, DataType.DOUBLE, ReduceOp.MAX,
                                             tag), timeout)
    f = frac_bits_for(int(world), float(largest[0]))
    residues = np.empty(s.count, dtype=np.uint32)
    modular.fixed_encode(residues, x, MODULUS, frac_bits=f)
    sum_world, sum_tx, sum_rx = core.all_reduce(
        _request(residues, residues, DataType.UINT32, ReduceOp.SUM, tag, MODULUS), timeout)
    if sum_world != world:
        raise PeerLostError(f"ReduceMode.EXACT: the group changed from {world} to {sum_world} "
                            f"peers between the scale and the sum; retry")
    total = np.empty(s.count, dtype=np.float64)
    modular.fixed_decode(total, residues, MODULUS, frac_bits=f)
    if op == ReduceOp.AVG:
        total /= world
    np.copyto(_view(r), total, casting="unsafe")
    return ReduceInfo(int(world), int(tx) + int(sum_tx), int(rx) + int(sum_rx))


def _request(send: Any, recv: Any, dtype: DataType, op: ReduceOp, tag: int,
             modulus: int = 0) -> Any:
    return _core.AllReduceRequest(send=send.ctypes.data, recv=recv.ctypes.data,
                                  count=send.size, dtype=_core.DataType(int(dtype)),
                                  op=_core.ReduceOp(int(op)), tag=tag, modulus=modulus)
