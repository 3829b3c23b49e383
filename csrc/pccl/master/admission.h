// Admission and liveness: who joins the run and when, the topology epochs and their link
// phases, and who is removed for silence or slow links. The first of the master's state
// machines (membership.h routes the events to them).
//
// Admission owns the Roster (roster.h) and is the only one to change it. It never starts
// an epoch on its own: where its protocol calls for one it returns a NextEpoch, and
// Membership starts it (the verdicts of changed groups fail first, then Admission's
// StartEpoch sends the Topology). Likewise a departure is Membership's: Admission forgets
// the peers (Forget), the other machines react, then Admission finishes the round
// (AfterMembersLeft, AfterPendingLeft, MaybeAnswerPending).
//
// Thread-safety: none; the thread that owns the Membership owns its Admission.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "pccl/common/clock.h"
#include "pccl/master/events.h"
#include "pccl/master/roster.h"
#include "pccl/master/step.h"
#include "pccl/proto/messages.h"

namespace pccl::master {

// Returns a 64-bit value; Admission skips 0 and ids in use.
using PeerIdGenerator = std::function<uint64_t()>;

struct AdmissionOptions {
  // Members that have not sent LinksReady this long after a Topology are dropped.
  Duration link_timeout = std::chrono::seconds(30);
  // Peers silent this long (no message at all) are kicked. Peers heartbeat 4 times per
  // timeout (Welcome tells them the interval).
  Duration heartbeat_timeout = std::chrono::seconds(3);
  // The run's relay (relay.h): its host (empty: the master's) and port (0: none), and the
  // key each Welcome's ticket is made with.
  std::string relay_host;
  uint16_t relay_port = 0;
  std::string relay_key;
  // A master without members (restarted) that a peer resumes the run with waits this
  // long for the rest of the peers that peer names before it rebuilds the run from those
  // back (admission.cc, "Resuming").
  Duration resume_window = std::chrono::seconds(5);
};

// An epoch Admission decided on, for Membership to start.
struct NextEpoch {
  std::vector<ConnId> members;  // ring order
  std::string cause;            // why, e.g. "pending peers were admitted"
  // The vote round goes on into the new epoch (a member left mid-round): the survivors'
  // votes stay recorded instead of being cleared.
  bool keep_votes = false;
  // Groups whose ring stays the same but is re-dialled (a link broke): they get the new
  // epoch as their ring epoch, like groups whose ring changes.
  std::set<uint32_t> relink;
};

// Collectives seq 0 .. count-1 of (peer_group, tag), which every member of a group whose
// ring the admission changes started before voting: they finish on the old ring first.
struct StartedOps {
  uint32_t peer_group = 0;
  uint64_t tag = 0;
  uint64_t count = 0;
};

// An admission ready but for its started collectives (ReadyToAdmit).
struct Admit {
  NextEpoch next;
  std::vector<StartedOps> wait_for;  // every one must be decided before `next` starts
};

// Peers to remove, and why each went.
struct Removal {
  std::vector<ConnId> conns;
  CauseFn cause;
};

class Admission {
 public:
  // `ids` == nullptr: a std::random_device-seeded generator.
  explicit Admission(AdmissionOptions options = {}, PeerIdGenerator ids = nullptr);

  const Roster& roster() const { return roster_; }
  // True from a Topology until every member reported LinksReady for it.
  bool links_pending() const { return link_phase_; }
  // The link deadline (in a link phase) or the first peer to fall silent; max() if none.
  TimePoint NextDeadline() const;
  // Every message from a peer shows it alive.
  void Touch(ConnId conn, TimePoint now) { roster_.Touch(conn, now); }
  void SetReachable(ConnId conn, bool reachable) { roster_.SetReachable(conn, reachable); }
  // The master was stopped for `gap`: every peer's silence so far is shortened by it.
  void Forgive(Duration gap) { roster_.Forgive(gap); }
  // A heartbeat also brings the path's retransmission timeout (events.h).
  void OnHeartbeat(ConnId conn, Duration rto, Duration rtt) {
    roster_.SetRto(conn, rto);
    if (rtt > Duration(0)) roster_.SetHeartbeatRtt(conn, rtt);
  }
  // How long `peer` may stay silent before it is kicked: the heartbeat timeout, plus, on a
  // path slower than loopback, time for four back-to-back retransmissions of a lost beat
  // (1 + 2 + 4 + 8 times the retransmission timeout beyond its 200 ms floor), so that loss
  // on a long path does not pass for a dead peer.
  Duration SilenceAllowance(const Peer& peer) const;

  // --- events (the peer said Hello before, except for OnHello) ---
  // A new connection's Hello: Welcome. The first peer of an empty run is admitted at once:
  // returns the epoch that makes it the run. A Hello that resumes the run under an id no
  // peer holds keeps that id; in a run without members it joins the recovery, which may
  // complete with it: returns the epoch that rebuilds the run.
  std::optional<NextEpoch> OnHello(const event::Hello& e, Step& step);
  // The Hello of a peer that resumes on a new connection while the roster still holds it
  // (`was`, already forgotten by Membership): it comes back pending under its id, and
  // Membership puts it back into its ring.
  void OnReplacedHello(const event::Hello& e, const Peer& was, Step& step);
  // The recovery's epoch, once every peer the resumers named is back or the window
  // passed; nullopt before, or with no recovery open.
  std::optional<NextEpoch> RecoveryReady(TimePoint now);
  bool recovering() const { return recovery_.has_value(); }
  // A restarted master's state file: the recovery opens now, expecting its members back
  // in their ring order (`members`, with their groups' ring epochs) above `epoch`.
  void OpenRecovery(const std::vector<proto::Member>& members, uint64_t epoch, TimePoint now);
  // update_topology(). Returns true when the vote was recorded: Membership then asks
  // ReadyToAdmit.
  bool OnVote(const Peer& peer, const proto::Vote& vote, Step& step);
  // Returns true when this report ended the link phase (TopologyComplete went out).
  bool OnLinksReady(const Peer& peer, uint64_t epoch, Step& step);
  void OnQueryPending(const Peer& peer, const event::QueryPending& e, Step& step);

  // When every member voted (outside a link phase, with peers pending): the epoch that
  // admits the pending peers, and the started collectives it waits for. Membership asks
  // after each recorded vote and each verdict.
  std::optional<Admit> ReadyToAdmit() const;

  // Starts `next` (changed: roster().ChangedGroups(next.members)): the roster advances,
  // the vote round ends (unless next.keep_votes), a link phase starts and every member
  // gets the Topology.
  void StartEpoch(const NextEpoch& next, const std::set<uint32_t>& changed, Step& step);

  // --- departures ---
  // Forgets the peers on `conns` (unknown ones are skipped) and their votes, queries and
  // link reports. Returns the members among them, in `conns` order.
  std::vector<Peer> Forget(const std::vector<ConnId>& conns);
  // After Forget removed members (and the other machines failed what they interrupted):
  // the survivors' epoch (it admits the pending peers too if every survivor voted), or,
  // when no member is left, the pending peers' epoch; nullopt if nobody is left.
  std::optional<NextEpoch> AfterMembersLeft(const std::string& cause);
  // After Forget removed only pending peers: if none is left pending, the voters get
  // TopologyUnchanged.
  void AfterPendingLeft(Step& step);
  // Answers the are_peers_pending() round once every member asked.
  void MaybeAnswerPending(Step& step);
  // Answers the queries that wait for a pending peer (QueryPending.wait), if one is.
  void AnswerWaiting(Step& step);

  // --- time ---
  // Peers silent for heartbeat_timeout: each gets Error{Kicked} and is dropped; Membership
  // removes them.
  Removal KickSilent(Step& step);
  // Past the link deadline: the members without LinksReady get Error{DeadlineExceeded} and
  // are dropped; Membership removes them. nullopt before the deadline.
  std::optional<Removal> DropLateLinks(Step& step);

 private:
  uint64_t NewPeerId();
  // The Peer a Hello makes, with id `peer_id`; nullopt (and Error + Drop) if its advertised
  // address is refused.
  std::optional<Peer> MakePeer(const event::Hello& e, uint64_t peer_id, Step& step);
  void SendWelcome(const Peer& peer, bool accepted, Step& step);
  // A resuming peer joins the recovery (opening it if need be).
  void JoinRecovery(const event::Hello& e, TimePoint now);

  AdmissionOptions options_;
  PeerIdGenerator ids_;
  Roster roster_;

  // Vote round: members that voted since the last epoch, with the collectives each had
  // started; only while someone is pending.
  std::map<ConnId, proto::Vote> votes_;
  // are_peers_pending() round: the members that asked, with their query numbers.
  std::map<ConnId, uint64_t> pending_queries_;
  // Queries of peers alone that wait for a pending peer, with their numbers.
  std::map<ConnId, uint64_t> waiting_queries_;

  // A restarted master's recovery: the rings the resuming peers named (per group, the claim
  // with the latest ring epoch), the latest epoch any of them applied, and when the master
  // stops waiting for the rest.
  struct Recovery {
    std::map<uint32_t, std::pair<uint64_t, std::vector<uint64_t>>> rings;  // ring epoch, ids
    uint64_t epoch = 0;
    TimePoint deadline;
  };
  std::optional<Recovery> recovery_;

  // Link phase of the current epoch: members that sent LinksReady, and the deadline for
  // the rest.
  bool link_phase_ = false;
  std::set<ConnId> links_ready_;
  TimePoint link_deadline_ = TimePoint::max();
};

}  // namespace pccl::master
