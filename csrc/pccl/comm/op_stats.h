// OpStats: how many operations of each kind a peer ran, how many failed, and how long
// they took (Communicator.stats()). The Session owns them; all-reduces are recorded by
// Collectives (blocking and async alike, failures before anything ran too), the control
// calls by comm::Communicator.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>

#include "pccl/common/clock.h"
#include "pccl/common/status.h"

namespace pccl::comm {

enum class OpKind : int {
  kAllReduce = 0,
  kSyncSharedState = 1,
  kUpdateTopology = 2,
  kOptimizeTopology = 3,
  kBroadcast = 4,
  kAllGather = 5,
  kReduceScatter = 6,
  kGather = 7,
  kScatter = 8,
  kAllToAll = 9,
  kSend = 10,
  kRecv = 11,
};
inline constexpr int kNumOpKinds = 12;
const char* OpKindName(OpKind kind);

// Upper bounds, in seconds, of the latency histogram's buckets (the last is +inf).
inline constexpr std::array<double, 8> kLatencyBuckets = {0.001, 0.01, 0.1, 1, 10, 60, 600,
                                                          1e300};

struct OpKindStats {
  uint64_t succeeded = 0;
  uint64_t failed = 0;
  double total_seconds = 0;  // over every call, failed ones too
  double max_seconds = 0;
  std::array<uint64_t, kLatencyBuckets.size()> buckets{};  // calls per latency bucket
};

class OpStats {
 public:
  void Record(OpKind kind, bool ok, Duration took);
  std::array<OpKindStats, kNumOpKinds> Snapshot();

 private:
  std::mutex mu_;
  std::array<OpKindStats, kNumOpKinds> stats_{};
};

// Runs `call` (returning a Status) and records it as one call of `kind`.
template <typename Call>
Status Timed(OpStats& stats, OpKind kind, Call&& call) {
  const TimePoint start = Clock::now();
  Status st = call();
  stats.Record(kind, st.ok(), Clock::now() - start);
  return st;
}

}  // namespace pccl::comm
