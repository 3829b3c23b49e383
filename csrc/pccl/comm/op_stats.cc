#include "pccl/comm/op_stats.h"

#include <algorithm>
#include <chrono>

namespace pccl::comm {

const char* OpKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kAllReduce: return "all_reduce";
    case OpKind::kSyncSharedState: return "sync_shared_state";
    case OpKind::kUpdateTopology: return "update_topology";
    case OpKind::kOptimizeTopology: return "optimize_topology";
    case OpKind::kBroadcast: return "broadcast";
    case OpKind::kAllGather: return "all_gather";
    case OpKind::kReduceScatter: return "reduce_scatter";
    case OpKind::kGather: return "gather";
    case OpKind::kScatter: return "scatter";
    case OpKind::kAllToAll: return "all_to_all";
    case OpKind::kSend: return "send";
    case OpKind::kRecv: return "recv";
  }
  return "?";
}

void OpStats::Record(OpKind kind, bool ok, Duration took) {
  const double seconds = std::chrono::duration<double>(took).count();
  std::lock_guard<std::mutex> lock(mu_);
  OpKindStats& s = stats_[static_cast<int>(kind)];
  ++(ok ? s.succeeded : s.failed);
  s.total_seconds += seconds;
  s.max_seconds = std::max(s.max_seconds, seconds);
  for (size_t b = 0; b < kLatencyBuckets.size(); ++b) {
    if (seconds <= kLatencyBuckets[b]) {
      ++s.buckets[b];
      break;
    }
  }
}

std::array<OpKindStats, kNumOpKinds> OpStats::Snapshot() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace pccl::comm
