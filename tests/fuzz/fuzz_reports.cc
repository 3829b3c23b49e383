// Fuzzes the decoders of proto/reports.h, which read the reports a Verdict of an exact
// all-reduce carries: bytes every member wrote and the master relayed. Whatever arrives,
// they either refuse (DataLoss for scale reports, Integrity for hash reports) or return
// exactly one report per member; accepted hash reports are exactly their encodings (a
// bijection: nothing skipped, nothing read twice), an accepted scale is a magnitude that
// one of the reports holds.
//
// Input: [0] bit 7: hash reports (else scale reports); the ring's world, 1 + byte % 8;
// [1..] the reports.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "pccl/net/wire.h"
#include "pccl/proto/reports.h"
#include "seeds.h"

namespace {

using pccl::proto::HashReport;

std::string Framed(const std::string& report) {
  uint8_t length[4];
  pccl::net::PutU32(length, static_cast<uint32_t>(report.size()));
  return std::string(reinterpret_cast<const char*>(length), 4) + report;
}

// Seeds: honest-looking reports of rings of 1 to 3 peers, hash reports in shuffled rank
// order.
std::string HashSeed(uint32_t world) {
  std::string out(1, static_cast<char>(0x80 | (world - 1)));
  for (uint32_t i = 0; i < world; ++i) {
    HashReport r;
    r.peer_id = 1000 + i;
    r.rank = (i * 2 + 1) % world;
    for (uint32_t c = 0; c < world; ++c) {
      r.input.push_back(7 * c + i);
      r.received.push_back(c == r.rank ? 0 : 11 * c);
      r.result.push_back(13 * c);
    }
    out += Framed(pccl::proto::EncodeHashReport(r));
  }
  return out;
}

std::string ScaleSeed(uint32_t world) {
  std::string out(1, static_cast<char>(world - 1));
  for (uint32_t i = 0; i < world; ++i) {
    out += Framed(pccl::proto::EncodeScaleReport(i == 1 ? HUGE_VAL : 1.5 * i));
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  pccl::fuzz::WriteSeedsIfAsked(
      {HashSeed(1), HashSeed(2), HashSeed(3), ScaleSeed(1), ScaleSeed(3)});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return -1;
  const uint32_t world = 1 + (data[0] & 0x7f) % 8;
  const std::string reports(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 0x80) == 0) {
    double largest = -1;
    const pccl::Status st = pccl::proto::LargestOfScaleReports(reports, world, &largest);
    if (!st.ok()) {
      FUZZ_CHECK(st.code() == pccl::StatusCode::kDataLoss);
      return 0;
    }
    FUZZ_CHECK(largest >= 0 && reports.size() == world * 12u);
    bool held = false;
    for (uint32_t i = 0; i < world; ++i) {
      held |= pccl::proto::EncodeScaleReport(largest) == reports.substr(i * 12 + 4, 8);
    }
    FUZZ_CHECK(held);
    return 0;
  }
  std::vector<HashReport> by_rank;
  const pccl::Status st = pccl::proto::DecodeHashReports(reports, world, &by_rank);
  if (!st.ok()) {
    FUZZ_CHECK(st.code() == pccl::StatusCode::kIntegrity);
    return 0;
  }
  FUZZ_CHECK(by_rank.size() == world);
  const size_t framed = 4 + 16 + 12 * size_t{world};
  FUZZ_CHECK(reports.size() == world * framed);
  for (uint32_t i = 0; i < world; ++i) {
    const uint32_t rank = pccl::net::GetU32(data + 1 + i * framed + 4 + 8);
    FUZZ_CHECK(rank < world && by_rank[rank].rank == rank);
    FUZZ_CHECK(Framed(pccl::proto::EncodeHashReport(by_rank[rank])) ==
               reports.substr(i * framed, framed));
  }
  return 0;
}
