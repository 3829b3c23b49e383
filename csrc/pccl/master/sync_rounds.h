// Shared-state rounds: sync_shared_state() of each peer group, from the members' reports
// to one SyncComplete per participant. One of the master's state machines (membership.h
// routes the events to them).
//
// SyncRounds holds each group's round in progress, the revision of each group's last
// successful sync and which peers ever completed one; it reads the group's members from
// the Roster (roster.h) and leaves the choice of content to the election
// (state_election.h). Membership calls it for SyncState and SyncDone, and when a member
// leaves (OnMemberLeft).
//
// Thread-safety: none; the thread that owns the Membership owns its SyncRounds.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "pccl/common/status.h"
#include "pccl/master/roster.h"
#include "pccl/master/step.h"
#include "pccl/proto/messages.h"

namespace pccl::master {

class SyncRounds {
 public:
  // sync_shared_state() from `peer`: joins its group's round, which is planned once every
  // member of the group reported. A member already in a round, or one asking while its
  // group's plan is out, is answered alone with a failed SyncComplete.
  void OnSyncState(const Peer& peer, const proto::SyncState& state, const Roster& roster,
                   Step& step);
  // A participant fetched what its plan said (or failed, or gave up before the plan).
  void OnSyncDone(const Peer& peer, const proto::SyncResult& result, const Roster& roster,
                  Step& step);
  // Member `peer` left (roster no longer lists it): its group's round, if any, fails for
  // the participants that remain, with "shared-state sync failed: <cause>".
  void OnMemberLeft(const Peer& peer, const std::string& cause, const Roster& roster,
                    Step& step);

  // `peer` resumed the run (admission.cc, "Resuming"), its last sync at revision
  // `revision_plus_one` - 1 (0: it never synced): it counts as having synced, and the
  // group's revision is restored to it (RestoreRevision).
  void OnResumed(const Peer& peer, uint64_t revision_plus_one);

  // Observers (tests).
  bool in_progress(uint32_t peer_group) const { return syncs_.count(peer_group) > 0; }
  // The revision of the group's last successful sync, if any.
  std::optional<uint64_t> revision(uint32_t peer_group) const;
  const std::map<uint32_t, uint64_t>& revisions() const { return state_revision_; }
  // A revision learned second hand (a restarted master's state file, a resuming peer):
  // the group's revision becomes the highest such one until this master completes a sync
  // of the group itself (a state file may lag its master's last sync by a moment).
  void RestoreRevision(uint32_t peer_group, uint64_t revision);

 private:
  // A shared-state sync of one peer group: collecting SyncState until every member of the
  // group reported, then (planned) collecting SyncDone until every participant is done.
  struct SyncRound {
    std::vector<std::pair<ConnId, proto::SyncState>> reports;  // report order
    bool planned = false;
    uint64_t revision = 0;
    std::set<ConnId> done;
  };

  // Elects the group's content once every member reported, and sends the plans.
  void MaybePlan(uint32_t peer_group, const Roster& roster, Step& step);
  // Ends the round of `peer_group`: one SyncComplete to each participant still here.
  void Complete(uint32_t peer_group, bool ok, StatusCode code, const std::string& reason,
                const Roster& roster, Step& step);

  std::map<uint32_t, SyncRound> syncs_;  // the round in progress, per group
  // The revision of each group's last successful sync (revisions advance by at most one
  // per sync).
  std::map<uint32_t, uint64_t> state_revision_;
  std::set<uint32_t> witnessed_;  // groups whose revision comes from a sync of this master
  std::set<ConnId> synced_;  // members that completed a sync
};

}  // namespace pccl::master
