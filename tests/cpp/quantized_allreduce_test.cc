// The quantized ring all-reduce (algo/quantized_allreduce.h) over an in-memory ring: every
// peer gets the same bytes, close to the exact sum; float32 partial sums accumulate in the
// output, so the scratch holds only the wire slots (exactly QuantizedScratchBytes, with a
// canary behind it), and in place with a backup most windows keep theirs in the backup of
// the windows after them; a failed in-place call with a backup is undone exactly.
#include "pccl/algo/quantized_allreduce.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <vector>

#include "memory_channel.h"

namespace pccl::algo {
namespace {

using memory_ring::MemoryChannel;
using memory_ring::OnEveryRank;

constexpr char kCanary = 0x5A;

// A value of rank `r` at element `i`: spread over a few units, different on every rank.
float Input(int r, size_t i) {
  return static_cast<float>(std::sin(0.37 * static_cast<double>(i) + r) * (r + 1));
}

// The float32 all-reduce of `world` peers, quantized to uint8 (MIN_MAX), in one of four
// modes (the last: in place with a backup, where windows keep their scratch when it fits:
// AllReduceOptions::room_bytes); each peer's scratch is exactly QuantizedScratchBytes
// followed by a canary. Rank 0 drops every segment it would send from step
// `drop_from_step` on (none: UINT32_MAX).
struct QuantizedRun {
  enum Mode { kOutOfPlace, kInPlace, kInPlaceWithBackup, kRoomInBackup };

  std::vector<std::vector<float>> send, recv, backup;
  std::vector<std::vector<char>> scratch;
  std::vector<size_t> scratch_bytes;
  std::vector<AllReduceOptions> options;
  std::vector<AllReduceStats> stats;
  std::vector<Status> status;

  QuantizedRun(int world, size_t count, size_t window, Mode mode, uint32_t drop_from_step,
               std::chrono::milliseconds deadline)
      : send(world), recv(world), backup(world), scratch(world), scratch_bytes(world),
        options(world), stats(world), status(world) {
    kernels::QuantizeOptions quant;
    quant.quantized_dtype = DType::kUint8;
    quant.algorithm = kernels::QuantAlgorithm::kMinMax;
    std::vector<MemoryChannel> channels(world);
    channels[0].drop_from_step = drop_from_step;
    for (int r = 0; r < world; ++r) {
      channels[r].next = &channels[(r + 1) % world];
      send[r].resize(count);
      for (size_t i = 0; i < count; ++i) send[r][i] = Input(r, i);
      recv[r] = mode == kOutOfPlace ? std::vector<float>(count, -1.0f) : send[r];
      backup[r].assign(mode >= kInPlaceWithBackup ? count : 0, -1.0f);
      AllReduceOptions& o = options[r];
      o.dtype = DType::kFloat32;
      o.count = count;
      o.rank = r;
      o.world = world;
      o.segment_bytes = 1000;
      o.window_elements = window;
      o.recv = recv[r].data();
      o.send = mode == kOutOfPlace ? static_cast<const void*>(send[r].data()) : o.recv;
      o.backup = backup[r].empty() ? nullptr : backup[r].data();
      if (mode == kRoomInBackup) o.room_bytes = QuantizedRoomBytes(quant);
      scratch_bytes[r] = QuantizedScratchBytes(o, quant);
      scratch[r].assign(scratch_bytes[r] + 4096, kCanary);
    }
    OnEveryRank(world, [&](int r) {
      status[r] = QuantizedRingAllReduce(options[r], quant, channels[r], Deadline::In(deadline),
                                         &stats[r], scratch[r].data());
    });
  }

  // Every peer's result is the same, within a few quantization steps of the exact sum.
  void ExpectSameBytesNearTheSum() {
    const std::vector<float>& reference = recv[0];
    for (size_t r = 1; r < recv.size(); ++r) {
      ASSERT_EQ(recv[r], reference) << "rank " << r;
    }
    const int world = static_cast<int>(recv.size());
    for (size_t i = 0; i < reference.size(); ++i) {
      double exact = 0, range = 0;
      for (int p = 0; p < world; ++p) {
        exact += Input(p, i);
        range += p + 1;
      }
      // A step of a block is at most 2 x range / 255; a ring requantizes world times.
      ASSERT_NEAR(reference[i], exact, world * 2 * range / 255.0) << "element " << i;
    }
  }

  // RestoreInput gives every peer its input back.
  void ExpectRestored() {
    for (size_t r = 0; r < recv.size(); ++r) {
      RestoreInput(options[r], stats[r]);
      EXPECT_EQ(recv[r], send[r]) << "rank " << r;
    }
  }

  void ExpectCanaries() {
    for (size_t r = 0; r < scratch.size(); ++r) {
      for (size_t i = scratch_bytes[r]; i < scratch[r].size(); ++i) {
        ASSERT_EQ(scratch[r][i], kCanary) << "rank " << r << ": the call wrote past its scratch";
      }
    }
  }
};

// float32 sums accumulate in the output: the scratch is the wire slots alone, under a
// float per element (the slots hold a byte per element both ways, plus block parameters),
// and the call stays inside it. Every peer ends with the same bytes, the same in every
// mode, within a few quantization steps of the exact sum; with a backup RestoreInput gives
// the input back. Windows of 3000 elements cut 10,007 into four passes, the first two with
// room in the backup after them (kRoomInBackup).
TEST(QuantizedAllReduceTest, FloatSumsAccumulateInTheOutputAndEveryPeerGetsTheSameBytes) {
  const size_t count = 10007;
  for (int world : {2, 3, 4}) {
    for (size_t window : {size_t{0}, size_t{3000}}) {
      std::vector<float> reference;
      for (auto mode : {QuantizedRun::kOutOfPlace, QuantizedRun::kInPlace,
                        QuantizedRun::kInPlaceWithBackup, QuantizedRun::kRoomInBackup}) {
        SCOPED_TRACE(testing::Message() << "world " << world << " window " << window
                                        << " mode " << mode);
        QuantizedRun run(world, count, window, mode, UINT32_MAX, std::chrono::seconds(20));
        const size_t widest = window > 0 ? window : count;
        for (int r = 0; r < world; ++r) {
          ASSERT_TRUE(run.status[r].ok()) << "rank " << r << ": " << run.status[r].message();
          EXPECT_LT(run.scratch_bytes[r], widest * sizeof(float)) << "rank " << r;
        }
        run.ExpectCanaries();
        run.ExpectSameBytesNearTheSum();
        if (reference.empty()) reference = run.recv[0];
        EXPECT_EQ(run.recv[0], reference) << "a mode changed the result";
        if (mode >= QuantizedRun::kInPlaceWithBackup) run.ExpectRestored();
      }
    }
  }
}

// A wire slot is as large as the largest segment a window has: a whole chunk where the
// chunks are shorter than the segment width (here 250 elements against 16 Ki), so that
// small windows (the tail of a large call) need little scratch.
TEST(QuantizedAllReduceTest, SlotsFitTheSegmentsAWindowHasNotTheSegmentWidth) {
  kernels::QuantizeOptions quant;
  for (int world : {2, 4}) {
    AllReduceOptions o;
    o.dtype = DType::kFloat32;
    o.count = 1000;
    o.rank = 0;
    o.world = world;
    o.segment_bytes = 64 << 10;
    EXPECT_LT(QuantizedScratchBytes(o, quant), o.count * sizeof(float)) << "world " << world;
  }
}

// Rank 0 stops sending after step 0 among 3 peers: rank 1 adds rank 0's segment to its
// own input in its tensor and passes the sum on, rank 2 finishes the sums it owns and
// rank 0 takes them in; then every rank fails at its deadline. The partial sums were in
// the callers' tensors, yet RestoreInput gives every input back exactly.
TEST(QuantizedAllReduceTest, AFailedInPlaceCallWithABackupIsUndoneExactly) {
  const int world = 3;
  for (size_t window : {size_t{0}, size_t{3000}}) {
    for (auto mode : {QuantizedRun::kInPlaceWithBackup, QuantizedRun::kRoomInBackup}) {
      SCOPED_TRACE(testing::Message() << "window " << window << " mode " << mode);
      QuantizedRun run(world, 10007, window, mode, 1, std::chrono::milliseconds(300));
      for (int r = 0; r < world; ++r) {
        EXPECT_EQ(run.status[r].code(), StatusCode::kDeadlineExceeded) << "rank " << r;
        EXPECT_NE(run.recv[r], run.send[r]) << "rank " << r << ": the call wrote its tensor";
      }
      run.ExpectCanaries();
      run.ExpectRestored();
    }
  }
}

// 1 Mi float32 elements among 3 peers in windows of kWindowElements, in place with a
// backup: a window's scratch (about 2.4 bytes an element: 7 steps of slots, each a third
// of the window, both ways) fits in the backup of the windows after it while the window
// is at most about 5/8 of what is left, so the windows shrink until 64 Ki elements and
// only the last needs the shared scratch (135,450 bytes here, against 2,526,594 for one
// window of the whole). No pass touches the canary, the results agree, and RestoreInput
// gives every input back (each window's input was saved over the room an earlier window
// used).
TEST(QuantizedAllReduceTest, WindowsKeepTheirScratchInTheBackupOfTheWindowsAfterThem) {
  const int world = 3;
  const size_t count = size_t{1} << 20;
  QuantizedRun plain(world, count, kWindowElements, QuantizedRun::kInPlaceWithBackup,
                     UINT32_MAX, std::chrono::seconds(60));
  QuantizedRun roomy(world, count, kWindowElements, QuantizedRun::kRoomInBackup, UINT32_MAX,
                     std::chrono::seconds(60));
  for (int r = 0; r < world; ++r) {
    ASSERT_TRUE(roomy.status[r].ok()) << "rank " << r << ": " << roomy.status[r].message();
    EXPECT_LT(roomy.scratch_bytes[r], plain.scratch_bytes[r] / 8) << "rank " << r;
  }
  roomy.ExpectCanaries();
  roomy.ExpectSameBytesNearTheSum();
  roomy.ExpectRestored();
}

// The same call failing in its third window (steps 8-11: 4 steps a window with 3 peers),
// after two windows wrote their results and used the backup after them as room: every
// rank fails at its deadline, and RestoreInput gives every input back exactly.
TEST(QuantizedAllReduceTest, ACallFailingInALaterWindowIsUndoneExactly) {
  const int world = 3;
  QuantizedRun run(world, size_t{1} << 20, kWindowElements, QuantizedRun::kRoomInBackup, 8,
                   std::chrono::milliseconds(500));
  for (int r = 0; r < world; ++r) {
    EXPECT_EQ(run.status[r].code(), StatusCode::kDeadlineExceeded) << "rank " << r;
    EXPECT_NE(run.recv[r], run.send[r]) << "rank " << r << ": the first windows ran";
  }
  run.ExpectCanaries();
  run.ExpectRestored();
}

}  // namespace
}  // namespace pccl::algo
