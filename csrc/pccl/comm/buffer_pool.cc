#include "pccl/comm/buffer_pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <new>

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
  // new char[] leaves the bytes uninitialised. Fresh pages are zero-filled by the system
  // when first touched, as malloc's own would be for a buffer this large; a reused buffer
  // is not filled again.
  if (bytes < kPagesFrom) return Lease(this, Storage(new char[bytes], FreeBuffer{bytes}), bytes);
  void* pages = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (pages == MAP_FAILED) throw std::bad_alloc();
  // Huge pages where the system has them (transparent huge pages in "madvise" mode, as
  // here, give them only to ranges that ask, as numpy's and torch's large arrays do): a
  // 256 MiB backup is then 128 TLB entries rather than 65,536, which a copy that streams
  // through it pays for (8 % of a 2-peer 256 MiB in-place all-reduce's time, README).
  // Advice only: nothing fails without it.
  if (bytes >= kHugePage) madvise(pages, bytes, MADV_HUGEPAGE);
  return Lease(this, Storage(static_cast<char*>(pages), FreeBuffer{bytes}), bytes);
}

void FreeBuffer::operator()(char* data) const {
  if (bytes < BufferPool::kPagesFrom) {
    delete[] data;
  } else {
    munmap(data, bytes);
  }
}

void BufferPool::Return(Storage data, size_t capacity) {
  std::vector<Entry> dropped;  // freed after the lock is released
  std::lock_guard<std::mutex> lock(mu_);
  free_.push_back(Entry{std::move(data), capacity});
  std::sort(free_.begin(), free_.end(),
            [](const Entry& a, const Entry& b) { return a.capacity < b.capacity; });
  // Too many: the smallest go (cheap to make again). Too large in all: the largest go.
  while (free_.size() > kMaxKept) {
    dropped.push_back(std::move(free_.front()));
    free_.erase(free_.begin());
  }
  size_t kept = 0;
  for (const Entry& e : free_) kept += e.capacity;
  while (kept > keep_bytes_) {
    kept -= free_.back().capacity;
    dropped.push_back(std::move(free_.back()));
    free_.pop_back();
  }
}

size_t BufferPool::kept_bytes() {
  std::lock_guard<std::mutex> lock(mu_);
  size_t kept = 0;
  for (const Entry& e : free_) kept += e.capacity;
  return kept;
}

}  // namespace pccl::comm
