// Quantize / dequantize kernels: floats -> uint8 / uint16 with per-block parameters, and back.
//
// These are the arithmetic of quantized all-reduce: a ring step quantizes a chunk once with
// Quantize(), sends the q-values and the parameters, and the receiver folds them into its
// partial result with DequantizeAccumulate(). The owner of a chunk adopts the dequantized
// value itself (DequantizeSet() into its own buffer), so every peer ends with the same bytes.
// Callable from any thread: pure functions of their arguments; callers own the buffers.
//
// Source dtypes: float16, bfloat16, float32, float64. Quantized dtypes: uint8, uint16.
// Destination dtypes of the dequantize kernels: any of the four source dtypes, independent
// of the source dtype the values were quantized from (a float16 tensor may be accumulated
// in a float32 buffer).
//
// Blocks. Elements are cut into blocks of options.block_size consecutive elements (the last
// one may be shorter); each block has its own parameters, so one outlier spoils only its own
// block. Default 1024 elements: the parameters then cost under 1% of the uint8 payload.
//
// Parameter type P: double for float64 sources, float for the three others. float32,
// float16 and bfloat16 values are exact in float, so min/max are exact; a float64 block such
// as 1e8 + [0, 1) would lose its offset in float (error 4 against a scale of 1/255) and
// float64 ranges beyond 3.4e38 do not fit in float at all, hence double.
//
// Algorithms (B = bits of the quantized dtype, qmax = 2^B - 1; all arithmetic in P, IEEE,
// no FMA; round() is round to nearest, ties to even):
// - MIN_MAX (asymmetric): lo, hi = min, max of the block (-0.0 read as +0.0);
//   scale = (hi - lo) / qmax;  q = min(round((x - lo) / d), qmax) with d = scale, or 1 when
//   scale is 0 (a constant block: every q is 0 and deq is lo exactly; -0.0 comes back as
//   +0.0 on both algorithms);
//   deq(q) = lo + q * scale.
//   Parameters per block: {lo, scale}, two values of P.
// - ZERO_POINT_SCALE (symmetric): zero_point = 2^(B-1), h = 2^(B-1) - 1 (127 for uint8);
//   m = max |x| of the block; scale = m / h, except for a constant block, where scale = m
//   (then q = zero_point +- 1 and deq is the constant exactly; m / h * h need not be m);
//   q = clamp(round(x / d), -h, h) + zero_point with d = scale, or 1 when scale is 0;
//   deq(q) = (q - zero_point) * scale.  0 maps to zero_point and back to 0 exactly.
//   Parameters per block: {scale}, one value of P (the zero point is the constant above).
//
// Wire layout of the parameters: block after block, each block's values in the order above,
// native byte order, no padding (the net layer owns byte order). QuantizedParamsBytes()
// gives the size; the buffers may have any alignment. Parameters depend only on each block's
// min and max (order-independent), so every ISA path writes identical bytes.
//
// Error bound, per element x of a block with m = max(|lo|, |hi|) and u the unit roundoff of
// P (2^-24 for float, 2^-53 for double), before any rounding to a narrower destination:
//   |x - deq(q(x))| <= scale / 2 + 10 u m + 2^B * tiny(P)
// where the last term (tiny = the smallest positive subnormal of P) matters only for blocks
// whose whole range is subnormal. MIN_MAX: scale = (hi - lo) / (2^B - 1); ZERO_POINT_SCALE:
// scale = m / (2^(B-1) - 1), i.e. roughly twice as coarse but exact at 0.
//
// Non-finite input. Quantize() reads the whole block before writing it and refuses NaN or
// Inf with InvalidArgument naming the first such element's index. A block whose range does
// not fit in P (hi - lo, or deq(qmax), overflows: only for values beyond ~1e38 in float)
// gives OutOfRange naming the block. On any error Quantize() sets every parameter to a
// quiet NaN and every q-value to 0: nothing in the output can pass for a result, and the
// dequantize kernels refuse such parameters.
//
// Dequantize destination arithmetic: with A = double for a float64 destination and float
// otherwise, v = A(deq(q)) (rounded to nearest), then
//   DequantizeSet:        dst = round_dst(v)
//   DequantizeAccumulate: dst = round_dst(A(dst) + v)
// where round_dst rounds to nearest even once (float16 / bfloat16 destinations are widened,
// added in float and rounded back once). The dequantize kernels check every block's
// parameters (finite, scale >= 0) before writing anything: on error, dst is untouched.
//
// dst, q, params and src must not overlap.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pccl/common/dtype.h"
#include "pccl/common/status.h"

namespace pccl::kernels {

// Numbering matches pccl.QuantizationAlgorithm.
enum class QuantAlgorithm : uint8_t { kNone = 0, kMinMax = 1, kZeroPointScale = 2 };
inline constexpr int kNumQuantAlgorithms = 3;
const char* QuantAlgorithmName(QuantAlgorithm algorithm);
bool IsValidQuantAlgorithm(int value);

inline constexpr size_t kDefaultQuantBlockSize = 1024;
// Upper limit of block_size: keeps a peer's claimed block size sane when it comes off the wire.
inline constexpr size_t kMaxQuantBlockSize = size_t{1} << 24;

// Options of one quantization; the receiver must use the same options as the sender.
struct QuantizeOptions {
  // MIN_MAX or ZERO_POINT_SCALE; NONE is refused by the kernels (nothing to quantize).
  QuantAlgorithm algorithm = QuantAlgorithm::kMinMax;
  // kUint8 or kUint16.
  DType quantized_dtype = DType::kUint8;
  // Elements per block of parameters, in [1, kMaxQuantBlockSize].
  size_t block_size = kDefaultQuantBlockSize;
};

// OK if `source_dtype` can be quantized with `options`; InvalidArgument naming what is wrong.
Status CheckQuantizeOptions(DType source_dtype, const QuantizeOptions& options);

// *bytes = size of the parameters of `count` elements of `source_dtype` (see the layout
// above): ceil(count / block_size) blocks x (2 for MIN_MAX, 1 for ZERO_POINT_SCALE) x
// sizeof(P). InvalidArgument for bad options.
Status QuantizedParamsBytes(DType source_dtype, size_t count, const QuantizeOptions& options,
                            size_t* bytes);

// *bytes = size of the q-values of `count` elements: count x (1 or 2).
Status QuantizedValuesBytes(size_t count, const QuantizeOptions& options, size_t* bytes);

// Quantizes src[0, count) of `source_dtype` into q (count values of options.quantized_dtype)
// and params (params_bytes, which must equal QuantizedParamsBytes()). Errors as described
// above; on error q is all 0 and params all NaN.
Status Quantize(DType source_dtype, const void* src, size_t count, const QuantizeOptions& options,
                void* q, void* params, size_t params_bytes);

// dst[i] = deq(q[i]) for i in [0, count), dst of `dst_dtype` (a float dtype), for values that
// Quantize() made from `source_dtype` with `options`. InvalidArgument if any block's
// parameters are not finite or have a negative scale; dst is then untouched.
Status DequantizeSet(DType dst_dtype, void* dst, DType source_dtype, const void* q,
                     const void* params, size_t params_bytes, size_t count,
                     const QuantizeOptions& options);

// dst[i] = dst[i] + deq(q[i]), otherwise as DequantizeSet.
Status DequantizeAccumulate(DType dst_dtype, void* dst, DType source_dtype, const void* q,
                            const void* params, size_t params_bytes, size_t count,
                            const QuantizeOptions& options);

// The per-ISA implementation (quantize_isa.cc). Indices:
//   float kind: 0 float16, 1 bfloat16, 2 float32, 3 float64 (source or destination)
//   quantized kind: 0 uint8, 1 uint16;  algorithm: 0 MIN_MAX, 1 ZERO_POINT_SCALE
//   parameter kind: 0 float, 1 double;  mode: 0 set, 1 accumulate
namespace internal {
inline constexpr int kNumFloatKinds = 4;

// What a quantize run found; kOk unless the input was refused.
struct QuantizeResult {
  enum Code : int { kOk = 0, kNonFinite = 1, kRangeOverflow = 2 };
  Code code = kOk;
  size_t index = 0;  // the element (kNonFinite) or the block (kRangeOverflow)
};

struct QuantizeTable {
  QuantizeResult (*quantize[kNumFloatKinds][2][2])(const void* src, size_t n, size_t block_size,
                                                   void* q, void* params);
  void (*dequantize[kNumFloatKinds][2][2][2][2])(void* dst, const void* q, const void* params,
                                                 size_t n, size_t block_size);
};
}  // namespace internal

}  // namespace pccl::kernels
