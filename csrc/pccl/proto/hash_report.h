// ReduceMode.VERIFIED's reports: what each peer vouches for after a verified sum, and how a
// Verdict carries all of them (comm/exact_allreduce.cc tells the protocol).
//
// One report, little-endian: u64 peer id, u32 rank in the sum's ring, u32 chunks (= the
// ring's world), then `chunks` u32 hashes of the input, of the received reduce-scatter
// partial and of the result, in that order. A Verdict's `reports` holds one per member, each
// as u32 length + report, in the order the master received them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pccl/common/status.h"

namespace pccl::proto {

struct HashReport {
  uint64_t peer_id = 0;
  uint32_t rank = 0;
  std::vector<uint32_t> input, received, result;  // one hash per chunk each
};

// The bytes of one report (its three vectors must have the same length).
std::string EncodeHashReport(const HashReport& report);
// The reports of a verdict, indexed by rank, for a ring of `world`: exactly one per rank,
// each of `world` chunks. Integrity (pccl::StatusCode::kIntegrity) saying what is wrong
// otherwise: a verified sum whose reports do not add up fails as one that was falsified.
Status DecodeHashReports(const std::string& reports, uint32_t world,
                         std::vector<HashReport>* by_rank);

}  // namespace pccl::proto
