#include "pccl/master/membership.h"

#include <algorithm>
#include <set>
#include <type_traits>
#include <utility>

namespace pccl::master {

// The story of a run, as the master sees it, is told by the machine that plays each part:
//
//   admission.cc       Joining, Voting, Epochs and links, Leaving (and liveness)
//   verdicts.cc        Verdicts
//   sync_rounds.cc     Shared state
//   ring_optimizer.cc  Ring order
//
// Membership routes every event to its machine and carries what one machine's decision
// means for the others. These are all the interactions:
//
//   An epoch starts (StartEpoch): Admission decided it (the first peer, an admission, a
//   departure) or the ring optimiser found a better order. The verdicts of the groups
//   whose ring changes fail and are forgotten, the optimize_topology() round ends (its
//   members take the Topology as their answer), then Admission advances the roster,
//   starts the link phase and sends the Topology.
//
//   An admission waits for verdicts (MaybeAdmit): once every member voted, Admission names
//   the collectives every member of a changing group started; the admission happens when
//   Verdicts has decided them all, so it is retried after every verdict.
//
//   An optimize_topology() round starts only outside a link phase (MaybeOptimize): after
//   the request that completes it, or after the TopologyComplete that ends the link phase.
//
//   Peers leave (RemovePeers; Goodbye, a disconnect, a rejected message, silence, a link
//   timeout): Admission forgets them first, so that nothing below goes to a peer being
//   removed. For each departed member, the optimiser forgets its measurements, its group's
//   undecided collectives fail and its group's sync round fails, naming it. Then the
//   optimize_topology() round ends and Admission decides the next epoch (or, if only
//   pending peers left, ends a vote round that has nobody to admit), and answers the
//   are_peers_pending() round that may have waited for a departed member.

namespace {

// What a message is called in "first message must be Hello, got <name>".
const char* NameOf(const event::VoteTopology&) { return "VoteTopology"; }
const char* NameOf(const event::LinksReady&) { return "LinksReady"; }
const char* NameOf(const event::QueryPending&) { return "QueryPending"; }
const char* NameOf(const event::OpDone&) { return "OpDone"; }
const char* NameOf(const event::Heartbeat&) { return "Heartbeat"; }
const char* NameOf(const event::SyncState&) { return "SyncState"; }
const char* NameOf(const event::SyncDone&) { return "SyncDone"; }
const char* NameOf(const event::OptimizeTopology&) { return "OptimizeTopology"; }
const char* NameOf(const event::BandwidthReport&) { return "BandwidthReport"; }
const char* NameOf(const event::LinkBroken&) { return "LinkBroken"; }

constexpr const char* kReordered = "optimize_topology() reordered the ring";

}  // namespace

Membership::Membership(MembershipOptions options, PeerIdGenerator ids)
    : admission_(AdmissionOptions{options.link_timeout, options.heartbeat_timeout,
                                  options.relay_host, options.relay_port, options.relay_key,
                                  options.resume_window},
                 std::move(ids)),
      verdicts_(VerdictOptions{options.max_decided_ops, options.max_open_ops,
                               options.max_open_ops_per_peer}),
      optimizer_(RingOptimizerOptions{options.probe_duration, options.bandwidth_max_age}) {
  verdicts_.set_log(&log_);
}

std::vector<Action> Membership::Handle(const Event& event, TimePoint now) {
  Step step(now);
  std::visit(
      [&](const auto& e) {
        using T = std::decay_t<decltype(e)>;
        if constexpr (std::is_same_v<T, event::Tick>) {
          OnTick(step);
        } else if constexpr (std::is_same_v<T, event::Resumed>) {
          // The master itself was stopped or starved, not every peer silent: their beats
          // wait unread in the sockets. Forgive the gap rather than kick the whole run.
          admission_.Forgive(e.gap);
        } else {
          admission_.Touch(e.conn, now);  // any message shows the peer alive
          if constexpr (std::is_same_v<T, event::Hello>) {
            OnHello(e, step);
          } else if constexpr (std::is_same_v<T, event::Goodbye> ||
                               std::is_same_v<T, event::Disconnected>) {
            OnLeave(e.conn, step);
          } else if constexpr (std::is_same_v<T, event::ProtocolError>) {
            Reject(e.conn, e.reason, step);
          } else if (const Peer* peer = roster().Find(e.conn)) {
            On(*peer, e, step);
          } else {
            Reject(e.conn, std::string("first message must be Hello, got ") + NameOf(e), step);
          }
        }
      },
      event);
  return step.TakeActions();
}

std::vector<uint64_t> Membership::MemberIds() const { return roster().Ids(roster().members()); }

std::vector<uint64_t> Membership::PendingIds() const { return roster().Ids(roster().pending()); }

// --- events --------------------------------------------------------------------------------

void Membership::OnHello(const event::Hello& e, Step& step) {
  if (const Peer* p = roster().Find(e.conn)) {
    Reject(e.conn, Describe(*p) + " sent a second Hello", step);
    return;
  }
  if (e.hello.resume_peer_id != 0) {
    if (const Peer* old = roster().FindId(e.hello.resume_peer_id)) {
      ReplaceConnection(*old, e, step);
      return;
    }
  }
  std::optional<NextEpoch> next = admission_.OnHello(e, step);
  if (const Peer* p = roster().Find(e.conn)) {
    const bool resumed = e.hello.resume_peer_id != 0;
    log_.Count(resumed ? "resumes" : "joins");
    log_.Add(step.now(), resumed ? "resume" : "join",
             Describe(*p) + (resumed ? " resumed the run after losing the master"
                                     : " connected") +
                 " (peer group " + std::to_string(p->peer_group) + ")");
    if (resumed) LearnFromResume(*p, e.hello, step);
  }
  if (next) StartEpoch(*next, step);
}

void Membership::LearnFromResume(const Peer& peer, const proto::Hello& hello, Step& step) {
  // What a restarted master cannot know but the peer does: the revision its group's shared
  // state has reached, and the bandwidths it measured.
  syncs_.OnResumed(peer, hello.resume_state_revision);
  for (const proto::BandwidthSample& s : hello.resume_ring) {
    if (s.bytes_per_second > 0 && s.to_peer_id != peer.peer_id) {
      optimizer_.Remember(peer.peer_id, s.to_peer_id, static_cast<double>(s.bytes_per_second),
                          step.now());
    }
  }
}

void Membership::ReplaceConnection(const Peer& old, const event::Hello& e, Step& step) {
  // The peer's own stale connection (it gave the master up, or that connection broke): the
  // new one takes its place. The key it proves itself with must stay the same, so that
  // nobody takes over another peer's place by naming its id.
  const Peer was = old;
  if (e.hello.public_key != was.public_key) {
    const std::string text = "resuming as peer " + std::to_string(was.peer_id) +
                             " needs that peer's public key";
    step.SendError(e.conn, StatusCode::kUnauthenticated, text);
    step.DropConn(e.conn, text);
    return;
  }
  const std::string cause = Describe(was) + " reconnected to the master";
  log_.Count("resumes");
  log_.Add(step.now(), "resume", cause + " (its old connection is dropped)");
  step.DropConn(was.conn, "replaced by the peer's new connection");
  std::vector<ConnId> order = roster().members();
  const auto at = std::find(order.begin(), order.end(), was.conn);
  (void)admission_.Forget({was.conn});
  if (was.role == Role::kMember) {
    // Its collectives and sync round of the old connection's time end; the re-dialled
    // epoch below fails the group's undecided collectives.
    syncs_.OnMemberLeft(was, cause, roster(), step);
  }
  admission_.OnReplacedHello(e, was, step);
  const Peer* now = roster().Find(e.conn);
  if (now == nullptr) return;  // its advertised address was refused
  LearnFromResume(*now, e.hello, step);
  if (was.role != Role::kMember) {
    if (std::optional<NextEpoch> next = admission_.RecoveryReady(step.now())) {
      StartEpoch(*next, step);
    }
    return;
  }
  *at = e.conn;
  optimizer_.Abandon();
  StartEpoch(NextEpoch{order, cause, /*keep_votes=*/true, {was.peer_group}}, step);
  admission_.MaybeAnswerPending(step);
}

void Membership::On(const Peer& peer, const event::VoteTopology& e, Step& step) {
  if (admission_.OnVote(peer, e.vote, step)) MaybeAdmit(step);
}

void Membership::On(const Peer& peer, const event::LinksReady& e, Step& step) {
  if (admission_.OnLinksReady(peer, e.epoch, step)) MaybeOptimize(step);
}

void Membership::On(const Peer& peer, const event::QueryPending& e, Step& step) {
  log_.Count("pending_queries");
  admission_.OnQueryPending(peer, e, step);
}

void Membership::On(const Peer& peer, const event::OpDone& e, Step& step) {
  if (Status admitted = verdicts_.Admits(peer, e.op.key); !admitted.ok()) {
    Reject(peer.conn, admitted.message(), step);
    return;
  }
  log_.Count("bytes_sent", e.op.tx_bytes);
  if (e.op.duration_us > 0) {
    log_.Observe("member_op", std::chrono::microseconds(e.op.duration_us));
  }
  if (verdicts_.OnOpDone(peer, e.op, roster(), step)) MaybeAdmit(step);  // a vote may wait
}

void Membership::On(const Peer& peer, const event::Heartbeat& e, Step& step) {
  admission_.OnHeartbeat(peer.conn, e.rto, e.rtt);
  if (e.rtt > Duration(0)) log_.Observe("heartbeat_rtt", e.rtt);
  // Handle() refreshed the peer's liveness. The answer tells the peer that the master is
  // alive: a peer that hears nothing for the heartbeat timeout gives the master up.
  step.SendTo(peer.conn, proto::Kind::kHeartbeatAck, "");
}

void Membership::On(const Peer& peer, const event::SyncState& e, Step& step) {
  syncs_.OnSyncState(peer, e.state, roster(), step);
}

void Membership::On(const Peer& peer, const event::SyncDone& e, Step& step) {
  syncs_.OnSyncDone(peer, e.result, roster(), step);
}

void Membership::On(const Peer& peer, const event::OptimizeTopology& e, Step& step) {
  if (optimizer_.OnRequest(peer, e.epoch, roster(), step)) MaybeOptimize(step);
}

void Membership::On(const Peer& peer, const event::BandwidthReport& e, Step& step) {
  if (auto order = optimizer_.OnBandwidthReport(peer, e.report, roster(), step)) {
    StartEpoch(NextEpoch{std::move(*order), kReordered, false, {}}, step);
  }
}

void Membership::On(const Peer& peer, const event::LinkBroken& e, Step& step) {
  // Acted on at its Tick, after a grace; meanwhile the group's failed verdicts tell its
  // members to wait for the re-dialled ring.
  if (repairs_.OnLinkBroken(peer, e.report, roster(), step.now())) {
    verdicts_.OnRingBreaking(peer.peer_group);
  }
}

void Membership::OnLeave(ConnId conn, Step& step) {
  if (roster().Find(conn) == nullptr) return;  // never said Hello: nothing to forget
  RemovePeers({conn}, [](const Peer& p) { return Describe(p) + " left"; }, step);
}

void Membership::OnTick(Step& step) {
  if (std::optional<NextEpoch> recovered = admission_.RecoveryReady(step.now())) {
    StartEpoch(*recovered, step);
  }
  Removal silent = admission_.KickSilent(step);
  if (!silent.conns.empty()) RemovePeers(silent.conns, silent.cause, step);
  if (std::optional<Removal> late = admission_.DropLateLinks(step)) {
    RemovePeers(late->conns, late->cause, step);
  }
  RepairLinks(step);
}

// --- interactions --------------------------------------------------------------------------

void Membership::MaybeAdmit(Step& step) {
  std::optional<Admit> admit = admission_.ReadyToAdmit();
  if (!admit) return;
  for (const StartedOps& ops : admit->wait_for) {
    // Not yet: the verdict that completes them calls again.
    if (!verdicts_.Decided(ops.peer_group, ops.tag, ops.count)) return;
  }
  StartEpoch(admit->next, step);
}

void Membership::MaybeOptimize(Step& step) {
  if (admission_.links_pending()) return;  // the TopologyComplete that ends it calls again
  if (auto order = optimizer_.MaybeStart(roster(), step)) {
    StartEpoch(NextEpoch{std::move(*order), kReordered, false, {}}, step);
  }
}

void Membership::RepairLinks(Step& step) {
  while (auto unreachable = repairs_.TakeUnreachable(roster())) {
    const ConnId conn = unreachable->first;
    step.SendError(conn, StatusCode::kKicked, unreachable->second);
    step.DropConn(conn, unreachable->second);
    std::string why = unreachable->second;
    RemovePeers({conn}, [why](const Peer& p) { return Describe(p) + ": " + why; }, step);
  }
  std::set<uint32_t> due = repairs_.TakeDue(step.now());
  if (due.empty() || roster().members().empty()) return;
  std::string cause = "a ring link of peer group " + std::to_string(*due.begin()) +
                      " broke between live peers: re-dialling";
  StartEpoch(NextEpoch{roster().members(), cause, /*keep_votes=*/true, due}, step);
}

void Membership::StartEpoch(const NextEpoch& next, Step& step) {
  // Groups whose ring (members and order) changes get the new epoch as their ring epoch and
  // lose their undecided collectives; the others keep both, so a peer leaving or joining
  // one group does not interrupt another group's collectives. Groups to re-dial count as
  // changed.
  std::set<uint32_t> changed = roster().ChangedGroups(next.members);
  changed.insert(next.relink.begin(), next.relink.end());
  repairs_.OnRingsChanged(changed);
  verdicts_.OnRingsChanged(changed, roster().epoch() + 1, next.cause, roster(), step);
  optimizer_.Abandon();  // its members get this epoch's Topology as their answer
  admission_.StartEpoch(next, changed, step);
  log_.Count("epochs");
  log_.Add(step.now(), "epoch",
           "epoch " + std::to_string(roster().epoch()) + ": " + roster().epoch_cause() + " (" +
               std::to_string(roster().members().size()) + " members)");
}

void Membership::RemovePeers(const std::vector<ConnId>& conns, const CauseFn& cause,
                             Step& step) {
  // Forget them all first, so that no verdict below goes to a peer being removed.
  for (ConnId conn : conns) {
    if (const Peer* peer = roster().Find(conn)) {
      log_.Count("departures");
      log_.Add(step.now(), "leave", cause(*peer));
    }
  }
  std::vector<Peer> gone_members = admission_.Forget(conns);
  for (const Peer& peer : gone_members) {
    optimizer_.ForgetPeer(peer.peer_id);
    repairs_.ForgetPeer(peer.peer_id);
  }
  // Their groups' undecided collectives and sync rounds can no longer complete.
  for (const Peer& peer : gone_members) {
    verdicts_.FailGroup(peer.peer_group, cause(peer), roster(), step);
    syncs_.OnMemberLeft(peer, cause(peer), roster(), step);
  }
  if (gone_members.empty()) {
    admission_.AfterPendingLeft(step);
  } else {
    optimizer_.Abandon();  // any epoch change ends the round
    std::optional<NextEpoch> next = admission_.AfterMembersLeft(cause(gone_members.front()));
    if (next) StartEpoch(*next, step);
  }
  admission_.MaybeAnswerPending(step);
}

proto::MasterState Membership::Persist() const {
  proto::MasterState state;
  state.epoch = roster().epoch();
  state.members = roster().Topology().members;
  for (const auto& [group, revision] : syncs_.revisions()) {
    state.revisions.push_back(proto::GroupRevision{group, revision});
  }
  state.bandwidths = optimizer_.Measurements(proto::kMaxStateLinks);
  for (const auto& [name, value] : log_.counters()) {
    if (state.counters.size() < proto::kMaxStateCounters && name.size() <= proto::kMaxCounterName) {
      state.counters.push_back(proto::NamedCount{name, value});
    }
  }
  return state;
}

void Membership::WarmStart(const proto::MasterState& state, TimePoint now) {
  if (!state.members.empty()) admission_.OpenRecovery(state.members, state.epoch, now);
  for (const proto::GroupRevision& r : state.revisions) {
    syncs_.RestoreRevision(r.peer_group, r.revision);
  }
  for (const proto::MeasuredLink& l : state.bandwidths) {
    optimizer_.Remember(l.from_peer_id, l.to_peer_id, static_cast<double>(l.bytes_per_second),
                        now);
  }
  for (const proto::NamedCount& c : state.counters) log_.Count(c.name, c.value);
  log_.Count("restarts");
  log_.Add(now, "restart",
           "the master restarted from its state file (epoch " + std::to_string(state.epoch) +
               "): waiting for " + std::to_string(state.members.size()) + " peers to resume");
}

void Membership::Reject(ConnId conn, const std::string& text, Step& step) {
  step.SendError(conn, StatusCode::kInvalidArgument, text);
  step.DropConn(conn, text);
  if (roster().Find(conn) != nullptr) {
    RemovePeers(
        {conn}, [text](const Peer& p) { return Describe(p) + " was dropped: " + text; }, step);
  }
}

}  // namespace pccl::master

namespace pccl::master {

RunStatus Membership::Snapshot(TimePoint now) const {
  RunStatus s;
  const Roster& r = roster();
  s.epoch = r.epoch();
  s.epoch_cause = r.epoch_cause();
  auto seconds = [](Duration d) { return std::chrono::duration<double>(d).count(); };
  auto add_peer = [&](ConnId conn) {
    const Peer& p = r.at(conn);
    s.peers.push_back(RunStatus::PeerStatus{p.peer_id, p.host, p.port, p.peer_group,
                                            p.role == Role::kMember, p.reachable,
                                            seconds(p.rto), seconds(now - p.last_seen),
                                            seconds(p.heartbeat_rtt)});
  };
  for (ConnId conn : r.members()) add_peer(conn);
  for (ConnId conn : r.pending()) add_peer(conn);
  std::set<uint32_t> groups;
  for (ConnId conn : r.members()) groups.insert(r.at(conn).peer_group);
  for (uint32_t group : groups) {
    RunStatus::GroupStatus g;
    g.peer_group = group;
    g.ring_epoch = r.RingEpoch(group);
    g.ring = r.Ids(r.GroupMembers(group));
    for (size_t i = 0; i < g.ring.size(); ++i) {
      const std::optional<double> bw =
          optimizer_.MeasuredBandwidth(g.ring[i], g.ring[(i + 1) % g.ring.size()]);
      g.bytes_per_second.push_back(bw.value_or(0));
    }
    g.operations_in_flight = verdicts_.open_ops(group);
    g.state_revision = syncs_.revision(group);
    s.groups.push_back(std::move(g));
  }
  const double unix_now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  for (const RunEvent& e : log_.events()) {
    RunEvent copy = e;
    copy.unix_time = unix_now - seconds(now - e.at);
    s.events.push_back(std::move(copy));
  }
  s.counters = log_.counters();
  s.histograms = log_.histograms();
  return s;
}

}  // namespace pccl::master
