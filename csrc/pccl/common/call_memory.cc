#include "pccl/common/call_memory.h"

namespace pccl {

std::pmr::memory_resource* CallMemory() {
  // Blocks up to 64 KiB come from the pools (a deque's 512-byte blocks, map nodes, the
  // operations themselves); larger ones, rare, go to the heap each time.
  static auto* const memory = new std::pmr::synchronized_pool_resource(
      std::pmr::pool_options{/*max_blocks_per_chunk=*/0,
                             /*largest_required_pool_block=*/64 << 10});
  return memory;
}

}  // namespace pccl
