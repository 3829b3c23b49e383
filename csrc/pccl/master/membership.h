// The master's decisions: who is in the run, the topology epoch, and the verdict of every
// collective, as a pure state machine.
//
// Membership::Handle(event, now) takes one event the server observed (a decoded message
// from a connection, a disconnect, or time passing) and returns the actions the server must
// perform (send a message to a connection, drop a connection). It does no I/O, reads no
// clock and draws peer ids from an injected generator, so the same (events, now) sequence
// always yields the same actions: tests drive it with a fake clock instead of sleeping.
//
// Every connection the server accepted is named by a ConnId. A connection that has sent
// Hello is a peer: pending (waiting for the members to vote it in) or a member (in the ring).
// Input that breaks the protocol (an undecodable frame, a first message that is not Hello,
// a second Hello) is answered with Error{InvalidArgument} and the connection is dropped; a
// well-formed message that is illegal in the current state is refused with
// Error{FailedPrecondition} and the connection is kept. Nothing a peer sends can make
// Handle() crash.
//
// Thread-safety: none; one thread (the server loop) owns a Membership.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "pccl/common/clock.h"
#include "pccl/common/status.h"
#include "pccl/master/state_election.h"
#include "pccl/proto/messages.h"

namespace pccl::master {

// The server's id for one accepted connection; never reused within a server's life.
using ConnId = uint64_t;

// Events: what the server observed. `conn` is the connection it happened on.
namespace event {
struct Hello {
  ConnId conn = 0;
  proto::Hello hello;
  std::string observed_host;  // the address the server sees the connection from (no port)
};
struct VoteTopology {
  ConnId conn = 0;
  proto::Vote vote;
};
struct LinksReady {
  ConnId conn = 0;
  uint64_t epoch = 0;
};
struct QueryPending {  // are_peers_pending(): answered once every member asked
  ConnId conn = 0;
  uint64_t seq = 0;
  bool joint = true;  // false: answered at once, to this peer alone
};
struct OpDone {
  ConnId conn = 0;
  proto::OpDone op;
};
struct Goodbye {  // the peer said goodbye; the server closes the connection afterwards
  ConnId conn = 0;
};
struct Disconnected {  // the connection closed or failed; the server already closed it
  ConnId conn = 0;
};
struct ProtocolError {  // the server could not decode a frame from `conn`
  ConnId conn = 0;
  std::string reason;
};
struct Heartbeat {  // the peer is alive (any message counts too)
  ConnId conn = 0;
};
struct SyncState {  // sync_shared_state(): the peer's revision, strategy and hashes
  ConnId conn = 0;
  proto::SyncState state;
};
struct SyncDone {  // the peer fetched what its SyncPlan said (or failed to)
  ConnId conn = 0;
  proto::SyncResult result;
};
struct OptimizeTopology {  // optimize_topology(): the epoch the peer is in
  ConnId conn = 0;
  uint64_t epoch = 0;
};
struct BandwidthReport {  // a member's probes of one measurement round
  ConnId conn = 0;
  proto::BandwidthReport report;
};
struct Tick {};  // time passed; deadlines are checked against `now`
}  // namespace event

using Event = std::variant<event::Hello, event::VoteTopology, event::LinksReady,
                           event::QueryPending, event::OpDone, event::Goodbye,
                           event::Disconnected, event::ProtocolError, event::Heartbeat,
                           event::SyncState, event::SyncDone, event::OptimizeTopology,
                           event::BandwidthReport, event::Tick>;

// Actions: what the server must do, in order.
struct Send {
  ConnId conn = 0;
  proto::Kind kind = proto::Kind::kError;
  std::string payload;  // the encoded message (proto::Encode)
};
struct Drop {  // flush what was sent to `conn`, then close it; Membership forgot it already
  ConnId conn = 0;
  std::string reason;
};
using Action = std::variant<Send, Drop>;

// Returns a 64-bit value; Membership skips 0 and ids in use.
using PeerIdGenerator = std::function<uint64_t()>;

struct MembershipOptions {
  // Members that have not sent LinksReady this long after a Topology are dropped.
  Duration link_timeout = std::chrono::seconds(30);
  // Peers silent this long (no Heartbeat nor any other message) are kicked: a hung or
  // stopped process is removed as if it had died. Peers heartbeat 4 times per timeout.
  Duration heartbeat_timeout = std::chrono::seconds(3);
  // Decided verdicts kept per epoch so that a late OpDone gets the stored answer.
  size_t max_decided_ops = 4096;
  // Undecided operations tracked at once; an OpDone beyond it fails for its sender only.
  size_t max_open_ops = 65536;
  // optimize_topology(): how long each probe streams, and how long a measured bandwidth
  // is trusted before the next optimize_topology() measures that pair again.
  Duration probe_duration = std::chrono::milliseconds(300);
  Duration bandwidth_max_age = std::chrono::minutes(10);
};

class Membership {
 public:
  // `ids` == nullptr: a std::random_device-seeded generator.
  explicit Membership(MembershipOptions options = {}, PeerIdGenerator ids = nullptr);

  // Applies `event` at time `now` (monotonic; never decreasing between calls) and returns
  // the actions it causes.
  std::vector<Action> Handle(const Event& event, TimePoint now);

  // The earliest time at which a Tick may change something; TimePoint::max() if none.
  TimePoint NextDeadline() const;

  // Observers (status, tests).
  uint64_t epoch() const { return epoch_; }
  bool links_pending() const { return link_phase_; }
  std::vector<uint64_t> MemberIds() const;   // in ring order
  std::vector<uint64_t> PendingIds() const;  // in arrival order
  // The latest measured bandwidth from one peer to another (bytes/s), if any.
  std::optional<double> MeasuredBandwidth(uint64_t from_peer_id, uint64_t to_peer_id) const;

 private:
  enum class Role { kPending, kMember };
  struct Peer {
    ConnId conn = 0;
    uint64_t peer_id = 0;
    std::string host;
    uint16_t port = 0;
    uint32_t peer_group = 0;
    Role role = Role::kPending;
    TimePoint last_seen;  // the last message from this peer
    bool synced_state = false;  // completed a shared-state sync
  };
  // A shared-state sync of one peer group: collecting SyncState until every member of the
  // group reported, then (planned) collecting SyncDone until every participant is done.
  struct SyncRound {
    std::vector<std::pair<ConnId, proto::SyncState>> reports;  // report order
    bool planned = false;
    uint64_t revision = 0;
    std::set<ConnId> done;
  };
  struct Report {
    bool ok = false;
    uint64_t descriptor_hash = 0;
  };
  // optimize_topology(): the members that asked (in the current epoch), then the
  // measurement rounds: in each, a member probes at most one peer of its group.
  struct OptimizeRound {
    std::set<ConnId> requested;
    bool measuring = false;
    std::vector<std::map<ConnId, ConnId>> rounds;  // prober -> target
    size_t round = 0;
    std::set<ConnId> reported;
  };
  struct Measurement {
    double bytes_per_second = 0;
    TimePoint when;
  };
  // An undecided collective: who reported what, in report order.
  struct OpState {
    std::vector<std::pair<ConnId, Report>> reports;
  };

  // One call of Handle(): the actions produced so far and the time.
  struct Step {
    TimePoint now;
    std::vector<Action> actions;
  };

  void OnHello(const event::Hello& e, Step& step);
  void OnVote(const event::VoteTopology& e, Step& step);
  void OnLinksReady(const event::LinksReady& e, Step& step);
  void OnQueryPending(const event::QueryPending& e, Step& step);
  // Answers the are_peers_pending() round once every member asked.
  void MaybeAnswerPending(Step& step);
  // Admits the pending peers once every member voted and the collectives every member of
  // a changing group started are decided.
  void MaybeAdmit(Step& step);
  bool StartedOpsDecided() const;
  void OnOpDone(const event::OpDone& e, Step& step);
  void OnLeave(ConnId conn, Step& step);  // Goodbye and Disconnected
  void OnProtocolError(ConnId conn, const std::string& reason, Step& step);
  void OnSyncState(const event::SyncState& e, Step& step);
  void OnSyncDone(const event::SyncDone& e, Step& step);
  // Elects the group's content once every member reported, and sends the plans.
  void MaybePlanSync(uint32_t peer_group, Step& step);
  // Ends the round of `peer_group`: one SyncComplete to each participant still here.
  void CompleteSync(uint32_t peer_group, bool ok, StatusCode code, const std::string& reason,
                    Step& step);
  void OnOptimize(const event::OptimizeTopology& e, Step& step);
  void OnBandwidthReport(const event::BandwidthReport& e, Step& step);
  // Starts measuring once every member asked (outside a link phase).
  void MaybeStartOptimize(Step& step);
  void SendMeasureRound(Step& step);
  // Solves each group's ring from the measurements and adopts the new order, if better.
  void FinishOptimize(Step& step);
  void OnTick(Step& step);
  void OnHeartbeat(ConnId conn, Step& step);
  void DropConn(ConnId conn, const std::string& reason, Step& step);
  void KickSilentPeers(Step& step);

  // Forgets the peers on `conns`. Undecided operations of a removed member's group fail
  // with `cause(peer)`; if any member went, a new epoch starts with the rest.
  void RemovePeers(const std::vector<ConnId>& conns,
                   const std::function<std::string(const Peer&)>& cause, Step& step);
  // Fails every undecided operation, makes `members` (ring order) the run and sends them
  // Topology for the next epoch. Pending peers among them are admitted.
  // `cause` says why, in the failures of collectives the change interrupts.
  void StartEpoch(std::vector<ConnId> members, const std::string& cause, Step& step);
  // Sends verdict `v` for op `key` to every member of key.peer_group and stores it.
  // `code`: the StatusCode every peer raises on failure (Aborted: retry after the topology
  // settles; InvalidArgument: the peers disagree; or the failing peer's own code).
  void Decide(const proto::OpKey& key, bool ok, const std::string& reason, Step& step,
              StatusCode code = StatusCode::kAborted);

  void SendTo(ConnId conn, proto::Kind kind, std::string payload, Step& step);
  void SendError(ConnId conn, StatusCode code, const std::string& text, Step& step);
  void Refuse(ConnId conn, const std::string& text, Step& step);  // FailedPrecondition
  // Error{InvalidArgument} + Drop, and forgets the peer if it was one.
  void Reject(ConnId conn, const std::string& text, Step& step);

  const Peer* FindPeer(ConnId conn) const;
  std::string Describe(const Peer& p) const;  // "peer <id> (<host>)"
  std::vector<ConnId> GroupMembers(uint32_t peer_group) const;
  uint64_t RingEpoch(uint32_t peer_group) const;  // 0 for a group without members
  uint64_t NewPeerId();

  MembershipOptions options_;
  PeerIdGenerator ids_;

  std::map<ConnId, Peer> peers_;  // every connection that sent Hello
  std::vector<ConnId> members_;   // ring order
  std::vector<ConnId> pending_;   // arrival order
  uint64_t epoch_ = 0;
  std::string epoch_cause_;  // why epoch_ started, e.g. "peer 42 (10.0.0.3) left"
  // Per group, the epoch in which its ring last changed (proto::Member::ring_epoch): the
  // epoch its collectives carry in their OpKeys.
  std::map<uint32_t, uint64_t> ring_epoch_;
  std::map<uint32_t, std::vector<ConnId>> group_rings_;  // each group's ring, as last sent

  // Vote round: members that voted since the last epoch, with the collectives each had
  // started; only while someone is pending.
  std::map<ConnId, proto::Vote> votes_;
  // are_peers_pending() round: the members that asked, with their query numbers.
  std::map<ConnId, uint64_t> pending_queries_;

  // Link phase of epoch_: members that sent LinksReady, and the deadline for the rest.
  bool link_phase_ = false;
  std::set<ConnId> links_ready_;
  TimePoint link_deadline_ = TimePoint::max();

  // Collectives of epoch_.
  std::map<proto::OpKey, OpState> open_ops_;
  std::map<proto::OpKey, proto::Verdict> decided_;
  std::deque<proto::OpKey> decided_order_;  // oldest first, for eviction
  // Which sequence numbers of a (group, tag) are decided on the group's current ring: all
  // below `prefix`, and those in `beyond` (decided out of order). Not evicted.
  struct DecidedSeqs {
    uint64_t prefix = 0;
    std::set<uint64_t> beyond;
    void Add(uint64_t seq) {
      if (seq < prefix) return;
      beyond.insert(seq);
      while (!beyond.empty() && *beyond.begin() == prefix) {
        beyond.erase(beyond.begin());
        ++prefix;
      }
    }
  };
  std::map<std::pair<uint32_t, uint64_t>, DecidedSeqs> decided_seqs_;

  // Shared state, per peer group: the round in progress, and the revision of the last
  // successful sync (revisions advance by at most one per sync).
  std::map<uint32_t, SyncRound> syncs_;
  std::map<uint32_t, uint64_t> state_revision_;

  // Ring order: the optimize_topology() round in progress, and what was measured, by
  // (from peer id, to peer id).
  OptimizeRound optimize_;
  std::map<std::pair<uint64_t, uint64_t>, Measurement> bandwidth_;
};

}  // namespace pccl::master
