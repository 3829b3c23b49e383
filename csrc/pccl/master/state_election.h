// The master's shared-state election: from every peer's SyncState (hashes only), which
// content the group keeps, at which revision, and what each peer fetches from whom.
//
// A pure function, called by Membership once every member of a peer group has reported;
// tests call it directly.
//
// Thread-safety: pure function of its arguments.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pccl/common/status.h"
#include "pccl/proto/messages.h"

namespace pccl::master {

// One participant of a sync round, in ring order.
struct SyncParticipant {
  uint64_t peer_id = 0;
  std::string host;  // where other peers reach its p2p listener
  uint16_t port = 0;
  bool ever_synced = false;  // completed a sync before (allow_content_inequality entries)
  proto::SyncState state;
};

struct Election {
  Status status;  // not OK: the round fails on every peer with this status
  uint64_t revision = 0;
  std::vector<proto::SyncPlan> plans;  // one per participant, same order
};

// `last_revision`: the revision of the group's last successful sync, if any.
Election ElectSharedState(const std::vector<SyncParticipant>& peers,
                          std::optional<uint64_t> last_revision);

}  // namespace pccl::master
