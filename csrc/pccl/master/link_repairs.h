// LinkRepairs: what the master does when a ring link breaks between two live peers.
//
// The internet breaks connections between processes that stay alive: a reset, a NAT that
// forgot an idle mapping, a route that flapped. A member whose ring link breaks (or cannot
// be built) reports LinkBroken(ring epoch, the other end). The master then re-dials that
// group's ring: a new epoch with the same members in which the group gets a new ring
// epoch, so every member of the group builds fresh links (Membership::StartEpoch with the
// group in NextEpoch::relink). It waits a short grace first, so that the disconnect of a
// peer that died (whose neighbours report its links too) arrives and the departure's epoch
// does the work instead. Collectives that ran on the broken links fail with the usual
// single verdict (PeerLostError) and their retry runs on the new links.
//
// A pair of members that breaks again and again (an asymmetric partition: both reach the
// master, not each other) is not repaired forever: after max_attempts breaks in distinct
// ring epochs within `window`, the later-admitted of the two is removed, saying why; it
// may connect again once the path heals.
//
// Thread-safety: none; the thread that owns the Membership owns its LinkRepairs.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "pccl/common/clock.h"
#include "pccl/master/events.h"
#include "pccl/master/roster.h"
#include "pccl/proto/messages.h"

namespace pccl::master {

struct LinkRepairOptions {
  // How long a reported break waits before its group's ring is re-dialled.
  Duration grace = std::chrono::milliseconds(250);
  // Breaks of one pair (in distinct ring epochs) within `window` that get it removed.
  int max_attempts = 3;
  Duration window = std::chrono::minutes(2);
};

class LinkRepairs {
 public:
  explicit LinkRepairs(LinkRepairOptions options = {}) : options_(options) {}

  // A member reported a broken link. A report about an older ring epoch, or about a peer
  // that is not its group's member, is ignored (a later epoch answered it already).
  // Returns whether the report schedules (or joins) a repair of the reporter's group.
  bool OnLinkBroken(const Peer& reporter, const proto::LinkBroken& report, const Roster& roster,
                    TimePoint now);
  // The groups whose repair is due at `now` (forgotten once returned).
  std::set<uint32_t> TakeDue(TimePoint now);
  // A pair that broke max_attempts times within the window: the member to remove (the
  // later admitted, i.e. the larger connection id) and why. Forgets the pair.
  std::optional<std::pair<ConnId, std::string>> TakeUnreachable(const Roster& roster);
  // An epoch changed (or re-dialled) these groups' rings: their repairs are done.
  void OnRingsChanged(const std::set<uint32_t>& groups);
  // A peer left: nothing about it matters any more.
  void ForgetPeer(uint64_t peer_id);
  // The next due repair; TimePoint::max() if none.
  TimePoint NextDeadline() const;

 private:
  using Pair = std::pair<uint64_t, uint64_t>;  // peer ids, smaller first
  struct History {
    std::deque<std::pair<uint64_t, TimePoint>> breaks;  // (ring epoch, when), oldest first
    std::string last_reason;
  };

  LinkRepairOptions options_;
  std::map<uint32_t, TimePoint> due_;  // group -> when to re-dial its ring
  std::map<Pair, History> history_;
};

}  // namespace pccl::master
