// The exact all-reduce's local pieces (comm/exact_allreduce.h) and its mask generator.
//
// The masks of ReduceMode.PRIVATE come from kernels::MaskGenerate, pccl's own vectorised
// ChaCha20: the issue asks for OpenSSL's unless the kernel is checked against OpenSSL's
// output and measurably faster. MaskMatchesOpenSSL checks every draw against the keystream
// of OpenSSL's EVP_chacha20 (RFC 8439 with the nonce layout modular.h documents) and prints
// both throughputs (`ctest -R MaskMatchesOpenSSL -V` shows them).
#include <openssl/evp.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "pccl/comm/exact_allreduce.h"
#include "pccl/net/wire.h"

namespace pccl::comm {
namespace {

TEST(MaxAbs, FindsTheLargestMagnitudeAndFlagsNonFinite) {
  std::vector<float> f = {1.5f, -7.25f, 3.0f, -0.0f};
  EXPECT_EQ(MaxAbs(DType::kFloat32, f.data(), f.size()), 7.25);
  f[2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isinf(MaxAbs(DType::kFloat32, f.data(), f.size())));
  std::vector<double> d = {-1e300, 2.0, -std::numeric_limits<double>::infinity()};
  EXPECT_TRUE(std::isinf(MaxAbs(DType::kFloat64, d.data(), d.size())));
  d[2] = 5.0;
  EXPECT_EQ(MaxAbs(DType::kFloat64, d.data(), d.size()), 1e300);
  EXPECT_EQ(MaxAbs(DType::kFloat64, d.data(), 0), 0.0);
}

TEST(FracBitsFor, LeavesRoomForEveryRoundedInput) {
  const double half = (kExactModulus - 1) / 2;
  for (uint32_t world : {1u, 2u, 4u, 64u, 4096u}) {
    for (double largest : {1e-30, 3e-3, 1.0, 1000.0, 123456.789, 1e8}) {
      int f = -1;
      const Status st = FracBitsFor(world, largest, false, &f);
      if (world * (largest + 0.5) > half) {  // not even F = 0 fits
        EXPECT_EQ(st.code(), StatusCode::kOutOfRange) << world << " " << largest;
        continue;
      }
      ASSERT_TRUE(st.ok()) << world << " " << largest;
      // Every input rounds to at most largest * 2^f + 1/2; n of them stay within H ...
      EXPECT_LE(world * (largest * std::ldexp(1.0, f) + 0.5), half) << world << " " << largest;
      // ... and f is the largest that does (unless capped).
      if (f < kernels::kMaxFracBits) {
        EXPECT_GT(world * (largest * std::ldexp(1.0, f + 1) + 0.5), half);
      }
    }
  }
  int f = -1;
  EXPECT_EQ(FracBitsFor(4, 3e9, false, &f).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(FracBitsFor(4, HUGE_VAL, false, &f).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(FracBitsFor(4, 5e8, true, &f).ok());
  EXPECT_EQ(f, 0);  // integers are never scaled
  EXPECT_EQ(FracBitsFor(4, 6e8, true, &f).code(), StatusCode::kOutOfRange);
  ASSERT_TRUE(FracBitsFor(4, 0.0, false, &f).ok());
  EXPECT_EQ(f, kernels::kMaxFracBits);
}

TEST(EdgeMaskKey, DiffersPerOperationAndDirection) {
  const std::string shared(64, 'k');
  proto::OpKey key{7, 0, 3, 11};
  kernels::MaskKey a, b, c, d, e;
  ASSERT_TRUE(EdgeMaskKey(shared, key, 1, 2, &a).ok());
  ASSERT_TRUE(EdgeMaskKey(shared, key, 1, 2, &b).ok());
  EXPECT_EQ(a, b);  // both ends derive the same key
  ASSERT_TRUE(EdgeMaskKey(shared, key, 2, 1, &c).ok());
  EXPECT_NE(a, c);  // the two directions of one pair mask differently
  key.seq = 12;     // a retry is another operation
  ASSERT_TRUE(EdgeMaskKey(shared, key, 1, 2, &d).ok());
  EXPECT_NE(a, d);
  ASSERT_TRUE(EdgeMaskKey(std::string(64, 'j'), proto::OpKey{7, 0, 3, 11}, 1, 2, &e).ok());
  EXPECT_NE(a, e);  // another pair's secret
}

// --- VERIFIED's reports and their check -------------------------------------------------------

// A report as a Verdict carries it: u32 length + bytes.
std::string Framed(const std::string& report) {
  uint8_t length[4];
  net::PutU32(length, static_cast<uint32_t>(report.size()));
  return std::string(reinterpret_cast<const char*>(length), 4) + report;
}

// A ring of `world` honest peers: input hashes chosen freely, everything else what the ring
// computes (partials along each chunk's path, the total everywhere).
std::vector<HashReport> HonestReports(const kernels::Modulus& m, int world) {
  std::vector<HashReport> r(world);
  for (int rank = 0; rank < world; ++rank) {
    r[rank].peer_id = 100 + rank;
    r[rank].rank = rank;
    for (int c = 0; c < world; ++c) r[rank].input.push_back((rank * 7919 + c * 104729) % m.p());
    r[rank].received.assign(world, 0);
    r[rank].result.assign(world, 0);
  }
  for (int c = 0; c < world; ++c) {
    uint64_t partial = 0;
    for (int s = 0; s < world - 1; ++s) {
      partial = (partial + r[(c + s) % world].input[c]) % m.p();
      r[(c + s + 1) % world].received[c] = static_cast<uint32_t>(partial);
    }
    const uint64_t total = (partial + r[(c + world - 1) % world].input[c]) % m.p();
    for (int rank = 0; rank < world; ++rank) r[rank].result[c] = static_cast<uint32_t>(total);
  }
  return r;
}

TEST(CheckHashReports, PassesAnHonestRingAndNamesWhereAFalsifiedOneWentWrong) {
  kernels::Modulus m;
  ASSERT_TRUE(kernels::Modulus::Make(kExactModulus, &m).ok());
  for (int world : {2, 3, 5}) {
    SCOPED_TRACE(world);
    const std::vector<HashReport> honest = HonestReports(m, world);
    ASSERT_TRUE(CheckHashReports(m, honest, 1200).ok());
    // Chunk 1's partial corrupted between rank 1 (where it starts) and rank 2.
    if (world > 2) {
      std::vector<HashReport> r = honest;
      r[2].received[1] ^= 1;
      const Status st = CheckHashReports(m, r, 1200);
      EXPECT_EQ(st.code(), StatusCode::kIntegrity);
      EXPECT_NE(st.message().find("chunk 1 of " + std::to_string(world)), std::string::npos);
      EXPECT_NE(st.message().find("from peer 101 (rank 1) to peer 102 (rank 2), in the "
                                  "reduce-scatter"),
                std::string::npos)
          << st.message();
    }
    // Chunk 0's owner (the last rank) reduced it wrong: its result, and every copy of it.
    {
      std::vector<HashReport> r = honest;
      for (auto& peer : r) peer.result[0] ^= 2;
      const Status st = CheckHashReports(m, r, 1200);
      EXPECT_NE(st.message().find("chunk 0 of " + std::to_string(world) +
                                  " (elements 0 to " + std::to_string(1200 / world) +
                                  ") went wrong in its reduction by its owner, peer " +
                                  std::to_string(100 + world - 1)),
                std::string::npos)
          << st.message();
    }
    // Chunk 0's copy forwarded wrong by rank 0 (the first after its owner) to rank 1.
    {
      std::vector<HashReport> r = honest;
      for (int rank = 1; rank < world - 1; ++rank) r[rank].result[0] ^= 4;
      if (world == 2) continue;
      const Status st = CheckHashReports(m, r, 1200);
      EXPECT_NE(st.message().find("from peer 100 (rank 0) to peer 101 (rank 1), in the "
                                  "all-gather"),
                std::string::npos)
          << st.message();
    }
  }
}

TEST(HashReports, RoundTripAndRefuseWhatDoesNotCoverTheRing) {
  kernels::Modulus m;
  ASSERT_TRUE(kernels::Modulus::Make(kExactModulus, &m).ok());
  const std::vector<HashReport> honest = HonestReports(m, 3);
  std::string all;
  for (int rank : {2, 0, 1}) all += Framed(EncodeHashReport(honest[rank]));
  std::vector<HashReport> back;
  ASSERT_TRUE(DecodeHashReports(all, 3, &back).ok());
  for (int rank = 0; rank < 3; ++rank) {
    EXPECT_EQ(back[rank].peer_id, honest[rank].peer_id);
    EXPECT_EQ(back[rank].input, honest[rank].input);
    EXPECT_EQ(back[rank].received, honest[rank].received);
    EXPECT_EQ(back[rank].result, honest[rank].result);
  }
  EXPECT_EQ(DecodeHashReports(all, 4, &back).code(), StatusCode::kIntegrity);  // too few
  EXPECT_EQ(DecodeHashReports(all + all, 3, &back).code(), StatusCode::kIntegrity);
  const std::string twice = Framed(EncodeHashReport(honest[0]));
  EXPECT_EQ(DecodeHashReports(twice + twice + twice, 3, &back).code(), StatusCode::kIntegrity);
  EXPECT_EQ(DecodeHashReports("", 3, &back).code(), StatusCode::kIntegrity);
}

TEST(ScaleReports, GiveTheLargestMagnitudeAndRefuseAnythingElse) {
  std::string reports;
  for (double v : {1.5, 1e30, 0.25}) reports += Framed(proto::EncodeScaleReport(v));
  double largest = -1;
  ASSERT_TRUE(proto::LargestOfScaleReports(reports, 3, &largest).ok());
  EXPECT_EQ(largest, 1e30);
  const std::string inf = reports + Framed(proto::EncodeScaleReport(HUGE_VAL));
  ASSERT_TRUE(proto::LargestOfScaleReports(inf, 4, &largest).ok());
  EXPECT_TRUE(std::isinf(largest));  // a non-finite input somewhere: every peer refuses
  EXPECT_EQ(proto::LargestOfScaleReports(reports, 4, &largest).code(), StatusCode::kDataLoss);
  EXPECT_EQ(proto::LargestOfScaleReports(reports, 2, &largest).code(), StatusCode::kDataLoss);
  for (double bad : {-1.0, -0.0, std::nan("")}) {
    EXPECT_EQ(proto::LargestOfScaleReports(Framed(proto::EncodeScaleReport(bad)), 1, &largest)
                  .code(),
              StatusCode::kDataLoss);
  }
  EXPECT_EQ(proto::LargestOfScaleReports(Framed("1234567"), 1, &largest).code(),
            StatusCode::kDataLoss);
}

TEST(LinearHashes, AreLinearAndTellVectorsApart) {
  kernels::Modulus m;
  ASSERT_TRUE(kernels::Modulus::Make(kExactModulus, &m).ok());
  kernels::MaskKey challenge{};
  challenge[0] = 9;
  constexpr size_t kCount = 40000;  // several blocks
  std::vector<uint32_t> a(kCount), b(kCount), sum(kCount);
  for (size_t i = 0; i < kCount; ++i) {
    a[i] = static_cast<uint32_t>((i * 2654435761u) % m.p());
    b[i] = static_cast<uint32_t>((i * 40503u + 7) % m.p());
    sum[i] = static_cast<uint32_t>((uint64_t{a[i]} + b[i]) % m.p());
  }
  const void* vectors[3] = {a.data(), b.data(), sum.data()};
  uint32_t h[3];
  ASSERT_TRUE(LinearHashes(m, challenge, vectors, 100, kCount, h).ok());
  EXPECT_EQ((uint64_t{h[0]} + h[1]) % m.p(), h[2]);  // hash(a) + hash(b) = hash(a + b)
  sum[12345] ^= 1;
  uint32_t changed[3];
  ASSERT_TRUE(LinearHashes(m, challenge, vectors, 100, kCount, changed).ok());
  EXPECT_NE(changed[2], h[2]);
  const void* none[3] = {nullptr, nullptr, nullptr};
  ASSERT_TRUE(LinearHashes(m, challenge, none, 0, kCount, changed).ok());
  EXPECT_EQ(changed[0], 0u);
}

// The RFC 8439 keystream of OpenSSL's EVP_chacha20 for `key`, starting at block `counter`
// with the 12-byte `nonce`.
std::vector<uint8_t> OpenSSLKeystream(const kernels::MaskKey& key, uint32_t counter,
                                      const uint8_t nonce[12], size_t bytes) {
  uint8_t iv[16];
  for (int b = 0; b < 4; ++b) iv[b] = static_cast<uint8_t>(counter >> (8 * b));
  std::memcpy(iv + 4, nonce, 12);
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                       EVP_CIPHER_CTX_free);
  std::vector<uint8_t> zeros(bytes, 0), out(bytes);
  int length = 0;
  EXPECT_EQ(EVP_EncryptInit_ex(ctx.get(), EVP_chacha20(), nullptr, key.data(), iv), 1);
  EXPECT_EQ(EVP_EncryptUpdate(ctx.get(), out.data(), &length, zeros.data(),
                              static_cast<int>(bytes)), 1);
  return out;
}

TEST(MaskGenerate, MaskMatchesOpenSSL) {
  kernels::Modulus m;
  ASSERT_TRUE(kernels::Modulus::Make(kExactModulus, &m).ok());
  kernels::MaskKey key;
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(31 * i + 7);
  const uint64_t stream_id = 0x0123456789abcdefull;
  uint8_t nonce[12] = {0, 0, 0, 0};  // LE32(block >> 32) = 0 below 2^32 blocks
  for (int b = 0; b < 8; ++b) nonce[4 + b] = static_cast<uint8_t>(stream_id >> (8 * b));

  // Element j is bytes 8j..8j+7 of the keystream, mod p (a draw above max_accept, chance
  // 2^-32, would take the fallback path; none occurs in these draws, which the check of
  // every element shows). Random access: a slice starting at `offset` is the same.
  constexpr size_t kCount = 1 << 20;
  const std::vector<uint8_t> stream = OpenSSLKeystream(key, 0, nonce, 8 * kCount);
  std::vector<uint32_t> mask(kCount);
  ASSERT_TRUE(kernels::MaskGenerate(m, key, stream_id, 0, mask.data(), kCount).ok());
  for (size_t j = 0; j < kCount; ++j) {
    uint64_t draw;
    std::memcpy(&draw, stream.data() + 8 * j, 8);
    ASSERT_LE(draw, m.max_accept());
    ASSERT_EQ(mask[j], draw % m.p()) << "element " << j;
  }
  std::vector<uint32_t> slice(1000);
  ASSERT_TRUE(kernels::MaskGenerate(m, key, stream_id, 12345, slice.data(), slice.size()).ok());
  EXPECT_TRUE(std::equal(slice.begin(), slice.end(), mask.begin() + 12345));

  // Throughput, for the record (not asserted): residues per second from the kernel, and
  // from OpenSSL's keystream followed by the reduction mod p that masks need on top.
  using Clock = std::chrono::steady_clock;
  constexpr int kRounds = 8;
  auto start = Clock::now();
  for (int r = 0; r < kRounds; ++r) {
    ASSERT_TRUE(kernels::MaskGenerate(m, key, stream_id, 0, mask.data(), kCount).ok());
  }
  const double kernel_s = std::chrono::duration<double>(Clock::now() - start).count();
  start = Clock::now();
  for (int r = 0; r < kRounds; ++r) {
    const std::vector<uint8_t> s = OpenSSLKeystream(key, 0, nonce, 8 * kCount);
    for (size_t j = 0; j < kCount; ++j) {
      uint64_t draw;
      std::memcpy(&draw, s.data() + 8 * j, 8);
      mask[j] = static_cast<uint32_t>(draw % m.p());
    }
  }
  const double openssl_s = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("[mask] kernel %.0f M residues/s, OpenSSL EVP_chacha20 + mod p %.0f M residues/s\n",
              kRounds * kCount / kernel_s / 1e6, kRounds * kCount / openssl_s / 1e6);
}

}  // namespace
}  // namespace pccl::comm
