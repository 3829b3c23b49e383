// Reports: what the members of an exact all-reduce hand each other through the master
// (comm/exact_allreduce.cc tells the protocol). Each member puts its report in the OpDone
// of a data-less operation (OpDone::report); the success Verdict hands every member all of
// them (Verdict::reports), each as u32 length + bytes, in the order the master got them.
//
// Two kinds, little-endian:
//   scale report: the f64 bits of the member's largest |input| (+inf for NaN or infinity);
//   hash report (ReduceMode.VERIFIED): u64 peer id, u32 rank in the sum's ring, u32 chunks
//     (= the ring's world), then `chunks` u32 hashes of the input, of the received
//     reduce-scatter partial and of the result, in that order.
// A member's report is its own claim: the decoders check the framing and shapes, and say
// which member's report does not fit; what the claims mean is checked by their users.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pccl/common/status.h"

namespace pccl::proto {

// The members' reports of a Verdict, `world` of them; DataLoss if the framing is broken or
// the count differs.
Status SplitReports(const std::string& reports, uint32_t world, std::vector<std::string>* out);

std::string EncodeScaleReport(double largest);
// The largest of the `world` members' scale reports (the group's max |input|); DataLoss
// for a report that is not 8 bytes or holds a negative number (-0 too) or NaN.
Status LargestOfScaleReports(const std::string& reports, uint32_t world, double* largest);

struct HashReport {
  uint64_t peer_id = 0;
  uint32_t rank = 0;
  std::vector<uint32_t> input, received, result;  // one hash per chunk each
};

// The bytes of one report (its three vectors must have the same length).
std::string EncodeHashReport(const HashReport& report);
// The reports of a verdict, indexed by rank, for a ring of `world`: exactly one per rank,
// each of `world` chunks. Integrity (pccl::StatusCode::kIntegrity) saying what is wrong
// otherwise: a verified sum whose reports do not fit fails as one that was falsified.
Status DecodeHashReports(const std::string& reports, uint32_t world,
                         std::vector<HashReport>* by_rank);

}  // namespace pccl::proto
