// Who is in the run, as the master last decided it: every peer that said Hello (pending
// or member), the members' ring order, the topology epoch and each peer group's ring
// epoch.
//
// Admission (admission.h) owns the one Roster and alone changes it; the other machines
// of the master read it through a const reference: to find a peer, list a group's members
// in ring order, or check the ring epoch a collective must carry.
//
// Thread-safety: none; the thread that owns the Membership owns its Roster.
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
#include "pccl/proto/messages.h"

namespace pccl::master {

// A peer's place in the run: pending (waiting for the members to vote it in), then a
// member (in the ring). It only moves forward; a removed peer is forgotten.
enum class Role { kPending, kMember };

struct Peer {
  ConnId conn = 0;
  uint64_t peer_id = 0;
  std::string host;  // where other peers reach its p2p listener
  uint16_t port = 0;
  uint32_t peer_group = 0;
  std::string public_key;  // from its Hello: the other members check its handshakes with it
  Role role = Role::kPending;
  TimePoint last_seen;  // the last message from this peer
  Duration rto{0};      // its connection's retransmission timeout, at its latest heartbeat
  Duration heartbeat_rtt{0};  // its latest heartbeat's round trip, as it measured it
  uint8_t reachable = proto::kReachabilityUnknown;  // the master's dial-back (dial_back.h)
  // Pending because it resumed the run with a master that had no members (a restarted
  // one): admitted with the other resumers, without a vote (admission.cc, "Resuming").
  bool resuming = false;
};

// "peer <id> (<host>)": how messages and verdicts name a peer.
std::string Describe(const Peer& peer);

// The code the others get for a failure a member reported (OpDone, SyncDone): a member
// may say that its operation was torn down, timed out, lost data or was called wrongly,
// nothing else. A code that would make the others act as if the master had failed or
// removed them (Unavailable, Kicked, ...) becomes Aborted: retry.
StatusCode MemberReportedCode(uint32_t wire_code);

// Why a removed peer went, e.g. "peer 42 (10.0.0.3) left": the failures of the
// collectives and syncs its departure interrupts say it.
using CauseFn = std::function<std::string(const Peer&)>;

class Roster {
 public:
  // --- reading (every machine) ---
  const Peer* Find(ConnId conn) const;  // nullptr: not a peer (never said Hello, or gone)
  const Peer& at(ConnId conn) const;    // a peer that must exist
  const std::map<ConnId, Peer>& peers() const { return peers_; }
  const std::vector<ConnId>& members() const { return members_; }  // ring order
  const std::vector<ConnId>& pending() const { return pending_; }  // arrival order
  // The members of `peer_group`, in ring order.
  std::vector<ConnId> GroupMembers(uint32_t peer_group) const;
  // The peer ids of `conns`, in that order.
  std::vector<uint64_t> Ids(const std::vector<ConnId>& conns) const;
  bool IdInUse(uint64_t peer_id) const;
  const Peer* FindId(uint64_t peer_id) const;  // nullptr: no peer has that id

  uint64_t epoch() const { return epoch_; }
  const std::string& epoch_cause() const { return epoch_cause_; }  // why epoch() started
  // The epoch in which `peer_group`'s ring (members and order) last changed: the epoch
  // its collectives carry in their OpKeys (proto::Member::ring_epoch). 0 for a group
  // without members.
  uint64_t RingEpoch(uint32_t peer_group) const;
  // The groups whose ring would change if `members` (ring order) became the run: the
  // groups that gain, lose or reorder members, compared with the rings last sent.
  std::set<uint32_t> ChangedGroups(const std::vector<ConnId>& members) const;
  // The Topology message of the current epoch.
  proto::Topology Topology() const;

  // --- changing (Admission only; tests build rosters by hand) ---
  // Adds a peer that said Hello; `queue`: it waits in pending() for the vote.
  void Add(Peer peer, bool queue);
  void Touch(ConnId conn, TimePoint now);  // a message arrived from `conn`
  // The dial-back of the peer on `conn` ended (next topologies say so).
  void SetReachable(ConnId conn, bool reachable);
  void SetRto(ConnId conn, Duration rto);   // its latest heartbeat's measurement
  void SetHeartbeatRtt(ConnId conn, Duration rtt);
  void ClearResuming(ConnId conn);          // the recovery admits it
  void Forgive(Duration gap);               // every peer's last_seen moves `gap` later
  // Forgets `conn` (pending or member); nullopt if it was not a peer.
  std::optional<Peer> Remove(ConnId conn);
  // The next epoch will be above `floor` (a restarted master continues the peers' epochs).
  void RaiseEpoch(uint64_t floor);
  // Starts the next epoch, started for `cause`, with `members` (ring order): pending peers
  // among them become members, and each group in `changed` (ChangedGroups(members)) gets
  // the new epoch as its ring epoch.
  void Advance(std::vector<ConnId> members, const std::set<uint32_t>& changed,
               const std::string& cause);

 private:
  std::map<uint32_t, std::vector<ConnId>> RingsOf(const std::vector<ConnId>& order) const;

  std::map<ConnId, Peer> peers_;  // every connection that sent Hello
  std::vector<ConnId> members_;   // ring order
  std::vector<ConnId> pending_;   // arrival order
  uint64_t epoch_ = 0;
  std::string epoch_cause_;  // why epoch_ started, e.g. "peer 42 (10.0.0.3) left"
  std::map<uint32_t, uint64_t> ring_epoch_;
  // Each group's ring, as last sent: members_ may have lost departed peers since.
  std::map<uint32_t, std::vector<ConnId>> group_rings_;
};

}  // namespace pccl::master
