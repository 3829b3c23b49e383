#include "pccl/link/block_cache.h"

#include <gtest/gtest.h>

namespace pccl::link {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

TEST(BlockCache, AGivenBlockIsTakenAgainForTheSameSize) {
  BlockCache cache(8 * kMiB);
  BlockCache::Block block = cache.Take(kMiB);
  ASSERT_NE(block.data, nullptr);
  ASSERT_GE(block.capacity, kMiB);
  const char* memory = block.data.get();
  cache.Give(std::move(block));
  EXPECT_EQ(cache.kept_bytes(), kMiB);
  BlockCache::Block again = cache.Take(kMiB);
  EXPECT_EQ(again.data.get(), memory);
  EXPECT_EQ(cache.kept_bytes(), 0u);
}

TEST(BlockCache, NearlyEqualSizesShareABlockButASmallSegmentGetsItsOwn) {
  BlockCache cache(8 * kMiB);
  BlockCache::Block block = cache.Take(kMiB - 100);  // a ring chunk's last segment, say
  EXPECT_EQ(block.capacity, kMiB);                   // rounded up to 64 KiB
  const char* memory = block.data.get();
  cache.Give(std::move(block));
  BlockCache::Block small = cache.Take(4096);  // would waste the 1 MiB block
  EXPECT_NE(small.data.get(), memory);
  EXPECT_EQ(small.capacity, 4096u);
  BlockCache::Block full = cache.Take(kMiB);
  EXPECT_EQ(full.data.get(), memory);
}

TEST(BlockCache, KeepsNoMoreThanItsCap) {
  BlockCache cache(2 * kMiB);
  BlockCache::Block a = cache.Take(kMiB), b = cache.Take(kMiB), c = cache.Take(kMiB);
  cache.Give(std::move(a));
  cache.Give(std::move(b));
  cache.Give(std::move(c));  // over the cap: freed
  EXPECT_EQ(cache.kept_bytes(), 2 * kMiB);

  BlockCache none(0);
  none.Give(none.Take(kMiB));
  EXPECT_EQ(none.kept_bytes(), 0u);
}

TEST(BlockCache, NothingForAnEmptySegment) {
  BlockCache cache(kMiB);
  BlockCache::Block block = cache.Take(0);
  EXPECT_EQ(block.data, nullptr);
  cache.Give(std::move(block));
  EXPECT_EQ(cache.kept_bytes(), 0u);
}

}  // namespace
}  // namespace pccl::link
