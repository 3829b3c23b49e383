// The scratch pool of the collectives (comm/buffer_pool.h): reuse, the cap on what it
// keeps between calls (PCCL_POOL_KEEP_BYTES), pages of their own, huge pages asked for.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "pccl/comm/buffer_pool.h"

namespace pccl::comm {
namespace {

TEST(BufferPoolTest, AReturnedBufferServesTheNextCallOfItsSizeOrLess) {
  BufferPool pool(1 << 20);
  char* first;
  {
    BufferPool::Lease a = pool.Acquire(1000);
    first = a.data();
  }
  EXPECT_EQ(pool.kept_bytes(), 1000u);
  BufferPool::Lease b = pool.Acquire(500);
  EXPECT_EQ(b.data(), first);
  EXPECT_EQ(pool.kept_bytes(), 0u);
}

TEST(BufferPoolTest, WhatExceedsTheCapIsFreedLargestFirst) {
  BufferPool pool(1000);
  {
    BufferPool::Lease a = pool.Acquire(600);
    BufferPool::Lease b = pool.Acquire(300);
    BufferPool::Lease c = pool.Acquire(900);
  }
  // 600 + 300 fit under 1000 once the 900 went; the cap holds.
  EXPECT_LE(pool.kept_bytes(), 1000u);
  EXPECT_EQ(pool.kept_bytes(), 900u);
}

TEST(BufferPoolTest, ACapOfZeroKeepsNothing) {
  BufferPool pool(0);
  { BufferPool::Lease a = pool.Acquire(1 << 20); }
  EXPECT_EQ(pool.kept_bytes(), 0u);
}

// Whether the `bytes` bytes at `data` are mapped in this process (mincore fails with
// ENOMEM on a range with unmapped pages).
bool Mapped(char* data, size_t bytes) {
  std::vector<unsigned char> resident((bytes + 4095) / 4096);
  if (mincore(data, bytes, resident.data()) == 0) return true;
  EXPECT_EQ(errno, ENOMEM) << std::strerror(errno);
  return false;
}

// A buffer the pool drops (from kPagesFrom bytes on) goes back to the system at once,
// also at 16 MiB, a size malloc would keep in its heap once a chunk that large had been
// freed; one it keeps stays mapped for the next call.
TEST(BufferPoolTest, ABufferThePoolDropsGoesBackToTheSystemAtOnce) {
  const size_t bytes = size_t{16} << 20;
  for (size_t cap : {size_t{0}, size_t{1} << 30}) {
    BufferPool pool(cap);
    char* data;
    for (int call = 0; call < 2; ++call) {  // the second as malloc would serve it
      BufferPool::Lease lease = pool.Acquire(bytes);
      data = lease.data();
      std::memset(data, 1, bytes);
      ASSERT_TRUE(Mapped(data, bytes));
    }
    EXPECT_EQ(Mapped(data, bytes), cap > 0) << "cap " << cap;
  }
}

// The VmFlags of the mapping that holds `data`, from /proc/self/smaps ("" if none does).
std::string VmFlagsOf(const char* data) {
  std::ifstream smaps("/proc/self/smaps");
  const auto at = reinterpret_cast<uintptr_t>(data);
  bool inside = false;
  std::string line;
  while (std::getline(smaps, line)) {
    uintptr_t begin = 0, end = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &begin, &end) == 2) {
      inside = begin <= at && at < end;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

// A buffer of kHugePage bytes or more asks the system for huge pages (the "hg" flag,
// which MADV_HUGEPAGE sets whether or not the system then has huge pages to give); a
// smaller one does not.
TEST(BufferPoolTest, ALargeBufferAsksForHugePages) {
  if (!std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled")) {
    GTEST_SKIP() << "this kernel has no transparent huge pages (MADV_HUGEPAGE fails)";
  }
  BufferPool pool(0);
  BufferPool::Lease large = pool.Acquire(size_t{16} << 20);
  BufferPool::Lease small = pool.Acquire(BufferPool::kPagesFrom);  // pages, but < 2 MiB
  const std::string large_flags = VmFlagsOf(large.data());
  const std::string small_flags = VmFlagsOf(small.data());
  ASSERT_FALSE(large_flags.empty());
  ASSERT_FALSE(small_flags.empty());
  EXPECT_NE(large_flags.find(" hg"), std::string::npos) << large_flags;
  EXPECT_EQ(small_flags.find(" hg"), std::string::npos) << small_flags;
}

TEST(BufferPoolTest, OnlyTheLargestMaxKeptBuffersAreKept) {
  BufferPool pool(1 << 20);
  {
    std::vector<BufferPool::Lease> leases;
    for (size_t i = 1; i <= BufferPool::kMaxKept + 2; ++i) leases.push_back(pool.Acquire(10 * i));
  }
  // All but the two smallest (10 and 20 bytes): 10 x (3 + 4 + ... + kMaxKept + 2).
  const size_t n = BufferPool::kMaxKept + 2;
  EXPECT_EQ(pool.kept_bytes(), 10 * (n * (n + 1) / 2 - 1 - 2));
}

}  // namespace
}  // namespace pccl::comm
