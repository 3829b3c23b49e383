#include "pccl/common/call_memory.h"

#include <mutex>

namespace pccl {
namespace {

// libstdc++'s unsynchronized pools behind one mutex: blocks up to 64 KiB come from the
// pools (map and list nodes, a deque's 512-byte blocks, the operations and records),
// larger ones, rare, from the heap each time. (Its synchronized_pool_resource keeps pools
// per thread; a block freed on another thread than the one that took it, as most of a
// call's are, then costs an exclusive lock and a search of every thread's pools: it made
// a DDP-like loop of small all-reduces 15 % slower than malloc did, where this one is
// level with it: README, "Heap allocations per call".)
class LockedPools final : public std::pmr::memory_resource {
 public:
  LockedPools()
      : pools_(std::pmr::pool_options{/*max_blocks_per_chunk=*/0,
                                      /*largest_required_pool_block=*/64 << 10}) {}

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    std::lock_guard<std::mutex> lock(mu_);
    return pools_.allocate(bytes, alignment);
  }
  void do_deallocate(void* block, std::size_t bytes, std::size_t alignment) override {
    std::lock_guard<std::mutex> lock(mu_);
    pools_.deallocate(block, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  std::mutex mu_;
  std::pmr::unsynchronized_pool_resource pools_;
};

}  // namespace

std::pmr::memory_resource* CallMemory() {
  static auto* const memory = new LockedPools();  // never destroyed (call_memory.h)
  return memory;
}

}  // namespace pccl
