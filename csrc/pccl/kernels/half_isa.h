// Block conversions float16/bfloat16 <-> float for the *_isa.cc kernels.
//
// Include only from *_isa.cc files (inside their ISA namespace): the fast paths use F16C
// or AVX-512 instructions when the file is compiled for them and fall back to the scalar,
// correctly rounded conversions of common/half.h otherwise. Every path gives the same bits.
// Buffers may have any alignment.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pccl/common/half.h"

#if defined(__F16C__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace pccl::kernels::PCCL_ISA_NAME {
namespace {

template <class T>
inline T LoadAt(const void* base, size_t i) {
  T v;
  __builtin_memcpy(&v, static_cast<const char*>(base) + i * sizeof(T), sizeof(T));
  return v;
}

template <class T>
inline void StoreAt(void* base, size_t i, T v) {
  __builtin_memcpy(static_cast<char*>(base) + i * sizeof(T), &v, sizeof(T));
}

// out[i] = float(in[i]) for IEEE float16 bit patterns.
inline void WidenF16(float* out, const void* in, size_t n) {
  size_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
        static_cast<const char*>(in) + i * 2));
    _mm512_storeu_ps(out + i, _mm512_cvtph_ps(h));
  }
#elif defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(
        static_cast<const char*>(in) + i * 2));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
#endif
  for (; i < n; ++i) out[i] = HalfBitsToFloat(LoadAt<uint16_t>(in, i));
}

// out[i] = float16(in[i]), rounded to nearest even.
inline void NarrowF16(void* out, const float* in, size_t n) {
  size_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(static_cast<char*>(out) + i * 2), h);
  }
#elif defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<char*>(out) + i * 2), h);
  }
#endif
  for (; i < n; ++i) StoreAt<uint16_t>(out, i, FloatToHalfBits(in[i]));
}

// out[i] = float(in[i]) for bfloat16 bit patterns (exact: a shift).
inline void WidenBF16(float* out, const void* in, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = BitsToFloat(uint32_t{LoadAt<uint16_t>(in, i)} << 16);
}

// out[i] = bfloat16(in[i]), rounded to nearest even; NaN stays a quiet NaN. Written
// branch-free so that the compiler vectorises it on every path.
inline void NarrowBF16(void* out, const float* in, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t u = FloatBits(in[i]);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t quiet_nan = (u >> 16) | 0x40u;
    bool is_nan = (u & 0x7fffffffu) > 0x7f800000u;
    StoreAt<uint16_t>(out, i, static_cast<uint16_t>(is_nan ? quiet_nan : rounded));
  }
}

// kHalfIndex 0: float16, 1: bfloat16.
template <int kHalfIndex>
inline void Widen(float* out, const void* in, size_t n) {
  if constexpr (kHalfIndex == 0) {
    WidenF16(out, in, n);
  } else {
    WidenBF16(out, in, n);
  }
}

template <int kHalfIndex>
inline void Narrow(void* out, const float* in, size_t n) {
  if constexpr (kHalfIndex == 0) {
    NarrowF16(out, in, n);
  } else {
    NarrowBF16(out, in, n);
  }
}

}  // namespace
}  // namespace pccl::kernels::PCCL_ISA_NAME
