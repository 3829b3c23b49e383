// Modular kernels, compiled once per ISA (see kernels/isa.h for the rules of *_isa.cc).
//
// Every kernel is a plain element loop that the compiler vectorises: Barrett reduction is
// written with 32x32->64-bit multiplications (MulHi64 in modular.h), which map to pmuludq
// on every x86-64 SIMD level, and comparisons become lane masks. Loads and stores go
// through memcpy, so any alignment works. ChaCha20 for the masks runs several blocks at once
// in GCC vector types (one vector register per state word), and the rare rejected draw is
// redone in scalar.
#include <cstddef>
#include <cstdint>

#include "pccl/kernels/chacha20.h"
#include "pccl/kernels/half_isa.h"
#include "pccl/kernels/modular.h"

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace pccl::kernels::PCCL_ISA_NAME {
namespace {

using internal::Barrett;
using internal::MaskParams;
using internal::ModularTable;

// --- Arithmetic ------------------------------------------------------------------------
// Add and sub are plain uint32 loops. Reduction and multiplication need Barrett's 64-bit
// arithmetic; GCC vectorises the scalar BarrettReduce, but it widens every 32x32->64
// product into a full 64x64 multiply (three pmuludq on AVX2, vpmullq on AVX-512), so the
// x86 paths (SSE2 on the generic one) spell the same arithmetic with pmuludq intrinsics:
// six per 64-bit lane (four for the high product q, two for the low half of q * p).
// Products of uint32 residues are formed in two halves: the even elements of a vector
// (pmuludq reads the low 32 bits of each 64-bit lane) and the odd ones (shifted down);
// the two reduced halves are put back together with a shift and an OR. The scalar loop
// finishes the tail, with the same bits.
#if defined(__AVX512F__)
#define PCCL_MODULAR_SIMD 1
using Vec = __m512i;
constexpr size_t kVecBytes = 64;
inline Vec LoadVec(const void* p) { return _mm512_loadu_si512(p); }
inline void StoreVec(void* p, Vec v) { _mm512_storeu_si512(p, v); }
inline Vec Splat64(uint64_t x) { return _mm512_set1_epi64(static_cast<long long>(x)); }
inline Vec MulEven(Vec a, Vec b) { return _mm512_mul_epu32(a, b); }
inline Vec Add64(Vec a, Vec b) { return _mm512_add_epi64(a, b); }
inline Vec Sub64(Vec a, Vec b) { return _mm512_sub_epi64(a, b); }
inline Vec ShiftDown32(Vec a) { return _mm512_srli_epi64(a, 32); }
inline Vec ShiftUp32(Vec a) { return _mm512_slli_epi64(a, 32); }
inline Vec Low32(Vec a) { return _mm512_and_si512(a, _mm512_set1_epi64(0xffffffffLL)); }
inline Vec Or(Vec a, Vec b) { return _mm512_or_si512(a, b); }
// r in [0, 2p) -> r mod p: if r < p, r - p wraps above r.
inline Vec SubtractIfAtLeast(Vec r, Vec p) { return _mm512_min_epu64(r, _mm512_sub_epi64(r, p)); }
// 32-bit lanes [a0 b0 a1 b1 ...] -> [a0 a1 ... b0 b1 ...]
inline Vec Deinterleave32(Vec v) {
  const Vec order = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  return _mm512_permutexvar_epi32(order, v);
}
#elif defined(__AVX2__)
#define PCCL_MODULAR_SIMD 1
using Vec = __m256i;
constexpr size_t kVecBytes = 32;
inline Vec LoadVec(const void* p) { return _mm256_loadu_si256(static_cast<const Vec*>(p)); }
inline void StoreVec(void* p, Vec v) { _mm256_storeu_si256(static_cast<Vec*>(p), v); }
inline Vec Splat64(uint64_t x) { return _mm256_set1_epi64x(static_cast<long long>(x)); }
inline Vec MulEven(Vec a, Vec b) { return _mm256_mul_epu32(a, b); }
inline Vec Add64(Vec a, Vec b) { return _mm256_add_epi64(a, b); }
inline Vec Sub64(Vec a, Vec b) { return _mm256_sub_epi64(a, b); }
inline Vec ShiftDown32(Vec a) { return _mm256_srli_epi64(a, 32); }
inline Vec ShiftUp32(Vec a) { return _mm256_slli_epi64(a, 32); }
inline Vec Low32(Vec a) { return _mm256_and_si256(a, _mm256_set1_epi64x(0xffffffffLL)); }
inline Vec Or(Vec a, Vec b) { return _mm256_or_si256(a, b); }
// d = r - p is negative exactly when r < p (|d| < 2^33): then add p back.
inline Vec SubtractIfAtLeast(Vec r, Vec p) {
  Vec d = _mm256_sub_epi64(r, p);
  Vec negative = _mm256_cmpgt_epi64(_mm256_setzero_si256(), d);
  return _mm256_add_epi64(d, _mm256_and_si256(negative, p));
}
inline Vec Deinterleave32(Vec v) {
  return _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
}
#elif defined(__SSE2__)  // the generic x86-64 path
#define PCCL_MODULAR_SIMD 1
using Vec = __m128i;
constexpr size_t kVecBytes = 16;
inline Vec LoadVec(const void* p) { return _mm_loadu_si128(static_cast<const Vec*>(p)); }
inline void StoreVec(void* p, Vec v) { _mm_storeu_si128(static_cast<Vec*>(p), v); }
inline Vec Splat64(uint64_t x) { return _mm_set1_epi64x(static_cast<long long>(x)); }
inline Vec MulEven(Vec a, Vec b) { return _mm_mul_epu32(a, b); }
inline Vec Add64(Vec a, Vec b) { return _mm_add_epi64(a, b); }
inline Vec Sub64(Vec a, Vec b) { return _mm_sub_epi64(a, b); }
inline Vec ShiftDown32(Vec a) { return _mm_srli_epi64(a, 32); }
inline Vec ShiftUp32(Vec a) { return _mm_slli_epi64(a, 32); }
inline Vec Low32(Vec a) { return _mm_and_si128(a, _mm_set1_epi64x(0xffffffffLL)); }
inline Vec Or(Vec a, Vec b) { return _mm_or_si128(a, b); }
// SSE2 has no 64-bit comparison: d = r - p is negative exactly when r < p (|d| < 2^33), so
// its sign, spread over the lane, selects whether to add p back.
inline Vec SubtractIfAtLeast(Vec r, Vec p) {
  Vec d = _mm_sub_epi64(r, p);
  Vec negative = _mm_shuffle_epi32(_mm_srai_epi32(d, 31), _MM_SHUFFLE(3, 3, 1, 1));
  return _mm_add_epi64(d, _mm_and_si128(negative, p));
}
inline Vec Deinterleave32(Vec v) { return _mm_shuffle_epi32(v, _MM_SHUFFLE(3, 1, 2, 0)); }
#endif

#if defined(PCCL_MODULAR_SIMD)
// The vector form of BarrettReduce: x mod p in each 64-bit lane.
struct BarrettVec {
  Vec mu, mu_hi, p;
  explicit BarrettVec(const Barrett& m)
      : mu(Splat64(m.mu)), mu_hi(Splat64(m.mu >> 32)), p(Splat64(m.p)) {}

  Vec Reduce(Vec x) const {
    Vec x_hi = ShiftDown32(x);
    Vec lo_lo = MulEven(x, mu);
    Vec mid1 = Add64(MulEven(x_hi, mu), ShiftDown32(lo_lo));
    Vec mid2 = Add64(MulEven(x, mu_hi), Low32(mid1));
    Vec q = Add64(MulEven(x_hi, mu_hi), Add64(ShiftDown32(mid1), ShiftDown32(mid2)));
    Vec qp = Add64(MulEven(q, p), ShiftUp32(MulEven(ShiftDown32(q), p)));
    return SubtractIfAtLeast(Sub64(x, qp), p);
  }
};

constexpr size_t kVec32 = kVecBytes / 4;  // uint32 elements per vector

inline const char* At(const void* base, size_t byte_offset) {
  return static_cast<const char*>(base) + byte_offset;
}
inline char* At(void* base, size_t byte_offset) { return static_cast<char*>(base) + byte_offset; }
#endif  // PCCL_MODULAR_SIMD

void ReduceLoop(const Barrett& m, void* dst, const void* src, size_t n) {
  size_t i = 0;
#if defined(PCCL_MODULAR_SIMD)
  const BarrettVec b(m);
  for (; i + kVec32 <= n; i += kVec32) {  // two vectors of uint64 in, one of uint32 out
    Vec lo = b.Reduce(LoadVec(At(src, i * 8)));
    Vec hi = b.Reduce(LoadVec(At(src, i * 8 + kVecBytes)));
    StoreVec(At(dst, i * 4), Deinterleave32(Or(lo, ShiftUp32(hi))));
  }
#endif
  for (; i < n; ++i) StoreAt<uint32_t>(dst, i, BarrettReduce(LoadAt<uint64_t>(src, i), m.mu, m.p));
}

// a + b mod p as a - (p - b): no intermediate exceeds 32 bits, so it vectorises in uint32
// lanes even for p close to 2^32.
inline uint32_t AddMod(uint32_t a, uint32_t b, uint32_t p) {
  uint32_t d = p - b;  // in (0, p]
  uint32_t r = a - d;
  return a < d ? r + p : r;
}

inline uint32_t SubMod(uint32_t a, uint32_t b, uint32_t p) {
  uint32_t r = a - b;
  return a < b ? r + p : r;
}

void AddLoop(const Barrett& m, void* dst, const void* src, size_t n) {
  const uint32_t p = static_cast<uint32_t>(m.p);
  for (size_t i = 0; i < n; ++i) {
    StoreAt<uint32_t>(dst, i, AddMod(LoadAt<uint32_t>(dst, i), LoadAt<uint32_t>(src, i), p));
  }
}

void SubLoop(const Barrett& m, void* dst, const void* src, size_t n) {
  const uint32_t p = static_cast<uint32_t>(m.p);
  for (size_t i = 0; i < n; ++i) {
    StoreAt<uint32_t>(dst, i, SubMod(LoadAt<uint32_t>(dst, i), LoadAt<uint32_t>(src, i), p));
  }
}

inline uint64_t U64(uint32_t x) { return x; }

// acc = acc * src mod p (kAccumulate false) or acc = acc + a * b mod p (true; then
// acc + a * b <= (p - 1) + (p - 1)^2 < 2^64 needs only one reduction).
template <bool kAccumulate>
void MulLoop(const Barrett& m, void* acc, const void* a, const void* b, size_t n) {
  size_t i = 0;
#if defined(PCCL_MODULAR_SIMD)
  const BarrettVec barrett(m);
  for (; i + kVec32 <= n; i += kVec32) {
    Vec va = LoadVec(At(a, i * 4)), vb = LoadVec(At(b, i * 4));
    Vec even = MulEven(va, vb);
    Vec odd = MulEven(ShiftDown32(va), ShiftDown32(vb));
    if constexpr (kAccumulate) {
      Vec vc = LoadVec(At(acc, i * 4));
      even = Add64(even, Low32(vc));
      odd = Add64(odd, ShiftDown32(vc));
    }
    StoreVec(At(acc, i * 4), Or(barrett.Reduce(even), ShiftUp32(barrett.Reduce(odd))));
  }
#endif
  for (; i < n; ++i) {
    uint64_t x = U64(LoadAt<uint32_t>(a, i)) * LoadAt<uint32_t>(b, i);
    if constexpr (kAccumulate) x += LoadAt<uint32_t>(acc, i);
    StoreAt<uint32_t>(acc, i, BarrettReduce(x, m.mu, m.p));
  }
}

void ModMulLoop(const Barrett& m, void* dst, const void* src, size_t n) {
  MulLoop<false>(m, dst, dst, src, n);
}

// --- Fixed point -----------------------------------------------------------------------
// Encoding x (story in modular.h): y = x * 2^F is exact in double. y is clamped to
// +-(H + 1) (NaN goes to -(H + 1)), then rounded half to even by adding and subtracting
// 1.5 * 2^52, exact for |y| < 2^51 in the default rounding mode. The rounded r saturates
// to [-H, H] and converts to int32; the residue of v is v, or p + v for v < 0, in wrapping
// uint32 arithmetic. Failures are flagged with integer bit tricks rather than comparisons
// so that the flag is a plain OR reduction the compiler vectorises: r is out of range iff
// H - |r| is negative (its sign bit), x is NaN or Inf iff its exponent bits are all ones.
// A block of elements is encoded branch-free; only a block with a flag set is scanned
// again to find the first bad element.
constexpr size_t kEncodeBlock = 1024;
constexpr double kRoundMagic = 6755399441055744.0;  // 1.5 * 2^52
constexpr uint64_t kExponentMask = 0x7ff0000000000000u;
constexpr uint64_t kExponentLsb = 0x0010000000000000u;

inline uint64_t DoubleBits(double d) {
  uint64_t u;
  __builtin_memcpy(&u, &d, sizeof(u));
  return u;
}

// Returns the residue of x; ORs 1 into `bad` if x is not finite or, with kErrorOnOverflow,
// if it does not round into [-H, H] (then the residue is meaningless).
template <bool kErrorOnOverflow>
inline uint32_t EncodeOne(double x, double scale, double h, double limit, uint32_t p,
                          uint64_t& bad) {
  double y = x * scale;
  double c = y >= -limit ? (y > limit ? limit : y) : -limit;
  double r = (c + kRoundMagic) - kRoundMagic;
  double s = r > h ? h : (r < -h ? -h : r);
  int32_t v = static_cast<int32_t>(s);
  if constexpr (kErrorOnOverflow) {
    bad |= DoubleBits(h - __builtin_fabs(r)) >> 63;
  } else {
    bad |= ((DoubleBits(x) & kExponentMask) + kExponentLsb) >> 63;
  }
  return static_cast<uint32_t>(v) + (v < 0 ? p : 0u);
}

template <class T, bool kErrorOnOverflow>
size_t EncodeLoop(const Barrett& m, void* dst, const void* src, size_t n, double scale) {
  const double h = static_cast<double>(m.half);
  const double limit = h + 1.0;
  const uint32_t p = static_cast<uint32_t>(m.p);
  for (size_t base = 0; base < n; base += kEncodeBlock) {
    const size_t end = n - base < kEncodeBlock ? n : base + kEncodeBlock;
    uint64_t bad = 0;
    for (size_t i = base; i < end; ++i) {
      double x = static_cast<double>(LoadAt<T>(src, i));
      StoreAt<uint32_t>(dst, i, EncodeOne<kErrorOnOverflow>(x, scale, h, limit, p, bad));
    }
    if (bad == 0) continue;
    for (size_t i = base; i < end; ++i) {
      uint64_t bad_here = 0;
      double x = static_cast<double>(LoadAt<T>(src, i));
      EncodeOne<kErrorOnOverflow>(x, scale, h, limit, p, bad_here);
      if (bad_here != 0) return i;
    }
  }
  return n;
}

template <class T>
size_t Encode(const Barrett& m, void* dst, const void* src, size_t n, double scale,
              bool error_on_overflow) {
  return error_on_overflow ? EncodeLoop<T, true>(m, dst, src, n, scale)
                           : EncodeLoop<T, false>(m, dst, src, n, scale);
}

// c = r - p when r > H, computed in wrapping uint32 and read as int32 (exact for r < p,
// since |c| <= H < 2^31); c * 2^-F is exact in double; float32 rounds once.
template <class T>
void Decode(const Barrett& m, void* dst, const void* src, size_t n, double inv_scale) {
  const uint32_t p = static_cast<uint32_t>(m.p);
  const uint32_t h = static_cast<uint32_t>(m.half);
  for (size_t i = 0; i < n; ++i) {
    uint32_t r = LoadAt<uint32_t>(src, i);
    int32_t c = static_cast<int32_t>(r > h ? r - p : r);
    StoreAt<T>(dst, i, static_cast<T>(static_cast<double>(c) * inv_scale));
  }
}

// --- Masks -------------------------------------------------------------------------------
// The mask of element j is its 64-bit draw reduced mod p (story in modular.h). Work goes in
// batches of kLanes consecutive keystream blocks (8 draws each): run ChaCha20 on all lanes
// at once, lay the draws out in element order, reduce them with Barrett while noting
// whether any draw was rejected, copy the batch's part of [offset, offset + n) out, and
// redo rejected elements from their fallback sequence.
// One vector register per state word: 16 lanes on AVX-512, 8 on AVX2, 4 elsewhere (so the
// 16-word state fits the 16 or 32 vector registers without spilling).
#if defined(__AVX512F__)
constexpr int kLanes = 16;
#elif defined(__AVX2__)
constexpr int kLanes = 8;
#else
constexpr int kLanes = 4;
#endif
constexpr int kDrawsPerBlock = 8;
constexpr int kBatchDraws = kLanes * kDrawsPerBlock;
typedef uint32_t Lanes __attribute__((vector_size(4 * kLanes)));

inline void QuarterRoundLanes(Lanes& a, Lanes& b, Lanes& c, Lanes& d) {
  a += b; d ^= a; d = (d << 16) | (d >> 16);
  c += d; b ^= c; b = (b << 12) | (b >> 20);
  a += b; d ^= a; d = (d << 8) | (d >> 24);
  c += d; b ^= c; b = (b << 7) | (b >> 25);
}

// draws[l * 8 + k] = words 2k, 2k+1 of the block with counter first_block + l.
void KeystreamDraws(const MaskParams& params, uint64_t first_block, uint64_t draws[]) {
  Lanes x[16], init[16];
  Lanes lane_index;
  for (int l = 0; l < kLanes; ++l) lane_index[l] = static_cast<uint32_t>(l);
  const Lanes zero = {};
  for (int w = 0; w < 4; ++w) init[w] = zero + chacha20::kSigma[w];
  for (int w = 0; w < 8; ++w) init[4 + w] = zero + params.key_words[w];
  // Block counters first_block + l, 64-bit: the low words wrap with a carry into the high.
  const Lanes base_lo = zero + static_cast<uint32_t>(first_block);
  init[12] = base_lo + lane_index;
  init[13] = (zero + static_cast<uint32_t>(first_block >> 32)) -
             reinterpret_cast<Lanes>(init[12] < base_lo);  // true lanes are all ones: +1
  init[14] = zero + static_cast<uint32_t>(params.stream_id);
  init[15] = zero + static_cast<uint32_t>(params.stream_id >> 32);
  for (int w = 0; w < 16; ++w) x[w] = init[w];
  for (int round = 0; round < 10; ++round) {
    QuarterRoundLanes(x[0], x[4], x[8], x[12]);
    QuarterRoundLanes(x[1], x[5], x[9], x[13]);
    QuarterRoundLanes(x[2], x[6], x[10], x[14]);
    QuarterRoundLanes(x[3], x[7], x[11], x[15]);
    QuarterRoundLanes(x[0], x[5], x[10], x[15]);
    QuarterRoundLanes(x[1], x[6], x[11], x[12]);
    QuarterRoundLanes(x[2], x[7], x[8], x[13]);
    QuarterRoundLanes(x[3], x[4], x[9], x[14]);
  }
  for (int w = 0; w < 16; ++w) x[w] += init[w];
  for (int k = 0; k < kDrawsPerBlock; ++k) {
    for (int l = 0; l < kLanes; ++l) {
      draws[l * kDrawsPerBlock + k] =
          uint64_t{x[2 * k][l]} | (uint64_t{x[2 * k + 1][l]} << 32);
    }
  }
}

// The fallback sequence of element j: attempt t uses words 2(t % 8), 2(t % 8) + 1 of the
// block with counter 2^63 | (t / 8) << 56 | j.
uint32_t FallbackMask(const Barrett& m, const MaskParams& params, uint64_t j) {
  uint32_t words[16];
  uint64_t draw = 0;
  for (int t = 0; t < kMaxFallbackDraws; ++t) {
    const int k = t % kDrawsPerBlock;
    if (k == 0) {
      const uint64_t block = (uint64_t{1} << 63) | (static_cast<uint64_t>(t / 8) << 56) | j;
      uint32_t state[16];
      chacha20::InitState(state, params.key_words, static_cast<uint32_t>(block),
                          static_cast<uint32_t>(block >> 32),
                          static_cast<uint32_t>(params.stream_id),
                          static_cast<uint32_t>(params.stream_id >> 32));
      chacha20::BlockWords(state, words);
    }
    draw = uint64_t{words[2 * k]} | (uint64_t{words[2 * k + 1]} << 32);
    if (draw <= params.max_accept) break;
  }
  return BarrettReduce(draw, m.mu, m.p);
}

void MaskLoop(const Barrett& m, const MaskParams& params, void* dst, size_t n) {
  const uint64_t max_accept = params.max_accept;
  const uint64_t begin = params.offset, end = params.offset + n;
  alignas(64) uint64_t draws[kBatchDraws];
  for (uint64_t block = begin / kDrawsPerBlock; block * kDrawsPerBlock < end; block += kLanes) {
    KeystreamDraws(params, block, draws);
    const uint64_t first = block * kDrawsPerBlock;  // element index of draws[0]
    const size_t lo = static_cast<size_t>(begin > first ? begin - first : 0);
    const size_t hi = static_cast<size_t>(end - first < kBatchDraws ? end - first : kBatchDraws);
    char* out = static_cast<char*>(dst) + (first + lo - begin) * 4;  // element `lo` goes here
    ReduceLoop(m, out, draws + lo, hi - lo);
    // rejected = OR of (draws[e] > max_accept), as the borrow of max_accept - draws[e]
    // (bit arithmetic, which vectorises where a comparison in a reduction does not).
    uint64_t rejected = 0;
    for (size_t e = lo; e < hi; ++e) {
      const uint64_t d = draws[e];
      rejected |= ((~max_accept & d) | (~(max_accept ^ d) & (max_accept - d))) >> 63;
    }
    if (rejected == 0) continue;
    for (size_t e = lo; e < hi; ++e) {
      if (draws[e] > max_accept) {
        StoreAt<uint32_t>(out, e - lo, FallbackMask(m, params, first + e));
      }
    }
  }
}

ModularTable MakeTable() {
  ModularTable t{};
  t.reduce = &ReduceLoop;
  t.add = &AddLoop;
  t.sub = &SubLoop;
  t.mul = &ModMulLoop;
  t.mul_acc = &MulLoop<true>;
  t.encode[0] = &Encode<float>;
  t.encode[1] = &Encode<double>;
  t.decode[0] = &Decode<float>;
  t.decode[1] = &Decode<double>;
  t.mask = &MaskLoop;
  return t;
}

}  // namespace

const ModularTable& GetModularTable() {
  static const ModularTable table = MakeTable();
  return table;
}

}  // namespace pccl::kernels::PCCL_ISA_NAME
