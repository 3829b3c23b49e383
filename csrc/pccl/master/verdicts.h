// Operation verdicts: the master's answer to every collective, one verdict per operation
// for its whole peer group. One of the master's state machines (membership.h routes the
// events to them).
//
// Verdicts holds the undecided operations (who reported what) and the decided ones (kept,
// bounded, for late reporters), and reads the run from the Roster (roster.h): a group's
// members in ring order, and the ring epoch its collectives must carry. Membership calls it
// for OpDone, and for what other machines decide: a member leaving (FailGroup), a new
// epoch (OnRingsChanged). Admission waits on it through Decided().
//
// Thread-safety: none; the thread that owns the Membership owns its Verdicts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "pccl/common/status.h"
#include "pccl/master/roster.h"
#include "pccl/master/run_status.h"
#include "pccl/master/step.h"
#include "pccl/proto/messages.h"

namespace pccl::master {

struct VerdictOptions {
  // Decided verdicts kept per epoch so that a late OpDone gets the stored answer.
  size_t max_decided_ops = 4096;
  // Undecided operations tracked at once; an OpDone beyond it fails for its sender only.
  size_t max_open_ops = 65536;
  // Undecided operations one peer may open (be the first to report): honest peers report
  // each collective within moments of each other, so a peer beyond it is making keys up,
  // and Membership removes it (Admits()).
  size_t max_open_ops_per_peer = 4096;
};

class Verdicts {
 public:
  explicit Verdicts(VerdictOptions options = {}) : options_(options) {}
  // Where decided verdicts are counted, and failed ones logged (Membership's; may be null).
  void set_log(RunLog* log) { log_ = log; }

  // OpDone from `peer`. Returns true when it decided a verdict (an admission may be
  // waiting for it: Membership asks Admission again).
  bool OnOpDone(const Peer& peer, const proto::OpDone& op, const Roster& roster, Step& step);
  // Whether `peer` may report `key`: not if that would open one undecided operation more
  // than its limit (InvalidArgument saying so).
  Status Admits(const Peer& peer, const proto::OpKey& key) const;

  // Whether collectives seq 0 .. count-1 of (peer_group, tag) are all decided on the
  // group's current ring (false while none of (peer_group, tag) is, even for count 0).
  bool Decided(uint32_t peer_group, uint64_t tag, uint64_t count) const;

  // A member of `peer_group` left (roster no longer lists it): the group's undecided
  // collectives fail with `reason` (Aborted), sent to the members that remain; an undecided
  // send/recv only if its receiver is the one gone.
  void FailGroup(uint32_t peer_group, const std::string& reason, const Roster& roster,
                 Step& step);

  // The rings of `groups` change with epoch `next_epoch`, started for `cause`; `roster` is
  // still the old epoch's. Their undecided collectives fail (Aborted) and their verdicts
  // are forgotten; other groups' collectives carry on. Send/recv is left alone: its
  // receiver decides it whatever the ring.
  void OnRingsChanged(const std::set<uint32_t>& groups, uint64_t next_epoch,
                      const std::string& cause, const Roster& roster, Step& step);

  // A ring link of `peer_group` broke and its ring will be re-dialled: until then its
  // failed verdicts say "ring replaced", so that no member retries on links a neighbour
  // has cut already. OnRingsChanged ends it.
  void OnRingBreaking(uint32_t peer_group) { breaking_.insert(peer_group); }

  // Observers (tests).
  size_t open_ops() const { return open_ops_.size(); }
  size_t open_ops(uint32_t peer_group) const;
  size_t decided_ops() const { return decided_.size(); }

 private:
  struct Report {
    bool ok = false;
    uint64_t descriptor_hash = 0;
    std::string report;  // OpDone::report, passed on in the success verdict
  };
  // An undecided collective: who reported what, in report order.
  struct OpState {
    ConnId opener = 0;  // who reported first
    std::vector<std::pair<ConnId, Report>> reports;
  };
  // Which sequence numbers of a (group, tag) are decided on the group's current ring: all
  // below `prefix`, and those in `beyond` (decided out of order). Not evicted.
  struct DecidedSeqs {
    uint64_t prefix = 0;
    std::set<uint64_t> beyond;
    void Add(uint64_t seq);
  };

  // The undecided operation `key`, opened by `peer` if it is new; null if it is new and
  // the master tracks max_open_ops already (the peer is told so).
  OpState* FindOrOpen(const Peer& peer, const proto::OpKey& key, Step& step);
  // OnOpDone for a send/recv: decided by its receiver (the story in verdicts.cc).
  bool OnPairDone(const Peer& peer, const proto::OpDone& op, const Roster& roster, Step& step);
  // Sends verdict `ok` for op `key` to every member of key.peer_group (a send/recv: a
  // failure to its two ends, a success to a sender that reported a failure) and stores it.
  // `code`: the StatusCode every peer raises on failure (Aborted: retry after the topology
  // settles; InvalidArgument: the peers disagree; or the failing peer's own code).
  // `ring_replaced`: a failure because the group's ring is being replaced (also said of
  // every failure while a link of the group is broken).
  // A success verdict carries a fresh challenge and the members' reports (OpDone::report).
  void Decide(const proto::OpKey& key, bool ok, const std::string& reason,
              const Roster& roster, Step& step, StatusCode code = StatusCode::kAborted,
              bool ring_replaced = false);
  // The undecided collectives of `groups`, in key order.
  std::vector<proto::OpKey> OpenOpsOf(const std::set<uint32_t>& groups) const;

  VerdictOptions options_;
  RunLog* log_ = nullptr;
  std::map<proto::OpKey, OpState> open_ops_;
  std::map<ConnId, size_t> opened_by_;  // open_ops_ per opener
  std::map<proto::OpKey, proto::Verdict> decided_;
  std::deque<proto::OpKey> decided_order_;  // oldest first, for eviction
  std::map<std::pair<uint32_t, uint64_t>, DecidedSeqs> decided_seqs_;
  std::set<uint32_t> breaking_;  // groups with a broken ring link, not yet re-dialled
};

}  // namespace pccl::master
