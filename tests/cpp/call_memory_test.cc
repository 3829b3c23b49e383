// CallMemory (common/call_memory.h) and ByRef (common/by_ref.h): what lets a steady stream
// of calls run without heap allocations. This executable counts every operator new of its
// process (plain and aligned), so that the tests can say which code allocates.
#include "pccl/common/call_memory.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <functional>
#include <memory_resource>
#include <new>
#include <thread>

#include "pccl/common/by_ref.h"

namespace {
std::atomic<long> heap_news{0};
}  // namespace

void* operator new(std::size_t bytes) {
  heap_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(bytes == 0 ? 1 : bytes)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t bytes, std::align_val_t alignment) {
  heap_news.fetch_add(1, std::memory_order_relaxed);
  const auto align = static_cast<std::size_t>(alignment);
  if (void* p = std::aligned_alloc(align, (bytes + align - 1) / align * align)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace pccl {
namespace {

// The premise of ByRef: a lambda that captures three references makes std::function
// allocate; the same lambda through ByRef does not.
TEST(ByRefTest, AStdFunctionOfItAllocatesNothingWhereTheLambdaItselfWould) {
  int a = 1, b = 2, c = 3;
  auto sum = [&](int x) { return a + b + c + x; };
  long before = heap_news.load();
  std::function<int(int)> direct = sum;
  EXPECT_GT(heap_news.load(), before);  // if this fails, the premise changed (a library)
  before = heap_news.load();
  std::function<int(int)> by_ref = ByRef(sum);
  std::function<int(int)> copied = by_ref;
  EXPECT_EQ(heap_news.load(), before);
  EXPECT_EQ(by_ref(4), 10);
  EXPECT_EQ(copied(5), 11);
  c = 30;  // a reference: it sees what the lambda sees now
  EXPECT_EQ(by_ref(0), 33);
}

// Blocks given back on another thread (as the I/O threads free much of a call's memory)
// serve the next call: once the pools hold what one call needs, the next asks the heap
// for nothing.
TEST(CallMemoryTest, BlocksFreedOnAnotherThreadServeTheNextCallWithoutTheHeap) {
  std::pmr::memory_resource* memory = CallMemory();
  constexpr size_t kSizes[] = {24, 96, 200, 512, 4096, 24, 96, 200, 40000};
  constexpr size_t kBlocks = sizeof(kSizes) / sizeof(kSizes[0]);
  void* blocks[kBlocks];
  auto take = [&] {
    for (size_t i = 0; i < kBlocks; ++i) {
      blocks[i] = memory->allocate(kSizes[i], alignof(std::max_align_t));
    }
  };
  auto give_back = [&] {
    for (size_t i = 0; i < kBlocks; ++i) {
      memory->deallocate(blocks[i], kSizes[i], alignof(std::max_align_t));
    }
  };
  take();  // the first call fills the pools
  std::thread(give_back).join();
  const long before = heap_news.load();
  take();
  EXPECT_EQ(heap_news.load(), before) << "the pools did not serve the second call";
  give_back();
}

// An InCallMemory object is made and deleted through CallMemory.
struct Record final : InCallMemory {
  long payload[8] = {};
};

TEST(CallMemoryTest, InCallMemoryObjectsComeFromThePools) {
  delete new Record();  // warm
  const long before = heap_news.load();
  for (int i = 0; i < 1000; ++i) delete new Record();
  EXPECT_EQ(heap_news.load(), before);
}

}  // namespace
}  // namespace pccl
