// Reusable scratch buffers for collectives (in-place staging, float32 workspaces).
//
// A large all-reduce needs a buffer as big as its tensor. Allocating it per call costs a
// fresh mmap, page faults and zero-filling on every operation, which showed up as the
// largest CPU cost of big all-reduces. The pool hands out uninitialised buffers and keeps
// returned ones for the next call of the same size or smaller: at most kMaxKept of them and
// at most `keep_bytes` in all (PCCL_POOL_KEEP_BYTES, common/params.h); the rest go back to
// the system when they are returned, so a host that stages a large model between steps
// can have the memory back. A buffer of kPagesFrom bytes or more is pages of its own
// (mmap), so that one the pool drops goes back to the system at once: malloc would keep a
// freed chunk of up to 32 MiB in its heap (its mmap threshold rises with every such chunk
// freed), for good. Smaller ones come from malloc, which reuses them without a system call
// or a page fault. Pages of kHugePage bytes or more ask for transparent huge pages.
//
// Thread-safety: Acquire and the Lease destructor may run on any thread.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

namespace pccl::comm {

// Frees a pool buffer of `bytes` bytes: unmaps its pages, or hands it back to malloc.
struct FreeBuffer {
  size_t bytes = 0;
  void operator()(char* data) const;
};

class BufferPool {
 public:
  using Storage = std::unique_ptr<char[], FreeBuffer>;
  // Buffers from this size on are pages of their own.
  static constexpr size_t kPagesFrom = size_t{1} << 20;
  // Buffers from this size on ask for huge pages (MADV_HUGEPAGE): x86-64's 2 MiB.
  static constexpr size_t kHugePage = size_t{2} << 20;
  // Kept buffers; at most kMaxKept (and keep_bytes in all), the smallest dropped first.
  // Enough for the concurrent calls of a training step (DDP's buckets, say), which would
  // otherwise fault in fresh pages for most of their buffers at every step.
  static constexpr size_t kMaxKept = 64;

  class Lease {
   public:
    Lease() = default;
    Lease(BufferPool* pool, Storage data, size_t capacity)
        : pool_(pool), data_(std::move(data)), capacity_(capacity) {}
    ~Lease() {
      if (pool_ != nullptr && data_) pool_->Return(std::move(data_), capacity_);
    }
    Lease(Lease&&) noexcept = default;
    Lease& operator=(Lease&&) noexcept = default;
    char* data() const { return data_.get(); }

   private:
    BufferPool* pool_ = nullptr;
    Storage data_;
    size_t capacity_ = 0;
  };

  explicit BufferPool(size_t keep_bytes) : keep_bytes_(keep_bytes) {}
  // A buffer of at least `bytes` bytes (contents unspecified); std::bad_alloc if the
  // system has no pages for it.
  Lease Acquire(size_t bytes);
  // Bytes kept for later calls (tests).
  size_t kept_bytes();

 private:
  void Return(Storage data, size_t capacity);

  struct Entry {
    Storage data;
    size_t capacity;
  };
  const size_t keep_bytes_;
  std::mutex mu_;
  std::vector<Entry> free_;
};

}  // namespace pccl::comm
