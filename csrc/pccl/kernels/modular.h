// Modular-arithmetic kernels over Z_p, p < 2^32: Barrett reduction, add / sub / mul /
// multiply-accumulate, fixed-point encode / decode, and keyed pseudo-random masks.
//
// These are the arithmetic of the exact, secure and verified all-reduces (SPEC section 3).
// A peer encodes its floats or integers into residues in Z_p, every ring step adds residues
// mod p (exact and order-independent, so every peer gets the same bits whatever the ring
// order, the retries or the membership history), secure aggregation adds pairwise masks
// that cancel in the sum, and the owner decodes the final residues back to floats.
//
// Residues are uint32 values in [0, p). Kernels whose inputs are residues do not check
// that: an input >= p gives a deterministic but meaningless result (never a crash).
// Buffers may have any alignment. dst and src may be the same buffer for ModAdd, ModSub
// and ModMul (and acc may equal a or b for ModMulAcc); no other overlap is allowed.
// Every ISA path gives the same bits (tests compare them).
//
// Thread-safety: pure functions of their arguments; a Modulus is an immutable value that
// any number of threads may share.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "pccl/common/dtype.h"
#include "pccl/common/status.h"

namespace pccl::kernels {

// Barrett reduction. For a modulus p in [2, 2^32) precompute once mu = floor(2^64 / p).
// Then for ANY 64-bit x:
//   q = floor(x * mu / 2^64)     (the high half of a 64x64-bit product)
//   r = x - q * p                (in [0, 2p): q is floor(x / p) or one less, because
//                                 x * mu / 2^64 > x / p - x / 2^64 > x / p - 1)
//   if (r >= p) r -= p
// so x mod p costs a few multiplications and no division. The high product is built from
// four 32x32->64-bit multiplications, which every x86-64 SIMD level has (pmuludq); the x86
// paths of modular_isa.cc run it with those intrinsics, 2 to 8 lanes at a time.
//
// MulHi64 and BarrettReduce are `static inline` so that kernels/*_isa.cc may use them (see
// the rules in kernels/isa.h). Every product is spelled as a 32x32->64-bit one (Mul32) so
// that the vectoriser emits pmuludq rather than a full 64-bit multiply (vpmullq, or a
// longer emulation on AVX2).
static inline uint64_t Mul32(uint64_t a, uint64_t b) {
  return uint64_t{static_cast<uint32_t>(a)} * static_cast<uint32_t>(b);
}

// floor(a * b / 2^64).
static inline uint64_t MulHi64(uint64_t a, uint64_t b) {
  uint64_t lo_lo = Mul32(a, b);
  uint64_t mid1 = Mul32(a >> 32, b) + (lo_lo >> 32);                    // < 2^64
  uint64_t mid2 = Mul32(a, b >> 32) + static_cast<uint32_t>(mid1);       // < 2^64
  return Mul32(a >> 32, b >> 32) + (mid1 >> 32) + (mid2 >> 32);
}

// x mod p for any 64-bit x, given mu = floor(2^64 / p) and 2 <= p < 2^32. q * p needs only
// its low 64 bits (r = x - q * p is known to lie in [0, 2p)), and as r, p < 2^63 the final
// comparison may be signed, which AVX2 has for 64-bit lanes.
static inline uint32_t BarrettReduce(uint64_t x, uint64_t mu, uint64_t p) {
  uint64_t q = MulHi64(x, mu);
  uint64_t r = x - (Mul32(q, p) + (Mul32(q >> 32, p) << 32));
  return static_cast<uint32_t>(static_cast<int64_t>(r) >= static_cast<int64_t>(p) ? r - p : r);
}

class Modulus {
 public:
  static constexpr uint64_t kMinP = 2;
  static constexpr uint64_t kMaxP = (uint64_t{1} << 32) - 1;

  // The modulus p; InvalidArgument unless 2 <= p <= 2^32 - 1. p need not be prime for the
  // arithmetic (fixed-point decoding and masks work for any p); secure aggregation and
  // linear hashes want a prime.
  static Status Make(uint64_t p, Modulus* out);

  uint32_t p() const { return p_; }
  // floor(2^64 / p).
  uint64_t mu() const { return mu_; }
  // (p - 1) / 2: the largest magnitude a centred residue represents.
  uint32_t half() const { return half_; }
  // The largest 64-bit draw that mask generation accepts: 2^64 - 1 - (2^64 mod p). Draws
  // in [0, max_accept] cover each residue exactly floor(2^64 / p) times.
  uint64_t max_accept() const { return max_accept_; }

  // x mod p by Barrett reduction. (*_isa.cc files call BarrettReduce below instead.)
  uint32_t Reduce(uint64_t x) const;

 private:
  uint32_t p_ = 2;
  uint32_t half_ = 0;
  uint64_t mu_ = uint64_t{1} << 63;
  uint64_t max_accept_ = ~uint64_t{0};
};

// --- Arithmetic on residues ----------------------------------------------------------
// dst: uint32[count] residues; src: uint64[count], any values. dst[i] = src[i] mod p.
Status ModReduce(const Modulus& m, void* dst, const void* src, size_t count);
// dst, src: uint32[count] residues. dst[i] = (dst[i] + src[i]) mod p.
Status ModAdd(const Modulus& m, void* dst, const void* src, size_t count);
// dst[i] = (dst[i] - src[i]) mod p.
Status ModSub(const Modulus& m, void* dst, const void* src, size_t count);
// dst[i] = (dst[i] * src[i]) mod p.
Status ModMul(const Modulus& m, void* dst, const void* src, size_t count);
// acc, a, b: uint32[count] residues. acc[i] = (acc[i] + a[i] * b[i]) mod p (one reduction:
// acc + a * b <= (p - 1) + (p - 1)^2 < 2^64).
Status ModMulAcc(const Modulus& m, void* acc, const void* a, const void* b, size_t count);

// --- Fixed point -------------------------------------------------------------------------
// Encoding a float x with F = frac_bits:
//   v = round_half_even(x * 2^F)         (x * 2^F is exact in double for float32 and float64)
//   residue = v if v >= 0, else p - |v|  (the centred representation)
// Representable: |v| <= H = (p - 1) / 2, i.e. |x| <= (H + 1/2) / 2^F roughly (an x exactly
// halfway between H and H + 1 rounds to the even one). For a representable x the error is
// |x - v / 2^F| <= 2^-(F+1). A sum of n encoded values decodes exactly (no further rounding
// in Z_p) as long as the true integer sum stays within [-H, H]; beyond that it wraps, so
// choose p and F such that n * max|v| <= H.
// Decoding: c = r - p if r > H else r; x = c / 2^F, computed exactly in double and, for
// float32, rounded to nearest even once.
enum class FixedOverflow : uint8_t {
  kError = 0,     // |v| > H fails the call with OutOfRange naming the first such index
  kSaturate = 1,  // |v| > H becomes +H or -H
};

struct FixedPointOptions {
  int frac_bits = 16;  // F, in [0, kMaxFracBits]
  FixedOverflow overflow = FixedOverflow::kError;
};
inline constexpr int kMaxFracBits = 64;

// dst: uint32[count] residues; src: float32 or float64 (`src_dtype`) [count].
// NaN or +-Inf anywhere fail with InvalidArgument naming the first bad index (whatever the
// overflow option). On failure dst holds unspecified residues.
Status FixedEncode(const Modulus& m, DType src_dtype, void* dst, const void* src, size_t count,
                   const FixedPointOptions& options);
// dst: float32 or float64 (`dst_dtype`) [count]; src: uint32[count] residues.
Status FixedDecode(const Modulus& m, DType dst_dtype, void* dst, const void* src, size_t count,
                   int frac_bits);

// --- Keyed masks ---------------------------------------------------------------------------
// MaskGenerate fills dst (uint32[count]) with residues uniform in Z_p, a pure function of
// (key, stream_id, offset + i) for element i: two peers that share a key produce the same
// mask, and any sub-range [offset, offset + count) is generated independently of the rest
// (random access), so a ring segment can mask or unmask its own slice.
//
// The pseudo-random function is ChaCha20 (RFC 8439 block function) with the 64-bit block
// counter in state words 12..13 and the 64-bit stream id in words 14..15. Element j (the
// absolute index offset + i) takes ONE 64-bit draw, the little-endian words 2k, 2k+1 of
// keystream block j / 8 (k = j % 8); equivalently, bytes 8j .. 8j+7 of the RFC 8439
// keystream whose 96-bit nonce is LE32(block >> 32) || LE64(stream_id).
//
// Rejection sampling keeps the mask uniform: a draw d is accepted only if d <= max_accept
// (see Modulus), a range holding every residue equally often, and then the mask is d mod p.
// A draw is rejected with probability (2^64 mod p) / 2^64 < 2^-32. A rejected element
// does not shift any other element (that would break random access): it draws from its
// own deterministic fallback sequence, attempt t = 0, 1, ... taking words 2(t % 8),
// 2(t % 8) + 1 of block 2^63 | (t / 8) << 56 | j. Primary and fallback blocks never meet
// because j < 2^56 (kMaxMaskIndex). After kMaxFallbackDraws rejected fallback draws
// (probability below 2^-32000) the last draw is used mod p.
//
// A (key, stream_id) pair must mask one vector only: masking two different vectors with
// the same stream lets anyone who sees both masked vectors subtract them. Derive stream_id
// from (step, tag, peer pair), for instance.
using MaskKey = std::array<uint8_t, 32>;
inline constexpr uint64_t kMaxMaskIndex = uint64_t{1} << 56;  // offset + count <= this
inline constexpr int kMaxFallbackDraws = 1024;

Status MaskGenerate(const Modulus& m, const MaskKey& key, uint64_t stream_id, uint64_t offset,
                    void* dst, size_t count);

// The RFC 8439 ChaCha20 block function: 64 keystream bytes for (key, counter, nonce). For
// tests of the PRF against the RFC's vectors.
void ChaCha20Block(const MaskKey& key, uint32_t counter, const std::array<uint8_t, 12>& nonce,
                   uint8_t out[64]);

namespace internal {
// MaskGenerate with an explicit acceptance bound (tests use a small one to exercise the
// fallback path; it must be k * p - 1 for some k >= 1 for the masks to stay uniform).
Status MaskGenerateWithBound(const Modulus& m, const MaskKey& key, uint64_t stream_id,
                             uint64_t offset, void* dst, size_t count, uint64_t max_accept);

// The per-ISA implementation (modular_isa.cc). All arguments are checked by modular.cc.
// The tables take the modulus as this plain struct, not as a Modulus, so that the
// per-ISA code calls no inline member function (see the rules in kernels/isa.h).
struct Barrett {
  uint64_t p;
  uint64_t mu;    // floor(2^64 / p)
  uint64_t half;  // (p - 1) / 2
};
struct MaskParams {
  uint32_t key_words[8];
  uint64_t stream_id;
  uint64_t offset;
  uint64_t max_accept;
};
struct ModularTable {
  void (*reduce)(const Barrett& m, void* dst, const void* src, size_t n);
  void (*add)(const Barrett& m, void* dst, const void* src, size_t n);
  void (*sub)(const Barrett& m, void* dst, const void* src, size_t n);
  void (*mul)(const Barrett& m, void* dst, const void* src, size_t n);
  void (*mul_acc)(const Barrett& m, void* acc, const void* a, const void* b, size_t n);
  // [0] float32, [1] float64; `scale` = 2^frac_bits. Returns n if every element encoded,
  // else the first index that is not finite or (with `error_on_overflow`) out of range.
  size_t (*encode[2])(const Barrett& m, void* dst, const void* src, size_t n, double scale,
                      bool error_on_overflow);
  // `inv_scale` = 2^-frac_bits.
  void (*decode[2])(const Barrett& m, void* dst, const void* src, size_t n, double inv_scale);
  void (*mask)(const Barrett& m, const MaskParams& params, void* dst, size_t n);
};
}  // namespace internal

}  // namespace pccl::kernels
