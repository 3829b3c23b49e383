#include "pccl/master/sync_rounds.h"

#include <algorithm>

#include "pccl/master/state_election.h"

namespace pccl::master {

// The story of a run, as the master sees it: shared state.
// (Joining, voting, epochs and leaving: admission.cc.)
//
// Shared state. A member calls sync_shared_state(), which sends SyncState (revision,
// strategy, per-entry hashes). Once every member of its group has, the election
// (state_election.h) picks the content and each member gets a SyncPlan; members fetch what
// differs from their sources over p2p and report SyncDone. Every participant gets one
// SyncComplete per round: success when all are done, failure as soon as the election fails,
// one fails, or a member of the group leaves (sources serve until SyncComplete). A
// participant that gives up before the plan (its call's deadline) fails the round for
// everyone at once, so that the group's next sync starts afresh instead of waiting on a
// round that cannot complete.

std::optional<uint64_t> SyncRounds::revision(uint32_t peer_group) const {
  auto it = state_revision_.find(peer_group);
  if (it == state_revision_.end()) return std::nullopt;
  return it->second;
}

void SyncRounds::OnSyncState(const Peer& peer, const proto::SyncState& state,
                             const Roster& roster, Step& step) {
  if (peer.role != Role::kMember) {
    step.Refuse(peer.conn, Describe(peer) + " is pending and has no shared state to sync");
    return;
  }
  SyncRound& round = syncs_[peer.peer_group];
  bool again = std::any_of(round.reports.begin(), round.reports.end(),
                           [&](const auto& r) { return r.first == peer.conn; });
  if (round.planned || again) {
    // Answer this request alone; the round in progress goes on without it.
    proto::SyncResult refused{state.call, 0,
                              static_cast<uint32_t>(StatusCode::kFailedPrecondition),
                              Describe(peer) + " started a shared-state sync while group " +
                                  std::to_string(peer.peer_group) + "'s sync is in progress"};
    step.SendTo(peer.conn, proto::Kind::kSyncComplete, proto::Encode(refused));
    return;
  }
  round.reports.emplace_back(peer.conn, state);
  MaybePlan(peer.peer_group, roster, step);
}

void SyncRounds::MaybePlan(uint32_t peer_group, const Roster& roster, Step& step) {
  SyncRound& round = syncs_[peer_group];
  std::map<ConnId, const proto::SyncState*> by_conn;
  for (const auto& [conn, state] : round.reports) by_conn[conn] = &state;
  std::vector<SyncParticipant> participants;
  std::vector<ConnId> conns;
  for (ConnId m : roster.GroupMembers(peer_group)) {
    auto it = by_conn.find(m);
    if (it == by_conn.end()) return;  // not everyone reported yet
    const Peer& p = roster.at(m);
    participants.push_back(
        SyncParticipant{p.peer_id, p.host, p.port, synced_.count(m) > 0, *it->second});
    conns.push_back(m);
  }
  Election election = ElectSharedState(participants, revision(peer_group));
  if (!election.status.ok()) {
    Complete(peer_group, false, election.status.code(), election.status.message(), roster,
             step);
    return;
  }
  round.planned = true;
  round.revision = election.revision;
  for (size_t i = 0; i < conns.size(); ++i) {
    election.plans[i].call = by_conn.at(conns[i])->call;
    step.SendTo(conns[i], proto::Kind::kSyncPlan, proto::Encode(election.plans[i]));
  }
}

void SyncRounds::OnSyncDone(const Peer& peer, const proto::SyncResult& result,
                            const Roster& roster, Step& step) {
  auto it = syncs_.find(peer.peer_group);
  if (it == syncs_.end()) return;  // its round failed already
  SyncRound& round = it->second;
  bool participant = std::any_of(round.reports.begin(), round.reports.end(), [&](const auto& r) {
    return r.first == peer.conn && r.second.call == result.call;
  });
  if (!participant) return;  // a report of an earlier, failed round
  // A failure before the plan: the participant gave up waiting (its call's deadline). The
  // round cannot complete without it, so it fails for everyone now instead of blocking
  // every later sync of the group.
  if (!round.planned && result.ok) return;
  if (!result.ok) {
    std::string cause = result.reason.empty() ? "no reason given" : result.reason;
    Complete(peer.peer_group, false, MemberReportedCode(result.code),
             Describe(peer) + " failed its shared-state transfer: " + cause, roster, step);
    return;
  }
  round.done.insert(peer.conn);
  for (const auto& [conn, state] : round.reports) {
    if (!round.done.count(conn)) return;
  }
  Complete(peer.peer_group, true, StatusCode::kOk, "", roster, step);
}

void SyncRounds::OnResumed(const Peer& peer, uint64_t revision_plus_one) {
  if (revision_plus_one == 0) return;  // it never synced
  synced_.insert(peer.conn);
  RestoreRevision(peer.peer_group, revision_plus_one - 1);
}

void SyncRounds::RestoreRevision(uint32_t peer_group, uint64_t revision) {
  // A restarted master learns the group's revision from its file and its peers: the next
  // sync may advance it by one, as before the restart. A master that saw a sync of the
  // group knows better than any peer's word.
  if (witnessed_.count(peer_group)) return;
  uint64_t& known = state_revision_.try_emplace(peer_group, revision).first->second;
  known = std::max(known, revision);
}

void SyncRounds::OnMemberLeft(const Peer& peer, const std::string& cause, const Roster& roster,
                              Step& step) {
  synced_.erase(peer.conn);
  // A shared-state sync of its group can no longer complete (it may be a source).
  if (!syncs_.count(peer.peer_group)) return;
  Complete(peer.peer_group, false, StatusCode::kAborted, "shared-state sync failed: " + cause,
           roster, step);
}

void SyncRounds::Complete(uint32_t peer_group, bool ok, StatusCode code,
                          const std::string& reason, const Roster& roster, Step& step) {
  auto it = syncs_.find(peer_group);
  if (it == syncs_.end()) return;
  SyncRound round = std::move(it->second);
  syncs_.erase(it);
  if (ok) {
    state_revision_[peer_group] = round.revision;
    witnessed_.insert(peer_group);
  }
  proto::SyncResult result{0, static_cast<uint8_t>(ok ? 1 : 0),
                           ok ? 0u : static_cast<uint32_t>(code),
                           reason.substr(0, proto::kMaxReasonLength)};
  for (const auto& [conn, state] : round.reports) {
    if (roster.Find(conn) == nullptr) continue;  // left (the round failed for that)
    if (ok) synced_.insert(conn);
    result.call = state.call;
    step.SendTo(conn, proto::Kind::kSyncComplete, proto::Encode(result));
  }
}

}  // namespace pccl::master
