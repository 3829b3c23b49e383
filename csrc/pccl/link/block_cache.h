// Memory for segments that arrive before their operation starts here (link/ring_op.h).
//
// A peer that runs ahead sends the next operation's segments before this peer has said
// where they go; each waits in a block of its own until the operation declares it, and is
// then copied to its place. In a pipeline that sends as soon as it can (send/recv with 3
// peers, 64 MiB) a quarter to a third of the bytes arrive that way. A fresh allocation per
// segment cost a zero-fill, page faults and their memory-cgroup charges on each one: 17 %
// of the samples in a profile of that pipeline (README, "Where the CPU goes"), twice the
// copy itself; the loop took 27 % longer than with this cache. The cache hands out
// uninitialised blocks and keeps returned ones for the next early segment of about the
// same size, up to `keep_bytes` in all; the rest go back to the system when returned.
//
// Thread-safety: every method may run on any thread.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <memory_resource>
#include <mutex>

#include "pccl/common/call_memory.h"

namespace pccl::link {

class BlockCache {
 public:
  struct Block {
    std::unique_ptr<char[]> data;
    size_t capacity = 0;
  };

  explicit BlockCache(size_t keep_bytes) : keep_bytes_(keep_bytes) {}
  // A block of at least `bytes` bytes (contents unspecified): a kept one no more than
  // twice that size, else a new one. Empty for 0 bytes.
  Block Take(size_t bytes);
  // Keeps `block` for a later Take while the kept bytes stay within keep_bytes; frees it
  // otherwise.
  void Give(Block block);
  size_t kept_bytes();

  // The process's cache, shared by every set of links: it keeps at most
  // min(PCCL_POOL_KEEP_BYTES, kSharedKeepBytes) (common/params.h).
  static BlockCache& Shared();
  static constexpr size_t kSharedKeepBytes = size_t{64} << 20;

 private:
  const size_t keep_bytes_;
  std::mutex mu_;
  // By capacity; its nodes from CallMemory (a block is given back per early segment).
  std::pmr::multimap<size_t, std::unique_ptr<char[]>> kept_{CallMemory()};
  size_t kept_bytes_ = 0;
};

}  // namespace pccl::link
