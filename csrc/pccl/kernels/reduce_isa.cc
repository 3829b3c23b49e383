// Reduction kernels, compiled once per ISA (see kernels/isa.h for the rules of *_isa.cc).
//
// Each kernel is a plain loop over elements that the compiler vectorises for the ISA this
// copy is compiled for; loads and stores go through memcpy so that any alignment works.
// float16 / bfloat16 go through float in blocks: widen a block of dst and of src, combine
// in float, round the block back once.
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "pccl/kernels/half_isa.h"
#include "pccl/kernels/reduce.h"

namespace pccl::kernels::PCCL_ISA_NAME {
namespace {

using internal::kNumCombiners;
using internal::ReduceTable;

// Integer arithmetic happens in an unsigned type at least as wide as int, so that
// overflow wraps (defined behaviour) instead of being undefined signed overflow or an
// int promotion that overflows (uint16 * uint16).
template <class T>
using WrapType = std::conditional_t<(sizeof(T) < sizeof(unsigned)), unsigned,
                                    std::make_unsigned_t<T>>;

struct SumOp {
  template <class T>
  static T Apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      return static_cast<T>(static_cast<WrapType<T>>(a) + static_cast<WrapType<T>>(b));
    } else {
      return a + b;
    }
  }
};

struct ProdOp {
  template <class T>
  static T Apply(T a, T b) {
    if constexpr (std::is_integral_v<T>) {
      return static_cast<T>(static_cast<WrapType<T>>(a) * static_cast<WrapType<T>>(b));
    } else {
      return a * b;
    }
  }
};

// NaN in a wins, then NaN in b; ties keep a.
struct MinOp {
  template <class T>
  static T Apply(T a, T b) {
    T r = b < a ? b : a;
    if constexpr (std::is_floating_point_v<T>) {
      r = b != b ? b : r;
      r = a != a ? a : r;
    }
    return r;
  }
};

struct MaxOp {
  template <class T>
  static T Apply(T a, T b) {
    T r = b > a ? b : a;
    if constexpr (std::is_floating_point_v<T>) {
      r = b != b ? b : r;
      r = a != a ? a : r;
    }
    return r;
  }
};

template <class T, class Op>
void ReduceLoop(void* dst, const void* src, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    StoreAt<T>(dst, i, Op::Apply(LoadAt<T>(dst, i), LoadAt<T>(src, i)));
  }
}

// The loop may assume no dependence between iterations: `save` is either disjoint from
// `src` or `src` itself, and element i of `src` is loaded before element i of `save` is
// stored, in vector lanes as in scalar code.
#if defined(__clang__)
#define PCCL_INDEPENDENT_ITERATIONS _Pragma("clang loop vectorize(assume_safety)")
#else
#define PCCL_INDEPENDENT_ITERATIONS _Pragma("GCC ivdep")
#endif

template <class T, class Op>
void ReduceSavingLoop(void* dst, const void* src, void* save, size_t n) {
  PCCL_INDEPENDENT_ITERATIONS
  for (size_t i = 0; i < n; ++i) {
    const T s = LoadAt<T>(src, i);
    const T d = LoadAt<T>(dst, i);
    StoreAt<T>(save, i, d);
    StoreAt<T>(dst, i, Op::Apply(d, s));
  }
}

// Elements per float block for half precision: two blocks live on the stack.
constexpr size_t kHalfBlock = 512;

inline size_t BlockLength(size_t n, size_t base) {
  return n - base < kHalfBlock ? n - base : kHalfBlock;
}

// `save`: nullptr (Reduce), or where dst's old bytes go (ReduceSaving; may be `src`).
template <int kHalfIndex, class Op>
void ReduceSavingHalfLoop(void* dst, const void* src, void* save, size_t n) {
  alignas(64) float a[kHalfBlock];
  alignas(64) float b[kHalfBlock];
  for (size_t base = 0; base < n; base += kHalfBlock) {
    size_t m = BlockLength(n, base);
    char* d = static_cast<char*>(dst) + base * 2;
    Widen<kHalfIndex>(a, d, m);
    Widen<kHalfIndex>(b, static_cast<const char*>(src) + base * 2, m);  // before `save`
    if (save != nullptr) __builtin_memcpy(static_cast<char*>(save) + base * 2, d, m * 2);
    for (size_t i = 0; i < m; ++i) a[i] = Op::Apply(a[i], b[i]);
    Narrow<kHalfIndex>(d, a, m);
  }
}

template <int kHalfIndex, class Op>
void ReduceHalfLoop(void* dst, const void* src, size_t n) {
  ReduceSavingHalfLoop<kHalfIndex, Op>(dst, src, nullptr, n);
}

template <int kHalfIndex, class Op>
void AccumulateHalfLoop(float* acc, const void* src, size_t n) {
  alignas(64) float b[kHalfBlock];
  for (size_t base = 0; base < n; base += kHalfBlock) {
    size_t m = BlockLength(n, base);
    Widen<kHalfIndex>(b, static_cast<const char*>(src) + base * 2, m);
    float* a = acc + base;
    for (size_t i = 0; i < m; ++i) a[i] = Op::Apply(a[i], b[i]);
  }
}

// `a` may lie in the upper half of acc's bytes (or anywhere after it): each block of it is
// read before acc's block is written, and acc's block ends before a's next block begins.
template <int kHalfIndex, class Op>
void CombineHalfLoop(float* acc, const void* a, const void* b, size_t n) {
  alignas(64) float x[kHalfBlock];
  alignas(64) float y[kHalfBlock];
  for (size_t base = 0; base < n; base += kHalfBlock) {
    size_t m = BlockLength(n, base);
    Widen<kHalfIndex>(x, static_cast<const char*>(a) + base * 2, m);
    Widen<kHalfIndex>(y, static_cast<const char*>(b) + base * 2, m);
    float* out = acc + base;
    for (size_t i = 0; i < m; ++i) out[i] = Op::Apply(x[i], y[i]);
  }
}

// dst may be `partial` or `input`, and `save` may be `partial`: each block of them is read
// before anything of that block is written.
template <int kHalfIndex, class Op>
void FoldHalfLoop(void* dst, const void* partial, const void* input, void* save, size_t n,
                  float divisor) {
  alignas(64) float x[kHalfBlock];
  alignas(64) float y[kHalfBlock];
  for (size_t base = 0; base < n; base += kHalfBlock) {
    size_t m = BlockLength(n, base);
    const char* in = static_cast<const char*>(input) + base * 2;
    Widen<kHalfIndex>(x, static_cast<const char*>(partial) + base * 2, m);
    Widen<kHalfIndex>(y, in, m);
    if (save != nullptr) __builtin_memmove(static_cast<char*>(save) + base * 2, in, m * 2);
    for (size_t i = 0; i < m; ++i) x[i] = Op::Apply(x[i], y[i]);
    if (divisor != 1.0f) {
      for (size_t i = 0; i < m; ++i) x[i] = x[i] / divisor;
    }
    Narrow<kHalfIndex>(static_cast<char*>(dst) + base * 2, x, m);
  }
}

template <int kHalfIndex>
void WidenHalfLoop(float* acc, const void* src, size_t n) {
  Widen<kHalfIndex>(acc, src, n);
}

template <int kHalfIndex>
void NarrowHalfLoop(void* dst, const float* acc, size_t n, float divisor) {
  if (divisor == 1.0f) {
    Narrow<kHalfIndex>(dst, acc, n);
    return;
  }
  alignas(64) float a[kHalfBlock];
  for (size_t base = 0; base < n; base += kHalfBlock) {
    size_t m = BlockLength(n, base);
    for (size_t i = 0; i < m; ++i) a[i] = acc[base + i] / divisor;
    Narrow<kHalfIndex>(static_cast<char*>(dst) + base * 2, a, m);
  }
}

template <class T>
void DivideLoop(void* data, size_t n, uint64_t divisor) {
  if constexpr (std::is_floating_point_v<T>) {
    const T d = static_cast<T>(divisor);
    for (size_t i = 0; i < n; ++i) StoreAt<T>(data, i, LoadAt<T>(data, i) / d);
  } else if constexpr (std::is_signed_v<T>) {
    // A divisor beyond the type's range truncates every value to 0.
    if (divisor > static_cast<uint64_t>(INT64_MAX)) {
      for (size_t i = 0; i < n; ++i) StoreAt<T>(data, i, T{0});
      return;
    }
    const int64_t d = static_cast<int64_t>(divisor);
    for (size_t i = 0; i < n; ++i) {
      StoreAt<T>(data, i, static_cast<T>(static_cast<int64_t>(LoadAt<T>(data, i)) / d));
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      StoreAt<T>(data, i, static_cast<T>(static_cast<uint64_t>(LoadAt<T>(data, i)) / divisor));
    }
  }
}

template <int kHalfIndex>
void DivideHalfLoop(void* data, size_t n, uint64_t divisor) {
  alignas(64) float a[kHalfBlock];
  const float d = static_cast<float>(divisor);
  for (size_t base = 0; base < n; base += kHalfBlock) {
    size_t m = BlockLength(n, base);
    char* p = static_cast<char*>(data) + base * 2;
    Widen<kHalfIndex>(a, p, m);
    for (size_t i = 0; i < m; ++i) a[i] = a[i] / d;
    Narrow<kHalfIndex>(p, a, m);
  }
}

template <class T>
void FillRow(ReduceTable& t, DType dtype) {
  const int d = static_cast<int>(dtype);
  t.reduce[d][0] = &ReduceLoop<T, SumOp>;
  t.reduce[d][1] = &ReduceLoop<T, ProdOp>;
  t.reduce[d][2] = &ReduceLoop<T, MinOp>;
  t.reduce[d][3] = &ReduceLoop<T, MaxOp>;
  t.reduce_saving[d][0] = &ReduceSavingLoop<T, SumOp>;
  t.reduce_saving[d][1] = &ReduceSavingLoop<T, ProdOp>;
  t.reduce_saving[d][2] = &ReduceSavingLoop<T, MinOp>;
  t.reduce_saving[d][3] = &ReduceSavingLoop<T, MaxOp>;
  t.divide[d] = &DivideLoop<T>;
}

template <int kHalfIndex>
void FillHalfRow(ReduceTable& t, DType dtype) {
  const int d = static_cast<int>(dtype);
  t.reduce[d][0] = &ReduceHalfLoop<kHalfIndex, SumOp>;
  t.reduce[d][1] = &ReduceHalfLoop<kHalfIndex, ProdOp>;
  t.reduce[d][2] = &ReduceHalfLoop<kHalfIndex, MinOp>;
  t.reduce[d][3] = &ReduceHalfLoop<kHalfIndex, MaxOp>;
  t.reduce_saving[d][0] = &ReduceSavingHalfLoop<kHalfIndex, SumOp>;
  t.reduce_saving[d][1] = &ReduceSavingHalfLoop<kHalfIndex, ProdOp>;
  t.reduce_saving[d][2] = &ReduceSavingHalfLoop<kHalfIndex, MinOp>;
  t.reduce_saving[d][3] = &ReduceSavingHalfLoop<kHalfIndex, MaxOp>;
  t.divide[d] = &DivideHalfLoop<kHalfIndex>;
  t.widen_half[kHalfIndex] = &WidenHalfLoop<kHalfIndex>;
  t.accumulate_half[kHalfIndex][0] = &AccumulateHalfLoop<kHalfIndex, SumOp>;
  t.accumulate_half[kHalfIndex][1] = &AccumulateHalfLoop<kHalfIndex, ProdOp>;
  t.accumulate_half[kHalfIndex][2] = &AccumulateHalfLoop<kHalfIndex, MinOp>;
  t.accumulate_half[kHalfIndex][3] = &AccumulateHalfLoop<kHalfIndex, MaxOp>;
  t.combine_half[kHalfIndex][0] = &CombineHalfLoop<kHalfIndex, SumOp>;
  t.combine_half[kHalfIndex][1] = &CombineHalfLoop<kHalfIndex, ProdOp>;
  t.combine_half[kHalfIndex][2] = &CombineHalfLoop<kHalfIndex, MinOp>;
  t.combine_half[kHalfIndex][3] = &CombineHalfLoop<kHalfIndex, MaxOp>;
  t.fold_half[kHalfIndex][0] = &FoldHalfLoop<kHalfIndex, SumOp>;
  t.fold_half[kHalfIndex][1] = &FoldHalfLoop<kHalfIndex, ProdOp>;
  t.fold_half[kHalfIndex][2] = &FoldHalfLoop<kHalfIndex, MinOp>;
  t.fold_half[kHalfIndex][3] = &FoldHalfLoop<kHalfIndex, MaxOp>;
  t.narrow_half[kHalfIndex] = &NarrowHalfLoop<kHalfIndex>;
}

ReduceTable MakeTable() {
  static_assert(kNumCombiners == 4);
  ReduceTable t{};
  FillRow<uint8_t>(t, DType::kUint8);
  FillRow<int8_t>(t, DType::kInt8);
  FillRow<uint16_t>(t, DType::kUint16);
  FillRow<int16_t>(t, DType::kInt16);
  FillRow<uint32_t>(t, DType::kUint32);
  FillRow<int32_t>(t, DType::kInt32);
  FillRow<uint64_t>(t, DType::kUint64);
  FillRow<int64_t>(t, DType::kInt64);
  FillHalfRow<0>(t, DType::kFloat16);
  FillHalfRow<1>(t, DType::kBFloat16);
  FillRow<float>(t, DType::kFloat32);
  FillRow<double>(t, DType::kFloat64);
  return t;
}

}  // namespace

const ReduceTable& GetReduceTable() {
  static const ReduceTable table = MakeTable();
  return table;
}

}  // namespace pccl::kernels::PCCL_ISA_NAME
