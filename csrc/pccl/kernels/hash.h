// Content hash of shared state: a 64-bit XXH64 digest of raw bytes.
//
// Shared-state sync rests on it: every peer hashes each registered tensor, the master
// compares the hashes to elect the most popular content, and a peer that receives a tensor
// checks the bytes against the elected hash. So the value must be the same on every
// machine, CPU and build, for any alignment and length, and it depends only on the bytes:
// a float16 tensor and a uint16 view of the same memory hash alike (there is no dtype here).
//
// Why XXH64 (seeded, as specified in the xxHash specification document, "xxhash_spec.md",
// XXH64 section):
// - speed: 4 independent 64-bit multiply-rotate lanes over 32-byte stripes run at roughly
//   10 GB/s per core in plain portable C++, near memory bandwidth, with no ISA-specific code;
// - stability: the algorithm and its output are frozen by a published specification, so
//   peers built years apart, by different compilers, agree;
// - a reference exists: the `xxhash` package (xxh64_intdigest) checks every value we make.
// It is not a cryptographic hash: it detects corruption and divergence, not tampering.
//
// Byte order: XXH64 reads its input as little-endian 64-bit and 32-bit words. The loads
// assemble words in that order on any host (a byte swap on big-endian machines), so the
// digest of a byte string is the same everywhere. The digest itself is a number; how it is
// put on the wire is the net layer's business.
//
// One portable path: this family has no per-ISA table (the scalar lanes are already near
// memory speed), so the kernels ISA switch does not change it.
//
// Thread-safety: Hash64 is a pure function of its arguments. A Hasher is a plain value:
// one thread at a time per object; distinct objects are independent.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pccl::kernels {

// XXH64 of `bytes` bytes at `data` (any alignment) with `seed`. `data` may be null only
// when `bytes` is 0.
uint64_t Hash64(const void* data, size_t bytes, uint64_t seed = 0);

// Streaming XXH64: Update() with consecutive pieces of the input, in order, then Digest().
// The digest equals Hash64 of the concatenated pieces for any way of splitting them,
// including pieces that end inside a 32-byte stripe (a partial stripe waits in a small
// buffer until the next Update completes it). Digest() does not change the state, so more
// Update() calls may follow it and Digest() again covers everything so far.
class Hasher {
 public:
  explicit Hasher(uint64_t seed = 0) { Reset(seed); }

  // Starts over with `seed`, forgetting all input.
  void Reset(uint64_t seed = 0);
  // Appends `bytes` bytes at `data` (any alignment; null only when `bytes` is 0).
  void Update(const void* data, size_t bytes);
  // XXH64 of everything passed to Update() since construction or Reset().
  uint64_t Digest() const;
  // Bytes passed to Update() since construction or Reset().
  uint64_t total_bytes() const { return total_bytes_; }

  static constexpr size_t kStripeBytes = 32;

 private:
  uint64_t seed_ = 0;
  uint64_t lanes_[4] = {};     // the 4 accumulators, fed by whole stripes only
  uint64_t total_bytes_ = 0;   // mod 2^64, as the spec adds it
  unsigned char pending_[kStripeBytes] = {};  // a partial stripe not yet consumed
  size_t pending_bytes_ = 0;                  // in [0, kStripeBytes)
};

}  // namespace pccl::kernels
