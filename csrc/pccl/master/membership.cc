#include "pccl/master/membership.h"

#include <algorithm>
#include <random>

#include "pccl/common/logging.h"
#include "pccl/master/ring_solver.h"

namespace pccl::master {

// The story of a run, as the master sees it.
//
// Joining. A peer connects and says Hello. It gets a fresh random peer id. If the run is
// empty the peer is admitted at once (Welcome accepted=1) and becomes epoch 1's only
// member. Otherwise it is pending (Welcome accepted=0) until the members vote it in.
//
// Voting. A member calls update_topology(), which sends VoteTopology. With nobody pending
// the answer is TopologyUnchanged, at once. With someone pending the vote is recorded;
// when every member has voted, the next epoch starts with the members in their ring order
// followed by the pending peers in arrival order. A vote that arrives during a link phase
// is answered by the TopologyComplete that ends it. If the pending peers leave before the
// round finishes, the voters get TopologyUnchanged. If a member leaves before the round
// finishes, the survivors' epoch starts without the pending peers (the voters take its
// Topology as their answer) but their votes carry over: the round completes as soon as
// the remaining members have voted too.
//
// Epochs and links. Starting an epoch sends Topology(epoch, members) to every member; each
// connects its ring neighbours and reports LinksReady(epoch). When all have, every member
// gets TopologyComplete(epoch). Members not ready by the link deadline are dropped and the
// next epoch starts with the rest.
//
// Verdicts. After a collective a member reports OpDone(key, ok, descriptor hash). The
// master answers the whole peer group with one verdict: failure as soon as one member
// failed or two hashes differ, success once every member of the group reported ok with
// equal hashes. Decided verdicts are kept (bounded) for late reporters. Collectives carry
// their group's ring epoch: the epoch in which the group's ring (members and order) last
// changed. A new epoch that changes a group's ring fails that group's undecided
// collectives and forgets its verdicts; groups whose ring stays the same carry on.
//
// Shared state. A member calls sync_shared_state(), which sends SyncState (revision,
// strategy, per-entry hashes). Once every member of its group has, the election
// (state_election.h) picks the content and each member gets a SyncPlan; members fetch what
// differs from their sources over p2p and report SyncDone. Every participant gets one
// SyncComplete per round: success when all are done, failure as soon as the election fails,
// one fails, or a member of the group leaves (sources serve until SyncComplete).
//
// Ring order. Every member calls optimize_topology(), which sends OptimizeTopology. Once
// all have (and no link phase runs), the master measures the pairs of each group whose
// bandwidth it does not know or measured too long ago: in round k, the i-th member of a
// group probes the (i+k)-th, so each member sends one probe and receives one at a time,
// and every member reports each round before the next starts. Then each group's ring is
// solved (ring_solver.h) and, if the order changes, a new epoch starts in that order
// (Topology ... TopologyComplete answers the members); otherwise every member gets
// TopologyUnchanged. Any epoch change (a peer left) ends the round: its Topology answers
// the members, whose later reports are ignored.
//
// Leaving. Goodbye, a disconnect, a protocol error or a link timeout removes a peer. A
// pending peer is simply forgotten. A removed member fails the undecided collectives of
// its group, and the survivors start a new epoch (which restarts any link phase). When the
// last member leaves while peers are pending, the pending peers become the run, since
// nobody is left to vote them in.

namespace {

std::string HashText(uint64_t h) {
  static const char* kDigits = "0123456789abcdef";
  std::string s = "0x";
  for (int shift = 60; shift >= 0; shift -= 4) s.push_back(kDigits[(h >> shift) & 0xF]);
  return s;
}

std::string Millis(Duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) +
         " ms";
}

}  // namespace

Membership::Membership(MembershipOptions options, PeerIdGenerator ids)
    : options_(options), ids_(std::move(ids)) {
  if (!ids_) {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    ids_ = [engine = std::mt19937_64(seed)]() mutable { return engine(); };
  }
}

std::vector<Action> Membership::Handle(const Event& event, TimePoint now) {
  Step step{now, {}};
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (!std::is_same_v<T, event::Tick>) {
          auto it = peers_.find(e.conn);
          if (it != peers_.end()) it->second.last_seen = now;
        }
        if constexpr (std::is_same_v<T, event::Heartbeat>) {
          OnHeartbeat(e.conn, step);
        } else if constexpr (std::is_same_v<T, event::Hello>) {
          OnHello(e, step);
        } else if constexpr (std::is_same_v<T, event::VoteTopology>) {
          OnVote(e, step);
        } else if constexpr (std::is_same_v<T, event::LinksReady>) {
          OnLinksReady(e, step);
        } else if constexpr (std::is_same_v<T, event::QueryPending>) {
          OnQueryPending(e, step);
        } else if constexpr (std::is_same_v<T, event::OpDone>) {
          OnOpDone(e, step);
        } else if constexpr (std::is_same_v<T, event::Goodbye> ||
                             std::is_same_v<T, event::Disconnected>) {
          OnLeave(e.conn, step);
        } else if constexpr (std::is_same_v<T, event::SyncState>) {
          OnSyncState(e, step);
        } else if constexpr (std::is_same_v<T, event::SyncDone>) {
          OnSyncDone(e, step);
        } else if constexpr (std::is_same_v<T, event::OptimizeTopology>) {
          OnOptimize(e, step);
        } else if constexpr (std::is_same_v<T, event::BandwidthReport>) {
          OnBandwidthReport(e, step);
        } else if constexpr (std::is_same_v<T, event::ProtocolError>) {
          OnProtocolError(e.conn, e.reason, step);
        } else {
          OnTick(step);
        }
      },
      event);
  return std::move(step.actions);
}

TimePoint Membership::NextDeadline() const {
  TimePoint next = link_phase_ ? link_deadline_ : TimePoint::max();
  for (const auto& [conn, peer] : peers_) {
    next = std::min(next, peer.last_seen + options_.heartbeat_timeout);
  }
  return next;
}

std::vector<uint64_t> Membership::MemberIds() const {
  std::vector<uint64_t> out;
  for (ConnId c : members_) out.push_back(peers_.at(c).peer_id);
  return out;
}

std::vector<uint64_t> Membership::PendingIds() const {
  std::vector<uint64_t> out;
  for (ConnId c : pending_) out.push_back(peers_.at(c).peer_id);
  return out;
}

std::optional<double> Membership::MeasuredBandwidth(uint64_t from_peer_id,
                                                   uint64_t to_peer_id) const {
  auto it = bandwidth_.find({from_peer_id, to_peer_id});
  if (it == bandwidth_.end()) return std::nullopt;
  return it->second.bytes_per_second;
}

// --- events ------------------------------------------------------------------------------

void Membership::OnHello(const event::Hello& e, Step& step) {
  if (const Peer* p = FindPeer(e.conn)) {
    Reject(e.conn, Describe(*p) + " sent a second Hello", step);
    return;
  }
  Peer peer;
  peer.conn = e.conn;
  peer.peer_id = NewPeerId();
  peer.host = e.hello.advertise_host.empty() ? e.observed_host : e.hello.advertise_host;
  peer.port = e.hello.p2p_port;
  peer.peer_group = e.hello.peer_group;
  peer.last_seen = step.now;
  peers_[e.conn] = peer;

  proto::Welcome welcome;
  welcome.peer_id = peer.peer_id;
  welcome.heartbeat_interval_ms = static_cast<uint32_t>(std::max<int64_t>(
      1, std::chrono::duration_cast<std::chrono::milliseconds>(options_.heartbeat_timeout).count() /
             4));
  if (members_.empty()) {
    // An empty run has no vote and no link phase: the first peer is the run.
    welcome.accepted = 1;
    SendTo(e.conn, proto::Kind::kWelcome, proto::Encode(welcome), step);
    StartEpoch({e.conn}, "the first peer joined", step);
    return;
  }
  welcome.accepted = 0;
  pending_.push_back(e.conn);
  SendTo(e.conn, proto::Kind::kWelcome, proto::Encode(welcome), step);
}

void Membership::OnVote(const event::VoteTopology& e, Step& step) {
  const Peer* p = FindPeer(e.conn);
  if (p == nullptr) {
    Reject(e.conn, "first message must be Hello, got VoteTopology", step);
    return;
  }
  if (p->role != Role::kMember) {
    Refuse(e.conn, Describe(*p) + " is pending: only members vote on the topology", step);
    return;
  }
  if (link_phase_) return;  // answered by this link phase's TopologyComplete
  if (pending_.empty()) {
    SendTo(e.conn, proto::Kind::kTopologyUnchanged, "", step);
    return;
  }
  votes_[e.conn] = e.vote;
  MaybeAdmit(step);
}

void Membership::MaybeAdmit(Step& step) {
  if (link_phase_ || pending_.empty() || members_.empty()) return;
  for (ConnId m : members_) {
    if (!votes_.count(m)) return;
  }
  if (!StartedOpsDecided()) return;  // OnOpDone calls again after each verdict
  std::vector<ConnId> next = members_;
  next.insert(next.end(), pending_.begin(), pending_.end());
  StartEpoch(std::move(next), "pending peers were admitted", step);
}

bool Membership::StartedOpsDecided() const {
  // Only the groups that gain a peer change their ring; the others' collectives carry on.
  std::set<uint32_t> changing;
  for (ConnId c : pending_) changing.insert(peers_.at(c).peer_group);
  for (uint32_t group : changing) {
    const proto::Vote* first = nullptr;
    bool agree = true;
    for (ConnId m : GroupMembers(group)) {
      const proto::Vote& vote = votes_.at(m);
      if (vote.ring_epoch != RingEpoch(group)) agree = false;  // voted on an older ring
      if (first == nullptr) first = &vote;
      if (vote.started.size() != first->started.size()) agree = false;
      for (size_t i = 0; agree && i < vote.started.size(); ++i) {
        agree = vote.started[i].tag == first->started[i].tag &&
                vote.started[i].count == first->started[i].count;
      }
      if (!agree) break;
    }
    // Collectives that not every member started can never complete: the new epoch fails
    // them. Those that all started finish on the old ring first.
    if (!agree || first == nullptr) continue;
    for (const proto::TagCount& t : first->started) {
      auto it = decided_seqs_.find({group, t.tag});
      if (it == decided_seqs_.end() || it->second.prefix < t.count) return false;
    }
  }
  return true;
}

void Membership::OnLinksReady(const event::LinksReady& e, Step& step) {
  const Peer* p = FindPeer(e.conn);
  if (p == nullptr) {
    Reject(e.conn, "first message must be Hello, got LinksReady", step);
    return;
  }
  if (p->role != Role::kMember) {
    Refuse(e.conn, Describe(*p) + " is pending and has no ring links to report", step);
    return;
  }
  if (e.epoch < epoch_) {
    // A race, not a mistake: the epoch changed (a peer left) while this member built its
    // links. It has the newer Topology queued and will report that one.
    return;
  }
  if (e.epoch != epoch_) {
    Refuse(e.conn,
           "LinksReady for epoch " + std::to_string(e.epoch) + ", but the current epoch is " +
               std::to_string(epoch_),
           step);
    return;
  }
  if (!link_phase_) return;  // a repeat after TopologyComplete: nothing to do
  links_ready_.insert(e.conn);
  for (ConnId m : members_) {
    if (!links_ready_.count(m)) return;
  }
  link_phase_ = false;
  link_deadline_ = TimePoint::max();
  links_ready_.clear();
  proto::TopologyComplete done{epoch_};
  for (ConnId m : members_) SendTo(m, proto::Kind::kTopologyComplete, proto::Encode(done), step);
  MaybeStartOptimize(step);
}

void Membership::OnQueryPending(const event::QueryPending& e, Step& step) {
  if (FindPeer(e.conn) == nullptr) {
    Reject(e.conn, "first message must be Hello, got QueryPending", step);
    return;
  }
  if (!e.joint || FindPeer(e.conn)->role != Role::kMember) {  // answered alone, at once
    proto::PendingReply reply{e.seq, static_cast<uint8_t>(pending_.empty() ? 0 : 1)};
    SendTo(e.conn, proto::Kind::kPendingReply, proto::Encode(reply), step);
    return;
  }
  pending_queries_[e.conn] = e.seq;
  MaybeAnswerPending(step);
}

void Membership::MaybeAnswerPending(Step& step) {
  if (pending_queries_.empty()) return;
  for (ConnId m : members_) {
    if (!pending_queries_.count(m)) return;
  }
  // Every member asked: all get the same answer, so all take the same branch.
  const uint8_t pending = pending_.empty() ? 0 : 1;
  for (const auto& [conn, seq] : pending_queries_) {
    SendTo(conn, proto::Kind::kPendingReply, proto::Encode(proto::PendingReply{seq, pending}),
           step);
  }
  pending_queries_.clear();
}

void Membership::OnOpDone(const event::OpDone& e, Step& step) {
  const Peer* p = FindPeer(e.conn);
  if (p == nullptr) {
    Reject(e.conn, "first message must be Hello, got OpDone", step);
    return;
  }
  const proto::OpKey& key = e.op.key;
  if (p->role != Role::kMember) {
    Refuse(e.conn, Describe(*p) + " is pending and takes part in no collective", step);
    return;
  }
  if (key.peer_group != p->peer_group) {
    Refuse(e.conn,
           Describe(*p) + " is in peer group " + std::to_string(p->peer_group) +
               " but reported " + key.ToString(),
           step);
    return;
  }
  auto answer_sender = [&](const proto::Verdict& v) {
    SendTo(e.conn, proto::Kind::kVerdict, proto::Encode(v), step);
  };
  if (key.epoch != RingEpoch(key.peer_group)) {
    answer_sender(proto::Verdict{key, 0,
                                 "the ring changed while " + key.ToString() +
                                     " ran (now epoch " + std::to_string(epoch_) + ": " +
                                     epoch_cause_ + "); retry"});
    return;
  }
  if (auto it = decided_.find(key); it != decided_.end()) {
    answer_sender(it->second);
    return;
  }
  auto it = open_ops_.find(key);
  if (it == open_ops_.end()) {
    if (open_ops_.size() >= options_.max_open_ops) {
      answer_sender(proto::Verdict{key, 0,
                                   "the master tracks " + std::to_string(open_ops_.size()) +
                                       " undecided collectives, its limit"});
      return;
    }
    it = open_ops_.emplace(key, OpState{}).first;
  }
  OpState& op = it->second;
  for (const auto& [conn, report] : op.reports) {
    if (conn == e.conn) {
      Refuse(e.conn, Describe(*p) + " reported " + key.ToString() + " twice", step);
      return;
    }
  }
  Report report{e.op.ok != 0, e.op.descriptor_hash};
  if (!report.ok) {
    std::string cause = e.op.reason.empty() ? "no reason given" : e.op.reason;
    StatusCode code = e.op.code > static_cast<uint32_t>(StatusCode::kOk) &&
                              e.op.code <= static_cast<uint32_t>(StatusCode::kKicked)
                          ? static_cast<StatusCode>(e.op.code)
                          : StatusCode::kAborted;
    Decide(key, false, Describe(*p) + " failed " + key.ToString() + ": " + cause, step, code);
    MaybeAdmit(step);
    return;
  }
  for (const auto& [conn, earlier] : op.reports) {
    if (earlier.descriptor_hash != report.descriptor_hash) {
      const Peer* q = FindPeer(conn);
      std::string other =
          q != nullptr ? Describe(*q) : "peer on connection " + std::to_string(conn);
      Decide(key, false,
             "descriptor mismatch on " + key.ToString() + ": " + other + " has " +
                 HashText(earlier.descriptor_hash) + ", " + Describe(*p) + " has " +
                 HashText(report.descriptor_hash) + " (count, dtype, op or quantization differ)",
             step, StatusCode::kInvalidArgument);
      MaybeAdmit(step);
      return;
    }
  }
  op.reports.emplace_back(e.conn, report);
  for (ConnId m : GroupMembers(key.peer_group)) {
    bool reported = std::any_of(op.reports.begin(), op.reports.end(),
                                [m](const auto& r) { return r.first == m; });
    if (!reported) return;
  }
  Decide(key, true, "", step);
  MaybeAdmit(step);  // a vote may wait for this collective
}

void Membership::OnOptimize(const event::OptimizeTopology& e, Step& step) {
  const Peer* p = FindPeer(e.conn);
  if (p == nullptr) {
    Reject(e.conn, "first message must be Hello, got OptimizeTopology", step);
    return;
  }
  if (p->role != Role::kMember) {
    Refuse(e.conn, Describe(*p) + " is pending: only members optimize the topology", step);
    return;
  }
  // Sent before the peer saw the newer epoch's Topology, which answered it.
  if (e.epoch < epoch_) return;
  if (e.epoch > epoch_ || optimize_.requested.count(e.conn) || optimize_.measuring) {
    Refuse(e.conn,
           Describe(*p) + " asked to optimize the topology of epoch " + std::to_string(e.epoch) +
               (optimize_.measuring ? " while a measurement round is in progress"
                                    : ", but the current epoch is " + std::to_string(epoch_) +
                                          " (or it asked twice)"),
           step);
    return;
  }
  optimize_.requested.insert(e.conn);
  MaybeStartOptimize(step);
}

void Membership::MaybeStartOptimize(Step& step) {
  if (link_phase_ || optimize_.measuring || optimize_.requested.empty()) return;
  for (ConnId m : members_) {
    if (!optimize_.requested.count(m)) return;
  }
  // The pairs to measure: within each group (rings are per group), those never measured
  // or measured too long ago, scheduled as shifts of the group's ring order.
  std::map<uint32_t, std::vector<ConnId>> groups;
  for (ConnId m : members_) groups[peers_.at(m).peer_group].push_back(m);
  size_t largest = 0;
  for (const auto& [group, conns] : groups) largest = std::max(largest, conns.size());
  std::vector<std::map<ConnId, ConnId>> rounds;
  for (size_t shift = 1; shift < largest; ++shift) {
    std::map<ConnId, ConnId> round;
    for (const auto& [group, conns] : groups) {
      if (shift >= conns.size()) continue;
      for (size_t i = 0; i < conns.size(); ++i) {
        ConnId from = conns[i];
        ConnId to = conns[(i + shift) % conns.size()];
        auto it = bandwidth_.find({peers_.at(from).peer_id, peers_.at(to).peer_id});
        if (it == bandwidth_.end() || step.now - it->second.when >= options_.bandwidth_max_age) {
          round[from] = to;
        }
      }
    }
    if (!round.empty()) rounds.push_back(std::move(round));
  }
  optimize_.measuring = true;
  optimize_.rounds = std::move(rounds);
  optimize_.round = 0;
  if (optimize_.rounds.empty()) {
    FinishOptimize(step);
    return;
  }
  SendMeasureRound(step);
}

void Membership::SendMeasureRound(Step& step) {
  optimize_.reported.clear();
  const auto& round = optimize_.rounds[optimize_.round];
  for (ConnId m : members_) {
    proto::MeasureBandwidth measure;
    measure.round = static_cast<uint32_t>(optimize_.round);
    measure.duration_ms = static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(options_.probe_duration).count());
    if (auto it = round.find(m); it != round.end()) {
      const Peer& t = peers_.at(it->second);
      measure.targets.push_back(proto::Member{t.peer_id, t.host, t.port, t.peer_group});
    }
    SendTo(m, proto::Kind::kMeasureBandwidth, proto::Encode(measure), step);
  }
}

void Membership::OnBandwidthReport(const event::BandwidthReport& e, Step& step) {
  const Peer* p = FindPeer(e.conn);
  if (p == nullptr) {
    Reject(e.conn, "first message must be Hello, got BandwidthReport", step);
    return;
  }
  // A report of a round that an epoch change ended.
  if (!optimize_.measuring || e.report.round != optimize_.round) return;
  const auto& round = optimize_.rounds[optimize_.round];
  auto assigned = round.find(e.conn);
  for (const proto::BandwidthSample& sample : e.report.samples) {
    if (assigned == round.end() || peers_.at(assigned->second).peer_id != sample.to_peer_id ||
        e.report.samples.size() != 1) {
      Refuse(e.conn, Describe(*p) + " reported bandwidth to peers it was not asked to probe",
             step);
      return;
    }
    bandwidth_[{p->peer_id, sample.to_peer_id}] =
        Measurement{static_cast<double>(sample.bytes_per_second), step.now};
    PCCL_LOG(kInfo, "master: bandwidth " + Describe(*p) + " -> peer " +
                        std::to_string(sample.to_peer_id) + ": " +
                        std::to_string(sample.bytes_per_second / 1000000) + " MB/s");
  }
  optimize_.reported.insert(e.conn);
  for (ConnId m : members_) {
    if (!optimize_.reported.count(m)) return;
  }
  if (++optimize_.round < optimize_.rounds.size()) {
    SendMeasureRound(step);
    return;
  }
  FinishOptimize(step);
}

void Membership::FinishOptimize(Step& step) {
  optimize_ = OptimizeRound{};
  // Each group's members keep their slots in members_; only their order among those
  // slots changes, so the groups stay interleaved as before.
  std::map<uint32_t, std::vector<size_t>> slots;
  for (size_t i = 0; i < members_.size(); ++i) slots[peers_.at(members_[i]).peer_group].push_back(i);
  std::vector<ConnId> next = members_;
  for (const auto& [group, positions] : slots) {
    const size_t n = positions.size();
    BandwidthMatrix matrix(n, std::vector<double>(n, 0));
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < n; ++j) {
        if (i == j) continue;
        auto it = bandwidth_.find({peers_.at(members_[positions[i]]).peer_id,
                                   peers_.at(members_[positions[j]]).peer_id});
        if (it != bandwidth_.end()) matrix[i][j] = it->second.bytes_per_second;
      }
    }
    std::vector<int> current(n);
    for (size_t i = 0; i < n; ++i) current[i] = static_cast<int>(i);
    std::vector<int> order = SolveRing(matrix, current);
    for (size_t i = 0; i < n; ++i) next[positions[i]] = members_[positions[order[i]]];
  }
  if (next == members_) {
    for (ConnId m : members_) SendTo(m, proto::Kind::kTopologyUnchanged, "", step);
    return;
  }
  PCCL_LOG(kInfo, "master: optimize_topology() found a better ring order");
  StartEpoch(std::move(next), "optimize_topology() reordered the ring", step);
}

void Membership::OnSyncState(const event::SyncState& e, Step& step) {
  const Peer* p = FindPeer(e.conn);
  if (p == nullptr) {
    Reject(e.conn, "first message must be Hello, got SyncState", step);
    return;
  }
  if (p->role != Role::kMember) {
    Refuse(e.conn, Describe(*p) + " is pending and has no shared state to sync", step);
    return;
  }
  SyncRound& round = syncs_[p->peer_group];
  bool again = std::any_of(round.reports.begin(), round.reports.end(),
                           [&](const auto& r) { return r.first == e.conn; });
  if (round.planned || again) {
    // Answer this request alone; the round in progress goes on without it.
    proto::SyncResult refused{e.state.call, 0,
                              static_cast<uint32_t>(StatusCode::kFailedPrecondition),
                              Describe(*p) + " started a shared-state sync while group " +
                                  std::to_string(p->peer_group) + "'s sync is in progress"};
    SendTo(e.conn, proto::Kind::kSyncComplete, proto::Encode(refused), step);
    return;
  }
  round.reports.emplace_back(e.conn, e.state);
  MaybePlanSync(p->peer_group, step);
}

void Membership::MaybePlanSync(uint32_t peer_group, Step& step) {
  SyncRound& round = syncs_[peer_group];
  std::map<ConnId, const proto::SyncState*> by_conn;
  for (const auto& [conn, state] : round.reports) by_conn[conn] = &state;
  std::vector<SyncParticipant> participants;
  std::vector<ConnId> conns;
  for (ConnId m : GroupMembers(peer_group)) {
    auto it = by_conn.find(m);
    if (it == by_conn.end()) return;  // not everyone reported yet
    const Peer& p = peers_.at(m);
    participants.push_back(SyncParticipant{p.peer_id, p.host, p.port, p.synced_state, *it->second});
    conns.push_back(m);
  }
  std::optional<uint64_t> last;
  if (auto it = state_revision_.find(peer_group); it != state_revision_.end()) last = it->second;
  Election election = ElectSharedState(participants, last);
  if (!election.status.ok()) {
    CompleteSync(peer_group, false, election.status.code(), election.status.message(), step);
    return;
  }
  round.planned = true;
  round.revision = election.revision;
  for (size_t i = 0; i < conns.size(); ++i) {
    election.plans[i].call = by_conn.at(conns[i])->call;
    SendTo(conns[i], proto::Kind::kSyncPlan, proto::Encode(election.plans[i]), step);
  }
}

void Membership::OnSyncDone(const event::SyncDone& e, Step& step) {
  const Peer* p = FindPeer(e.conn);
  if (p == nullptr) {
    Reject(e.conn, "first message must be Hello, got SyncDone", step);
    return;
  }
  auto it = syncs_.find(p->peer_group);
  if (it == syncs_.end()) return;  // its round failed already
  SyncRound& round = it->second;
  bool participant = std::any_of(round.reports.begin(), round.reports.end(), [&](const auto& r) {
    return r.first == e.conn && r.second.call == e.result.call;
  });
  if (!participant) return;  // a report of an earlier, failed round
  // A failure before the plan: the participant gave up waiting (its call's deadline). The
  // round cannot complete without it, so it fails for everyone now instead of blocking
  // every later sync of the group.
  if (!round.planned && e.result.ok) return;
  if (!e.result.ok) {
    StatusCode code = e.result.code > static_cast<uint32_t>(StatusCode::kOk) &&
                              e.result.code <= static_cast<uint32_t>(StatusCode::kKicked)
                          ? static_cast<StatusCode>(e.result.code)
                          : StatusCode::kAborted;
    std::string cause = e.result.reason.empty() ? "no reason given" : e.result.reason;
    CompleteSync(p->peer_group, false, code,
                 Describe(*p) + " failed its shared-state transfer: " + cause, step);
    return;
  }
  round.done.insert(e.conn);
  for (const auto& [conn, state] : round.reports) {
    if (!round.done.count(conn)) return;
  }
  CompleteSync(p->peer_group, true, StatusCode::kOk, "", step);
}

void Membership::CompleteSync(uint32_t peer_group, bool ok, StatusCode code,
                              const std::string& reason, Step& step) {
  auto it = syncs_.find(peer_group);
  if (it == syncs_.end()) return;
  SyncRound round = std::move(it->second);
  syncs_.erase(it);
  if (ok) state_revision_[peer_group] = round.revision;
  proto::SyncResult result{0, static_cast<uint8_t>(ok ? 1 : 0),
                           ok ? 0u : static_cast<uint32_t>(code),
                           reason.substr(0, proto::kMaxReasonLength)};
  for (const auto& [conn, state] : round.reports) {
    auto peer = peers_.find(conn);
    if (peer == peers_.end()) continue;
    if (ok) peer->second.synced_state = true;
    result.call = state.call;
    SendTo(conn, proto::Kind::kSyncComplete, proto::Encode(result), step);
  }
}

void Membership::OnLeave(ConnId conn, Step& step) {
  if (FindPeer(conn) == nullptr) return;  // never said Hello: nothing to forget
  RemovePeers({conn}, [this](const Peer& p) { return Describe(p) + " left"; }, step);
}

void Membership::OnProtocolError(ConnId conn, const std::string& reason, Step& step) {
  Reject(conn, reason, step);
}

void Membership::DropConn(ConnId conn, const std::string& reason, Step& step) {
  // emplace with in_place_type: GCC 12 warns falsely about push_back of a temporary here.
  step.actions.emplace_back(std::in_place_type<Drop>, Drop{conn, reason});
}

void Membership::OnHeartbeat(ConnId conn, Step& step) {
  // last_seen was refreshed in Handle(); only a stranger's heartbeat needs an answer.
  if (FindPeer(conn) == nullptr) Reject(conn, "first message must be Hello, got Heartbeat", step);
}

void Membership::KickSilentPeers(Step& step) {
  std::vector<ConnId> silent;
  for (const auto& [conn, peer] : peers_) {
    if (step.now - peer.last_seen >= options_.heartbeat_timeout) silent.push_back(conn);
  }
  if (silent.empty()) return;
  std::string limit = Millis(options_.heartbeat_timeout);
  for (ConnId c : silent) {
    const Peer& p = peers_.at(c);
    SendError(c, StatusCode::kKicked,
              Describe(p) + " sent no heartbeat for " + limit +
                  " and was removed from the run; connect again as a new peer",
              step);
    DropConn(c, "no heartbeat for " + limit, step);
  }
  RemovePeers(
      silent,
      [limit, this](const Peer& p) {
        return Describe(p) + " stopped responding (no heartbeat for " + limit + ")";
      },
      step);
}

void Membership::OnTick(Step& step) {
  KickSilentPeers(step);
  if (!link_phase_ || step.now < link_deadline_) return;
  std::vector<ConnId> late;
  for (ConnId m : members_) {
    if (!links_ready_.count(m)) late.push_back(m);
  }
  std::string limit = Millis(options_.link_timeout);
  for (ConnId m : late) {
    const Peer& p = peers_.at(m);
    SendError(m, StatusCode::kDeadlineExceeded,
              Describe(p) + " did not report its ring links of epoch " + std::to_string(epoch_) +
                  " within " + limit,
              step);
    DropConn(m, "ring links not ready within " + limit, step);
  }
  RemovePeers(
      late,
      [this, limit](const Peer& p) {
        return Describe(p) + " was dropped: ring links not ready within " + limit;
      },
      step);
}

// --- transitions -------------------------------------------------------------------------

void Membership::RemovePeers(const std::vector<ConnId>& conns,
                             const std::function<std::string(const Peer&)>& cause, Step& step) {
  // Forget them all first, so that no verdict below goes to a peer being removed.
  std::vector<Peer> gone_members;
  for (ConnId conn : conns) {
    auto it = peers_.find(conn);
    if (it == peers_.end()) continue;
    Peer peer = it->second;
    peers_.erase(it);
    if (peer.role == Role::kPending) {
      pending_.erase(std::remove(pending_.begin(), pending_.end(), conn), pending_.end());
      continue;
    }
    members_.erase(std::remove(members_.begin(), members_.end(), conn), members_.end());
    std::erase_if(bandwidth_, [&](const auto& kv) {
      return kv.first.first == peer.peer_id || kv.first.second == peer.peer_id;
    });
    votes_.erase(conn);
    pending_queries_.erase(conn);
    links_ready_.erase(conn);
    gone_members.push_back(std::move(peer));
  }
  // Their groups' undecided collectives can no longer complete.
  for (const Peer& peer : gone_members) {
    std::vector<proto::OpKey> doomed;
    for (const auto& [key, op] : open_ops_) {
      if (key.peer_group == peer.peer_group) doomed.push_back(key);
    }
    for (const proto::OpKey& key : doomed) Decide(key, false, cause(peer), step);
    // A shared-state sync of its group can no longer complete (it may be a source).
    if (syncs_.count(peer.peer_group)) {
      CompleteSync(peer.peer_group, false, StatusCode::kAborted,
                   "shared-state sync failed: " + cause(peer), step);
    }
  }
  const bool member_left = !gone_members.empty();

  if (member_left) {
    if (!members_.empty()) {
      // A vote round whose every surviving member voted is complete: admit the pending too.
      std::vector<ConnId> next = members_;
      bool all_voted = !votes_.empty() && !link_phase_ &&
                       std::all_of(members_.begin(), members_.end(),
                                   [this](ConnId m) { return votes_.count(m) > 0; });
      if (all_voted) next.insert(next.end(), pending_.begin(), pending_.end());
      // Otherwise the survivors' votes stay valid for the next epoch: a voter gets that
      // epoch's Topology as the answer to its update_topology() and goes on with its
      // step, so if its vote were forgotten, the members that vote later would wait
      // for it until their deadline.
      std::map<ConnId, proto::Vote> carried;
      if (!all_voted && !pending_.empty()) carried = votes_;
      StartEpoch(std::move(next), cause(gone_members.front()), step);
      votes_ = std::move(carried);
    } else {
      optimize_ = OptimizeRound{};
      link_phase_ = false;
      link_deadline_ = TimePoint::max();
      links_ready_.clear();
      votes_.clear();
      // Nobody is left to vote the pending peers in.
      if (!pending_.empty()) StartEpoch(pending_, "every member left", step);
    }
    MaybeAnswerPending(step);
    return;
  }
  if (pending_.empty() && !votes_.empty()) {
    // The peers this round would admit are gone.
    for (const auto& [m, vote] : votes_) SendTo(m, proto::Kind::kTopologyUnchanged, "", step);
    votes_.clear();
  }
  MaybeAnswerPending(step);
}

void Membership::StartEpoch(std::vector<ConnId> members, const std::string& cause,
                            Step& step) {
  epoch_cause_ = cause;
  // Groups whose ring (members and order) changes get this epoch as their ring epoch and
  // lose their undecided collectives; the others keep both, so a peer leaving or joining
  // one group does not interrupt another group's collectives.
  auto rings_of = [this](const std::vector<ConnId>& order) {
    std::map<uint32_t, std::vector<ConnId>> rings;
    for (ConnId c : order) rings[peers_.at(c).peer_group].push_back(c);
    return rings;
  };
  const auto& old_rings = group_rings_;  // members_ may have lost departed peers already
  auto new_rings = rings_of(members);
  std::set<uint32_t> changed;
  for (const auto& [group, ring] : old_rings) {
    auto it = new_rings.find(group);
    if (it == new_rings.end() || it->second != ring) changed.insert(group);
  }
  for (const auto& [group, ring] : new_rings) {
    if (!old_rings.count(group)) changed.insert(group);
  }
  std::vector<proto::OpKey> undecided;
  for (const auto& [key, op] : open_ops_) {
    if (changed.count(key.peer_group)) undecided.push_back(key);
  }
  for (const proto::OpKey& key : undecided) {
    Decide(key, false,
           "the ring changed (epoch " + std::to_string(epoch_ + 1) + ": " + cause +
               ") before every peer of " + key.ToString() + " reported; retry",
           step);
  }
  std::erase_if(decided_, [&](const auto& kv) { return changed.count(kv.first.peer_group) > 0; });
  std::erase_if(decided_order_,
                [&](const proto::OpKey& key) { return changed.count(key.peer_group) > 0; });
  std::erase_if(decided_seqs_,
                [&](const auto& kv) { return changed.count(kv.first.first) > 0; });

  ++epoch_;
  for (uint32_t group : changed) {
    if (new_rings.count(group)) {
      ring_epoch_[group] = epoch_;
    } else {
      ring_epoch_.erase(group);
    }
  }
  group_rings_ = std::move(new_rings);
  optimize_ = OptimizeRound{};  // its members get this epoch's Topology as their answer
  for (ConnId c : members) {
    Peer& p = peers_.at(c);
    if (p.role == Role::kPending) {
      p.role = Role::kMember;
      pending_.erase(std::remove(pending_.begin(), pending_.end(), c), pending_.end());
    }
  }
  members_ = std::move(members);
  votes_.clear();
  links_ready_.clear();
  link_phase_ = true;
  link_deadline_ = step.now + options_.link_timeout;

  proto::Topology topology;
  topology.epoch = epoch_;
  for (ConnId c : members_) {
    const Peer& p = peers_.at(c);
    topology.members.push_back(
        proto::Member{p.peer_id, p.host, p.port, p.peer_group, ring_epoch_.at(p.peer_group)});
  }
  std::string payload = proto::Encode(topology);
  for (ConnId c : members_) SendTo(c, proto::Kind::kTopology, payload, step);
  PCCL_LOG(kInfo, "master: epoch " + std::to_string(epoch_) + " with " +
                      std::to_string(members_.size()) + " members, " +
                      std::to_string(pending_.size()) + " pending (" + cause + ")");
}

void Membership::Decide(const proto::OpKey& key, bool ok, const std::string& reason,
                        Step& step, StatusCode code) {
  proto::Verdict verdict{key, static_cast<uint8_t>(ok ? 1 : 0), reason,
                         ok ? 0u : static_cast<uint32_t>(code)};
  if (verdict.reason.size() > proto::kMaxReasonLength) {
    verdict.reason.resize(proto::kMaxReasonLength);
  }
  std::string payload = proto::Encode(verdict);
  for (ConnId m : GroupMembers(key.peer_group)) {
    SendTo(m, proto::Kind::kVerdict, payload, step);
  }
  open_ops_.erase(key);
  if (key.epoch != RingEpoch(key.peer_group)) return;
  decided_seqs_[{key.peer_group, key.tag}].Add(key.seq);
  decided_[key] = std::move(verdict);
  decided_order_.push_back(key);
  while (decided_order_.size() > options_.max_decided_ops) {
    decided_.erase(decided_order_.front());
    decided_order_.pop_front();
  }
}

// --- helpers ------------------------------------------------------------------------------

void Membership::SendTo(ConnId conn, proto::Kind kind, std::string payload, Step& step) {
  step.actions.push_back(Send{conn, kind, std::move(payload)});
}

void Membership::SendError(ConnId conn, StatusCode code, const std::string& text, Step& step) {
  proto::ErrorMessage error;
  error.code = static_cast<uint32_t>(code);
  error.message = text.substr(0, proto::kMaxReasonLength);
  SendTo(conn, proto::Kind::kError, proto::Encode(error), step);
}

void Membership::Refuse(ConnId conn, const std::string& text, Step& step) {
  SendError(conn, StatusCode::kFailedPrecondition, text, step);
}

void Membership::Reject(ConnId conn, const std::string& text, Step& step) {
  SendError(conn, StatusCode::kInvalidArgument, text, step);
  DropConn(conn, text, step);
  if (FindPeer(conn) != nullptr) {
    RemovePeers({conn}, [this, text](const Peer& p) {
      return Describe(p) + " was dropped: " + text;
    }, step);
  }
}

const Membership::Peer* Membership::FindPeer(ConnId conn) const {
  auto it = peers_.find(conn);
  return it == peers_.end() ? nullptr : &it->second;
}

std::string Membership::Describe(const Peer& p) const {
  return "peer " + std::to_string(p.peer_id) + " (" + p.host + ")";
}

uint64_t Membership::RingEpoch(uint32_t peer_group) const {
  auto it = ring_epoch_.find(peer_group);
  return it == ring_epoch_.end() ? 0 : it->second;
}

std::vector<ConnId> Membership::GroupMembers(uint32_t peer_group) const {
  std::vector<ConnId> out;
  for (ConnId m : members_) {
    if (peers_.at(m).peer_group == peer_group) out.push_back(m);
  }
  return out;
}

uint64_t Membership::NewPeerId() {
  for (int attempt = 0; attempt < 64; ++attempt) {
    uint64_t id = ids_();
    if (id == 0) continue;
    bool used = std::any_of(peers_.begin(), peers_.end(),
                            [id](const auto& kv) { return kv.second.peer_id == id; });
    if (!used) return id;
  }
  // A generator that keeps repeating itself (a broken test fake): count up from the top.
  uint64_t id = ~uint64_t{0};
  while (std::any_of(peers_.begin(), peers_.end(),
                     [id](const auto& kv) { return kv.second.peer_id == id; })) {
    --id;
  }
  return id;
}

}  // namespace pccl::master
