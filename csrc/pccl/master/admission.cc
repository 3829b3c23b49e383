#include "pccl/master/admission.h"

#include <algorithm>
#include <random>

#include "pccl/common/logging.h"
#include "pccl/master/relay.h"
#include "pccl/net/address.h"

namespace pccl::master {

// The story of a run, as the master sees it: joining, voting, epochs and leaving.
// (Verdicts: verdicts.cc; shared state: sync_rounds.cc; ring order: ring_optimizer.cc.)
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
// A vote lists the collectives its member started on its group's ring. For each group the
// admission changes (a group that gains a peer): if every member of it voted on the
// current ring and started the same collectives, those finish on the old ring first (the
// admission waits for their verdicts, ReadyToAdmit's wait_for); otherwise the new epoch
// fails them, as they could never complete.
//
// are_peers_pending() is a joint call: a member's query is answered once every member
// asked, all with the same answer, so all take the same branch; a member leaving
// completes the round for the rest. A pending peer's query, or one not joint, is answered
// at once.
//
// Epochs and links. Starting an epoch sends Topology(epoch, members) to every member; each
// connects its ring neighbours and reports LinksReady(epoch). When all have, every member
// gets TopologyComplete(epoch). Members not ready by the link deadline are dropped and the
// next epoch starts with the rest.
//
// Leaving. Goodbye, a disconnect, a protocol error, a link timeout or silence (no message
// for heartbeat_timeout: a hung or stopped process) removes a peer. A pending peer is
// simply forgotten. A removed member fails the undecided collectives of its group, and
// the survivors start a new epoch (which restarts any link phase). When the last member
// leaves while peers are pending, the pending peers become the run, since nobody is left
// to vote them in.
//
// Resuming. A peer that lost the master (it died, was restarted, or stalled past the
// peers' patience) reconnects and says Hello with what it knows: its peer id, the last
// epoch it applied, and its group's ring with the bandwidths it measured. Three cases:
//   - The roster still holds that id (the master stalled, or only this peer's connection
//     broke): the new connection replaces the old one, which is dropped. A member goes back
//     to its place in the ring in a new epoch that re-dials its group (its collectives of
//     the old connection's time fail, as after a broken link); no vote is needed.
//   - The run has no members (a restarted master): recovery. The master waits, for at
//     most resume_window, until every peer the resumers' rings name is back, then admits
//     the resumers at once, without a vote, in the order their rings had, in an epoch above
//     any they knew. Fresh joiners stay pending; a resumer that comes after the recovery
//     is a joiner.
//   - Otherwise the master forgot the peer (it removed it): it joins again like any peer,
//     pending until the members vote, under its old id.

namespace {

std::string Millis(Duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) +
         " ms";
}

}  // namespace

Admission::Admission(AdmissionOptions options, PeerIdGenerator ids)
    : options_(options), ids_(std::move(ids)) {
  if (!ids_) {
    std::random_device device;
    std::seed_seq seed{device(), device(), device(), device()};
    ids_ = [engine = std::mt19937_64(seed)]() mutable { return engine(); };
  }
}

Duration Admission::SilenceAllowance(const Peer& peer) const {
  constexpr Duration kRtoFloor = std::chrono::milliseconds(200);  // Linux's minimum RTO
  const Duration excess = peer.rto > kRtoFloor ? peer.rto - kRtoFloor : Duration(0);
  return options_.heartbeat_timeout + 15 * excess;
}

TimePoint Admission::NextDeadline() const {
  TimePoint next = link_phase_ ? link_deadline_ : TimePoint::max();
  if (recovery_) next = std::min(next, recovery_->deadline);
  for (const auto& [conn, peer] : roster_.peers()) {
    next = std::min(next, peer.last_seen + SilenceAllowance(peer));
  }
  return next;
}

// --- events --------------------------------------------------------------------------------

std::optional<Peer> Admission::MakePeer(const event::Hello& e, uint64_t peer_id, Step& step) {
  // Every member dials what a peer advertises: only a host it could really be reached at.
  if (const std::string& host = e.hello.advertise_host; !host.empty()) {
    Status st = net::CheckDialableHost(host);
    if (st.ok() && net::IsLoopbackHost(host) && !net::IsLoopbackHost(e.observed_host)) {
      st = InvalidArgument("host '" + host + "' is a loopback address, but the peer connects from " +
                           e.observed_host);
    }
    if (!st.ok()) {
      step.SendError(e.conn, StatusCode::kInvalidArgument, "advertised address refused: " + st.message());
      step.DropConn(e.conn, "advertised address refused: " + st.message());
      return std::nullopt;
    }
  }
  Peer peer;
  peer.conn = e.conn;
  peer.peer_id = peer_id;
  peer.host = e.hello.advertise_host.empty() ? e.observed_host : e.hello.advertise_host;
  peer.port = e.hello.p2p_port;
  peer.peer_group = e.hello.peer_group;
  peer.public_key = e.hello.public_key;
  peer.last_seen = step.now();
  return peer;
}

void Admission::SendWelcome(const Peer& peer, bool accepted, Step& step) {
  proto::Welcome welcome;
  welcome.peer_id = peer.peer_id;
  welcome.heartbeat_interval_ms = static_cast<uint32_t>(std::max<int64_t>(
      1, std::chrono::duration_cast<std::chrono::milliseconds>(options_.heartbeat_timeout).count() /
             4));
  welcome.accepted = accepted ? 1 : 0;
  if (options_.relay_port != 0) {
    welcome.relay_host = options_.relay_host;
    welcome.relay_port = options_.relay_port;
    welcome.relay_ticket = RelayTicket(options_.relay_key, peer.peer_id);
  }
  step.SendTo(peer.conn, proto::Kind::kWelcome, proto::Encode(welcome));
}

std::optional<NextEpoch> Admission::OnHello(const event::Hello& e, Step& step) {
  const uint64_t resume_id = e.hello.resume_peer_id;
  const bool resume = resume_id != 0 && !roster_.IdInUse(resume_id);
  std::optional<Peer> peer = MakePeer(e, resume ? resume_id : NewPeerId(), step);
  if (!peer) return std::nullopt;
  if (resume && (recovery_ || roster_.members().empty())) {
    JoinRecovery(e, step.now());
    peer->resuming = true;
    SendWelcome(*peer, false, step);
    roster_.Add(std::move(*peer), /*queue=*/true);
    return RecoveryReady(step.now());
  }
  // An empty run has no vote and no link phase: the first peer is the run (unless a
  // recovery is rebuilding it).
  const bool first = roster_.members().empty() && !recovery_;
  SendWelcome(*peer, first, step);
  roster_.Add(std::move(*peer), /*queue=*/!first);
  if (!first) {
    AnswerWaiting(step);
    return std::nullopt;
  }
  return NextEpoch{{e.conn}, "the first peer joined", false, {}};
}

void Admission::OnReplacedHello(const event::Hello& e, const Peer& was, Step& step) {
  std::optional<Peer> peer = MakePeer(e, was.peer_id, step);
  if (!peer) return;
  peer->reachable = was.reachable;
  peer->resuming = was.resuming;
  SendWelcome(*peer, was.role == Role::kMember, step);
  roster_.Add(std::move(*peer), /*queue=*/true);
  AnswerWaiting(step);
}

void Admission::OpenRecovery(const std::vector<proto::Member>& members, uint64_t epoch,
                             TimePoint now) {
  recovery_ = Recovery{{}, epoch, now + options_.resume_window};
  for (const proto::Member& m : members) {
    auto& [ring_epoch, ids] = recovery_->rings[m.peer_group];
    ring_epoch = m.ring_epoch;
    ids.push_back(m.peer_id);
  }
}

void Admission::JoinRecovery(const event::Hello& e, TimePoint now) {
  if (!recovery_) {
    recovery_ = Recovery{{}, 0, now + options_.resume_window};
    PCCL_LOG(kInfo, "master: a peer resumes the run; waiting up to " +
                        Millis(options_.resume_window) + " for the others it names");
  }
  recovery_->epoch = std::max(recovery_->epoch, e.hello.resume_epoch);
  auto& [ring_epoch, ids] = recovery_->rings[e.hello.peer_group];
  if (ids.empty() || e.hello.resume_ring_epoch > ring_epoch) {
    ring_epoch = e.hello.resume_ring_epoch;
    ids.clear();
    for (const proto::BandwidthSample& s : e.hello.resume_ring) ids.push_back(s.to_peer_id);
    if (ids.empty()) ids.push_back(e.hello.resume_peer_id);
  }
}

std::optional<NextEpoch> Admission::RecoveryReady(TimePoint now) {
  if (!recovery_) return std::nullopt;
  std::map<uint64_t, ConnId> back;  // resumers by id
  for (ConnId c : roster_.pending()) {
    const Peer& p = roster_.at(c);
    if (p.resuming) back[p.peer_id] = c;
  }
  size_t expected = 0;
  bool all_back = true;
  for (const auto& [group, claim] : recovery_->rings) {
    expected += claim.second.size();
    for (uint64_t id : claim.second) all_back = all_back && back.count(id) > 0;
  }
  if (!all_back && now < recovery_->deadline) return std::nullopt;
  // The claimed rings, group by group, then resumers no ring named (arrival order).
  NextEpoch next;
  std::set<ConnId> placed;
  for (const auto& [group, claim] : recovery_->rings) {
    for (uint64_t id : claim.second) {
      auto it = back.find(id);
      if (it == back.end() || roster_.at(it->second).peer_group != group) continue;
      if (placed.insert(it->second).second) next.members.push_back(it->second);
    }
  }
  for (ConnId c : roster_.pending()) {
    if (roster_.at(c).resuming && placed.insert(c).second) next.members.push_back(c);
  }
  roster_.RaiseEpoch(recovery_->epoch);
  recovery_.reset();
  for (ConnId c : next.members) roster_.ClearResuming(c);
  if (next.members.empty()) {
    // Nobody who resumed is still here: fresh joiners have nobody to vote them in.
    if (!roster_.members().empty() || roster_.pending().empty()) return std::nullopt;
    return NextEpoch{roster_.pending(), "every member left", false, {}};
  }
  next.cause = "the master restarted: " + std::to_string(next.members.size()) + " of " +
               std::to_string(expected) + " peers resumed the run";
  return next;
}

bool Admission::OnVote(const Peer& peer, const proto::Vote& vote, Step& step) {
  if (peer.role != Role::kMember) {
    step.Refuse(peer.conn, Describe(peer) + " is pending: only members vote on the topology");
    return false;
  }
  if (link_phase_) return false;  // answered by this link phase's TopologyComplete
  if (roster_.pending().empty()) {
    step.SendTo(peer.conn, proto::Kind::kTopologyUnchanged, "");
    return false;
  }
  votes_[peer.conn] = vote;
  return true;
}

std::optional<Admit> Admission::ReadyToAdmit() const {
  const std::vector<ConnId>& members = roster_.members();
  const std::vector<ConnId>& pending = roster_.pending();
  if (link_phase_ || pending.empty() || members.empty()) return std::nullopt;
  for (ConnId m : members) {
    if (!votes_.count(m)) return std::nullopt;
  }
  Admit admit;
  admit.next.members = members;
  admit.next.members.insert(admit.next.members.end(), pending.begin(), pending.end());
  admit.next.cause = "pending peers were admitted";
  // Only the groups that gain a peer change their ring; the others' collectives carry on.
  std::set<uint32_t> changing;
  for (ConnId c : pending) changing.insert(roster_.at(c).peer_group);
  for (uint32_t group : changing) {
    const proto::Vote* first = nullptr;
    bool agree = true;
    for (ConnId m : roster_.GroupMembers(group)) {
      const proto::Vote& vote = votes_.at(m);
      if (vote.ring_epoch != roster_.RingEpoch(group)) agree = false;  // an older ring
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
      admit.wait_for.push_back(StartedOps{group, t.tag, t.count});
    }
  }
  return admit;
}

bool Admission::OnLinksReady(const Peer& peer, uint64_t epoch, Step& step) {
  if (peer.role != Role::kMember) {
    step.Refuse(peer.conn, Describe(peer) + " is pending and has no ring links to report");
    return false;
  }
  if (epoch < roster_.epoch()) {
    // A race, not a mistake: the epoch changed (a peer left) while this member built its
    // links. It has the newer Topology queued and will report that one.
    return false;
  }
  if (epoch != roster_.epoch()) {
    step.Refuse(peer.conn, "LinksReady for epoch " + std::to_string(epoch) +
                               ", but the current epoch is " + std::to_string(roster_.epoch()));
    return false;
  }
  if (!link_phase_) return false;  // a repeat after TopologyComplete: nothing to do
  links_ready_.insert(peer.conn);
  for (ConnId m : roster_.members()) {
    if (!links_ready_.count(m)) return false;
  }
  link_phase_ = false;
  link_deadline_ = TimePoint::max();
  links_ready_.clear();
  std::string done = proto::Encode(proto::TopologyComplete{roster_.epoch()});
  for (ConnId m : roster_.members()) step.SendTo(m, proto::Kind::kTopologyComplete, done);
  return true;
}

void Admission::OnQueryPending(const Peer& peer, const event::QueryPending& e, Step& step) {
  if (!e.joint || peer.role != Role::kMember) {  // answered alone
    if (e.wait && roster_.pending().empty()) {  // once a peer is pending (AnswerWaiting)
      waiting_queries_[peer.conn] = e.seq;  // a newer query replaces one that timed out
      return;
    }
    proto::PendingReply reply{e.seq, static_cast<uint8_t>(roster_.pending().empty() ? 0 : 1)};
    step.SendTo(peer.conn, proto::Kind::kPendingReply, proto::Encode(reply));
    return;
  }
  pending_queries_[peer.conn] = e.seq;
  MaybeAnswerPending(step);
}

void Admission::AnswerWaiting(Step& step) {
  if (roster_.pending().empty()) return;
  for (const auto& [conn, seq] : waiting_queries_) {
    step.SendTo(conn, proto::Kind::kPendingReply, proto::Encode(proto::PendingReply{seq, 1}));
  }
  waiting_queries_.clear();
}

void Admission::MaybeAnswerPending(Step& step) {
  if (pending_queries_.empty()) return;
  for (ConnId m : roster_.members()) {
    if (!pending_queries_.count(m)) return;
  }
  // Every member asked: all get the same answer, so all take the same branch.
  const uint8_t pending = roster_.pending().empty() ? 0 : 1;
  for (const auto& [conn, seq] : pending_queries_) {
    step.SendTo(conn, proto::Kind::kPendingReply,
                proto::Encode(proto::PendingReply{seq, pending}));
  }
  pending_queries_.clear();
}

// --- transitions ---------------------------------------------------------------------------

void Admission::StartEpoch(const NextEpoch& next, const std::set<uint32_t>& changed,
                           Step& step) {
  roster_.Advance(next.members, changed, next.cause);
  if (!next.keep_votes) votes_.clear();
  links_ready_.clear();
  link_phase_ = true;
  link_deadline_ = step.now() + options_.link_timeout;

  std::string payload = proto::Encode(roster_.Topology());
  for (ConnId c : roster_.members()) step.SendTo(c, proto::Kind::kTopology, payload);
  PCCL_LOG(kInfo, "master: epoch " + std::to_string(roster_.epoch()) + " with " +
                      std::to_string(roster_.members().size()) + " members, " +
                      std::to_string(roster_.pending().size()) + " pending (" + next.cause +
                      ")");
}

std::vector<Peer> Admission::Forget(const std::vector<ConnId>& conns) {
  std::vector<Peer> gone_members;
  for (ConnId conn : conns) {
    std::optional<Peer> peer = roster_.Remove(conn);
    waiting_queries_.erase(conn);  // a pending peer may wait too
    if (!peer || peer->role == Role::kPending) continue;
    votes_.erase(conn);
    pending_queries_.erase(conn);
    links_ready_.erase(conn);
    gone_members.push_back(std::move(*peer));
  }
  return gone_members;
}

std::optional<NextEpoch> Admission::AfterMembersLeft(const std::string& cause) {
  const std::vector<ConnId>& members = roster_.members();
  const std::vector<ConnId>& pending = roster_.pending();
  if (!members.empty()) {
    // A vote round whose every surviving member voted is complete: admit the pending too.
    NextEpoch next{members, cause, false, {}};
    bool all_voted = !votes_.empty() && !link_phase_ &&
                     std::all_of(members.begin(), members.end(),
                                 [this](ConnId m) { return votes_.count(m) > 0; });
    if (all_voted) next.members.insert(next.members.end(), pending.begin(), pending.end());
    // Otherwise the survivors' votes stay valid for the next epoch: a voter gets that
    // epoch's Topology as the answer to its update_topology() and goes on with its step,
    // so if its vote were forgotten, the members that vote later would wait for it until
    // their deadline.
    next.keep_votes = !all_voted && !pending.empty();
    return next;
  }
  link_phase_ = false;
  link_deadline_ = TimePoint::max();
  links_ready_.clear();
  votes_.clear();
  // Nobody is left to vote the pending peers in.
  if (pending.empty()) return std::nullopt;
  return NextEpoch{pending, "every member left", false, {}};
}

void Admission::AfterPendingLeft(Step& step) {
  if (!roster_.pending().empty() || votes_.empty()) return;
  // The peers this round would admit are gone.
  for (const auto& [m, vote] : votes_) step.SendTo(m, proto::Kind::kTopologyUnchanged, "");
  votes_.clear();
}

// --- time ----------------------------------------------------------------------------------

Removal Admission::KickSilent(Step& step) {
  Removal removal;
  std::map<ConnId, std::string> limits;
  for (const auto& [conn, peer] : roster_.peers()) {
    const Duration allowance = SilenceAllowance(peer);
    if (step.now() - peer.last_seen >= allowance) {
      removal.conns.push_back(conn);
      limits[conn] = Millis(allowance);
    }
  }
  if (removal.conns.empty()) return removal;
  for (ConnId c : removal.conns) {
    step.SendError(c, StatusCode::kKicked,
                   Describe(roster_.at(c)) + " sent no heartbeat for " + limits[c] +
                       " and was removed from the run; connect again as a new peer");
    step.DropConn(c, "no heartbeat for " + limits[c]);
  }
  removal.cause = [limits](const Peer& p) {
    return Describe(p) + " stopped responding (no heartbeat for " + limits.at(p.conn) + ")";
  };
  return removal;
}

std::optional<Removal> Admission::DropLateLinks(Step& step) {
  if (!link_phase_ || step.now() < link_deadline_) return std::nullopt;
  Removal removal;
  for (ConnId m : roster_.members()) {
    if (!links_ready_.count(m)) removal.conns.push_back(m);
  }
  std::string limit = Millis(options_.link_timeout);
  for (ConnId m : removal.conns) {
    step.SendError(m, StatusCode::kDeadlineExceeded,
                   Describe(roster_.at(m)) + " did not report its ring links of epoch " +
                       std::to_string(roster_.epoch()) + " within " + limit);
    step.DropConn(m, "ring links not ready within " + limit);
  }
  removal.cause = [limit](const Peer& p) {
    return Describe(p) + " was dropped: ring links not ready within " + limit;
  };
  return removal;
}

uint64_t Admission::NewPeerId() {
  for (int attempt = 0; attempt < 64; ++attempt) {
    uint64_t id = ids_();
    if (id == 0) continue;
    if (!roster_.IdInUse(id)) return id;
  }
  // A generator that keeps repeating itself (a broken test fake): count up from the top.
  uint64_t id = ~uint64_t{0};
  while (roster_.IdInUse(id)) --id;
  return id;
}

}  // namespace pccl::master
