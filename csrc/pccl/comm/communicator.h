// Communicator: one peer of a pccl run, the C++ API the Python Communicator wraps.
//
// It is the Session (membership, topology, attributes, shared state; comm/session.h) and
// the Collectives that run over the session's ring (comm/collectives.h), behind one
// object. Every collective ends with one round trip to the master, which hands every peer
// of the group the same verdict: a peer applies a result only if every peer succeeded, so
// nobody keeps a result that another discarded.
//
// Thread-safety: every method may be called from any thread (see Session and Collectives).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "pccl/comm/collectives.h"
#include "pccl/comm/session.h"
#include "pccl/common/clock.h"
#include "pccl/common/status.h"

namespace pccl::comm {

class Communicator {
 public:
  explicit Communicator(CommunicatorOptions options)
      : session_(std::move(options)), collectives_(session_) {}
  ~Communicator() { Close(); }
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  // Membership and topology: Session's.
  Status Connect(Deadline deadline) { return session_.Connect(deadline); }
  Status UpdateTopology(Deadline deadline) {
    return Timed(session_.op_stats(), OpKind::kUpdateTopology,
                 [&] { return session_.UpdateTopology(deadline); });
  }
  Status ArePeersPending(Deadline deadline, bool joint, bool* pending, bool wait = false) {
    return session_.ArePeersPending(deadline, joint, pending, wait);
  }
  Status GetAttribute(Attribute attribute, int64_t* value) {
    return session_.GetAttribute(attribute, value);
  }
  Status OptimizeTopology(Deadline deadline) {
    return Timed(session_.op_stats(), OpKind::kOptimizeTopology,
                 [&] { return session_.OptimizeTopology(deadline); });
  }
  std::vector<uint64_t> RingOrder() { return session_.RingOrder(); }
  void RefreshView() { session_.RefreshView(); }
  Status SyncSharedState(const SharedStateSyncRequest& request, Deadline deadline,
                         SharedStateSyncInfo* info) {
    return Timed(session_.op_stats(), OpKind::kSyncSharedState,
                 [&] { return session_.SyncSharedState(request, deadline, info); });
  }

  // Collectives.
  Status Collective(const CollectiveRequest& request, Deadline deadline, ReduceInfo* info) {
    return collectives_.Collective(request, deadline, info);
  }
  Status StartCollective(const CollectiveRequest& request, Deadline deadline,
                         std::unique_ptr<AsyncCollective>* started) {
    return collectives_.StartCollective(request, deadline, started);
  }

  // Says goodbye to the master and stops every thread. Idempotent.
  void Close() { session_.Close(); }

  uint64_t peer_id() const { return session_.peer_id(); }
  uint16_t p2p_port() const { return session_.p2p_port(); }
  std::optional<proto::Reachability> reachability() { return session_.reachability(); }
  Status WaitReachability(Deadline deadline, proto::Reachability* out) {
    return session_.WaitReachability(deadline, out);
  }
  std::vector<Session::LinkInfo> Links() { return session_.Links(); }
  std::array<OpKindStats, kNumOpKinds> OpStatsSnapshot() { return session_.op_stats().Snapshot(); }
  int collectives_in_flight() { return session_.collectives_in_flight(); }

 private:
  Session session_;
  Collectives collectives_;
};

}  // namespace pccl::comm
