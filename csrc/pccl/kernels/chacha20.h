// The ChaCha20 block function (RFC 8439, section 2.3), scalar, header-only.
//
// This is the pseudo-random function behind the secure-aggregation masks of
// kernels/modular.h: the block function maps (key, block counter, nonce) to 64 bytes of
// keystream. It is written from the RFC's description and tested against its test vectors
// and against the `cryptography` package. The vectorised mask kernel (modular_isa.cc)
// runs the same rounds on 16 blocks at once; this scalar form is the reference it must
// match and the path for single rejected draws.
//
// Functions are `static inline` so that kernels/*_isa.cc may include this header (see the
// rules in kernels/isa.h). Pure functions; any thread.
#pragma once

#include <cstdint>

namespace pccl::kernels::chacha20 {

// "expand 32-byte k" as four little-endian words.
constexpr uint32_t kSigma[4] = {0x61707865u, 0x3320646eu, 0x79622d32u, 0x6b206574u};

static inline uint32_t RotateLeft(uint32_t x, int bits) {
  return (x << bits) | (x >> (32 - bits));
}

static inline void QuarterRound(uint32_t& a, uint32_t& b, uint32_t& c, uint32_t& d) {
  a += b; d ^= a; d = RotateLeft(d, 16);
  c += d; b ^= c; b = RotateLeft(b, 12);
  a += b; d ^= a; d = RotateLeft(d, 8);
  c += d; b ^= c; b = RotateLeft(b, 7);
}

// Reads a little-endian word whatever the host byte order.
static inline uint32_t LoadLe32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) |
         (uint32_t{p[3]} << 24);
}

// The 16-word initial state: constants, key, then words 12..15. In RFC 8439's layout
// word 12 is the 32-bit block counter and words 13..15 the 96-bit nonce.
static inline void InitState(uint32_t state[16], const uint32_t key_words[8], uint32_t w12,
                             uint32_t w13, uint32_t w14, uint32_t w15) {
  for (int i = 0; i < 4; ++i) state[i] = kSigma[i];
  for (int i = 0; i < 8; ++i) state[4 + i] = key_words[i];
  state[12] = w12;
  state[13] = w13;
  state[14] = w14;
  state[15] = w15;
}

// out = the 20-round ChaCha permutation of `state` plus `state` (the keystream block, as
// 16 words; serialise each little-endian to get the RFC's 64 bytes).
static inline void BlockWords(const uint32_t state[16], uint32_t out[16]) {
  uint32_t x[16];
  for (int i = 0; i < 16; ++i) x[i] = state[i];
  for (int round = 0; round < 10; ++round) {  // 10 double rounds = 20 rounds
    QuarterRound(x[0], x[4], x[8], x[12]);    // columns
    QuarterRound(x[1], x[5], x[9], x[13]);
    QuarterRound(x[2], x[6], x[10], x[14]);
    QuarterRound(x[3], x[7], x[11], x[15]);
    QuarterRound(x[0], x[5], x[10], x[15]);   // diagonals
    QuarterRound(x[1], x[6], x[11], x[12]);
    QuarterRound(x[2], x[7], x[8], x[13]);
    QuarterRound(x[3], x[4], x[9], x[14]);
  }
  for (int i = 0; i < 16; ++i) out[i] = x[i] + state[i];
}

}  // namespace pccl::kernels::chacha20
