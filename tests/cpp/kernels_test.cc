// Kernels used by the in-place collectives to save their input (kernels/reduce.h's
// ReduceSaving, kernels/copy.h's CopyStreaming) and by the rings' float16/bfloat16 steps
// (CombineHalf, FoldHalf): the same bits as the plain kernels, on every ISA path this CPU
// runs, for every dtype and combiner, at odd lengths and alignments. The other kernels are
// tested from Python (tests/python/test_kernels_*.py).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "pccl/kernels/copy.h"
#include "pccl/kernels/isa.h"
#include "pccl/kernels/reduce.h"

namespace pccl::kernels {
namespace {

std::vector<char> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<char> bytes(n);
  for (char& b : bytes) b = static_cast<char>(rng());
  return bytes;
}

// Restores the ISA the process started with when a test ends.
class KernelsTest : public ::testing::Test {
 protected:
  void TearDown() override { ASSERT_TRUE(ForceIsa(BestIsa()).ok()); }

  static std::vector<Isa> Paths() {
    std::vector<Isa> paths;
    for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512}) {
      if (IsaSupported(isa)) paths.push_back(isa);
    }
    return paths;
  }
};

constexpr ReduceOp kOps[] = {ReduceOp::kSum, ReduceOp::kProd, ReduceOp::kMin, ReduceOp::kMax};

// ReduceSaving(dst, src, save) leaves dst as Reduce(dst, src) does and `save` holding the
// old dst, with `save` a buffer of its own and with `save` being `src` itself.
TEST_F(KernelsTest, ReduceSavingEqualsReduceAndKeepsWhatItOverwrote) {
  const size_t count = 1000 + 37;  // not a multiple of any vector width
  for (Isa isa : Paths()) {
    ASSERT_TRUE(ForceIsa(isa).ok());
    for (int d = 0; d < kNumDTypes; ++d) {
      const auto dtype = static_cast<DType>(d);
      const size_t bytes = count * DTypeSize(dtype);
      for (ReduceOp op : kOps) {
        SCOPED_TRACE(std::string(IsaName(isa)) + " " + DTypeName(dtype) + " " +
                     ReduceOpName(op));
        const std::vector<char> input = RandomBytes(bytes, 1 + d);
        const std::vector<char> partial = RandomBytes(bytes, 100 + d);
        std::vector<char> expected = input;
        ASSERT_TRUE(Reduce(dtype, op, expected.data(), partial.data(), count).ok());

        std::vector<char> dst = input;
        std::vector<char> save(bytes, 0);
        ASSERT_TRUE(ReduceSaving(dtype, op, dst.data(), partial.data(), save.data(), count).ok());
        EXPECT_EQ(dst, expected);
        EXPECT_EQ(save, input);

        // The partial landed in the backup: the two trade places.
        std::vector<char> dst2 = input;
        std::vector<char> shared = partial;
        ASSERT_TRUE(
            ReduceSaving(dtype, op, dst2.data(), shared.data(), shared.data(), count).ok());
        EXPECT_EQ(dst2, expected);
        EXPECT_EQ(shared, input);
      }
    }
  }
}

TEST_F(KernelsTest, ReduceSavingRefusesBadArgumentsBeforeWriting) {
  std::vector<float> dst = {1, 2}, src = {3, 4}, save = {0, 0};
  EXPECT_FALSE(ReduceSaving(static_cast<DType>(99), ReduceOp::kSum, dst.data(), src.data(),
                            save.data(), 2).ok());
  EXPECT_FALSE(ReduceSaving(DType::kFloat32, static_cast<ReduceOp>(9), dst.data(), src.data(),
                            save.data(), 2).ok());
  EXPECT_FALSE(ReduceSaving(DType::kFloat32, ReduceOp::kSum, dst.data(), src.data(), nullptr,
                            2).ok());
  EXPECT_EQ(dst, (std::vector<float>{1, 2}));
  EXPECT_EQ(save, (std::vector<float>{0, 0}));
  EXPECT_TRUE(ReduceSaving(DType::kFloat32, ReduceOp::kSum, nullptr, nullptr, nullptr, 0).ok());
}

// CombineHalf(acc, a, b) gives op(widen(a), widen(b)) as float, element by element (the
// reference is WidenHalf then AccumulateHalf, two passes), with `a` a buffer of its own and
// with `a` in the upper half of acc's bytes, where a ring lands a float16/bfloat16 input
// and widens it in place: lengths below, at and across the kernels' 512-element blocks.
TEST_F(KernelsTest, CombineHalfWidensBothAndCombinesEvenInTheUpperHalfOfItsOutput) {
  for (Isa isa : Paths()) {
    ASSERT_TRUE(ForceIsa(isa).ok());
    for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
      for (ReduceOp op : kOps) {
        for (size_t count : {size_t{1}, size_t{7}, size_t{512}, size_t{1000 + 37}}) {
          SCOPED_TRACE(std::string(IsaName(isa)) + " " + DTypeName(dtype) + " " +
                       ReduceOpName(op) + " count " + std::to_string(count));
          const std::vector<char> a = RandomBytes(2 * count, 7);
          const std::vector<char> b = RandomBytes(2 * count, 8);
          std::vector<float> expected(count);
          ASSERT_TRUE(WidenHalf(dtype, expected.data(), a.data(), count).ok());
          ASSERT_TRUE(AccumulateHalf(dtype, op, expected.data(), b.data(), count).ok());

          std::vector<float> apart(count, -1.0f);
          ASSERT_TRUE(CombineHalf(dtype, op, apart.data(), a.data(), b.data(), count).ok());
          EXPECT_EQ(std::memcmp(apart.data(), expected.data(), 4 * count), 0);

          std::vector<float> room(count, -1.0f);  // a lands in the upper half of the room
          char* upper = reinterpret_cast<char*>(room.data()) + 2 * count;
          std::memcpy(upper, a.data(), 2 * count);
          ASSERT_TRUE(CombineHalf(dtype, op, room.data(), upper, b.data(), count).ok());
          EXPECT_EQ(std::memcmp(room.data(), expected.data(), 4 * count), 0);
        }
      }
    }
  }
  std::vector<float> acc = {1, 2};
  const uint16_t halves[2] = {0, 0};
  EXPECT_FALSE(CombineHalf(DType::kFloat32, ReduceOp::kSum, acc.data(), halves, halves, 2).ok());
  EXPECT_FALSE(CombineHalf(DType::kBFloat16, ReduceOp::kSum, acc.data(), nullptr, halves, 2).ok());
  EXPECT_EQ(acc, (std::vector<float>{1, 2}));
}

// FoldHalf gives the bits of CombineHalf then NarrowHalf (with and without a divisor), in
// each way the ring uses it: apart; in place keeping the input where the partial was
// (dst = input, save = partial); in place without a save; out of place where the partial
// landed in the output (dst = partial).
TEST_F(KernelsTest, FoldHalfEqualsCombineThenNarrowInEveryLayoutTheRingUses) {
  for (Isa isa : Paths()) {
    ASSERT_TRUE(ForceIsa(isa).ok());
    for (DType dtype : {DType::kFloat16, DType::kBFloat16}) {
      for (ReduceOp op : kOps) {
        for (uint64_t divisor : {uint64_t{1}, uint64_t{3}}) {
          const size_t count = 1000 + 37;
          SCOPED_TRACE(std::string(IsaName(isa)) + " " + DTypeName(dtype) + " " +
                       ReduceOpName(op) + " divisor " + std::to_string(divisor));
          const std::vector<char> partial = RandomBytes(2 * count, 11);
          const std::vector<char> input = RandomBytes(2 * count, 12);
          std::vector<float> acc(count);
          ASSERT_TRUE(CombineHalf(dtype, op, acc.data(), partial.data(), input.data(),
                                  count).ok());
          std::vector<char> expected(2 * count);
          ASSERT_TRUE(NarrowHalf(dtype, expected.data(), acc.data(), count, divisor).ok());

          std::vector<char> dst(2 * count, 0);
          ASSERT_TRUE(FoldHalf(dtype, op, dst.data(), partial.data(), input.data(), nullptr,
                               count, divisor).ok());
          EXPECT_EQ(dst, expected);

          std::vector<char> buffer = input, landed = partial;
          ASSERT_TRUE(FoldHalf(dtype, op, buffer.data(), landed.data(), buffer.data(),
                               landed.data(), count, divisor).ok());
          EXPECT_EQ(buffer, expected);
          EXPECT_EQ(landed, input);  // the two traded places

          buffer = input;
          ASSERT_TRUE(FoldHalf(dtype, op, buffer.data(), partial.data(), buffer.data(),
                               nullptr, count, divisor).ok());
          EXPECT_EQ(buffer, expected);

          std::vector<char> output = partial;
          ASSERT_TRUE(FoldHalf(dtype, op, output.data(), output.data(), input.data(), nullptr,
                               count, divisor).ok());
          EXPECT_EQ(output, expected);
        }
      }
    }
  }
  std::vector<uint16_t> dst = {1, 2}, other = {3, 4};
  EXPECT_FALSE(FoldHalf(DType::kFloat32, ReduceOp::kSum, dst.data(), other.data(), other.data(),
                        nullptr, 2).ok());
  EXPECT_FALSE(FoldHalf(DType::kBFloat16, ReduceOp::kSum, dst.data(), other.data(), other.data(),
                        nullptr, 2, 0).ok());
  EXPECT_EQ(dst, (std::vector<uint16_t>{1, 2}));
}

// Every length around the streaming threshold and the 64-byte steps, at every alignment of
// the destination and source within 16 bytes; the bytes around the copy stay untouched.
TEST(CopyStreamingTest, CopiesExactlyTheBytesAtAnyAlignmentAndLength) {
  const std::vector<char> source = RandomBytes(20000, 7);
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{63}, size_t{4095}, size_t{4096},
                       size_t{4097}, size_t{4096 + 63}, size_t{12345}, size_t{16384}}) {
    for (size_t dst_off = 0; dst_off < 16; dst_off += 3) {
      for (size_t src_off = 0; src_off < 16; src_off += 5) {
        std::vector<char> dst(bytes + 64, 'x');
        CopyStreaming(dst.data() + 16 + dst_off, source.data() + src_off, bytes);
        ASSERT_EQ(std::memcmp(dst.data() + 16 + dst_off, source.data() + src_off, bytes), 0)
            << bytes << " bytes, offsets " << dst_off << "/" << src_off;
        for (size_t i = 0; i < 16 + dst_off; ++i) ASSERT_EQ(dst[i], 'x');
        for (size_t i = 16 + dst_off + bytes; i < dst.size(); ++i) ASSERT_EQ(dst[i], 'x');
      }
    }
  }
}

}  // namespace
}  // namespace pccl::kernels
