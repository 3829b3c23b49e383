// Scalar float16 / bfloat16 <-> float conversions, correctly rounded (nearest, ties to even).
//
// These are the reference every vectorised path must match bit for bit (the F16C
// instructions round the same way). NaNs stay NaN and become quiet; the sign and the top
// payload bits are kept, as the hardware conversions do.
//
// Functions are `static inline` on purpose: kernels/*_isa.cc are compiled once per ISA, and
// an inline function with external linkage could be emitted with AVX-512 instructions in one
// object and picked by the linker for the generic path. Internal linkage prevents that.
#pragma once

#include <cstdint>
#include <cstring>

namespace pccl {

static inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

static inline float BitsToFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

static inline float BFloat16BitsToFloat(uint16_t h) { return BitsToFloat(uint32_t{h} << 16); }

static inline uint16_t FloatToBFloat16Bits(float f) {
  uint32_t u = FloatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep sign and top payload, force quiet
    return static_cast<uint16_t>((u >> 16) | 0x0040u);
  }
  uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding_bias) >> 16);
}

static inline float HalfBitsToFloat(uint16_t h) {
  uint32_t sign = uint32_t{h & 0x8000u} << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) {  // Inf / NaN
    return BitsToFloat(sign | 0x7f800000u | (mantissa << 13));
  }
  if (exponent == 0) {
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    float magnitude = static_cast<float>(mantissa) * BitsToFloat(0x33800000u);  // 2^-24
    return BitsToFloat(sign | FloatBits(magnitude));
  }
  return BitsToFloat(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

static inline uint16_t FloatToHalfBits(float f) {
  uint32_t u = FloatBits(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) {  // NaN
    return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  }
  if (a >= 0x477ff000u) {  // rounds to >= 65520: overflow to Inf
    return static_cast<uint16_t>(sign | 0x7c00u);
  }
  if (a < 0x38800000u) {  // below 2^-14: half subnormal (or zero)
    // Adding 0.5 lines the half-subnormal grid up with float's last mantissa bits, so the
    // float addition itself rounds to nearest even.
    float shifted = BitsToFloat(a) + 0.5f;
    return static_cast<uint16_t>(sign | (FloatBits(shifted) - 0x3f000000u));
  }
  uint32_t rounding_bias = 0xfffu + ((a >> 13) & 1u);
  return static_cast<uint16_t>(sign | ((a - 0x38000000u + rounding_bias) >> 13));
}

}  // namespace pccl
