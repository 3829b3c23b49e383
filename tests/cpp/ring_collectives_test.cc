// The ring collectives of algo/ring_collectives.h over an in-memory ring, and gather,
// scatter and all-to-all (algo/direct.h) over in-memory channels between every two peers:
// worlds of 2 to 6, blocks of a few elements cut into segments of two (many segments,
// deep pipelines), every root and a permuted block order; results against a direct
// computation, and the bytes each peer sends against the algorithm's figure. Also
// send/recv (algo/point_to_point.h) over a pair of such channels, and the in-place ring
// all-reduce (algo/ring_allreduce.h), whose partial sums come through the channel's
// receive slots or land in the backup.
#include "pccl/algo/direct.h"
#include "pccl/algo/ring_collectives.h"
#include "pccl/algo/point_to_point.h"
#include "pccl/algo/ring_allreduce.h"
#include "pccl/common/half.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <numeric>
#include <utility>
#include <vector>

#include "memory_channel.h"

namespace pccl::algo {
namespace {

using memory_ring::MemoryChannel;
using memory_ring::OnEveryRank;

using Algorithm = Status (*)(const RingCollectiveOptions&, link::RingChannel&, Deadline,
                             RingCollectiveStats*);

struct Peer {
  std::vector<float> send, recv, scratch;
  RingCollectiveStats stats;
};

RingCollectiveOptions Base(int rank, int world, size_t count) {
  RingCollectiveOptions o;
  o.rank = rank;
  o.world = world;
  o.count = count;
  o.segment_bytes = 2 * sizeof(float);  // two elements per segment
  return o;
}

// Runs `algorithm` on `world` peers at once, each on its own buffers in `peers` (`in_place`:
// send is recv, as for a broadcast), with `count`, `slot_of` and `root` in every peer's
// options; each peer's stats land in `peers`.
void RunRing(int world, Algorithm algorithm, size_t count, const std::vector<int>& slot_of,
             int root, bool in_place, std::vector<Peer>* peers) {
  std::vector<MemoryChannel> channels(world);
  for (int r = 0; r < world; ++r) channels[r].next = &channels[(r + 1) % world];
  OnEveryRank(world, [&](int r) {
    Peer& peer = (*peers)[r];
    RingCollectiveOptions o = Base(r, world, count);
    o.root = root;
    o.slot_of.assign(slot_of.begin(), slot_of.end());
    o.recv = peer.recv.data();
    o.send = in_place ? o.recv : peer.send.data();
    o.scratch = peer.scratch.data();
    Status st = algorithm(o, channels[r], Deadline::In(std::chrono::seconds(20)), &peer.stats);
    EXPECT_TRUE(st.ok()) << "rank " << r << ": " << st.message();
  });
}

float Value(int source, int block, size_t i) {
  return static_cast<float>(source * 1000 + block * 100 + static_cast<int>(i % 97));
}

// `blocks` blocks of `count` elements: block b holds Value(source, b, i).
std::vector<float> Blocks(int source, int blocks, size_t count) {
  std::vector<float> out(static_cast<size_t>(blocks) * count);
  for (int b = 0; b < blocks; ++b) {
    for (size_t i = 0; i < count; ++i) out[b * count + i] = Value(source, b, i);
  }
  return out;
}

// The scratch `bytes` ask for, as floats.
std::vector<float> Scratch(size_t bytes) { return std::vector<float>(bytes / sizeof(float)); }

// Block order: reversed ring positions (slot_of[p] = world - 1 - p).
std::vector<int> Reversed(int world) {
  std::vector<int> slots(world);
  for (int p = 0; p < world; ++p) slots[p] = world - 1 - p;
  return slots;
}


class RingCollectivesTest : public ::testing::TestWithParam<std::tuple<int, size_t>> {};

TEST_P(RingCollectivesTest, BroadcastFromEveryRoot) {
  const auto [world, count] = GetParam();
  for (int root = 0; root < world; ++root) {
    std::vector<Peer> peers(world);
    for (int r = 0; r < world; ++r) {
      peers[r].recv = r == root ? Blocks(r, 1, count) : std::vector<float>(count, -1.0f);
    }
    RunRing(world, RingBroadcast, count, {}, root, true, &peers);
    for (int r = 0; r < world; ++r) {
      for (size_t i = 0; i < count; ++i) ASSERT_EQ(peers[r].recv[i], Value(root, 0, i));
      const bool last = (r + 1) % world == root;  // the root's predecessor keeps it
      EXPECT_EQ(peers[r].stats.tx_bytes, last ? 0u : count * sizeof(float)) << r;
    }
  }
}

TEST_P(RingCollectivesTest, AllGatherAndReduceScatterInPermutedOrder) {
  const auto [world, count] = GetParam();
  const std::vector<int> slot_of = Reversed(world);
  std::vector<Peer> peers(world);
  for (int r = 0; r < world; ++r) {
    peers[r].send = Blocks(r, 1, count);
    peers[r].recv.assign(count * world, -1.0f);
  }
  RunRing(world, RingAllGather, count, slot_of, 0, false, &peers);
  for (int r = 0; r < world; ++r) {
    for (int p = 0; p < world; ++p) {
      for (size_t i = 0; i < count; ++i) {
        ASSERT_EQ(peers[r].recv[slot_of[p] * count + i], Value(p, 0, i));
      }
    }
    EXPECT_EQ(peers[r].stats.tx_bytes, (world - 1) * count * sizeof(float));
  }

  std::vector<Peer> rs(world);
  for (int r = 0; r < world; ++r) {
    rs[r].send = Blocks(r, world, count);
    rs[r].recv.assign(count, -1.0f);
    rs[r].scratch = Scratch(ReduceScatterScratchBytes(DType::kFloat32, count, world));
  }
  RunRing(world, RingReduceScatter, count, slot_of, 0, false, &rs);
  for (int r = 0; r < world; ++r) {
    for (size_t i = 0; i < count; ++i) {
      float sum = 0;
      for (int p = 0; p < world; ++p) sum += Value(p, slot_of[r], i);
      ASSERT_EQ(rs[r].recv[i], sum) << "rank " << r << " element " << i;
    }
    EXPECT_EQ(rs[r].stats.tx_bytes, (world - 1) * count * sizeof(float));
  }
}

// --- gather, scatter and all-to-all straight to the destination ---------------------------

using DirectAlgorithm = Status (*)(const RingCollectiveOptions&, Channels, Deadline,
                                   RingCollectiveStats*);

// Runs `algorithm` on `world` peers at once, every two of them joined by a pair of
// channels (each the other's next), with `count`, `root` and reversed slots; each peer
// gets channels only to its DirectPartners (`rooted`), so a block sent anywhere else
// would fail the run.
void RunDirect(int world, DirectAlgorithm algorithm, size_t count, int root, bool rooted,
               std::vector<Peer>* peers) {
  std::vector<std::vector<MemoryChannel>> pair(world);
  for (int a = 0; a < world; ++a) pair[a] = std::vector<MemoryChannel>(world);
  for (int a = 0; a < world; ++a) {
    for (int b = 0; b < world; ++b) pair[a][b].next = &pair[b][a];
  }
  OnEveryRank(world, [&](int r) {
    Peer& peer = (*peers)[r];
    RingCollectiveOptions o = Base(r, world, count);
    o.root = root;
    const std::vector<int> reversed = Reversed(world);
    o.slot_of.assign(reversed.begin(), reversed.end());
    o.send = peer.send.data();
    o.recv = peer.recv.data();
    std::vector<link::RingChannel*> channels(world, nullptr);
    for (int p : DirectPartners(o, rooted)) channels[p] = &pair[r][p];
    Status st = algorithm(o, channels, Deadline::In(std::chrono::seconds(20)), &peer.stats);
    EXPECT_TRUE(st.ok()) << "rank " << r << ": " << st.message();
  });
}

TEST_P(RingCollectivesTest, DirectGatherAndScatterFromEveryRootSendEachBlockOnce) {
  const auto [world, count] = GetParam();
  const std::vector<int> slot_of = Reversed(world);
  const size_t block = count * sizeof(float);
  for (int root = 0; root < world; ++root) {
    std::vector<Peer> peers(world);
    for (int r = 0; r < world; ++r) {
      peers[r].send = Blocks(r, 1, count);
      peers[r].recv.assign(r == root ? count * world : 0, -1.0f);
    }
    RunDirect(world, DirectGather, count, root, true, &peers);
    for (int p = 0; p < world; ++p) {
      for (size_t i = 0; i < count; ++i) {
        ASSERT_EQ(peers[root].recv[slot_of[p] * count + i], Value(p, 0, i)) << root;
      }
      EXPECT_EQ(peers[p].stats.tx_bytes, p == root ? 0 : block) << "gather root " << root;
    }

    std::vector<Peer> sc(world);
    for (int r = 0; r < world; ++r) {
      if (r == root) sc[r].send = Blocks(r, world, count);
      sc[r].recv.assign(count, -1.0f);
    }
    RunDirect(world, DirectScatter, count, root, true, &sc);
    for (int r = 0; r < world; ++r) {
      for (size_t i = 0; i < count; ++i) ASSERT_EQ(sc[r].recv[i], Value(root, slot_of[r], i));
      EXPECT_EQ(sc[r].stats.tx_bytes, r == root ? (world - 1) * block : 0)
          << "scatter root " << root;
    }
  }
}

TEST_P(RingCollectivesTest, DirectAllToAllSendsEachBlockOnce) {
  const auto [world, count] = GetParam();
  const std::vector<int> slot_of = Reversed(world);
  std::vector<Peer> peers(world);
  for (int r = 0; r < world; ++r) {
    peers[r].send = Blocks(r, world, count);
    peers[r].recv.assign(count * world, -1.0f);
  }
  RunDirect(world, DirectAllToAll, count, 0, false, &peers);
  for (int r = 0; r < world; ++r) {
    for (int p = 0; p < world; ++p) {  // block slot_of[p] came from p: p's block for r
      for (size_t i = 0; i < count; ++i) {
        ASSERT_EQ(peers[r].recv[slot_of[p] * count + i], Value(p, slot_of[r], i))
            << "rank " << r << " from " << p;
      }
    }
    EXPECT_EQ(peers[r].stats.tx_bytes, (world - 1) * count * sizeof(float));
  }
}

TEST(DirectCollectivesTest, AMissingChannelIsRefusedBeforeAnythingMoves) {
  MemoryChannel a, b;
  a.next = &b;
  b.next = &a;
  RingCollectiveStats stats;
  std::vector<float> send(3, 1.0f), recv(3, 0.0f);
  RingCollectiveOptions o = Base(0, 3, 1);
  o.send = send.data();
  o.recv = recv.data();
  // Position 2 has no channel.
  const std::vector<link::RingChannel*> channels = {nullptr, &a, nullptr};
  Status st = DirectAllToAll(o, channels, Deadline::Never(), &stats);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  EXPECT_EQ(stats.tx_bytes, 0u);
}

INSTANTIATE_TEST_SUITE_P(Worlds, RingCollectivesTest,
                         ::testing::Combine(::testing::Values(2, 3, 4, 5, 6),
                                            ::testing::Values(size_t{1}, size_t{5},
                                                              size_t{33})));

TEST(RingCollectivesChecks, RefuseBadShapes) {
  MemoryChannel channel;
  channel.next = &channel;
  RingCollectiveStats stats;
  float x = 0;
  auto o = Base(0, 3, 1);
  o.send = o.recv = &x;
  o.slot_of = {0, 0, 1};  // not a permutation
  EXPECT_EQ(RingAllGather(o, channel, Deadline::Never(), &stats).code(),
            StatusCode::kInvalidArgument);
  o.slot_of.clear();
  o.root = 3;  // not in a ring of 3
  EXPECT_EQ(RingBroadcast(o, channel, Deadline::Never(), &stats).code(),
            StatusCode::kInvalidArgument);
  const std::vector<link::RingChannel*> channels = {nullptr, &channel, &channel};
  EXPECT_EQ(DirectGather(o, channels, Deadline::Never(), &stats).code(),
            StatusCode::kInvalidArgument);
  o.root = 0;
  o.world = 1;
  EXPECT_EQ(DirectAllToAll(o, channels, Deadline::Never(), &stats).code(),
            StatusCode::kInvalidArgument);
}

// --- the in-place all-reduce: partials through receive slots or the backup ------------------

// Rank `rank`'s options for an in-place all-reduce of `buffer` in segments of two
// elements, saving its input to `backup` (null: no restore).
AllReduceOptions InPlace(int rank, int world, std::vector<float>& buffer, float* backup) {
  AllReduceOptions o;
  o.count = buffer.size();
  o.send = o.recv = buffer.data();
  o.rank = rank;
  o.world = world;
  o.segment_bytes = 2 * sizeof(float);
  o.backup = backup;
  return o;
}

// Runs an in-place all-reduce of `op` over `world` peers whose buffers are `data` (one per
// peer), with two receive slots each, or a backup when `restore`; the channels' counts of
// segments that came through slots land in `in_slot`, the stats in `stats`.
void InPlaceAllReduce(int world, kernels::ReduceOp op, bool restore,
                      std::vector<std::vector<float>>* data, std::vector<size_t>* in_slot,
                      std::vector<AllReduceStats>* stats,
                      std::vector<std::vector<float>>* backups) {
  std::vector<MemoryChannel> channels(world);
  for (int r = 0; r < world; ++r) channels[r].next = &channels[(r + 1) % world];
  OnEveryRank(world, [&](int r) {
    std::vector<float>& buffer = (*data)[r];
    (*backups)[r].assign(restore ? buffer.size() : 0, -1.0f);
    AllReduceOptions o = InPlace(r, world, buffer, restore ? (*backups)[r].data() : nullptr);
    o.op = op;
    o.receive_slots = 2;
    // With a backup the partials land in it: no slots.
    std::vector<float> scratch = Scratch(ScratchBytes(o));
    const size_t slots = std::min<size_t>(2 * 2, 2 * ((o.count + world - 1) / world));
    EXPECT_EQ(scratch.size(), restore ? 0 : slots);
    o.scratch = restore ? nullptr : scratch.data();
    Status st = RingAllReduce(o, channels[r], Deadline::In(std::chrono::seconds(20)),
                              &(*stats)[r]);
    EXPECT_TRUE(st.ok()) << "rank " << r << ": " << st.message();
  });
  for (int r = 0; r < world; ++r) (*in_slot)[r] = channels[r].in_slot_arrivals();
}

// In place, the partials from the previous peer land in receive slots (no backup) or in the
// backup (restoring), and are folded into the buffer; with a backup, every input segment
// ends up saved there.
TEST(RingAllReduceTest, InPlaceFoldsThePartialsFromSlotsOrTheBackupAndSavesEveryInputSegment) {
  for (int world : {2, 3, 5}) {
    for (size_t count : {size_t{1}, size_t{7}, size_t{101}}) {
      for (auto op : {kernels::ReduceOp::kSum, kernels::ReduceOp::kAvg, kernels::ReduceOp::kMax}) {
        for (bool restore : {false, true}) {
          SCOPED_TRACE(testing::Message() << "world " << world << " count " << count << " op "
                                          << static_cast<int>(op) << " restore " << restore);
          std::vector<std::vector<float>> data(world), backups(world);
          for (int r = 0; r < world; ++r) data[r] = Blocks(r, 1, count);
          const std::vector<std::vector<float>> inputs = data;
          std::vector<size_t> in_slot(world);
          std::vector<AllReduceStats> stats(world);
          InPlaceAllReduce(world, op, restore, &data, &in_slot, &stats, &backups);
          for (int r = 0; r < world; ++r) {
            for (size_t i = 0; i < count; ++i) {
              float want = op == kernels::ReduceOp::kMax ? Value(world - 1, 0, i) : 0.0f;
              if (op != kernels::ReduceOp::kMax) {
                for (int p = 0; p < world; ++p) want += Value(p, 0, i);
                if (op == kernels::ReduceOp::kAvg) want /= static_cast<float>(world);
              }
              ASSERT_EQ(data[r][i], want) << "rank " << r << " element " << i;
            }
            // Every reduce-scatter segment this rank received came through a slot, unless
            // it had a backup to land in.
            const RingSchedule schedule{world, r, count, 2};
            size_t reduce_segments = 0;
            for (int step = 0; step + 1 < world; ++step) {
              reduce_segments += schedule.Segments(schedule.RecvChunk(step));
            }
            EXPECT_EQ(in_slot[r], restore ? 0 : reduce_segments) << "rank " << r;
            if (!restore) continue;
            // The backup holds every segment of the input, saved before it was overwritten:
            // undoing the (successful) operation gives the input back exactly.
            RestoreInput(InPlace(r, world, data[r], backups[r].data()), stats[r]);
            EXPECT_EQ(data[r], inputs[r]) << "rank " << r;
          }
        }
      }
    }
  }
}

// Partials that came before their peer started the call (the previous peer ran ahead) are
// folded in from where they waited, not copied into the backup first: the result is
// right and the backup still gives the input back.
TEST(RingAllReduceTest, InPlaceWithABackupFoldsPartialsThatCameEarlyFromWhereTheyWaited) {
  for (int world : {2, 3}) {
    const size_t count = 13;
    SCOPED_TRACE(testing::Message() << "world " << world);
    std::vector<MemoryChannel> channels(world);
    for (int r = 0; r < world; ++r) channels[r].next = &channels[(r + 1) % world];
    std::vector<std::vector<float>> data(world), backups(world);
    for (int r = 0; r < world; ++r) {
      data[r] = Blocks(r, 1, count);
      backups[r].assign(count, -1.0f);
    }
    const std::vector<std::vector<float>> inputs = data;
    std::vector<AllReduceStats> stats(world);
    auto run = [&](int r) {
      AllReduceOptions o = InPlace(r, world, data[r], backups[r].data());
      Status st = RingAllReduce(o, channels[r], Deadline::In(std::chrono::seconds(20)),
                                &stats[r]);
      EXPECT_TRUE(st.ok()) << "rank " << r << ": " << st.message();
    };
    // Rank 0 starts alone: its step-0 segments wait at rank 1 before rank 1 starts.
    std::thread first(run, 0);
    const size_t step0 = RingSchedule{world, 0, count, 2}.Segments(
        RingSchedule{world, 0, count, 2}.SendChunk(0));
    ASSERT_TRUE(channels[1].AwaitEarly(step0, Deadline::In(std::chrono::seconds(10))));
    std::vector<std::thread> rest;
    for (int r = 1; r < world; ++r) rest.emplace_back(run, r);
    first.join();
    for (auto& t : rest) t.join();
    // At least rank 0's step-0 segments were folded from where they waited. With 3 peers
    // more may have been: rank 2 starts beside rank 1, and rank 0 passes rank 2's partial
    // on to rank 1 at once, before rank 1's thread has declared it if that thread is slow
    // to be scheduled (a loaded machine: this once failed an exact count under ctest -j 2).
    EXPECT_GE(channels[1].kept_early(), step0);
    for (int r = 0; r < world; ++r) {
      for (size_t i = 0; i < count; ++i) {
        float want = 0.0f;
        for (int p = 0; p < world; ++p) want += Value(p, 0, i);
        ASSERT_EQ(data[r][i], want) << "rank " << r << " element " << i;
      }
      RestoreInput(InPlace(r, world, data[r], backups[r].data()), stats[r]);
      EXPECT_EQ(data[r], inputs[r]) << "rank " << r;
    }
  }
}

// A ring whose third peer never runs: the other two fail at their deadline, one of them
// after folding partials into its buffer (their inputs traded places with the backup). The
// backup's other segments may hold anything (a partial that landed, or half of one, before
// the failure): scribbled over here, they must not matter. RestoreInput gives every input
// back exactly.
TEST(RingAllReduceTest, AFailedInPlaceCallWithABackupIsUndoneExactly) {
  const int world = 3;
  const size_t count = 101;
  std::vector<MemoryChannel> channels(world);
  for (int r = 0; r < world; ++r) channels[r].next = &channels[(r + 1) % world];
  std::vector<std::vector<float>> data(world), backups(world, std::vector<float>(count, -1.0f));
  for (int r = 0; r < world; ++r) data[r] = Blocks(r, 1, count);
  const std::vector<std::vector<float>> inputs = data;
  std::vector<AllReduceStats> stats(world);
  std::vector<AllReduceOptions> options(world);
  for (int r = 0; r < world - 1; ++r) {  // rank world-1 never starts
    options[r] = InPlace(r, world, data[r], backups[r].data());
  }
  OnEveryRank(world - 1, [&](int r) {
    Status st = RingAllReduce(options[r], channels[r],
                              Deadline::In(std::chrono::milliseconds(300)), &stats[r]);
    EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << "rank " << r << ": " << st.ToString();
  });
  EXPECT_NE(data[1], inputs[1]) << "rank 1 folded rank 0's partials into its buffer";
  for (int r = 0; r < world - 1; ++r) {
    const RingSchedule schedule = ScheduleFor(options[r]);
    size_t index = 0;
    for (int c = 0; c < world; ++c) {
      for (uint32_t seg = 0; seg < schedule.Segments(c); ++seg, ++index) {
        if (stats[r].backed_up[index]) continue;
        size_t first, n;
        schedule.Segment(c, seg, &first, &n);
        std::fill_n(backups[r].begin() + static_cast<std::ptrdiff_t>(first), n, 12345.0f);
      }
    }
    RestoreInput(options[r], stats[r]);
    EXPECT_EQ(data[r], inputs[r]) << "rank " << r;
  }
}

// float16/bfloat16 all-reduce in windows: with 3 peers the float32 workspace holds one
// window (at most window_elements), with 2 there is none (each partial folds in at once,
// from the backup, a receive slot or the output); the windows run one after the other (the
// next peer's first segments of the next window come early), step 0 sends the inputs at
// their own width (the bytes on the wire say so), and the result is every peer's exact
// sum, in place or not;
// with a backup, RestoreInput still gives every input back. The inputs are small integers,
// so every order of summation gives the same bits. Window 1000 is more than any count here:
// one pass, as with window_elements 0.
TEST(RingAllReduceTest, HalfPrecisionRunsWindowAfterWindowInABoundedWorkspace) {
  for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
    auto to_half = [&](float f) {
      return dtype == DType::kFloat16 ? FloatToHalfBits(f) : FloatToBFloat16Bits(f);
    };
    for (int world : {2, 3}) {
      for (size_t count : {size_t{1}, size_t{7}, size_t{101}}) {
        for (size_t window : {size_t{1}, size_t{5}, size_t{16}, size_t{1000}}) {
          for (int mode = 0; mode < 3; ++mode) {  // out of place, in place, in place + backup
            SCOPED_TRACE(testing::Message() << DTypeName(dtype) << " world " << world
                                            << " count " << count << " window " << window
                                            << " mode " << mode);
            auto input = [&](int r, size_t i) {
              return static_cast<float>((r + 1) * 4 + static_cast<int>(i % 13));
            };
            std::vector<std::vector<uint16_t>> send(world), recv(world), backup(world);
            std::vector<AllReduceStats> stats(world);
            std::vector<AllReduceOptions> options(world);
            std::vector<std::vector<float>> workspace(world);
            std::vector<std::vector<char>> slots(world);
            std::vector<MemoryChannel> channels(world);
            for (int r = 0; r < world; ++r) {
              channels[r].next = &channels[(r + 1) % world];
              send[r].resize(count);
              for (size_t i = 0; i < count; ++i) send[r][i] = to_half(input(r, i));
              recv[r] = mode == 0 ? std::vector<uint16_t>(count, 0) : send[r];
              backup[r].assign(mode == 2 ? count : 0, 0xFFFF);
              AllReduceOptions& o = options[r];
              o.dtype = dtype;
              o.count = count;
              o.rank = r;
              o.world = world;
              o.segment_bytes = 2 * sizeof(uint16_t);
              o.window_elements = window;
              o.recv = recv[r].data();
              o.send = mode == 0 ? static_cast<const void*>(send[r].data()) : o.recv;
              o.backup = mode == 2 ? backup[r].data() : nullptr;
              o.receive_slots = 2;
              // Two peers fold each partial in at once: no float32 room, and in place
              // without a backup the partials land in receive slots.
              // A float per element of a window, but for the chunk this peer sends first.
              const size_t widest = std::min(count, window);
              const size_t own = RingSchedule{world, r, widest, 1}.ChunkElements(r);
              ASSERT_EQ(WorkspaceBytes(o), world == 2 ? 0 : (widest - own) * sizeof(float));
              ASSERT_EQ(ScratchBytes(o) > 0, world == 2 && mode != 2);
              workspace[r].assign(WorkspaceBytes(o) / sizeof(float), -1.0f);
              o.workspace = workspace[r].empty() ? nullptr : workspace[r].data();
              slots[r].assign(ScratchBytes(o), 'x');
              o.scratch = slots[r].empty() ? nullptr : slots[r].data();
            }
            OnEveryRank(world, [&](int r) {
              Status st = RingAllReduce(options[r], channels[r],
                                        Deadline::In(std::chrono::seconds(20)), &stats[r]);
              EXPECT_TRUE(st.ok()) << "rank " << r << ": " << st.message();
            });
            // Each step every chunk of a window leaves one peer: step 0's as inputs (2
            // bytes an element), the later reduce-scatter steps' as float32 sums, the
            // all-gather's as results (2 bytes).
            uint64_t tx = 0, rx = 0;
            for (const AllReduceStats& s : stats) {
              tx += s.tx_bytes;
              rx += s.rx_bytes;
            }
            const uint64_t per_element = 2 + 4 * (world - 2) + 2 * (world - 1);
            EXPECT_EQ(tx, count * per_element);
            EXPECT_EQ(rx, count * per_element);
            for (int r = 0; r < world; ++r) {
              for (size_t i = 0; i < count; ++i) {
                float sum = 0;
                for (int p = 0; p < world; ++p) sum += input(p, i);
                ASSERT_EQ(recv[r][i], to_half(sum)) << "rank " << r << " element " << i;
              }
              if (mode != 2) continue;
              RestoreInput(options[r], stats[r]);
              EXPECT_EQ(recv[r], send[r]) << "rank " << r;
            }
          }
        }
      }
    }
  }
}

// In place bfloat16 among 3 peers with a backup: a million elements, the workspace exactly
// WorkspaceBytes with a canary behind it that no pass may touch. Rank 0 drops every
// segment it would send from step `drop_from_step` on (none: UINT32_MAX), so every rank
// fails at `deadline` in the window that step starts.
struct WideRun {
  static constexpr int kWorld = 3;
  static constexpr size_t kCount = 1000000;
  static constexpr size_t kCanary = 400000;
  std::vector<std::vector<uint16_t>> data, inputs, backup;
  std::vector<std::vector<float>> workspace;
  std::vector<AllReduceStats> stats;
  std::vector<AllReduceOptions> options;
  std::vector<Status> status;
  size_t workspace_floats = 0;

  static float Input(int r, size_t i) {
    return static_cast<float>((r + 1) * 3 + static_cast<int>(i % 7));
  }

  WideRun(uint32_t drop_from_step, std::chrono::milliseconds deadline)
      : data(kWorld), inputs(kWorld), backup(kWorld), workspace(kWorld), stats(kWorld),
        options(kWorld), status(kWorld) {
    std::vector<MemoryChannel> channels(kWorld);
    channels[0].drop_from_step = drop_from_step;
    for (int r = 0; r < kWorld; ++r) {
      channels[r].next = &channels[(r + 1) % kWorld];
      inputs[r].resize(kCount);
      for (size_t i = 0; i < kCount; ++i) inputs[r][i] = FloatToBFloat16Bits(Input(r, i));
      data[r] = inputs[r];
      backup[r].assign(kCount, 0xFFFF);
      AllReduceOptions& o = options[r];
      o.dtype = DType::kBFloat16;
      o.count = kCount;
      o.rank = r;
      o.world = kWorld;
      o.segment_bytes = 64 << 10;
      o.window_elements = kWindowElements;
      o.send = o.recv = data[r].data();
      o.backup = backup[r].data();
      workspace_floats = WorkspaceBytes(o) / sizeof(float);
      workspace[r].assign(workspace_floats + kCanary, -7.0f);
      o.workspace = workspace[r].data();
    }
    OnEveryRank(kWorld, [&](int r) {
      status[r] = RingAllReduce(options[r], channels[r], Deadline::In(deadline), &stats[r]);
    });
  }

  void ExpectCanariesAndRestore() {
    for (int r = 0; r < kWorld; ++r) {
      for (size_t i = workspace_floats; i < workspace[r].size(); ++i) {
        ASSERT_EQ(workspace[r][i], -7.0f) << "rank " << r << ": a pass wrote past the workspace";
      }
      RestoreInput(options[r], stats[r]);
      EXPECT_EQ(data[r], inputs[r]) << "rank " << r;
    }
  }
};

// Wide windows keep their float32 room in the backup of the windows after them: the
// million elements run in windows of a third of what is left (333,322, 222,215, ... while
// that is at least 64 Ki elements), and only the last three (65,536, 65,536 and 644
// elements: the tail, where even 64 Ki elements have no room after them) need the
// workspace, for the two chunks of a window this peer receives partials of. The sums are
// exact, no pass touched the canary, and RestoreInput still gives every input back (each
// window's input was saved over the room an earlier window used).
TEST(RingAllReduceTest, WideWindowsKeepTheirFloatRoomInTheBackupOfTheWindowsAfterThem) {
  for (int r = 0; r < WideRun::kWorld; ++r) {
    AllReduceOptions o;
    o.dtype = DType::kBFloat16;
    o.count = WideRun::kCount;
    o.rank = r;
    o.world = WideRun::kWorld;
    o.segment_bytes = 64 << 10;
    o.window_elements = kWindowElements;
    o.send = o.recv = &o;  // in place (only compared)
    // A float per element of the widest window (without room in the backup), but for
    // the chunk this peer sends first.
    auto partials = [&](size_t window) {
      return (window - RingSchedule{WideRun::kWorld, r, window, 1}.ChunkElements(r)) *
             sizeof(float);
    };
    EXPECT_EQ(WorkspaceBytes(o), partials(333322));
    uint16_t backup = 0;
    o.backup = &backup;
    EXPECT_EQ(WorkspaceBytes(o), partials(65536));
  }
  WideRun run(UINT32_MAX, std::chrono::seconds(60));
  for (int r = 0; r < WideRun::kWorld; ++r) {
    ASSERT_TRUE(run.status[r].ok()) << "rank " << r << ": " << run.status[r].message();
    for (size_t i = 0; i < WideRun::kCount; ++i) {
      float sum = 0;
      for (int p = 0; p < WideRun::kWorld; ++p) sum += WideRun::Input(p, i);
      ASSERT_EQ(run.data[r][i], FloatToBFloat16Bits(sum)) << "rank " << r << " element " << i;
    }
  }
  run.ExpectCanariesAndRestore();
}

// The same call failing in its fourth window (steps 12-15: 4 steps a window with 3 peers),
// after three windows wrote their results and used the backup after them as room: every
// rank fails at its deadline, and RestoreInput gives every input back exactly.
TEST(RingAllReduceTest, AWideCallFailingInALaterWindowIsUndoneExactly) {
  WideRun run(12, std::chrono::milliseconds(500));
  for (int r = 0; r < WideRun::kWorld; ++r) {
    EXPECT_EQ(run.status[r].code(), StatusCode::kDeadlineExceeded) << "rank " << r;
    EXPECT_NE(run.data[r], run.inputs[r]) << "rank " << r << ": the first windows ran";
  }
  run.ExpectCanariesAndRestore();
}

// --- send/recv over a pair ----------------------------------------------------------------------

TEST(PointToPointTest, EverySizeArrivesWholeAndTheSenderWaitsForTheAnswer) {
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{1001}}) {
    MemoryChannel a, b;  // a pair: each is the other's next
    a.next = &b;
    b.next = &a;
    std::vector<char> sent(bytes), got(bytes, 'x');
    for (size_t i = 0; i < bytes; ++i) sent[i] = static_cast<char>(i * 31 + 7);
    EXPECT_EQ(TransferSegments(bytes, 4), bytes == 0 ? 1 : (bytes + 3) / 4);
    Status sender;
    std::thread send([&] { sender = SendBuffer(a, sent.data(), bytes, 4, Deadline::In(
                                                   std::chrono::seconds(10))); });
    int commits = 0;
    Status receiver = ReceiveBuffer(b, got.data(), bytes, 4, Deadline::In(std::chrono::seconds(10)),
                                    [&] {
                                      ++commits;
                                      EXPECT_EQ(got, sent) << "committed before every byte came";
                                      return Status::Ok();
                                    });
    send.join();
    EXPECT_TRUE(sender.ok()) << bytes << ": " << sender.ToString();
    EXPECT_TRUE(receiver.ok()) << bytes << ": " << receiver.ToString();
    EXPECT_EQ(commits, 1) << bytes;
    EXPECT_EQ(got, sent) << bytes;
  }
}

TEST(PointToPointTest, AReceiverThatMayNotCommitSendsNoAnswer) {
  MemoryChannel a, b;
  a.next = &b;
  b.next = &a;
  const char data[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  char got[9] = {};
  Status sender;
  std::thread send([&] {
    sender = SendBuffer(a, data, sizeof(data), 4, Deadline::In(std::chrono::milliseconds(300)));
  });
  Status receiver = ReceiveBuffer(b, got, sizeof(got), 4, Deadline::In(std::chrono::seconds(10)),
                                  [] { return Status(StatusCode::kAborted, "refused"); });
  send.join();
  EXPECT_EQ(receiver.code(), StatusCode::kAborted) << receiver.ToString();
  EXPECT_EQ(receiver.message(), "refused");
  // No ack: the sender cannot take the transfer for done, and fails at its deadline.
  EXPECT_EQ(sender.code(), StatusCode::kDeadlineExceeded) << sender.ToString();
}

TEST(PointToPointTest, ASendNobodyReceivesEndsAtItsDeadline) {
  MemoryChannel a, b;
  a.next = &b;
  b.next = &a;
  const char data[3] = {1, 2, 3};
  Status st = SendBuffer(a, data, sizeof(data), 4, Deadline::In(std::chrono::milliseconds(50)));
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st.ToString();
}

}  // namespace
}  // namespace pccl::algo
