// The master's decisions: who is in the run, the topology epoch, the verdict of every
// collective, the shared-state syncs and the ring order, as a pure state machine.
//
// Membership::Handle(event, now) takes one event the server observed (a decoded message
// from a connection, a disconnect, or time passing; events.h) and returns the actions the
// server must perform (send a message to a connection, drop a connection). It does no I/O,
// reads no clock and draws peer ids from an injected generator, so the same (events, now)
// sequence always yields the same actions: tests drive it with a fake clock instead of
// sleeping.
//
// A connection that has sent Hello is a peer: pending (waiting for the members to vote it
// in) or a member (in the ring). Input that breaks the protocol (an undecodable frame, a
// first message that is not Hello, a second Hello) is answered with Error{InvalidArgument}
// and the connection is dropped; a well-formed message that is illegal in the current
// state is refused with Error{FailedPrecondition} and the connection is kept. Nothing a
// peer sends can make Handle() crash.
//
// Membership itself only routes: each event goes to the state machine it concerns, each
// with its own state and file, and Membership carries the few interactions between them
// (membership.cc lists them):
//   admission.h       joining, votes, epochs and link phases, liveness, departures
//   verdicts.h        the verdict of every collective
//   sync_rounds.h     shared-state sync rounds
//   ring_optimizer.h  optimize_topology(): bandwidth measurements and the ring order
//   link_repairs.h    re-dialling a ring after a link broke between live peers
//
// Thread-safety: none; one thread (the server loop) owns a Membership.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pccl/common/clock.h"
#include "pccl/master/admission.h"
#include "pccl/master/events.h"
#include "pccl/master/link_repairs.h"
#include "pccl/net/address.h"
#include "pccl/master/ring_optimizer.h"
#include "pccl/master/roster.h"
#include "pccl/master/run_status.h"
#include "pccl/master/step.h"
#include "pccl/master/sync_rounds.h"
#include "pccl/master/verdicts.h"

namespace pccl::master {

struct MembershipOptions {
  // Members that have not sent LinksReady this long after a Topology are dropped.
  Duration link_timeout = std::chrono::seconds(30);
  // Peers silent this long (no Heartbeat nor any other message) are kicked: a hung or
  // stopped process is removed as if it had died. Peers heartbeat 4 times per timeout.
  Duration heartbeat_timeout = std::chrono::seconds(3);
  // Passed to Admission: how long a restarted master waits for the resuming peers.
  Duration resume_window = std::chrono::seconds(5);
  // Decided verdicts kept per epoch so that a late OpDone gets the stored answer.
  size_t max_decided_ops = 4096;
  // Undecided operations tracked at once; an OpDone beyond it fails for its sender only.
  size_t max_open_ops = 65536;
  size_t max_open_ops_per_peer = 4096;
  // optimize_topology(): how long each probe streams, and how long a measured bandwidth
  // is trusted before the next optimize_topology() measures that pair again.
  Duration probe_duration = std::chrono::milliseconds(300);
  Duration bandwidth_max_age = std::chrono::minutes(10);
  // Passed to Admission: the run's relay host (empty: the master's), port (0: none) and
  // ticket key.
  std::string relay_host;
  uint16_t relay_port = 0;
  std::string relay_key;
};

class Membership {
 public:
  // `ids` == nullptr: a std::random_device-seeded generator.
  explicit Membership(MembershipOptions options = {}, PeerIdGenerator ids = nullptr);

  // Applies `event` at time `now` (monotonic; never decreasing between calls) and returns
  // the actions it causes.
  std::vector<Action> Handle(const Event& event, TimePoint now);

  // The earliest time at which a Tick may change something; TimePoint::max() if none.
  TimePoint NextDeadline() const {
    return std::min(admission_.NextDeadline(), repairs_.NextDeadline());
  }

  // The master's state file (MasterOptions::state_file): what a restarted master needs
  // to know of the run before its peers resume it.
  proto::MasterState Persist() const;
  // Starts from a state file a previous master wrote: the recovery waits for its members,
  // and their revisions, bandwidths and counters carry on.
  void WarmStart(const proto::MasterState& state, TimePoint now);

  // Observers (status, tests).
  // What the master shows of the run (master/run_status.h), as of `now`.
  RunStatus Snapshot(TimePoint now) const;
  uint64_t epoch() const { return admission_.roster().epoch(); }
  bool links_pending() const { return admission_.links_pending(); }
  std::vector<uint64_t> MemberIds() const;   // in ring order
  std::vector<uint64_t> PendingIds() const;  // in arrival order
  // The endpoint other peers dial for the peer on `conn` (member or pending), if it said Hello.
  std::optional<net::Endpoint> AdvertisedEndpoint(ConnId conn) const {
    const Peer* peer = roster().Find(conn);
    if (peer == nullptr) return std::nullopt;
    return net::Endpoint{peer->host, peer->port};
  }
  // The master's dial-back of the peer on `conn` ended; later topologies carry the result.
  void SetReachable(ConnId conn, bool reachable) { admission_.SetReachable(conn, reachable); }
  // The latest measured bandwidth from one peer to another (bytes/s), if any.
  std::optional<double> MeasuredBandwidth(uint64_t from_peer_id, uint64_t to_peer_id) const {
    return optimizer_.MeasuredBandwidth(from_peer_id, to_peer_id);
  }

 private:
  const Roster& roster() const { return admission_.roster(); }

  // Events from a peer (one that said Hello), routed to their machine.
  void On(const Peer& peer, const event::VoteTopology& e, Step& step);
  void On(const Peer& peer, const event::LinksReady& e, Step& step);
  void On(const Peer& peer, const event::QueryPending& e, Step& step);
  void On(const Peer& peer, const event::OpDone& e, Step& step);
  void On(const Peer& peer, const event::Heartbeat& e, Step& step);
  void On(const Peer& peer, const event::SyncState& e, Step& step);
  void On(const Peer& peer, const event::SyncDone& e, Step& step);
  void On(const Peer& peer, const event::OptimizeTopology& e, Step& step);
  void On(const Peer& peer, const event::BandwidthReport& e, Step& step);
  void On(const Peer& peer, const event::LinkBroken& e, Step& step);
  void OnHello(const event::Hello& e, Step& step);
  // A resuming peer's Hello while the roster still holds its id (admission.cc, "Resuming").
  void ReplaceConnection(const Peer& old, const event::Hello& e, Step& step);
  // A resuming peer's shared-state revision and measured bandwidths.
  void LearnFromResume(const Peer& peer, const proto::Hello& hello, Step& step);
  void OnLeave(ConnId conn, Step& step);  // Goodbye and Disconnected
  void OnTick(Step& step);

  // Admits the pending peers once Admission is ready and the collectives it waits for are
  // decided.
  void MaybeAdmit(Step& step);
  // Starts an optimize_topology() round outside a link phase; adopts its order if better.
  void MaybeOptimize(Step& step);
  // Removes one end of a pair whose link keeps breaking, and re-dials the rings whose
  // repair is due.
  void RepairLinks(Step& step);
  // Starts `next`: the undecided collectives of the groups whose ring changes fail, the
  // optimize_topology() round ends, and Admission sends the Topology.
  void StartEpoch(const NextEpoch& next, Step& step);
  // Forgets the peers on `conns`. A removed member fails its group's undecided collectives
  // and sync round with `cause(peer)`; if any member went, a new epoch starts with the rest.
  void RemovePeers(const std::vector<ConnId>& conns, const CauseFn& cause, Step& step);
  // Error{InvalidArgument} + Drop, and forgets the peer if it was one.
  void Reject(ConnId conn, const std::string& text, Step& step);

  RunLog log_;  // first: Verdicts points to it
  Admission admission_;
  Verdicts verdicts_;
  SyncRounds syncs_;
  RingOptimizer optimizer_;
  LinkRepairs repairs_;
};

}  // namespace pccl::master
