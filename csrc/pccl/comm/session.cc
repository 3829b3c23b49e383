#include "pccl/comm/session.h"

#include <algorithm>
#include <set>
#include <vector>

#include "pccl/common/logging.h"
#include "pccl/common/params.h"
#include "pccl/common/thread_name.h"

namespace pccl::comm {
namespace {

using link::LinkPeer;
using link::RingLinks;
using proto::Kind;

// How often the topology watcher looks whether it should stop.
constexpr auto kWatchInterval = std::chrono::milliseconds(200);
// Deadline for the goodbye to the master.
constexpr auto kGoodbyeTimeout = std::chrono::seconds(5);
// Deadline for handing a finished collective's report to the master's socket.
constexpr auto kReportTimeout = std::chrono::seconds(5);

}  // namespace

Session::Session(CommunicatorOptions options) : options_(std::move(options)) {}

Session::~Session() { Close(); }

uint32_t Session::pool_size() const {
  return options_.pool_size > 0 ? options_.pool_size
                                : static_cast<uint32_t>(GetParams().default_pool_size);
}

Status Session::Connect(Deadline deadline) {
  std::unique_lock<std::timed_mutex> control;
  PCCL_RETURN_IF_ERROR(LockControl(deadline, "connect()", &control));
  if (closed_.load()) return FailedPrecondition("communicator is closed");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (connected_) return FailedPrecondition("already connected");
  }
  if (listener_.listening()) {
    return FailedPrecondition("connect() already failed once; create a new communicator");
  }
  net::Endpoint master;
  PCCL_RETURN_IF_ERROR(net::ParseEndpoint(options_.master_address, false, &master));
  master_endpoint_ = master;
  auth::RunAuth run;
  PCCL_RETURN_IF_ERROR(auth::MakeRunAuth(options_.secret, options_.transport, &run));
  PCCL_RETURN_IF_ERROR(credentials_.Init(std::move(run)));
  PCCL_RETURN_IF_ERROR(listener_.Listen(options_.listen_host));
  // Every p2p connection of this peer arrives through the listener: ring links wait in the
  // incoming pool for their epoch, shared-state fetches and probes get served.
  listener_.Handle(link::Purpose::kRing, [this](const link::Hello& hello, net::Socket socket) {
    routes_.NoteIncoming(hello.from_peer_id, hello.route);
    incoming_.Deposit(hello, std::move(socket));
  });
  listener_.Handle(link::Purpose::kPair, [this](const link::Hello& hello, net::Socket socket) {
    routes_.NoteIncoming(hello.from_peer_id, hello.route);
    pair_incoming_.Deposit(hello, std::move(socket));
    NotePairActivity();  // a recv from any source may wait for this dialer
  });
  listener_.Handle(link::Purpose::kState, [this](const link::Hello&, net::Socket socket) {
    state_server_.Serve(std::move(socket));
  });
  listener_.Handle(link::Purpose::kProbe, [this](const link::Hello&, net::Socket socket) {
    probe_server_.Serve(std::move(socket));
  });
  listener_.Start(&credentials_);
  master_.SetVerdictListener([this](const proto::Verdict& v) { OnVerdict(v); });
  master_.SetTopologyListener([this](const proto::Topology& t) { OnTopologyChange(t); });
  master_.SetPairQueryListener([this](const proto::PairQuery& q) { OnPairQuery(q); });
  // A peer the master cannot dial parks connections at the run's relay, so that the
  // others reach it through the relay (link/routes.h).
  master_.SetReachabilityListener([this](const proto::Reachability& r) {
    std::optional<link::RelayAccess> relay = routes_.relay();
    if (r.reachable || !relay || closed_.load()) return;
    parker_.Start(*relay, [this](net::Socket socket, link::Route route) {
      listener_.Adopt(std::move(socket), route);
    });
  });
  // Reaching the master (name resolution included) is bounded by the connect timeout even
  // when waiting for admission is not.
  PCCL_RETURN_IF_ERROR(master_.Connect(
      master, credentials_.run(),
      deadline.Min(Deadline::In(Milliseconds(GetParams().connect_timeout_ms)))));

  PCCL_RETURN_IF_ERROR(master_.Send(Kind::kHello, proto::Encode(MakeHello(false)), deadline));
  Kind kind;
  std::string payload;
  PCCL_RETURN_IF_ERROR(master_.Wait({Kind::kWelcome}, deadline, &kind, &payload));
  if (kind == Kind::kError) return ErrorFromMaster(payload);
  proto::Welcome welcome;
  PCCL_RETURN_IF_ERROR(proto::Decode(payload, &welcome));
  peer_id_.store(welcome.peer_id);
  listener_.SetSelfId(welcome.peer_id);
  AdoptWelcome(welcome);
  master_.SetResumable(GetParams().master_resume_s > 0);
  // Can the others dial this peer (or is it behind a NAT)? The master dials back and
  // answers while admission runs; reachability() shows the answer.
  PCCL_RETURN_IF_ERROR(master_.Send(Kind::kReachabilityQuery, "", deadline));
  PCCL_RETURN_IF_ERROR(WaitAdmissionLocked(deadline));
  RefreshView();
  topology_watcher_ = std::thread([this] { WatchTopologies(); });
  return Status::Ok();
}

// A topology the master pushes on its own (a peer left, maybe of another group) has a
// link phase that completes only when every member reported its links. A peer between
// calls (a long compute step, or a group with nothing to reduce right now) would hold up
// everyone until its next call, so this thread applies such topologies as soon as they
// come, whenever no control call holds the control lock (a control call applies them
// itself). Its errors are logged: the peer's next call meets their consequence (a kick,
// a lost master) and reports it.
void Session::WatchTopologies() {
  NameThisThread("pccl-topology");
  while (!closed_.load()) {
    Status st = master_.WaitUntilHas(Kind::kTopology, Deadline::In(kWatchInterval));
    if (closed_.load()) return;
    if (st.code() == StatusCode::kDeadlineExceeded) continue;
    if (!st.ok()) {
      // The master is gone: every later call reports it, unless it comes back.
      if (!Resumable(st) || !Resume(st).ok()) return;
      continue;
    }
    std::unique_lock<std::timed_mutex> control(control_mu_);
    if (closed_.load()) return;
    st = ApplyPushedTopologiesLocked(DefaultCallDeadline());
    // Info, not a warning: peers leaving at the end of a run cause these routinely.
    if (!st.ok()) PCCL_LOG(kInfo, "applying a topology the master pushed: " + st.ToString());
  }
}

Status Session::WaitAdmissionLocked(Deadline deadline) {
  Kind kind;
  std::string payload;
  PCCL_RETURN_IF_ERROR(master_.Wait({Kind::kTopology}, deadline, &kind, &payload));
  if (kind == Kind::kError) return ErrorFromMaster(payload);
  proto::Topology topology;
  PCCL_RETURN_IF_ERROR(proto::Decode(payload, &topology));
  return ApplyTopologyLocked(std::move(topology), deadline);
}

Status Session::ApplyTopologyLocked(proto::Topology topology, Deadline deadline) {
  while (true) {
    const uint64_t self = peer_id_.load();
    std::vector<proto::Member> ring;
    int rank = -1;
    bool present = false;
    uint64_t ring_epoch = 0;
    for (const auto& member : topology.members) {
      if (member.peer_id == self) present = true;
      if (member.peer_group != options_.peer_group) continue;
      if (member.peer_id == self) rank = static_cast<int>(ring.size());
      ring_epoch = member.ring_epoch;
      ring.push_back(member);
    }
    if (!present || rank < 0) {
      return Status(StatusCode::kKicked, "the master's topology (epoch " +
                                             std::to_string(topology.epoch) +
                                             ") no longer includes this peer");
    }
    const int world = static_cast<int>(ring.size());
    std::shared_ptr<RingLinks> links;
    bool same_ring = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // The master keeps a group's ring epoch while its ring stays the same: then the
      // links (and the collectives running on them) carry on untouched.
      same_ring = connected_ && ring_epoch == ring_epoch_;
      if (same_ring) links = links_;
    }
    if (world >= 2 && !same_ring) {
      const auto& next = ring[(rank + 1) % world];
      const auto& prev = ring[(rank + world - 1) % world];
      links = std::make_shared<RingLinks>(
          ring_epoch, self, LinkPeer{next.peer_id, {next.host, next.port}},
          LinkPeer{prev.peer_id, {prev.host, prev.port}}, pool_size(),
          [this, ring_epoch](uint64_t peer, const Status& why) {
            ReportBrokenLink(ring_epoch, peer, why);
          });
      Status linked = links->Establish(incoming_, credentials_, routes_, deadline,
                                       [this] { return master_.Has(Kind::kTopology); });
      if (!linked.ok()) {
        // A neighbour is gone or unreachable. If it left, the master replaces this topology
        // right away: wait for that one instead of failing.
        Kind kind;
        std::string payload;
        if (master_.Wait({Kind::kTopology}, deadline, &kind, &payload).ok() &&
            kind == Kind::kTopology && proto::Decode(payload, &topology).ok()) {
          continue;
        }
        return Status(linked.code() == StatusCode::kUnavailable ? StatusCode::kAborted
                                                                : linked.code(),
                      "building ring links for epoch " + std::to_string(topology.epoch) + ": " +
                          linked.message());
      }
    }
    PCCL_RETURN_IF_ERROR(master_.Send(Kind::kLinksReady,
                                      proto::Encode(proto::EpochMessage{topology.epoch}),
                                      deadline));
    bool complete = false;
    while (!complete) {
      Kind kind;
      std::string payload;
      PCCL_RETURN_IF_ERROR(
          master_.Wait({Kind::kTopologyComplete, Kind::kTopology}, deadline, &kind, &payload));
      if (kind == Kind::kError) return ErrorFromMaster(payload);
      if (kind == Kind::kTopology) {  // superseded before it completed: start over
        PCCL_RETURN_IF_ERROR(proto::Decode(payload, &topology));
        break;
      }
      proto::TopologyComplete done;
      PCCL_RETURN_IF_ERROR(proto::Decode(payload, &done));
      complete = done.epoch == topology.epoch;
    }
    if (!complete) continue;

    std::shared_ptr<RingLinks> old;
    if (!same_ring) DropPairs(RingChanged(ring_epoch));
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_.load()) {  // Close() ran meanwhile (the topology watcher applies too)
        if (links && !same_ring) links->Break(Status(StatusCode::kAborted, "communicator closed"));
        return FailedPrecondition("communicator is closed");
      }
      if (!same_ring) {
        old = std::move(links_);
        links_ = std::move(links);
        next_seq_.clear();  // a new ring epoch: OpKeys start over
        pair_counts_.clear();
      }
      ring_epoch_ = ring_epoch;
      rank_ = rank;
      group_world_ = world;
      topology_ = std::move(topology);
      auto ring = std::make_shared<std::vector<uint64_t>>();
      for (const auto& m : topology_.members) {
        if (m.peer_group == options_.peer_group) ring->push_back(m.peer_id);
      }
      group_ring_ = std::move(ring);
      ++topology_changes_;
      connected_ = true;
    }
    if (old) old->Break(RingChanged(ring_epoch));
    if (!same_ring) {
      links_generation_.fetch_add(1);
      master_.Wake();  // collectives waiting for new links (AwaitRing) look again
    }
    return Status::Ok();
  }
}

Status Session::RingChanged(uint64_t now) {
  return Status(StatusCode::kAborted,
                "the ring changed (now epoch " + std::to_string(now) + "); retry");
}

Status Session::ApplyPushedTopologiesLocked(Deadline deadline) {
  while (master_.Has(Kind::kTopology)) {
    PCCL_RETURN_IF_ERROR(WaitAdmissionLocked(deadline));
  }
  return Status::Ok();
}

Status Session::LockControl(Deadline deadline, const char* caller,
                                 std::unique_lock<std::timed_mutex>* lock) {
  // Another control call, or the topology watcher applying a pushed topology, may hold
  // it (the latter until that topology's link phase completes): wait no longer than the
  // caller's deadline.
  std::unique_lock<std::timed_mutex> taken(control_mu_, std::defer_lock);
  if (deadline.never()) {
    taken.lock();
  } else if (!taken.try_lock_until(deadline.when())) {
    return Status(StatusCode::kDeadlineExceeded,
                  std::string(caller) + " timed out waiting for a topology change in progress");
  }
  *lock = std::move(taken);
  return Status::Ok();
}

Status Session::WaitForIdle(Deadline deadline, const char* caller) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!connected_) return FailedPrecondition("call connect() first");
  // Not under control_mu_: a collective starting may need it to apply a topology the
  // master pushed.
  if (!WaitFor(idle_cv_, lock, deadline, [&] { return in_flight_ == 0; })) {
    return Status(StatusCode::kDeadlineExceeded,
                  std::string("collectives still in flight when ") + caller + " timed out");
  }
  return Status::Ok();
}

Status Session::UpdateTopology(Deadline deadline) {
  return AcrossResume(deadline, "update_topology()",
                      [&] { return UpdateTopologyOnce(deadline); });
}

Status Session::UpdateTopologyOnce(Deadline deadline) {
  std::unique_lock<std::timed_mutex> control;
  PCCL_RETURN_IF_ERROR(LockControl(deadline, "update_topology()", &control));
  RefreshViewOnReturn refresh{this};
  PCCL_RETURN_IF_ERROR(master_.lost());
  PCCL_RETURN_IF_ERROR(ApplyPushedTopologiesLocked(deadline));
  // The vote says which collectives this peer has started on its ring. Collectives still in
  // flight on other threads are not waited for here: if every member of the group started
  // them, the master lets them finish on the old ring before it admits anyone; if not, they
  // can never complete, and the new epoch fails them at once (PeerLostError, input intact).
  proto::Vote vote;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!connected_) return FailedPrecondition("call connect() first");
    vote.ring_epoch = ring_epoch_;
    for (const auto& [tag, count] : next_seq_) {
      if (count > 0) vote.started.push_back(proto::TagCount{tag, count});
    }
  }
  PCCL_RETURN_IF_ERROR(master_.Send(Kind::kVoteTopology, proto::Encode(vote), deadline));
  Kind kind;
  std::string payload;
  PCCL_RETURN_IF_ERROR(
      master_.Wait({Kind::kTopologyUnchanged, Kind::kTopology}, deadline, &kind, &payload));
  if (kind == Kind::kError) return ErrorFromMaster(payload);
  if (kind == Kind::kTopologyUnchanged) return Status::Ok();
  proto::Topology topology;
  PCCL_RETURN_IF_ERROR(proto::Decode(payload, &topology));
  return ApplyTopologyLocked(std::move(topology), deadline);
}

Status Session::ArePeersPending(Deadline deadline, bool joint, bool* pending, bool wait) {
  wait = wait && !joint;
  Status st = AcrossResume(deadline, "are_peers_pending()",
                           [&] { return ArePeersPendingOnce(deadline, joint, wait, pending); });
  if (wait && st.code() == StatusCode::kDeadlineExceeded) {
    *pending = false;  // nobody came in time: an answer (the master forgets the query
    return Status::Ok();  // when the next one comes, and a late reply is told apart by seq)
  }
  return st;
}

Status Session::ArePeersPendingOnce(Deadline deadline, bool joint, bool wait, bool* pending) {
  // A joint call, as in PCCL 1.0: the master answers once every member asked, and gives
  // every member the same answer, so all take the same branch. Collectives in flight on
  // other threads go on meanwhile.
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!connected_) return FailedPrecondition("call connect() first");
  }
  std::unique_lock<std::timed_mutex> control;
  PCCL_RETURN_IF_ERROR(LockControl(deadline, "are_peers_pending()", &control));
  RefreshViewOnReturn refresh{this};  // before `control` is released: the joint point's view
  PCCL_RETURN_IF_ERROR(master_.lost());
  // A topology the master pushed (a peer left, or a vote round this peer joined earlier
  // completed) waits for this peer's LinksReady: apply it now rather than at the next
  // collective, so that the other members are not held up and attributes are current.
  PCCL_RETURN_IF_ERROR(ApplyPushedTopologiesLocked(deadline));
  const uint64_t seq = ++pending_query_seq_;
  const proto::PendingQuery query{seq, static_cast<uint8_t>(joint), static_cast<uint8_t>(wait)};
  PCCL_RETURN_IF_ERROR(master_.Send(Kind::kQueryPending, proto::Encode(query), deadline));
  while (true) {
    Kind kind;
    std::string payload;
    uint64_t arrival = 0;
    PCCL_RETURN_IF_ERROR(WaitApplyingTopologiesLocked({Kind::kPendingReply}, deadline, &kind,
                                                      &payload, &arrival));
    if (kind == Kind::kError) return ErrorFromMaster(payload);
    proto::PendingReply reply;
    PCCL_RETURN_IF_ERROR(proto::Decode(payload, &reply));
    if (reply.seq != seq) continue;  // the answer to an earlier call that timed out
    *pending = reply.pending != 0;
    // What the master decided before it answered (a departure's new epoch) came before
    // the reply, alike for every member: apply exactly that, so that every member leaves
    // with the same topology (what came after is the next call's business).
    while (master_.HasBefore(Kind::kTopology, arrival)) {
      PCCL_RETURN_IF_ERROR(WaitAdmissionLocked(deadline));
    }
    return Status::Ok();
  }
}

void Session::RefreshView() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!connected_ || view_changes_ == topology_changes_) return;
  view_changes_ = topology_changes_;
  std::map<uint32_t, int64_t> group_sizes;
  View view;
  for (const auto& m : topology_.members) ++group_sizes[m.peer_group];
  view.ring = *group_ring_;
  view.global_world = static_cast<int64_t>(topology_.members.size());
  view.local_world = group_world_;
  view.groups = static_cast<int64_t>(group_sizes.size());
  for (const auto& [group, size] : group_sizes) {
    view.largest_group = std::max(view.largest_group, size);
  }
  view_ = std::move(view);
}

Status Session::GetAttribute(Attribute attribute, int64_t* value) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!connected_) return FailedPrecondition("call connect() first");
  switch (attribute) {
    case Attribute::kGlobalWorldSize:
      *value = view_.global_world;
      return Status::Ok();
    case Attribute::kLocalWorldSize:
      *value = view_.local_world;
      return Status::Ok();
    case Attribute::kNumDistinctPeerGroups:
      *value = view_.groups;
      return Status::Ok();
    case Attribute::kLargestPeerGroupWorldSize:
      *value = view_.largest_group;
      return Status::Ok();
  }
  return InvalidArgument("unknown attribute " + std::to_string(static_cast<int>(attribute)));
}

Status Session::OptimizeTopology(Deadline deadline) {
  return AcrossResume(deadline, "optimize_topology()",
                      [&] { return OptimizeTopologyOnce(deadline); });
}

Status Session::OptimizeTopologyOnce(Deadline deadline) {
  PCCL_RETURN_IF_ERROR(WaitForIdle(deadline, "optimize_topology()"));
  std::unique_lock<std::timed_mutex> control;
  PCCL_RETURN_IF_ERROR(LockControl(deadline, "optimize_topology()", &control));
  RefreshViewOnReturn refresh{this};
  PCCL_RETURN_IF_ERROR(ApplyPushedTopologiesLocked(deadline));
  uint64_t epoch;
  {
    std::lock_guard<std::mutex> lock(mu_);
    epoch = topology_.epoch;
  }
  PCCL_RETURN_IF_ERROR(master_.Send(Kind::kOptimizeTopology,
                                    proto::Encode(proto::EpochMessage{epoch}), deadline));
  // Measurement rounds until the master's answer: TopologyUnchanged, or the Topology of
  // the new order (or of an epoch a departure forced, which ends the optimization too).
  while (true) {
    Kind kind;
    std::string payload;
    PCCL_RETURN_IF_ERROR(master_.Wait(
        {Kind::kMeasureBandwidth, Kind::kTopologyUnchanged, Kind::kTopology}, deadline, &kind,
        &payload));
    if (kind == Kind::kError) return ErrorFromMaster(payload);
    if (kind == Kind::kTopologyUnchanged) return Status::Ok();
    if (kind == Kind::kTopology) {
      proto::Topology topology;
      PCCL_RETURN_IF_ERROR(proto::Decode(payload, &topology));
      return ApplyTopologyLocked(std::move(topology), deadline);
    }
    proto::MeasureBandwidth measure;
    PCCL_RETURN_IF_ERROR(proto::Decode(payload, &measure));
    proto::BandwidthReport report{measure.round, {}};
    for (const proto::Member& target : measure.targets) {
      uint64_t rate = 0;
      // The probe's own deadline: its duration plus time to connect and to drain.
      Deadline probe = deadline.Min(
          Deadline::In(Milliseconds(measure.duration_ms) + std::chrono::seconds(5)));
      Status st = link::ProbeBandwidth(peer_id_.load(), target, pool_size(),
                                       Milliseconds(measure.duration_ms), credentials_, routes_,
                                       probe, &rate);
      if (!st.ok()) {
        PCCL_LOG(kWarning, "bandwidth probe to peer " + std::to_string(target.peer_id) +
                               " failed: " + st.ToString());
        rate = 0;  // unreachable: the solver avoids this link
      }
      report.samples.push_back(proto::BandwidthSample{target.peer_id, rate});
      if (rate > 0) {
        std::lock_guard<std::mutex> lock(mu_);
        measured_rates_[target.peer_id] = rate;
      }
    }
    PCCL_RETURN_IF_ERROR(master_.Send(Kind::kBandwidthReport, proto::Encode(report), deadline));
  }
}

bool Session::RingChangePushed() {
  std::lock_guard<std::mutex> lock(mu_);
  return PushedRingEpochLocked() != ring_epoch_;
}

uint64_t Session::PushedRingEpochLocked() {
  auto it = pushed_ring_epochs_.find(peer_id_.load());
  return it == pushed_ring_epochs_.end() ? 0 : it->second;
}

std::vector<Session::LinkInfo> Session::Links() {
  std::vector<uint64_t> ring;
  std::map<uint64_t, uint64_t> rates;
  std::shared_ptr<link::RingLinks> links;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ring = view_.ring;
    rates = measured_rates_;
    links = links_;
  }
  const uint64_t self = peer_id_.load();
  auto at = std::find(ring.begin(), ring.end(), self);
  std::vector<LinkInfo> out;
  if (ring.size() < 2 || at == ring.end()) return out;
  const size_t i = static_cast<size_t>(at - ring.begin());
  const uint64_t next = ring[(i + 1) % ring.size()];
  const uint64_t prev = ring[(i + ring.size() - 1) % ring.size()];
  auto rate = [&](uint64_t peer) { return rates.count(peer) ? rates.at(peer) : 0; };
  out.push_back(LinkInfo{next, true, routes_.RouteTo(next), rate(next)});
  out.push_back(LinkInfo{prev, false, routes_.RouteFrom(prev), rate(prev)});
  if (links != nullptr && links->next_peer_id() == next && links->prev_peer_id() == prev) {
    const link::RingLinks::Counters c = links->counters();
    out[0].bytes = c.tx_bytes;
    out[0].rtt_us = c.next_rtt_us;
    out[0].retransmits = c.next_retransmits;
    out[0].stripes = links->stripes();
    out[1].bytes = c.rx_bytes;
    out[1].rtt_us = c.prev_rtt_us;
    out[1].retransmits = c.prev_retransmits;
    out[1].early_bytes = c.early_rx_bytes;
  }
  return out;
}

std::vector<uint64_t> Session::RingOrder() {
  std::lock_guard<std::mutex> lock(mu_);
  return view_.ring;
}

void Session::OnTopologyChange(const proto::Topology& topology) {
  // The members' keys first: their peer-to-peer handshakes may arrive any moment now.
  credentials_.Learn(topology.members);
  routes_.Learn(topology.members);
  // This peer's group's ring epoch in the new topology (0: this peer is not in it; a joiner
  // whose peer id is not known yet has no links to break either).
  uint64_t ring_epoch = 0;
  std::shared_ptr<RingLinks> links;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pushed_ring_epochs_.clear();
    for (const auto& m : topology.members) pushed_ring_epochs_[m.peer_id] = m.ring_epoch;
    auto it = pushed_ring_epochs_.find(peer_id_.load());
    if (it != pushed_ring_epochs_.end()) ring_epoch = it->second;
    links = links_;
  }
  // Collectives still running on an older ring can never complete: fail them now (they
  // report, get a stale-epoch verdict and raise PeerLostError; the retry runs on the new
  // ring). A topology that keeps this group's ring leaves its links and collectives alone.
  // (This runs before the topology is queued, so no thread has applied it yet.)
  if (links && links->epoch() < ring_epoch) {
    links->Break(Status(StatusCode::kAborted,
                        "the master changed the ring (a peer left, was removed or joined)"));
  } else if (links && ring_epoch == 0) {
    links->Break(Status(StatusCode::kKicked, "the master's topology no longer includes this peer"));
  }
}

void Session::OnVerdict(const proto::Verdict& verdict) {
  if (verdict.ok) return;
  StatusCode code = verdict.code != 0 ? static_cast<StatusCode>(verdict.code) : StatusCode::kAborted;
  Status why(code, verdict.reason);
  // The master is gone. For good: every pair's links go too, so that nothing waits for a
  // transfer that can no longer be decided. Until it resumes: transfers on them carry on,
  // since a transfer needs no master to succeed (its receiver decides) and breaking the
  // links could lose an ack its receiver already sent; the resumed run's new ring drops
  // them (ApplyTopologyLocked).
  if (verdict.key.epoch == UINT64_MAX && MasterGoneForGood()) DropPairs(why);
  std::shared_ptr<RingLinks> links;
  std::vector<std::shared_ptr<RingLinks>> pairs;  // a direct collective's blocks move there
  {
    std::lock_guard<std::mutex> lock(mu_);
    links = links_;
    if (verdict.key.pair()) {  // a send/recv: on its pair's links
      const uint64_t self = peer_id_.load();
      auto it = pairs_.find(verdict.key.from_peer == self ? verdict.key.to_peer
                                                          : verdict.key.from_peer);
      // Read without the pair's lock: its builder sets it under mu_ too (ConnectPair).
      links = it == pairs_.end() ? nullptr : it->second->links;
    } else {
      pairs = PairLinksLocked();
    }
  }
  if (!links) return;
  if (verdict.key.epoch == UINT64_MAX) {
    links->Break(why);  // the master is gone
  } else if (verdict.ring_replaced && links->epoch() == verdict.key.epoch) {
    // The master replaces this ring (a link broke somewhere on it, a member left): links
    // that look healthy here may already be cut at a neighbour, so the retry must wait for
    // the new topology (BindRing waits while the links are broken) rather than fail again
    // on them.
    links->Break(Status(code, "the ring of epoch " + std::to_string(verdict.key.epoch) +
                                  " is being replaced: " + verdict.reason));
  } else {
    links->FailOp(verdict.key, why);
  }
  // Also where a gather, scatter or all-to-all moves its blocks: a member that never
  // opens its operation there (it failed first) must not leave a partner's early blocks
  // waiting for it (FailOp frees them and drains the rest).
  for (auto& pair : pairs) pair->FailOp(DirectKey(verdict.key), why);
}

void Session::BeginCollective() {
  std::lock_guard<std::mutex> lock(mu_);
  ++in_flight_;
}

void Session::EndCollective() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--in_flight_ == 0) idle_cv_.notify_all();
}

int Session::collectives_in_flight() {
  std::lock_guard<std::mutex> lock(mu_);
  return in_flight_;
}

Status Session::AwaitRing(Deadline deadline, const char* caller, uint64_t pair_peer,
                          const std::function<proto::OpKey()>& first_key, uint32_t steps) {
  if (closed_.load()) return FailedPrecondition("communicator is closed");
  // While the run resumes after a lost master, wait for it: then bind to the new ring.
  PCCL_RETURN_IF_ERROR(AwaitMaster(deadline, caller));
  // The key this call takes on the ring of the moment; the others may have failed that
  // very operation already (see TakeEarlyVerdict below).
  proto::OpKey key;
  {
    std::lock_guard<std::mutex> lock(mu_);
    key = first_key();
  }
  // If the ring broke (a neighbour died) and this is the retry, the master replaces the
  // topology as soon as it notices, which may be a moment after this peer did: wait for
  // that rather than failing again at once on the broken links. Another collective of
  // this peer, or the topology watcher, may apply the new topology meanwhile: the wait
  // wakes for that too. A broken pair link (send/recv) is repaired the same way.
  auto broken_links = [&]() -> std::shared_ptr<RingLinks> {
    std::shared_ptr<RingLinks> current;
    {
      std::lock_guard<std::mutex> lock(mu_);
      current = links_;
    }
    if (!current || current->broken_status().ok()) {
      current = pair_peer != 0 ? BrokenPairLinks(pair_peer) : nullptr;
    }
    return current && !current->broken_status().ok() ? current : nullptr;
  };
  // Waits until a topology comes or another thread installs new links (links_generation_
  // moves on from `generation`, read before `broken` was found broken).
  auto wait_for_topology = [&](const std::shared_ptr<RingLinks>& broken,
                               uint64_t generation) -> Status {
    if (deadline.expired()) {
      return Status(StatusCode::kDeadlineExceeded,
                    "the links of epoch " + std::to_string(broken->epoch()) + " are broken (" +
                        broken->broken_status().message() +
                        ") and the master sent no new topology in time");
    }
    Status pushed = master_.WaitUntilHas(Kind::kTopology, deadline, [&] {
      return links_generation_.load() != generation;
    });
    return pushed.ok() || pushed.code() == StatusCode::kDeadlineExceeded ? Status::Ok() : pushed;
  };
  bool broken = false;
  while (true) {
    const uint64_t generation = links_generation_.load();
    std::shared_ptr<RingLinks> links = broken_links();
    if (!links) break;
    broken = true;
    if (master_.Has(Kind::kTopology)) break;
    PCCL_RETURN_IF_ERROR(wait_for_topology(links, generation));
  }
  // The others may have failed this very operation already (its links broke under them
  // before this peer started it): then it fails here too, so that every peer sees the same
  // outcome for it and their next calls line up.
  PCCL_RETURN_IF_ERROR(TakeEarlyVerdict(key, steps));
  // Otherwise it runs on the new ring once the master changed this group's ring (a peer
  // left or joined, or links broke). A topology that keeps this ring (a change in another
  // group) is left to the topology watcher, and this collective runs on the links it has.
  // It never binds to broken links: every member binds this call on the new ring, and one
  // that failed here on the old ring's links would be a call behind the others (which
  // then wait for it). When the watcher took the topology and applies it, the links are
  // new once it is done (LockControl waits for it, or the wait below wakes).
  while (true) {
    if (master_.Has(Kind::kTopology) && (broken || RingChangePushed())) {
      std::unique_lock<std::timed_mutex> control;
      PCCL_RETURN_IF_ERROR(LockControl(deadline, caller, &control));
      PCCL_RETURN_IF_ERROR(ApplyPushedTopologiesLocked(deadline));
    }
    const uint64_t generation = links_generation_.load();
    std::shared_ptr<RingLinks> links = broken_links();
    if (!links) return Status::Ok();
    broken = true;
    PCCL_RETURN_IF_ERROR(wait_for_topology(links, generation));
  }
}

Status Session::BindRing(uint64_t tag, Deadline deadline, RingBinding* out, uint32_t steps) {
  RefreshViewOnReturn refresh{this};
  PCCL_RETURN_IF_ERROR(AwaitRing(deadline, "all_reduce()", 0, [&] {
    auto it = next_seq_.find(tag);
    return proto::OpKey{ring_epoch_, options_.peer_group, tag,
                        it == next_seq_.end() ? 0 : it->second};
  }, steps));

  proto::OpKey key;
  std::shared_ptr<RingLinks> links;
  int rank = 0;
  int world = 0;
  std::shared_ptr<const std::vector<uint64_t>> ring;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!connected_) return FailedPrecondition("call connect() first");
    world = group_world_;
    if (world < 2) {
      return Status(StatusCode::kTooFewPeers,
                    "all-reduce needs at least 2 peers in group " +
                        std::to_string(options_.peer_group) + ", this group has " +
                        std::to_string(world));
    }
    key = proto::OpKey{ring_epoch_, options_.peer_group, tag, next_seq_[tag]};
    next_seq_[tag] += steps;
    links = links_;
    rank = rank_;
    ring = GroupRingLocked();
  }
  *out = RingBinding{key, std::move(links), rank, world, std::move(ring)};
  return Status::Ok();
}

Status Session::TakeEarlyVerdict(const proto::OpKey& key, uint32_t steps) {
  proto::Verdict verdict;
  if (!master_.TakeVerdict(key, &verdict)) return Status::Ok();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ring_epoch_ == key.epoch && key.pair()) {
      if (PairKeyLocked(key.from_peer, key.to_peer, key.tag) == key) {
        ++pair_counts_[{key.from_peer, key.to_peer, key.tag}];
      }
      if (ReceiptState* refused = RefusedReceiptLocked(key)) {
        refused->state = Receipt::kFailed;  // its recv came and failed: settled
      }
    } else if (ring_epoch_ == key.epoch && next_seq_[key.tag] == key.seq) {
      next_seq_[key.tag] += steps;
    }
  }
  if (verdict.ok) return Status::Ok();  // cannot happen: an ok verdict needs this peer's report
  return VerdictFailure(verdict);
}

Status Session::OpenOp(RingLinks& links, const proto::OpKey& key, uint64_t descriptor_hash,
                       Deadline deadline, std::shared_ptr<link::RingOp>* out) {
  PCCL_RETURN_IF_ERROR(links.OpenOp(key, descriptor_hash, deadline, out));
  if (key.pair() && key.to_peer == peer_id_.load()) {  // a recv its sender gave up on
    std::lock_guard<std::mutex> lock(mu_);
    if (const ReceiptState* refused = RefusedReceiptLocked(key)) (*out)->Fail(refused->why);
  }
  // From here on a verdict reaches the op through OnVerdict (FailOp on these links); one
  // that came earlier waits in the master client. Looked at after the open, so that no
  // verdict falls between the two. Peeked, not taken: the op fails, reports, and its
  // verdict wait takes it.
  proto::Verdict verdict;
  if (master_.PeekVerdict(key, &verdict) && !verdict.ok) (*out)->Fail(VerdictFailure(verdict));
  return Status::Ok();
}

Status Session::WaitApplyingTopologiesLocked(const std::vector<Kind>& kinds, Deadline deadline,
                                             Kind* kind, std::string* payload,
                                             uint64_t* arrival) {
  // A control call that waits for the other members (a joint query, a sync round) must
  // not hold up a topology's link phase meanwhile: a member busy in a collective may be
  // waiting for that very topology (its ring broke) before it can make the same call.
  std::vector<Kind> also_topology = kinds;
  also_topology.push_back(Kind::kTopology);
  while (true) {
    PCCL_RETURN_IF_ERROR(master_.Wait(also_topology, deadline, kind, payload, arrival));
    if (*kind != Kind::kTopology) return Status::Ok();
    proto::Topology topology;
    PCCL_RETURN_IF_ERROR(proto::Decode(*payload, &topology));
    PCCL_RETURN_IF_ERROR(ApplyTopologyLocked(std::move(topology), deadline));
  }
}

void Session::ReportBrokenLink(uint64_t ring_epoch, uint64_t peer_id, const Status& why) {
  // A link of this peer's ring failed between live peers (a reset, a partition, an idle
  // mapping a NAT forgot): the master re-dials the ring as a new epoch (master/
  // link_repairs.h). Best effort: without a master, every call reports that anyway.
  if (closed_.load()) return;
  proto::LinkBroken report{ring_epoch, peer_id, why.message()};
  if (report.reason.size() > proto::kMaxReasonLength) report.reason.resize(proto::kMaxReasonLength);
  PCCL_LOG(kInfo, "ring link to peer " + std::to_string(peer_id) + " broke: " + why.ToString());
  (void)master_.Send(Kind::kLinkBroken, proto::Encode(report), Deadline::In(kReportTimeout));
}

Status Session::SendReport(const proto::OpDone& done) {
  // Encoded into this thread's buffer, kept with its room (one report per collective:
  // none from the heap). It keeps the largest report this thread sent (a VERIFIED one's
  // hashes: a few hundred bytes).
  thread_local std::string payload;
  proto::EncodeInto(done, &payload);
  return master_.Send(Kind::kOpDone, payload, Deadline::In(kReportTimeout));
}

Status Session::AwaitVerdict(const proto::OpDone& done, Deadline, proto::Verdict* verdict) {
  // Once the operation ended here, its verdict is what every peer must apply: the wait is
  // not cut at the call's deadline (a peer that gave up would restore its input while the
  // others commit, and its next retry would run out of step with theirs). It is bounded all
  // the same: the master decides as soon as every member reported, failed or left, and a
  // master that goes silent is given up within its heartbeat timeout.
  // The wait is registered before the report goes (WaitVerdict runs it), as in ReportThen.
  return NoVerdict(master_.WaitVerdict(done.key, verdict, [&] { return SendReport(done); }));
}

void Session::ReportThen(const proto::OpDone& done, MasterClient::VerdictCallback then) {
  // As AwaitVerdict, the wait bounded the same way; `then` goes to the master client as
  // it is (see session.h). Registered before the report goes: a verdict that comes at once
  // then finds it, instead of being stored (and copied) for it to take.
  master_.OnVerdict(done.key, std::move(then));
  const Status sent = SendReport(done);
  if (!sent.ok()) master_.AbandonVerdict(done.key, sent);
}

void Session::ReportReceived(const proto::OpDone& done) {
  // Nothing waits for an answer: the receiver decided. Best effort: if the master does not
  // hear of it and the sender needs to know (it lost the ack), the master asks again.
  (void)SendReport(done);
}

void Session::Close() {
  if (closed_.exchange(true)) return;
  bool connected;
  std::shared_ptr<RingLinks> links;
  {
    std::lock_guard<std::mutex> lock(mu_);
    connected = connected_;
    links = std::move(links_);
    connected_ = false;
  }
  if (connected) {
    (void)master_.Send(Kind::kGoodbye, "", Deadline::In(kGoodbyeTimeout));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    master_cv_.notify_all();  // a resume waiting to retry gives up
  }
  if (links) links->Break(Status(StatusCode::kAborted, "communicator closed"));
  links.reset();
  DropPairs(Status(StatusCode::kAborted, "communicator closed"));
  parker_.Stop();
  incoming_.Close();
  pair_incoming_.Close();
  NotePairActivity();  // a recv from any source gives up
  listener_.Close();
  (void)state_server_.Withdraw();
  probe_server_.Close();
  master_.Close();  // wakes the topology watcher
  if (topology_watcher_.joinable()) topology_watcher_.join();
}

}  // namespace pccl::comm
