// XXH64, written from the xxHash specification (see hash.h for why this algorithm).
//
// The story of one digest:
// 1. Four lanes start from the seed: seed + P1 + P2, seed + P2, seed, seed - P1.
// 2. The input is cut into 32-byte stripes; lane k takes the k-th 8-byte word of every
//    stripe through a round: lane += word * P2; lane = rotl(lane, 31); lane *= P1.
//    The four lanes are independent, so a core keeps four multiply chains in flight.
// 3. Converge: if there was at least one stripe, acc = rotl(lane0, 1) + rotl(lane1, 7) +
//    rotl(lane2, 12) + rotl(lane3, 18), then each lane is merged in turn
//    (acc ^= round(0, lane); acc = acc * P1 + P4). With no stripe, acc = seed + P5.
// 4. acc += total length in bytes (mod 2^64).
// 5. The tail (< 32 bytes) is folded in: each 8-byte word as acc ^= round(0, word);
//    acc = rotl(acc, 27) * P1 + P4; then one 4-byte word, if any, as acc ^= word * P1;
//    acc = rotl(acc, 23) * P2 + P3; then each byte as acc ^= byte * P5; acc = rotl(acc, 11) * P1.
// 6. Avalanche: acc ^= acc >> 33; acc *= P2; acc ^= acc >> 29; acc *= P3; acc ^= acc >> 32.
//
// The streaming Hasher runs steps 1-2 on whole stripes as they arrive, keeps a partial
// stripe in a buffer, and runs steps 3-6 on a copy of its state in Digest(). Both entry
// points share the same stripe loop and the same finish, so they cannot drift apart.
//
// All words are read with memcpy (any alignment, no aliasing games) and assembled as
// little-endian, as the specification demands; on a big-endian host that is a byte swap.
// All arithmetic is on uint64_t and wraps modulo 2^64, as the specification intends.
#include "pccl/kernels/hash.h"

#include <bit>
#include <cstring>

#include "pccl/common/status.h"

namespace pccl::kernels {
namespace {

constexpr uint64_t kPrime1 = 0x9E3779B185EBCA87ULL;
constexpr uint64_t kPrime2 = 0xC2B2AE3D27D4EB4FULL;
constexpr uint64_t kPrime3 = 0x165667B19E3779F9ULL;
constexpr uint64_t kPrime4 = 0x85EBCA77C2B2AE63ULL;
constexpr uint64_t kPrime5 = 0x27D4EB2F165667C5ULL;

constexpr size_t kStripe = Hasher::kStripeBytes;

inline uint64_t ReadLe64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

inline uint64_t ReadLe32(const unsigned char* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
  return v;
}

inline uint64_t Round(uint64_t lane, uint64_t word) {
  lane += word * kPrime2;
  lane = std::rotl(lane, 31);
  return lane * kPrime1;
}

inline uint64_t MergeLane(uint64_t acc, uint64_t lane) {
  acc ^= Round(0, lane);
  return acc * kPrime1 + kPrime4;
}

void InitLanes(uint64_t lanes[4], uint64_t seed) {
  lanes[0] = seed + kPrime1 + kPrime2;
  lanes[1] = seed + kPrime2;
  lanes[2] = seed;
  lanes[3] = seed - kPrime1;
}

// Step 2 over `stripes` whole stripes at `p`. The lanes live in registers for the loop.
void ConsumeStripes(uint64_t lanes[4], const unsigned char* p, size_t stripes) {
  uint64_t l0 = lanes[0], l1 = lanes[1], l2 = lanes[2], l3 = lanes[3];
  for (size_t s = 0; s < stripes; ++s, p += kStripe) {
    l0 = Round(l0, ReadLe64(p));
    l1 = Round(l1, ReadLe64(p + 8));
    l2 = Round(l2, ReadLe64(p + 16));
    l3 = Round(l3, ReadLe64(p + 24));
  }
  lanes[0] = l0;
  lanes[1] = l1;
  lanes[2] = l2;
  lanes[3] = l3;
}

// Steps 3-6. `lanes` matter only when total_bytes >= one stripe; `tail` holds the last
// total_bytes % 32 bytes of the input.
uint64_t Finish(const uint64_t lanes[4], uint64_t seed, uint64_t total_bytes,
                const unsigned char* tail, size_t tail_bytes) {
  uint64_t acc;
  if (total_bytes >= kStripe) {
    acc = std::rotl(lanes[0], 1) + std::rotl(lanes[1], 7) + std::rotl(lanes[2], 12) +
          std::rotl(lanes[3], 18);
    for (int k = 0; k < 4; ++k) acc = MergeLane(acc, lanes[k]);
  } else {
    acc = seed + kPrime5;
  }
  acc += total_bytes;

  for (; tail_bytes >= 8; tail += 8, tail_bytes -= 8) {
    acc ^= Round(0, ReadLe64(tail));
    acc = std::rotl(acc, 27) * kPrime1 + kPrime4;
  }
  if (tail_bytes >= 4) {
    acc ^= ReadLe32(tail) * kPrime1;
    acc = std::rotl(acc, 23) * kPrime2 + kPrime3;
    tail += 4;
    tail_bytes -= 4;
  }
  for (; tail_bytes > 0; ++tail, --tail_bytes) {
    acc ^= *tail * kPrime5;
    acc = std::rotl(acc, 11) * kPrime1;
  }

  acc ^= acc >> 33;
  acc *= kPrime2;
  acc ^= acc >> 29;
  acc *= kPrime3;
  acc ^= acc >> 32;
  return acc;
}

}  // namespace

uint64_t Hash64(const void* data, size_t bytes, uint64_t seed) {
  PCCL_CHECK(data != nullptr || bytes == 0);
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t lanes[4] = {};
  const size_t stripes = bytes / kStripe;
  if (stripes > 0) {
    InitLanes(lanes, seed);
    ConsumeStripes(lanes, p, stripes);
  }
  const size_t body = stripes * kStripe;
  return Finish(lanes, seed, bytes, p + body, bytes - body);
}

void Hasher::Reset(uint64_t seed) {
  seed_ = seed;
  InitLanes(lanes_, seed);
  total_bytes_ = 0;
  pending_bytes_ = 0;
}

void Hasher::Update(const void* data, size_t bytes) {
  PCCL_CHECK(data != nullptr || bytes == 0);
  if (bytes == 0) return;
  const auto* p = static_cast<const unsigned char*>(data);
  total_bytes_ += bytes;

  // Complete a partial stripe left by the previous Update first.
  if (pending_bytes_ > 0) {
    const size_t take = bytes < kStripe - pending_bytes_ ? bytes : kStripe - pending_bytes_;
    std::memcpy(pending_ + pending_bytes_, p, take);
    pending_bytes_ += take;
    p += take;
    bytes -= take;
    if (pending_bytes_ < kStripe) return;
    ConsumeStripes(lanes_, pending_, 1);
    pending_bytes_ = 0;
  }

  // Whole stripes straight from the caller's memory, the rest into the buffer.
  const size_t stripes = bytes / kStripe;
  ConsumeStripes(lanes_, p, stripes);
  p += stripes * kStripe;
  bytes -= stripes * kStripe;
  if (bytes > 0) std::memcpy(pending_, p, bytes);
  pending_bytes_ = bytes;
}

uint64_t Hasher::Digest() const {
  return Finish(lanes_, seed_, total_bytes_, pending_, pending_bytes_);
}

}  // namespace pccl::kernels
