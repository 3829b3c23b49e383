// The ring all-reduce schedule (algo/ring_allreduce.h) is pure arithmetic: these tests
// check its invariants for many world sizes and counts without any networking.
#include <gtest/gtest.h>

#include <set>

#include "pccl/algo/ring_allreduce.h"

namespace pccl::algo {
namespace {

RingSchedule Make(int world, int rank, size_t count, size_t segment_elements) {
  return RingSchedule{world, rank, count, segment_elements};
}

TEST(RingScheduleTest, ChunksPartitionTheBuffer) {
  for (int world = 2; world <= 9; ++world) {
    for (size_t count : {size_t{1}, size_t{2}, size_t{7}, size_t{1025}, size_t{1} << 20}) {
      RingSchedule s = Make(world, 0, count, 100);
      size_t next = 0;
      for (int c = 0; c < world; ++c) {
        EXPECT_EQ(s.ChunkBegin(c), next);
        next += s.ChunkElements(c);
      }
      EXPECT_EQ(next, count);
    }
  }
}

TEST(RingScheduleTest, WhatRankRReceivesIsWhatRankRMinusOneSends) {
  for (int world = 2; world <= 9; ++world) {
    for (int step = 0; step < 2 * (world - 1); ++step) {
      for (int rank = 0; rank < world; ++rank) {
        RingSchedule me = Make(world, rank, 1000, 10);
        RingSchedule prev = Make(world, (rank + world - 1) % world, 1000, 10);
        EXPECT_EQ(me.RecvChunk(step), prev.SendChunk(step)) << world << " " << step;
      }
    }
  }
}

TEST(RingScheduleTest, ReduceScatterForwardsWhatItReducedAndEndsOwningRankPlusOne) {
  for (int world = 2; world <= 9; ++world) {
    for (int rank = 0; rank < world; ++rank) {
      RingSchedule s = Make(world, rank, 1000, 10);
      EXPECT_EQ(s.SendChunk(0), rank);
      for (int step = 0; step + 1 < world - 1; ++step) {
        EXPECT_EQ(s.SendChunk(step + 1), s.RecvChunk(step));
      }
      int owned = s.RecvChunk(world - 2);
      EXPECT_EQ(owned, (rank + 1) % world);
      EXPECT_EQ(s.SendChunk(world - 1), owned);  // the all-gather starts with it
    }
  }
}

TEST(RingScheduleTest, AllGatherDeliversEveryOtherChunkOnce) {
  for (int world = 2; world <= 9; ++world) {
    for (int rank = 0; rank < world; ++rank) {
      RingSchedule s = Make(world, rank, 1000, 10);
      std::set<int> received;
      for (int step = world - 1; step < s.steps(); ++step) {
        EXPECT_TRUE(received.insert(s.RecvChunk(step)).second);
        if (step + 1 < s.steps()) {
          EXPECT_EQ(s.SendChunk(step + 1), s.RecvChunk(step));
        }
      }
      EXPECT_EQ(received.size(), static_cast<size_t>(world - 1));
      EXPECT_FALSE(received.count((rank + 1) % world));  // the owned chunk is never received
    }
  }
}

TEST(RingScheduleTest, SegmentsCoverEachChunkExactly) {
  for (size_t seg : {size_t{1}, size_t{3}, size_t{64}, size_t{1000}}) {
    RingSchedule s = Make(4, 1, 1025, seg);
    for (int c = 0; c < 4; ++c) {
      size_t next = s.ChunkBegin(c);
      for (uint32_t j = 0; j < s.Segments(c); ++j) {
        size_t first, n;
        s.Segment(c, j, &first, &n);
        EXPECT_EQ(first, next);
        EXPECT_GT(n, 0u);
        EXPECT_LE(n, seg);
        next += n;
      }
      EXPECT_EQ(next, s.ChunkBegin(c) + s.ChunkElements(c));
    }
  }
}

TEST(RingScheduleTest, EmptyChunksHaveNoSegments) {
  RingSchedule s = Make(4, 0, 2, 16);  // chunks of 1, 1, 0, 0 elements
  EXPECT_EQ(s.Segments(0), 1u);
  EXPECT_EQ(s.Segments(2), 0u);
  EXPECT_EQ(s.Segments(3), 0u);
}

// SegmentsBefore (closed form) numbers the segments in chunk order: the count of those of
// the chunks before, for counts that split evenly, unevenly, into empty chunks, and with
// segments longer than a chunk.
TEST(RingScheduleTest, SegmentsBeforeCountsTheSegmentsOfTheChunksBefore) {
  for (int world : {2, 3, 4, 7}) {
    for (size_t count : {size_t{0}, size_t{2}, size_t{12}, size_t{1025}, size_t{300000}}) {
      for (size_t seg : {size_t{1}, size_t{3}, size_t{64}, size_t{1000}, size_t{1} << 20}) {
        RingSchedule s = Make(world, 0, count, seg);
        size_t before = 0;
        for (int c = 0; c <= world; ++c) {
          EXPECT_EQ(s.SegmentsBefore(c), before)
              << "world " << world << " count " << count << " segment " << seg << " chunk " << c;
          if (c < world) before += s.Segments(c);
        }
      }
    }
  }
}

}  // namespace
}  // namespace pccl::algo
