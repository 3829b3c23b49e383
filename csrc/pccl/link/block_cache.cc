#include "pccl/link/block_cache.h"

#include <algorithm>

#include "pccl/common/params.h"

namespace pccl::link {
namespace {

// Sizes are rounded up to this (for blocks at least this large), so that segments of
// nearly the same size (a ring's chunk ends) share blocks.
constexpr size_t kGranule = size_t{64} << 10;

size_t Capacity(size_t bytes) {
  return bytes < kGranule ? bytes : (bytes + kGranule - 1) / kGranule * kGranule;
}

}  // namespace

BlockCache::Block BlockCache::Take(size_t bytes) {
  if (bytes == 0) return Block();
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = kept_.lower_bound(bytes);
    if (it != kept_.end() && it->first <= 2 * bytes) {
      Block block{std::move(it->second), it->first};
      kept_bytes_ -= it->first;
      kept_.erase(it);
      return block;
    }
  }
  const size_t capacity = Capacity(bytes);
  // new char[] leaves the bytes uninitialised: no zero-fill pass over them.
  return Block{std::unique_ptr<char[]>(new char[capacity]), capacity};
}

void BlockCache::Give(Block block) {
  if (!block.data) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (kept_bytes_ + block.capacity > keep_bytes_) return;  // freed as `block` goes
  kept_bytes_ += block.capacity;
  kept_.emplace(block.capacity, std::move(block.data));
}

size_t BlockCache::kept_bytes() {
  std::lock_guard<std::mutex> lock(mu_);
  return kept_bytes_;
}

BlockCache& BlockCache::Shared() {
  // Never destroyed: links' I/O threads may give blocks back while the process exits.
  static BlockCache* const shared = new BlockCache(std::min<size_t>(
      static_cast<size_t>(GetParams().pool_keep_bytes), kSharedKeepBytes));
  return *shared;
}

}  // namespace pccl::link
