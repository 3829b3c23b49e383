// Quantize / dequantize kernels, compiled once per ISA (see kernels/isa.h for the rules of
// *_isa.cc files and kernels/quantize.h for the definitions these loops implement).
//
// Quantize walks the input block by block, two passes per block while the block is hot in
// L1: a range pass (min, max, and a check for Inf/NaN on the bit patterns) and a scale pass
// that writes the q-values. float16/bfloat16 blocks are widened to float in chunks first.
// Rounding to nearest even uses the 1.5 * 2^mantissa trick, which is exact for the |t| <
// 2^22 this needs and vectorises on every path (SSE2 has no round instruction). Every loop is
// a plain loop over memcpy loads and stores that the compiler vectorises; the IEEE
// operations are the same on every path, so the bits are too.
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "pccl/kernels/half_isa.h"
#include "pccl/kernels/quantize.h"

namespace pccl::kernels::PCCL_ISA_NAME {
namespace {

using internal::QuantizeResult;
using internal::QuantizeTable;

// Float kinds (table index) and what they are stored and computed as.
constexpr int kF16 = 0;
constexpr int kBF16 = 1;
constexpr int kF32 = 2;
constexpr int kF64 = 3;

constexpr bool IsHalfKind(int kind) { return kind == kF16 || kind == kBF16; }

// P: the parameter (and quantize arithmetic) type of a source kind.
template <int kKind>
using ParamType = std::conditional_t<kKind == kF64, double, float>;

// Elements of float16/bfloat16 widened (or narrowed) at a time; 4 KiB of float on the stack.
constexpr size_t kChunk = 1024;

template <class P>
struct FloatTraits;
template <>
struct FloatTraits<float> {
  using Bits = uint32_t;
  static constexpr Bits kAbsMask = 0x7fffffffu;
  static constexpr Bits kInfBits = 0x7f800000u;
  static constexpr float kRound = 12582912.0f;  // 1.5 * 2^23
  static constexpr float kMax = 3.40282346638528859812e+38f;
};
template <>
struct FloatTraits<double> {
  using Bits = uint64_t;
  static constexpr Bits kAbsMask = 0x7fffffffffffffffull;
  static constexpr Bits kInfBits = 0x7ff0000000000000ull;
  static constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double kMax = 1.79769313486231570815e+308;
};

// Nearest integer (ties to even) of t, for |t| < 2^22. Adding 1.5 * 2^23 (2^52) moves t to
// where the ulp is 1, so the addition itself rounds; -ffp-contract=off and no fast-math keep
// the two operations apart.
template <class P>
inline P RoundToNearestEven(P t) {
  return (t + FloatTraits<P>::kRound) - FloatTraits<P>::kRound;
}

template <class P>
inline bool IsFinite(P v) {
  return v - v == P{0};  // Inf - Inf and NaN - NaN are NaN
}

// The range pass: lo = min, hi = max over x[0, n) (values of P, any alignment), and
// abs_bits = max of the bit patterns without sign, which is >= kInfBits iff some value is
// Inf or NaN. NaNs do not move lo or hi; the caller refuses them through abs_bits.
// GCC does not vectorise a float min/max reduction without -ffinite-math-only, so the loop
// keeps kLanes independent accumulators (element-wise selects it does vectorise) and folds
// them at the end; min and max do not depend on the order, so neither do the results.
template <class P>
inline void ScanRange(const void* x, size_t n, P& lo, P& hi,
                      typename FloatTraits<P>::Bits& abs_bits) {
  using Bits = typename FloatTraits<P>::Bits;
  constexpr size_t kLanes = 128 / sizeof(P);
  P l[kLanes];
  P h[kLanes];
  Bits a[kLanes];
  for (size_t j = 0; j < kLanes; ++j) {
    l[j] = lo;
    h[j] = hi;
    a[j] = abs_bits;
  }
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) {
      P v = LoadAt<P>(x, i + j);
      Bits b = LoadAt<Bits>(x, i + j) & FloatTraits<P>::kAbsMask;
      l[j] = v < l[j] ? v : l[j];
      h[j] = v > h[j] ? v : h[j];
      a[j] = b > a[j] ? b : a[j];
    }
  }
  for (; i < n; ++i) {
    P v = LoadAt<P>(x, i);
    Bits b = LoadAt<Bits>(x, i) & FloatTraits<P>::kAbsMask;
    l[0] = v < l[0] ? v : l[0];
    h[0] = v > h[0] ? v : h[0];
    a[0] = b > a[0] ? b : a[0];
  }
  for (size_t j = 1; j < kLanes; ++j) {
    l[0] = l[j] < l[0] ? l[j] : l[0];
    h[0] = h[j] > h[0] ? h[j] : h[0];
    a[0] = a[j] > a[0] ? a[j] : a[0];
  }
  lo = l[0];
  hi = h[0];
  abs_bits = a[0];
}

// Index of the first non-finite value in x[0, n), or n.
template <class P>
inline size_t FirstNonFinite(const void* x, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (!IsFinite(LoadAt<P>(x, i))) return i;
  }
  return n;
}

// Per-block parameters and the divisor the scale pass uses.
template <class P>
struct BlockParams {
  P lo = 0;       // MIN_MAX only
  P scale = 0;
  P divisor = 1;  // scale, or 1 when the scale is 0 (every t then rounds to 0)
  bool fits = true;
};

template <class P>
inline BlockParams<P> MinMaxParams(P lo, P hi, P qmax) {
  BlockParams<P> p;
  // -0.0 + 0.0 is +0.0: the parameters must not depend on which zero the scan saw first.
  p.lo = lo + P{0};
  hi = hi + P{0};
  P range = hi - p.lo;
  p.scale = range / qmax;
  p.fits = IsFinite(range) && IsFinite(p.lo + qmax * p.scale);
  p.divisor = p.scale > P{0} ? p.scale : P{1};
  return p;
}

// A constant non-zero block c takes scale |c| instead of |c| / h: q = zero_point +- 1 and
// deq = +-|c| = c exactly (|c| / h * h need not round back to |c|).
template <class P>
inline BlockParams<P> ZeroPointScaleParams(P lo, P hi, P half_range) {
  BlockParams<P> p;
  lo = lo + P{0};
  hi = hi + P{0};
  P a = lo < P{0} ? -lo : lo;
  P b = hi < P{0} ? -hi : hi;
  P m = a > b ? a : b;
  const bool constant = lo == hi;
  p.scale = constant ? m : m / half_range;
  p.fits = IsFinite(constant ? p.scale : half_range * p.scale);
  p.divisor = p.scale > P{0} ? p.scale : P{1};
  return p;
}

// The scale passes clamp in int32 after rounding: t is bounded (|t| <= 2 qmax even when
// the scale is subnormal), and a float clamp before the conversion lets GCC move the
// conversion under a branch that AVX2 then does not vectorise.

// The scale pass of MIN_MAX: q[i] = min(round((x[i] - lo) / d), qmax). x >= lo, so t >= 0.
template <class P, class Q>
inline void QuantizeMinMaxValues(const void* x, size_t n, P lo, P divisor, void* q) {
  constexpr int32_t kQMax = Q(~Q{0});
  for (size_t i = 0; i < n; ++i) {
    P t = (LoadAt<P>(x, i) - lo) / divisor;
    int32_t r = static_cast<int32_t>(RoundToNearestEven(t));
    r = r < kQMax ? r : kQMax;
    StoreAt<Q>(q, i, static_cast<Q>(r));
  }
}

// The scale pass of ZERO_POINT_SCALE: q[i] = clamp(round(x[i] / d), -h, h) + zero_point.
template <class P, class Q>
inline void QuantizeZeroPointValues(const void* x, size_t n, P divisor, void* q) {
  constexpr int32_t kZeroPoint = int32_t{1} << (8 * sizeof(Q) - 1);
  constexpr int32_t kHalfRange = kZeroPoint - 1;
  for (size_t i = 0; i < n; ++i) {
    P t = LoadAt<P>(x, i) / divisor;
    int32_t r = static_cast<int32_t>(RoundToNearestEven(t));
    r = r < kHalfRange ? r : kHalfRange;
    r = r > -kHalfRange ? r : -kHalfRange;
    StoreAt<Q>(q, i, static_cast<Q>(r + kZeroPoint));
  }
}

// The scale pass of one block (or chunk of a block), x[0, m) already in P.
template <class P, class Q, int kAlg>
inline void QuantizeValues(const void* x, size_t m, const BlockParams<P>& p, void* q) {
  if constexpr (kAlg == 0) {
    QuantizeMinMaxValues<P, Q>(x, m, p.lo, p.divisor, q);
  } else {
    QuantizeZeroPointValues<P, Q>(x, m, p.divisor, q);
  }
}

template <class P, class Q, int kAlg>
inline BlockParams<P> ParamsFromRange(P lo, P hi) {
  constexpr P kQMax = static_cast<P>(Q(~Q{0}));
  constexpr P kHalfRange = static_cast<P>((uint32_t{1} << (8 * sizeof(Q) - 1)) - 1);
  if constexpr (kAlg == 0) {
    return MinMaxParams<P>(lo, hi, kQMax);
  } else {
    return ZeroPointScaleParams<P>(lo, hi, kHalfRange);
  }
}

template <class P, int kAlg>
inline void StoreParams(void* params, size_t block, const BlockParams<P>& p) {
  if constexpr (kAlg == 0) {
    StoreAt<P>(params, 2 * block, p.lo);
    StoreAt<P>(params, 2 * block + 1, p.scale);
  } else {
    StoreAt<P>(params, block, p.scale);
  }
}

// Quantize story: for each block of block_size elements (the last one shorter), scan its
// range, refuse it if it holds Inf/NaN or its range overflows P, derive the parameters from
// min and max alone, then write its q-values. float16/bfloat16 blocks are widened in chunks
// of kChunk floats; a block of at most kChunk elements (the default size) is widened once.
template <int kSrc, class Q, int kAlg>
QuantizeResult QuantizeLoop(const void* src, size_t n, size_t block_size, void* q,
                            void* params) {
  using P = ParamType<kSrc>;
  using Bits = typename FloatTraits<P>::Bits;
  constexpr size_t kSrcSize = IsHalfKind(kSrc) ? 2 : sizeof(P);
  [[maybe_unused]] alignas(64) float buf[IsHalfKind(kSrc) ? kChunk : 1];
  const char* s = static_cast<const char*>(src);
  char* qb = static_cast<char*>(q);
  size_t block = 0;
  for (size_t base = 0; base < n; base += block_size, ++block) {
    const size_t m = n - base < block_size ? n - base : block_size;
    const char* x = s + base * kSrcSize;
    P lo = FloatTraits<P>::kMax;
    P hi = -FloatTraits<P>::kMax;
    Bits abs_bits = 0;
    size_t bad = m;
    BlockParams<P> p;
    if constexpr (!IsHalfKind(kSrc)) {
      ScanRange<P>(x, m, lo, hi, abs_bits);
      if (abs_bits >= FloatTraits<P>::kInfBits) bad = FirstNonFinite<P>(x, m);
      if (bad == m) {
        p = ParamsFromRange<P, Q, kAlg>(lo, hi);
        if (p.fits) QuantizeValues<P, Q, kAlg>(x, m, p, qb + base * sizeof(Q));
      }
    } else if (m <= kChunk) {
      Widen<kSrc>(buf, x, m);
      ScanRange<float>(buf, m, lo, hi, abs_bits);
      if (abs_bits >= FloatTraits<float>::kInfBits) bad = FirstNonFinite<float>(buf, m);
      if (bad == m) {
        p = ParamsFromRange<P, Q, kAlg>(lo, hi);
        if (p.fits) QuantizeValues<P, Q, kAlg>(buf, m, p, qb + base * sizeof(Q));
      }
    } else {
      for (size_t off = 0; off < m && bad == m; off += kChunk) {
        const size_t len = m - off < kChunk ? m - off : kChunk;
        Widen<kSrc>(buf, x + off * 2, len);
        ScanRange<float>(buf, len, lo, hi, abs_bits);
        if (abs_bits >= FloatTraits<float>::kInfBits) bad = off + FirstNonFinite<float>(buf, len);
      }
      if (bad == m) {
        p = ParamsFromRange<P, Q, kAlg>(lo, hi);
        for (size_t off = 0; p.fits && off < m; off += kChunk) {
          const size_t len = m - off < kChunk ? m - off : kChunk;
          Widen<kSrc>(buf, x + off * 2, len);
          QuantizeValues<P, Q, kAlg>(buf, len, p, qb + (base + off) * sizeof(Q));
        }
      }
    }
    if (bad != m) return {QuantizeResult::kNonFinite, base + bad};
    if (!p.fits) return {QuantizeResult::kRangeOverflow, block};
    StoreParams<P, kAlg>(params, block, p);
  }
  return {};
}

// deq(q) of one block: lo + q * scale (MIN_MAX) or (q - zero_point) * scale.
template <class P, class Q, int kAlg>
struct Dequantizer {
  P lo;
  P scale;
  P operator()(Q v) const {
    if constexpr (kAlg == 0) {
      return lo + static_cast<P>(v) * scale;
    } else {
      constexpr int32_t kZeroPoint = int32_t{1} << (8 * sizeof(Q) - 1);
      return static_cast<P>(static_cast<int32_t>(v) - kZeroPoint) * scale;
    }
  }
};

template <class P, class Q, int kAlg>
inline Dequantizer<P, Q, kAlg> LoadDequantizer(const void* params, size_t block) {
  if constexpr (kAlg == 0) {
    return {LoadAt<P>(params, 2 * block), LoadAt<P>(params, 2 * block + 1)};
  } else {
    return {P{0}, LoadAt<P>(params, block)};
  }
}

// Dequantize story: per block, load its parameters; per element, v = A(deq(q)) and either
// store it (set) or add it to dst in A (accumulate), A = double for a float64 dst, float
// otherwise. float32/float64 dst are one plain loop; float16/bfloat16 dst go through float
// chunks: deq into one, widen dst into another, add, round back once.
template <int kDst, class P, class Q, int kAlg, int kMode>
void DequantizeLoop(void* dst, const void* q, const void* params, size_t n, size_t block_size) {
  using A = std::conditional_t<kDst == kF64, double, float>;
  const char* qb = static_cast<const char*>(q);
  size_t block = 0;
  for (size_t base = 0; base < n; base += block_size, ++block) {
    const size_t m = n - base < block_size ? n - base : block_size;
    const Dequantizer<P, Q, kAlg> deq = LoadDequantizer<P, Q, kAlg>(params, block);
    const char* qx = qb + base * sizeof(Q);
    if constexpr (!IsHalfKind(kDst)) {
      char* d = static_cast<char*>(dst) + base * sizeof(A);
      for (size_t i = 0; i < m; ++i) {
        A v = static_cast<A>(deq(LoadAt<Q>(qx, i)));
        if constexpr (kMode == 1) v = LoadAt<A>(d, i) + v;
        StoreAt<A>(d, i, v);
      }
    } else {
      alignas(64) float v[kChunk];
      [[maybe_unused]] alignas(64) float acc[kMode == 1 ? kChunk : 1];
      for (size_t off = 0; off < m; off += kChunk) {
        const size_t len = m - off < kChunk ? m - off : kChunk;
        char* d = static_cast<char*>(dst) + (base + off) * 2;
        const char* qc = qx + off * sizeof(Q);
        for (size_t i = 0; i < len; ++i) v[i] = static_cast<float>(deq(LoadAt<Q>(qc, i)));
        if constexpr (kMode == 1) {
          Widen<kDst>(acc, d, len);
          for (size_t i = 0; i < len; ++i) acc[i] = acc[i] + v[i];
          Narrow<kDst>(d, acc, len);
        } else {
          Narrow<kDst>(d, v, len);
        }
      }
    }
  }
}

template <int kSrc, class Q>
void FillQuantize(QuantizeTable& t, int q_index) {
  t.quantize[kSrc][q_index][0] = &QuantizeLoop<kSrc, Q, 0>;
  t.quantize[kSrc][q_index][1] = &QuantizeLoop<kSrc, Q, 1>;
}

template <int kDst, class P, class Q>
void FillDequantize(QuantizeTable& t, int p_index, int q_index) {
  t.dequantize[kDst][p_index][q_index][0][0] = &DequantizeLoop<kDst, P, Q, 0, 0>;
  t.dequantize[kDst][p_index][q_index][0][1] = &DequantizeLoop<kDst, P, Q, 0, 1>;
  t.dequantize[kDst][p_index][q_index][1][0] = &DequantizeLoop<kDst, P, Q, 1, 0>;
  t.dequantize[kDst][p_index][q_index][1][1] = &DequantizeLoop<kDst, P, Q, 1, 1>;
}

template <int kKind>
void FillKind(QuantizeTable& t) {
  FillQuantize<kKind, uint8_t>(t, 0);
  FillQuantize<kKind, uint16_t>(t, 1);
  FillDequantize<kKind, float, uint8_t>(t, 0, 0);
  FillDequantize<kKind, float, uint16_t>(t, 0, 1);
  FillDequantize<kKind, double, uint8_t>(t, 1, 0);
  FillDequantize<kKind, double, uint16_t>(t, 1, 1);
}

QuantizeTable MakeTable() {
  QuantizeTable t{};
  FillKind<kF16>(t);
  FillKind<kBF16>(t);
  FillKind<kF32>(t);
  FillKind<kF64>(t);
  return t;
}

}  // namespace

const QuantizeTable& GetQuantizeTable() {
  static const QuantizeTable table = MakeTable();
  return table;
}

}  // namespace pccl::kernels::PCCL_ISA_NAME
