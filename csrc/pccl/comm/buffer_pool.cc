#include "pccl/comm/buffer_pool.h"

#include <algorithm>

namespace pccl::comm {

BufferPool::Lease BufferPool::Acquire(size_t bytes) {
  if (bytes == 0) return Lease();
  {
    std::lock_guard<std::mutex> lock(mu_);
    // The smallest kept buffer that fits.
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->capacity >= bytes && (best == free_.end() || it->capacity < best->capacity)) {
        best = it;
      }
    }
    if (best != free_.end()) {
      Lease lease(this, std::move(best->data), best->capacity);
      free_.erase(best);
      return lease;
    }
  }
  // new char[] leaves the bytes uninitialised: no zero-fill pass over a large buffer.
  return Lease(this, std::unique_ptr<char[]>(new char[bytes]), bytes);
}

void BufferPool::Return(std::unique_ptr<char[]> data, size_t capacity) {
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(Entry{std::move(data), capacity});
  if (free_.size() > kMaxKept) {
    auto smallest = std::min_element(free_.begin(), free_.end(), [](const Entry& a, const Entry& b) {
      return a.capacity < b.capacity;
    });
    free_.erase(smallest);
  }
}

}  // namespace pccl::comm
