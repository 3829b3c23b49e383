// CallMemory: where the objects each collective call makes and drops get their memory.
//
// A call makes a few dozen small objects: its operation (link::RingOp), the map entries
// that find it, a node per segment it declares, its queue entries, the record of an
// asynchronous call. From the heap that is a few dozen malloc/free pairs per call, and
// on a busy allocator their cost and their locks land on the hot path. CallMemory is one
// std::pmr memory resource for all of them, pools by block size (std::pmr's own, behind a
// mutex: call_memory.cc): blocks a call gives back are kept and handed to the next call,
// so a steady stream of calls asks the heap for nothing once the pools hold what one call
// needs (bench/allocations.py counts it; tests/python/test_allocations.py checks it).
// What the pools hold is bounded by the most that was alive at once (calls in flight, the
// segments of the largest); it goes back to the heap only at exit.
//
// Thread-safety: any thread may allocate and free (a block may be freed on another thread
// than the one that took it). The resource is never destroyed, so objects that outlive
// main (a detached thread's) can still give their memory back.
#pragma once

#include <cstddef>
#include <memory>
#include <memory_resource>
#include <utility>

namespace pccl {

std::pmr::memory_resource* CallMemory();

// std::make_shared in CallMemory: the object and its control block in one pooled block.
template <typename T, typename... Args>
std::shared_ptr<T> MakeSharedInCallMemory(Args&&... args) {
  return std::allocate_shared<T>(std::pmr::polymorphic_allocator<T>(CallMemory()),
                                 std::forward<Args>(args)...);
}

// A base for what is made with `new` once per call: its blocks come from CallMemory. For
// classes of at most fundamental alignment, deleted as themselves (the size `delete` passes
// is the static type's), which marking them final helps to keep so.
struct InCallMemory {
  static void* operator new(std::size_t bytes) {
    return CallMemory()->allocate(bytes, alignof(std::max_align_t));
  }
  static void operator delete(void* block, std::size_t bytes) {
    CallMemory()->deallocate(block, bytes, alignof(std::max_align_t));
  }
};

}  // namespace pccl
