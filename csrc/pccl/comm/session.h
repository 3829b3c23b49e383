// Session: one peer's membership in a pccl run: the master connection, admission and
// topology changes, the ring links of this peer's group, attributes, and shared-state
// sync. The collectives (comm/collectives.h) run on the ring it keeps, through BindRing
// and AwaitVerdict.
//
// A peer registers with the master, is admitted into the ring when the accepted peers
// vote (UpdateTopology), and then keeps the links to its ring neighbours (link/ring_links.h)
// for as long as its group's ring stays the same. Topologies the master pushes on its own
// (a peer left) are applied by a watcher thread when no call of this peer holds the
// control lock, so a peer between calls does not hold the others up.
//
// A peer that loses the master reconnects and resumes the run (session_resume.cc): the
// collectives running then fail as torn down (retry), control calls in flight run again
// once the run resumed, and calls made meanwhile wait for it.
//
// Thread-safety: every method may be called from any thread. Control calls (Connect,
// UpdateTopology, ArePeersPending, OptimizeTopology, SyncSharedState) are serialised by the
// control lock; collectives bind and report concurrently.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "pccl/comm/master_client.h"
#include "pccl/comm/op_stats.h"
#include "pccl/comm/shared_state.h"
#include "pccl/common/call_memory.h"
#include "pccl/common/clock.h"
#include "pccl/common/status.h"
#include "pccl/common/thread_annotations.h"
#include "pccl/link/incoming_pool.h"
#include "pccl/link/listener.h"
#include "pccl/link/probe.h"
#include "pccl/link/ring_links.h"
#include "pccl/link/routes.h"
#include "pccl/link/state_transfer.h"
#include "pccl/net/address.h"
#include "pccl/proto/messages.h"

namespace pccl::comm {

struct CommunicatorOptions {
  // The master, "host:port" (hostnames and [ipv6]:port work).
  std::string master_address;
  // Collectives and shared state run within a peer group; membership is global.
  uint32_t peer_group = 0;
  // TCP connections to each ring neighbour; 0 means PCCL_DEFAULT_POOL_SIZE (8).
  uint32_t pool_size = 0;
  // Local address the p2p listener binds (port chosen by the system). Empty: every
  // interface, IPv6 and IPv4 ("::"), or IPv4 only where IPv6 is off.
  std::string listen_host;
  // Host other peers dial to reach this one; empty: the address the master sees.
  std::string advertise_host;
  // The run secret (empty: PCCL_RUN_SECRET, PCCL_RUN_SECRET_FILE, or none) and the
  // transport, "plain" or "encrypted" (empty: PCCL_TRANSPORT, or plain); auth/handshake.h.
  std::string secret;
  std::string transport;
};

// PCCL 1.0's attribute numbering (PCCL_ATTRIBUTE_*).
enum class Attribute : int {
  kGlobalWorldSize = 1,
  kLocalWorldSize = 2,
  kNumDistinctPeerGroups = 3,
  kLargestPeerGroupWorldSize = 4,
};

// A collective bound to the ring it runs on: its key (ring epoch, group, tag, sequence
// number) and the links, rank and group size of that ring.
struct RingBinding {
  proto::OpKey key;
  std::shared_ptr<link::RingLinks> links;
  int rank = 0;
  int world = 0;
  // The group's peer ids in ring order ((*ring)[rank] is ours); shared with the session,
  // which makes a new one only when the topology changes (a bind allocates nothing).
  std::shared_ptr<const std::vector<uint64_t>> ring;
};

class Session {
 public:
  explicit Session(CommunicatorOptions options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Registers with the master and returns once admitted into the ring (the first peer at
  // once; later ones when the accepted peers call UpdateTopology).
  Status Connect(Deadline deadline);
  // Admits pending peers if there are any (every accepted peer must call it); returns at
  // once when nobody is pending. Collectives in flight on other threads finish on the ring
  // they started on when every member started them, and fail at once otherwise.
  Status UpdateTopology(Deadline deadline);
  // Whether peers wait for admission: a joint call of every member (PCCL 1.0's semantics),
  // answered alike for all by the master once all asked. Does not wait for collectives.
  // `joint` false asks the master alone (an answer that other members may not share);
  // with `wait` too, the master answers once a peer is pending, and a deadline that passes
  // first is the answer false, not an error (wait_for_world: no polling).
  Status ArePeersPending(Deadline deadline, bool joint, bool* pending, bool wait = false);
  Status GetAttribute(Attribute attribute, int64_t* value);
  // Measures the bandwidth between the members of each group as the master asks (this
  // peer probes at most one peer at a time, link/probe.h) and adopts the ring order the
  // master picks from it (master/ring_solver.h). Every member must call it. Waits for this
  // peer's collectives in flight first.
  Status OptimizeTopology(Deadline deadline);
  // This peer's group in ring order (peer ids); empty before Connect.
  std::vector<uint64_t> RingOrder();
  // Makes GetAttribute and RingOrder report the topology applied now (they otherwise
  // change only inside calls; see view_). For pccl's own adapters, e.g. the torch backend.
  void RefreshView();
  // Syncs the shared state of this peer's group (comm/shared_state.h): every member of
  // the group must call it; the master elects the content and this peer fetches what
  // differs, straight into the entries' memory. FailedPrecondition while collectives of
  // this peer are in flight.
  Status SyncSharedState(const SharedStateSyncRequest& request, Deadline deadline,
                         SharedStateSyncInfo* info);
  // Says goodbye to the master and stops every thread. Idempotent.
  void Close();

  // --- for the collectives (comm/collectives.h) -------------------------------------------
  // Binds a collective with `tag` to this group's current ring and takes the tag's next
  // `steps` sequence numbers (out->key has the first; a collective of several operations,
  // such as an exact all-reduce, uses key.seq + 1 ... for the others). Every call takes
  // all of them on one ring, wherever it later fails, so that peers whose calls failed at
  // different steps still agree on the next call's keys. If the ring broke, waits for the
  // master's replacement (or the deadline); a ring change the master pushed is applied
  // first. TooFewPeers alone.
  Status BindRing(uint64_t tag, Deadline deadline, RingBinding* out, uint32_t steps = 1);
  // --- for send/recv (comm/point_to_point.cc, session_pairs.cc) ---------------------------
  // Binds a send to (`sending`) or a recv from member `peer_id` of this peer's group with
  // `tag` to the group's current ring epoch and takes the next key of that direction
  // (OpKey names the two ends), with the group's rank, world and ring. out->links stays
  // null: ConnectPair gives the pair's links.
  // InvalidArgument if `peer_id` is not another member of the group.
  Status BindPair(uint64_t peer_id, uint64_t tag, bool sending, Deadline deadline,
                  RingBinding* out);
  // The links between this peer and `peer_id` for `key`'s ring epoch: dialled by the first
  // call that needs them (each end dials its own pool to the other), kept until the ring
  // changes. Aborted if the ring changed since the bind, or once `give_up` (if set) says
  // so while waiting for the other end.
  Status ConnectPair(const proto::OpKey& key, uint64_t peer_id, Deadline deadline,
                     std::shared_ptr<link::RingLinks>* out,
                     const std::function<bool()>& give_up = nullptr);
  // The key under which collective `ring_key` moves blocks over pair links (gather,
  // scatter, all-to-all: comm/direct_collectives.cc): its seq with the top bit set, which
  // no send/recv's key has (they count transfers from 0). A failed verdict for `ring_key`
  // fails it on every pair (OnVerdict).
  static proto::OpKey DirectKey(const proto::OpKey& ring_key);
  // A recv from any source: waits until a member's next transfer to this peer with `tag`
  // has begun here (its first segment arrived, or a verdict failed it), building the
  // links of members that dial this peer meanwhile, and names that member (the first in
  // ring order if several have). DeadlineExceeded if none does in time.
  Status AwaitAnySender(uint64_t tag, Deadline deadline, uint64_t* from);
  void NotePairActivity();
  void NotePairActivityLocked();  // needs mu_
  // The receiver's side of a send/recv's decision (master/verdicts.cc: the receiver
  // decides): CommitReceive once every byte of `key` is in, Ok unless the master asked
  // about it first (its sender failed) and it was refused; then the ack goes out and
  // ReportReceived tells the master, waiting for nothing. ReceiptRefused: whether it was
  // refused (a receive still connecting gives up). NoteReceiveFailed records a failure
  // the caller reports (and waits for its verdict) itself, and returns what to report:
  // the refusal's cause (its sender's failure) if it was refused, else `why`.
  Status CommitReceive(const proto::OpKey& key);
  bool ReceiptRefused(const proto::OpKey& key);
  Status NoteReceiveFailed(const proto::OpKey& key, const Status& why);
  void ReportReceived(const proto::OpDone& done);
  // Opens `key`'s operation on `links` (RingLinks::OpenOp), failed at once if the master
  // already failed it (or, for a recv, if it was refused: its sender failed first): a
  // verdict that came before these links were this peer's (while it still ran on the
  // previous ring, or before a pair's links were built) reached no operation, and the op
  // would otherwise wait until its deadline for data nobody sends.
  Status OpenOp(link::RingLinks& links, const proto::OpKey& key, uint64_t descriptor_hash,
                Deadline deadline, std::shared_ptr<link::RingOp>* out);

  // Reports a finished collective to the master and waits for its group's verdict, past
  // `deadline` if need be (every peer must apply the same verdict; see the .cc).
  Status AwaitVerdict(const proto::OpDone& done, Deadline deadline, proto::Verdict* verdict);
  // The same without waiting: reports it, and calls `then` once with how the wait ended
  // as the master client saw it (pass that through NoVerdict for what AwaitVerdict would
  // return) and the verdict, on this thread or on the thread that gets the verdict
  // (MasterClient::OnVerdict says which, and what `then` must not do). `then` goes to the
  // master client unwrapped: a wrapper would not fit inline in a std::function, and would
  // cost an allocation per collective.
  void ReportThen(const proto::OpDone& done, MasterClient::VerdictCallback then);
  // What a lost or replaced master connection means for an operation that waits for its
  // verdict (`st`, as MasterClient gives it): retry once the run resumed, or the loss.
  Status NoVerdict(const Status& st) const;
  // In-flight accounting of collectives (any thread).
  void BeginCollective();
  void EndCollective();
  int collectives_in_flight();

  uint64_t peer_id() const { return peer_id_.load(); }
  // Counts and latencies of this peer's operations (comm/op_stats.h).
  OpStats& op_stats() { return op_stats_; }
  // How this peer proves itself, and the keys it shares with each member (for masks).
  const link::Credentials& credentials() const { return credentials_; }
  uint16_t p2p_port() const { return listener_.port(); }
  // Whether the master could dial this peer's advertised endpoint, and where it sees this
  // peer's connection come from; empty until the master answered.
  std::optional<proto::Reachability> reachability() { return master_.reachability(); }
  Status WaitReachability(Deadline deadline, proto::Reachability* out) {
    return master_.WaitReachability(deadline, out);
  }
  // This peer's links to its ring neighbours: how each was reached (directly or through
  // the run's relay) and the bandwidth this peer last measured towards it (0: none yet).
  struct LinkInfo {
    uint64_t peer_id = 0;
    bool next = true;  // the neighbour this peer sends to (false: receives from)
    link::Route route = link::Route::kUnknown;
    uint64_t bytes_per_second = 0;
    // Since the current ring's links were built: frame bytes sent to it (next) or received
    // from it (previous), and the kernel's smoothed RTT and retransmissions of the pool's
    // connections in that direction (TCP_INFO).
    uint64_t bytes = 0;
    uint32_t rtt_us = 0;
    uint64_t retransmits = 0;
    // Previous only: payload bytes read aside before their operation here declared them
    // (link::RingLinks::Counters::early_rx_bytes).
    uint64_t early_bytes = 0;
    // Next only: the connections this peer's segments are striped over
    // (link::RingLinks::StripesFor); 0 for the previous peer or before the links are up.
    uint32_t stripes = 0;
  };
  std::vector<LinkInfo> Links();

 private:
  // Refreshes the view when the call that declares it returns, whatever the outcome.
  struct RefreshViewOnReturn {
    Session* session;
    ~RefreshViewOnReturn() { session->RefreshView(); }
  };

  // --- resuming after the master was lost (session_resume.cc) ---
  // Whether this peer reconnects after losing the master with `lost`.
  bool Resumable(const Status& lost) const;
  // The master connection is lost and this peer will not resume the run.
  bool MasterGoneForGood();
  // Sends a collective's report (OpDone) to the master.
  Status SendReport(const proto::OpDone& done);
  // Returns once the master connection is up and no resume runs; the reason when the
  // master is gone for good; DeadlineExceeded when the resume outlasts `deadline`.
  Status AwaitMaster(Deadline deadline, const char* caller);
  // Runs a control call; if it failed because the master was lost, runs it again once the
  // run resumed (until `deadline`).
  Status AcrossResume(Deadline deadline, const char* caller, const std::function<Status()>& call);
  // What a Welcome tells (relay, heartbeats); every kind of message may go out after it.
  void AdoptWelcome(const proto::Welcome& welcome);
  // Reconnects with backoff and waits to be back in the ring (the topology watcher's job).
  Status Resume(const Status& why);
  // One connection attempt: Hello with what this peer knows, until Welcome.
  Status ResumeOnce(Deadline deadline);
  // This peer's Hello; `resume`: with what it knows of the run, to a master it lost.
  proto::Hello MakeHello(bool resume);
  // The control calls, once (AcrossResume runs them).
  Status UpdateTopologyOnce(Deadline deadline);
  Status ArePeersPendingOnce(Deadline deadline, bool joint, bool wait, bool* pending);
  Status OptimizeTopologyOnce(Deadline deadline);
  Status SyncSharedStateOnce(const SharedStateSyncRequest& request, Deadline deadline,
                             SharedStateSyncInfo* info);

  // What every bind does before it takes its key: waits for the master if the run
  // resumes, waits for a new topology if the group's links (or the links to `pair_peer`,
  // if not 0) are broken, fails if the master already failed the key `first_key()`
  // (called under mu_) would get, and applies a ring change the master pushed.
  Status AwaitRing(Deadline deadline, const char* caller, uint64_t pair_peer,
                   const std::function<proto::OpKey()>& first_key, uint32_t steps);
  // This peer's group in ring order (peer ids) in the topology applied now.
  const std::shared_ptr<const std::vector<uint64_t>>& GroupRingLocked() { return group_ring_; }
  // The key the next send/recv from `from` to `to` with `tag` gets (session_pairs.cc).
  proto::OpKey PairKeyLocked(uint64_t from, uint64_t to, uint64_t tag);  // under mu_
  // The links to `peer_id` if they are built and broken (so a retry waits for the ring's
  // replacement), else null.
  std::shared_ptr<link::RingLinks> BrokenPairLinks(uint64_t peer_id);
  // Breaks every pair's links and forgets them (a new ring epoch, Close).
  void DropPairs(const Status& why);
  // What fails the links and transfers a new ring (epoch `now`) cuts off: kAborted, retry.
  static Status RingChanged(uint64_t now);
  // The master's PairQuery (reader thread): reports how this peer's receipt of the
  // transfer ended, refusing it if it had not begun, or fails it if it has not ended
  // (its own report follows then).
  void OnPairQuery(const proto::PairQuery& query);
  // What this peer did with each transfer it receives, as far as the master may ask.
  enum class Receipt { kReceiving, kCommitted, kFailed, kRefused };
  struct ReceiptState {
    Receipt state = Receipt::kReceiving;
    Status why;  // kFailed, kRefused: the failure
  };
  void RecordReceiptLocked(const proto::OpKey& key, Receipt state, const Status& why);
  // `key`'s receipt if it was refused (its sender failed and asked first), else null.
  ReceiptState* RefusedReceiptLocked(const proto::OpKey& key);  // needs mu_
  // The pair links built so far.
  std::vector<std::shared_ptr<link::RingLinks>> PairLinksLocked();  // under mu_

  Status WaitForIdle(Deadline deadline, const char* caller);
  // Takes control_mu_ by `deadline` (DeadlineExceeded naming `caller` otherwise).
  Status LockControl(Deadline deadline, const char* caller,
                     std::unique_lock<std::timed_mutex>* lock);
  // Applies topologies the master pushes while this peer makes no call (see .cc).
  void WatchTopologies();
  Status RunSyncLocked(const SharedStateSyncRequest& request, Deadline deadline,
                       SharedStateSyncInfo* info);
  // Builds the links of `topology`, reports them ready and waits for TopologyComplete.
  Status ApplyTopologyLocked(proto::Topology topology, Deadline deadline);
  // Applies topologies the master pushed on its own (after a peer left).
  Status ApplyPushedTopologiesLocked(Deadline deadline);
  Status WaitAdmissionLocked(Deadline deadline);
  // master_.Wait for `kinds`, applying each Topology the master pushes before one came.
  Status WaitApplyingTopologiesLocked(const std::vector<proto::Kind>& kinds, Deadline deadline,
                                      proto::Kind* kind, std::string* payload,
                                      uint64_t* arrival = nullptr);
  // The failure of the collective `key` (the next one of its tag when it started), if the
  // master failed it before this peer ran it (the sequence number is then used up).
  Status TakeEarlyVerdict(const proto::OpKey& key, uint32_t steps);
  void OnVerdict(const proto::Verdict& verdict);
  // Tells the master that this peer's ring link to `peer_id` broke (links' fault handler).
  void ReportBrokenLink(uint64_t ring_epoch, uint64_t peer_id, const Status& why);
  void OnTopologyChange(const proto::Topology& topology);
  // Whether the latest topology the master pushed changes this peer's group's ring.
  bool RingChangePushed();
  // The ring epoch of this peer in the latest pushed topology (0: not in it); under mu_.
  uint64_t PushedRingEpochLocked();
  uint32_t pool_size() const;

  const CommunicatorOptions options_;
  MasterClient master_;
  link::Listener listener_;
  link::IncomingPool incoming_;
  link::IncomingPool pair_incoming_;  // pair links' connections (send/recv)
  link::StateServer state_server_;  // serves this peer's shared state while a sync runs
  link::ProbeServer probe_server_;  // answers other peers' bandwidth probes
  link::Credentials credentials_;   // set by Connect, read-only after
  link::Routes routes_;             // how this peer reaches the others (direct or relayed)
  link::Parker parker_;             // connections parked at the relay, if undialable
  OpStats op_stats_;
  std::thread topology_watcher_;    // started once Connect succeeded
  std::atomic<uint64_t> peer_id_{0};
  std::atomic<bool> closed_{false};
  // Every member's ring epoch in the latest Topology the master sent (reader thread), by
  // peer id. Looked up with this peer's id when asked (RingChangePushed), not when it
  // comes: the Topology that admits a joiner may come right behind its Welcome, before
  // Connect() has read its peer id from that.
  std::map<uint64_t, uint64_t> pushed_ring_epochs_ PCCL_GUARDED_BY(mu_);

  net::Endpoint master_endpoint_;   // set by Connect, read-only after
  // Resumes started (any thread reads it; the topology watcher counts them).
  std::atomic<uint64_t> resumes_{0};

  std::timed_mutex control_mu_;     // one control call at a time (LockControl)
  uint64_t pending_query_seq_ = 0;  // under control_mu_: ArePeersPending's query numbers
  uint64_t sync_call_ = 0;          // under control_mu_: SyncSharedState's call numbers
  std::condition_variable idle_cv_;  // signalled (with mu_) when in_flight_ drops to 0

  std::mutex mu_;
  bool connected_ PCCL_GUARDED_BY(mu_) = false;
  // A resume runs (session_resume.cc); signalled on master_cv_ (with mu_) when it ends.
  bool resuming_ PCCL_GUARDED_BY(mu_) = false;
  Status resume_failed_ PCCL_GUARDED_BY(mu_);  // the master is gone for good: why
  std::condition_variable master_cv_;
  // 1 + the revision of this peer's last successful shared-state sync; 0: none.
  uint64_t state_revision_plus_one_ PCCL_GUARDED_BY(mu_) = 0;
  proto::Topology topology_ PCCL_GUARDED_BY(mu_);
  // Made from topology_ when it is applied (GroupRingLocked), and counted: RefreshView
  // builds its View again only after a change.
  std::shared_ptr<const std::vector<uint64_t>> group_ring_ PCCL_GUARDED_BY(mu_) =
      std::make_shared<const std::vector<uint64_t>>();
  uint64_t topology_changes_ PCCL_GUARDED_BY(mu_) = 0;
  uint64_t view_changes_ PCCL_GUARDED_BY(mu_) = 0;  // topology_changes_ as of view_
  std::shared_ptr<link::RingLinks> links_ PCCL_GUARDED_BY(mu_);
  uint64_t ring_epoch_ PCCL_GUARDED_BY(mu_) = 0;  // the OpKey epoch of this group's ring
  int rank_ PCCL_GUARDED_BY(mu_) = 0;
  int group_world_ PCCL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, uint64_t> next_seq_ PCCL_GUARDED_BY(mu_);  // per tag, in this epoch
  // Send/recv: the pairs' links of this ring epoch, by the other end's id. A pair's links
  // are built under its `mu` by the first call that needs them; later calls wait for it.
  struct PairLinks {
    std::timed_mutex mu;
    std::shared_ptr<link::RingLinks> links;  // null until built
  };
  std::map<uint64_t, std::shared_ptr<PairLinks>> pairs_ PCCL_GUARDED_BY(mu_);
  // Counts what a recv from any source waits for (a pair dialled in, an operation
  // appeared on a pair's links, Close); pair_cv_ is notified with each.
  uint64_t pair_activity_ PCCL_GUARDED_BY(mu_) = 0;
  // Moves on whenever this peer installs a new ring's links (and drops its pairs').
  std::atomic<uint64_t> links_generation_{0};
  std::condition_variable pair_cv_;
  // Transfers taken per (from, to, tag) in this ring epoch.
  std::map<std::tuple<uint64_t, uint64_t, uint64_t>, uint64_t> pair_counts_ PCCL_GUARDED_BY(mu_);
  // The transfers this peer received or refused, any epoch (those unsettled, and the
  // newest kReceiptMemory settled ones: session_pairs.cc).
  // (Nodes from CallMemory: a receipt per recv.)
  std::pmr::map<proto::OpKey, ReceiptState> receipts_ PCCL_GUARDED_BY(mu_){CallMemory()};
  std::pmr::deque<proto::OpKey> receipt_order_  // oldest first
      PCCL_GUARDED_BY(mu_){CallMemory()};
  int in_flight_ PCCL_GUARDED_BY(mu_) = 0;  // collectives running right now
  // optimize_topology()'s probes: bytes per second measured towards each peer.
  std::map<uint64_t, uint64_t> measured_rates_ PCCL_GUARDED_BY(mu_);
  // What GetAttribute and RingOrder report: the topology as of this peer's latest call
  // (connect, update_topology, are_peers_pending, optimize_topology, sync_shared_state, a
  // collective's start). A topology the watcher applies between calls shows at the next
  // call, so attributes change only inside calls, as in PCCL 1.0: peers that read them
  // between the same two joint calls agree (`if world < 2: continue` takes one branch).
  struct View {
    int64_t global_world = 0;
    int64_t local_world = 0;
    int64_t groups = 0;
    int64_t largest_group = 0;
    std::vector<uint64_t> ring;  // this peer's group in ring order
  };
  View view_ PCCL_GUARDED_BY(mu_);
};

}  // namespace pccl::comm
