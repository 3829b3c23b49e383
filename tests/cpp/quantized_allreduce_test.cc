// The quantized ring all-reduce (algo/quantized_allreduce.h) over an in-memory ring: every
// peer gets the same bytes, close to the exact sum; float32 partial sums accumulate in the
// output, so the scratch holds only the wire slots (exactly QuantizedScratchBytes, with a
// canary behind it), and in place with a backup most windows keep theirs in the backup of
// the windows after them; a failed in-place call with a backup is undone exactly.
#include "pccl/algo/quantized_allreduce.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <vector>

#include "memory_channel.h"
#include "pccl/common/half.h"

namespace pccl::algo {
namespace {

using memory_ring::MemoryChannel;
using memory_ring::OnEveryRank;

constexpr char kCanary = 0x5A;

// A value of rank `r` at element `i`: spread over a few units, different on every rank.
float Input(int r, size_t i) {
  return static_cast<float>(std::sin(0.37 * static_cast<double>(i) + r) * (r + 1));
}

// How a test element is stored: float32 as it is, bfloat16 as its bits.
struct BFloat16 {
  uint16_t bits;
  bool operator==(const BFloat16&) const = default;
};
template <class T>
struct Encoding;
template <>
struct Encoding<float> {
  static constexpr DType kDType = DType::kFloat32;
  static float Encode(float f) { return f; }
  static double Decode(float v) { return v; }
  static constexpr double kUnitRoundoff = 0;  // the sums are compared in float32
};
template <>
struct Encoding<BFloat16> {
  static constexpr DType kDType = DType::kBFloat16;
  static BFloat16 Encode(float f) { return {FloatToBFloat16Bits(f)}; }
  static double Decode(BFloat16 v) { return BFloat16BitsToFloat(v.bits); }
  static constexpr double kUnitRoundoff = 1.0 / 256;  // the result's own rounding
};

// The modes a call runs in (the last: in place with a backup, where windows keep their
// scratch in the backup of the windows after them where it fits).
enum Mode { kOutOfPlace, kInPlace, kInPlaceWithBackup };

// The all-reduce of `world` peers of float32 (T = float) or bfloat16 data, quantized to
// uint8 (MIN_MAX), in one of the three modes; each peer's scratch is exactly
// QuantizedScratchBytes followed by a canary. Rank 0 drops every segment it would send
// from step `drop_from_step` on (none: UINT32_MAX).
template <class T = float>
struct QuantizedRun {
  using E = Encoding<T>;

  std::vector<std::vector<T>> send, recv, backup;
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
      for (size_t i = 0; i < count; ++i) send[r][i] = E::Encode(Input(r, i));
      recv[r] = mode == kOutOfPlace ? std::vector<T>(count, E::Encode(-1.0f)) : send[r];
      backup[r].assign(mode >= kInPlaceWithBackup ? count : 0, E::Encode(-1.0f));
      AllReduceOptions& o = options[r];
      o.dtype = E::kDType;
      o.count = count;
      o.rank = r;
      o.world = world;
      o.segment_bytes = 1000;
      o.window_elements = window;
      o.recv = recv[r].data();
      o.send = mode == kOutOfPlace ? static_cast<const void*>(send[r].data()) : o.recv;
      o.backup = backup[r].empty() ? nullptr : backup[r].data();
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
    const std::vector<T>& reference = recv[0];
    for (size_t r = 1; r < recv.size(); ++r) {
      ASSERT_EQ(recv[r], reference) << "rank " << r;
    }
    const int world = static_cast<int>(recv.size());
    for (size_t i = 0; i < reference.size(); ++i) {
      double exact = 0, range = 0;
      for (int p = 0; p < world; ++p) {
        exact += E::Decode(send[p][i]);
        range += p + 1;
      }
      // A step of a block is at most 2 x range / 255; a ring requantizes world times.
      ASSERT_NEAR(E::Decode(reference[i]), exact,
                  world * 2 * range / 255.0 + std::abs(exact) * E::kUnitRoundoff)
          << "element " << i;
    }
  }

  // Every peer failed at its deadline, after the call had written its tensor.
  void ExpectFailedAfterWriting() {
    for (size_t r = 0; r < recv.size(); ++r) {
      EXPECT_EQ(status[r].code(), StatusCode::kDeadlineExceeded) << "rank " << r;
      EXPECT_NE(recv[r], send[r]) << "rank " << r << ": the call wrote its tensor";
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
// the input back. Windows of 3000 elements cut 10,007 into four passes, with a backup the
// first two with room in the backup after them.
TEST(QuantizedAllReduceTest, FloatSumsAccumulateInTheOutputAndEveryPeerGetsTheSameBytes) {
  const size_t count = 10007;
  for (int world : {2, 3, 4}) {
    for (size_t window : {size_t{0}, size_t{3000}}) {
      std::vector<float> reference;
      for (auto mode : {kOutOfPlace, kInPlace, kInPlaceWithBackup}) {
        SCOPED_TRACE(testing::Message() << "world " << world << " window " << window
                                        << " mode " << mode);
        QuantizedRun<> run(world, count, window, mode, UINT32_MAX, std::chrono::seconds(20));
        const size_t widest = window > 0 ? window : count;
        for (int r = 0; r < world; ++r) {
          ASSERT_TRUE(run.status[r].ok()) << "rank " << r << ": " << run.status[r].message();
          EXPECT_LT(run.scratch_bytes[r], widest * sizeof(float)) << "rank " << r;
        }
        run.ExpectCanaries();
        run.ExpectSameBytesNearTheSum();
        if (reference.empty()) reference = run.recv[0];
        EXPECT_EQ(run.recv[0], reference) << "a mode changed the result";
        if (mode >= kInPlaceWithBackup) run.ExpectRestored();
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
    SCOPED_TRACE(testing::Message() << "window " << window);
    QuantizedRun<> run(world, 10007, window, kInPlaceWithBackup, 1,
                       std::chrono::milliseconds(300));
    run.ExpectFailedAfterWriting();
    run.ExpectCanaries();
    run.ExpectRestored();
  }
}

// 1 Mi elements among 3 peers in windows of kWindowElements, in place, without and with a
// backup. A window's scratch fits in the backup of the windows after it while the window
// is at most a share of what is left, so the windows shrink towards the end of the tensor
// (the same windows with or without a backup: they depend only on what every peer shares)
// until 64 Ki elements; with a backup only those last windows need the shared scratch:
// `tail_bytes` at most, against `whole_bytes` without. No pass touches the canary, the
// results agree, and RestoreInput gives every input back (each window's input was saved
// over the room an earlier window used).
template <class T>
void ExpectRoomInTheBackup(size_t whole_bytes, size_t tail_bytes) {
  const int world = 3;
  const size_t count = size_t{1} << 20;
  QuantizedRun<T> without(world, count, kWindowElements, kInPlace, UINT32_MAX,
                          std::chrono::seconds(60));
  QuantizedRun<T> with(world, count, kWindowElements, kInPlaceWithBackup, UINT32_MAX,
                       std::chrono::seconds(60));
  for (int r = 0; r < world; ++r) {
    ASSERT_TRUE(without.status[r].ok()) << "rank " << r << ": " << without.status[r].message();
    ASSERT_TRUE(with.status[r].ok()) << "rank " << r << ": " << with.status[r].message();
    EXPECT_EQ(without.scratch_bytes[r], whole_bytes) << "rank " << r;
    EXPECT_LE(with.scratch_bytes[r], tail_bytes) << "rank " << r;
  }
  EXPECT_EQ(with.recv, without.recv) << "the backup changed the windows";
  with.ExpectCanaries();
  with.ExpectSameBytesNearTheSum();
  with.ExpectRestored();
}

// float32: about 2.4 bytes of scratch an element (7 steps of slots, each a third of the
// window, both ways) against 4 of backup: windows of at most about 5/8 of what is left.
TEST(QuantizedAllReduceTest, WindowsKeepTheirScratchInTheBackupOfTheWindowsAfterThem) {
  ExpectRoomInTheBackup<float>(1576638, 140000);
}

// bfloat16 keeps float32 accumulators besides the wire slots (about 6.4 bytes an element
// against 2 of backup): its windows shrink sooner, to about a quarter of what is left.
TEST(QuantizedAllReduceTest, HalfPrecisionWindowsKeepTheirAccumulatorsInTheBackupToo) {
  ExpectRoomInTheBackup<BFloat16>(1595852, 420000);
}

// The same call failing in its third window (steps 8-11: 4 steps a window with 3 peers),
// after two windows wrote their results and used the backup after them as room: every
// rank fails at its deadline, and RestoreInput gives every input back exactly.
TEST(QuantizedAllReduceTest, ACallFailingInALaterWindowIsUndoneExactly) {
  const int world = 3;
  QuantizedRun<> run(world, size_t{1} << 20, kWindowElements, kInPlaceWithBackup, 8,
                     std::chrono::milliseconds(500));
  run.ExpectFailedAfterWriting();  // the first two windows ran
  run.ExpectCanaries();
  run.ExpectRestored();
}

}  // namespace
}  // namespace pccl::algo
