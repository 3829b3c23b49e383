// Element-wise reduction kernels: dst[i] = op(dst[i], src[i]).
//
// These are the arithmetic of every all-reduce: a ring step receives a segment and folds
// it into the local partial result with Reduce(). All 12 dtypes x {SUM, PROD, MIN, MAX}.
// AVG reduces as SUM and is finalised once with DivideBy() (or NarrowHalf's divisor).
//
// Semantics, identical on every ISA path (tests compare the paths bit for bit):
// - Integers wrap modulo 2^bits on overflow (two's complement for signed types), for SUM
//   and PROD alike; DivideBy truncates toward zero.
// - float32 / float64: IEEE arithmetic, no FMA contraction, no reassociation.
// - float16 / bfloat16: both operands are widened to float, combined in float and rounded
//   back to nearest even once. For sums over many peers, keep a float accumulator with
//   WidenHalf / AccumulateHalf and round once at the end with NarrowHalf.
// - MIN / MAX propagate NaN: if dst[i] is NaN the result is dst[i], else if src[i] is NaN
//   it is src[i]. On ties (including -0.0 vs +0.0) dst[i] is kept.
// - dst and src may be the same buffer; other overlaps are not allowed.
//
// Thread-safety: pure functions of their arguments; callers own the buffers.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pccl/common/dtype.h"
#include "pccl/common/status.h"

namespace pccl::kernels {

// Numbering matches pccl.ReduceOp.
enum class ReduceOp : uint8_t { kSum = 0, kAvg = 1, kProd = 2, kMax = 3, kMin = 4 };
inline constexpr int kNumReduceOps = 5;
const char* ReduceOpName(ReduceOp op);
bool IsValidReduceOp(int value);

// dst[i] = op(dst[i], src[i]) for i in [0, count). AVG behaves as SUM.
Status Reduce(DType dtype, ReduceOp op, void* dst, const void* src, size_t count);

// Reduce that keeps what it overwrites: save[i] = dst[i], then dst[i] = op(dst[i], src[i]),
// in one pass over the three buffers (an in-place all-reduce saving its input as it folds
// a partial in). `save` may be `src` itself (each element is read before it is
// overwritten); no other overlap.
Status ReduceSaving(DType dtype, ReduceOp op, void* dst, const void* src, void* save,
                    size_t count);

// data[i] = data[i] / divisor (the AVG finalisation). Integers truncate toward zero;
// floats divide with one rounding; float16/bfloat16 widen, divide, round once.
Status DivideBy(DType dtype, void* data, size_t count, uint64_t divisor);

// float accumulators for float16 / bfloat16 (`dtype` must be one of the two):
// acc[i] = widen(src[i])
Status WidenHalf(DType dtype, float* acc, const void* src, size_t count);
// acc[i] = op(acc[i], widen(src[i])); AVG behaves as SUM.
Status AccumulateHalf(DType dtype, ReduceOp op, float* acc, const void* src, size_t count);
// acc[i] = op(widen(a[i]), widen(b[i])); AVG behaves as SUM. `a` may lie in the upper half
// of acc's bytes (at or after reinterpret_cast<char*>(acc) + 2 * count): a ring lands a
// float16/bfloat16 partial there and widens it in place as it adds its own input.
Status CombineHalf(DType dtype, ReduceOp op, float* acc, const void* a, const void* b,
                   size_t count);
// One step of float16/bfloat16 from start to end, with no float accumulator in memory:
// dst[i] = round(op(widen(partial[i]), widen(input[i])) / divisor), the same bits as
// CombineHalf then NarrowHalf; and, unless `save` is null, save[i] = input[i] first (an
// in-place all-reduce keeping its input). `dst` may be `partial` or `input`, and `save`
// may be `partial`; no other overlap.
Status FoldHalf(DType dtype, ReduceOp op, void* dst, const void* partial, const void* input,
                void* save, size_t count, uint64_t divisor = 1);
// dst[i] = round_to_nearest_even(acc[i] / divisor); divisor 1 means no division.
Status NarrowHalf(DType dtype, void* dst, const float* acc, size_t count, uint64_t divisor = 1);

// The per-ISA implementation (reduce_isa.cc). Combiner index: 0 SUM, 1 PROD, 2 MIN, 3 MAX.
namespace internal {
inline constexpr int kNumCombiners = 4;
int CombinerIndex(ReduceOp op);
struct ReduceTable {
  void (*reduce[kNumDTypes][kNumCombiners])(void* dst, const void* src, size_t n);
  void (*reduce_saving[kNumDTypes][kNumCombiners])(void* dst, const void* src, void* save,
                                                   size_t n);
  void (*divide[kNumDTypes])(void* data, size_t n, uint64_t divisor);
  // [0] float16, [1] bfloat16
  void (*widen_half[2])(float* acc, const void* src, size_t n);
  void (*accumulate_half[2][kNumCombiners])(float* acc, const void* src, size_t n);
  void (*combine_half[2][kNumCombiners])(float* acc, const void* a, const void* b, size_t n);
  void (*fold_half[2][kNumCombiners])(void* dst, const void* partial, const void* input,
                                      void* save, size_t n, float divisor);
  void (*narrow_half[2])(void* dst, const float* acc, size_t n, float divisor);
};
}  // namespace internal

}  // namespace pccl::kernels
