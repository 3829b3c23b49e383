// Fuzzes proto::DecodeHashReports, which reads the reports a Verdict of a ReduceMode.VERIFIED
// sum carries: bytes every member wrote and the master relayed. Whatever arrives, it either
// refuses with Integrity or returns exactly one report per rank of the ring; accepted bytes
// are exactly the reports' encodings (a bijection: nothing skipped, nothing read twice).
//
// Input: [0] the ring's world, 1 + byte % 8; [1..] the reports.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "pccl/net/wire.h"
#include "pccl/proto/hash_report.h"
#include "seeds.h"

namespace {

using pccl::proto::HashReport;

std::string Framed(const HashReport& report) {
  const std::string bytes = pccl::proto::EncodeHashReport(report);
  uint8_t length[4];
  pccl::net::PutU32(length, static_cast<uint32_t>(bytes.size()));
  return std::string(reinterpret_cast<const char*>(length), 4) + bytes;
}

// Seeds: honest-looking reports of rings of 1 to 3 peers, in shuffled rank order.
std::string Seed(uint32_t world) {
  std::string out(1, static_cast<char>(world - 1));
  for (uint32_t i = 0; i < world; ++i) {
    HashReport r;
    r.peer_id = 1000 + i;
    r.rank = (i * 2 + 1) % world;
    for (uint32_t c = 0; c < world; ++c) {
      r.input.push_back(7 * c + i);
      r.received.push_back(c == r.rank ? 0 : 11 * c);
      r.result.push_back(13 * c);
    }
    out += Framed(r);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  pccl::fuzz::WriteSeedsIfAsked({Seed(1), Seed(2), Seed(3)});
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return -1;
  const uint32_t world = 1 + data[0] % 8;
  const std::string reports(reinterpret_cast<const char*>(data) + 1, size - 1);
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
    FUZZ_CHECK(Framed(by_rank[rank]) == reports.substr(i * framed, framed));
  }
  return 0;
}
