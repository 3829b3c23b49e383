// The peer's connection to the master: sends requests, and a reader thread that sorts
// what the master says into an inbox (replies, topologies, errors) and a verdict table.
//
// A heartbeat thread tells the master this process is alive; the master kicks peers that
// fall silent (hung or stopped) and says so with Error{Kicked} before it drops them.
//
// Verdicts are special: several collectives may wait for theirs at once, and a failed
// verdict must reach a running collective immediately (so it stops instead of waiting for
// data that will never come), so each verdict also goes to a listener callback.
//
// A lost connection can be replaced (Reconnect) when the master comes back: the new one
// starts empty (what the old master sent and nobody took is dropped with it) and sends
// nothing but Hello until MarkWelcomed(), so that no report reaches a master that does not
// know this peer yet. The old socket stays open, unread, until then: a master that was
// only stopped sees no disconnect, and finds the peer's new connection first (comm/
// session.cc, "Resuming").
//
// Thread-safety: all methods may be called from any thread. Send() serialises writers.
// Wait() is meant for one control call at a time (the Communicator holds its control lock).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <optional>
#include <map>
#include <memory_resource>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pccl/auth/handshake.h"
#include "pccl/common/call_memory.h"
#include "pccl/common/clock.h"
#include "pccl/common/status.h"
#include "pccl/common/thread_annotations.h"
#include "pccl/net/socket.h"
#include "pccl/proto/messages.h"

namespace pccl::comm {

// The Status of an Error message from the master (its code, "master: " + its text).
Status ErrorFromMaster(const std::string& payload);
// The Status a failed verdict gives its collective (its code, Aborted if it has none).
Status VerdictFailure(const proto::Verdict& verdict);

class MasterClient {
 public:
  MasterClient() = default;
  ~MasterClient();
  MasterClient(const MasterClient&) = delete;
  MasterClient& operator=(const MasterClient&) = delete;

  // Connects, proves the run secret if `auth` has one (auth/handshake.h; Unauthenticated
  // if either side cannot), and starts the reader thread.
  Status Connect(const net::Endpoint& master, const auth::RunAuth& auth, Deadline deadline);
  // Replaces the connection (lost, or given up by the caller: that loses it) with a new
  // one to `master`. Unavailable once closing.
  Status Reconnect(const net::Endpoint& master, const auth::RunAuth& auth, Deadline deadline);
  // The master welcomed this peer on the current connection: every kind may be sent now,
  // and the connection it replaced is closed.
  void MarkWelcomed();
  // Whether a lost connection will be replaced: running collectives then fail with
  // Aborted (retry once the run resumed) instead of Unavailable.
  void SetResumable(bool resumable);
  Status Send(proto::Kind kind, const std::string& payload, Deadline deadline);

  // Waits for the oldest queued message whose kind is in `kinds` (or an Error message,
  // which is always returned) and removes it from the inbox. `arrival`, if given, receives
  // its place in the order in which the master's messages arrived. Unavailable if the
  // connection is lost or replaced (Reconnect) meanwhile: no answer comes on the new one.
  Status Wait(const std::vector<proto::Kind>& kinds, Deadline deadline, proto::Kind* kind,
              std::string* payload, uint64_t* arrival = nullptr);
  // True if a message of `kind` is queued; HasBefore: one that arrived before `arrival`.
  bool Has(proto::Kind kind);
  bool HasBefore(proto::Kind kind, uint64_t arrival);
  // Waits until a message of `kind` is queued (and leaves it there), or `also()` (looked at
  // under the client's lock: it must take no lock of its own; Wake() has it looked at
  // again) is true. DeadlineExceeded if neither in time; the lost() status once the
  // connection is gone.
  Status WaitUntilHas(proto::Kind kind, Deadline deadline,
                      const std::function<bool()>& also = nullptr);
  // Wakes the waits of WaitUntilHas, so that they look at their `also` again.
  void Wake();

  // The master's answer to ReachabilityQuery (master/dial_back.h), once it came.
  std::optional<proto::Reachability> reachability();
  // Waits for that answer until `deadline`: DeadlineExceeded if it has not come, the loss
  // if the master connection is lost first.
  Status WaitReachability(Deadline deadline, proto::Reachability* out);

  // Called on the reader thread for every verdict.
  void SetVerdictListener(std::function<void(const proto::Verdict&)> listener);
  // Called on the reader thread when the master sends a Topology (the message also stays
  // in the inbox): running collectives of rings it replaces cannot finish.
  void SetTopologyListener(std::function<void(const proto::Topology&)> listener);
  // Called on the reader thread when the master asks how a received transfer ended
  // (PairQuery; comm/session_pairs.cc answers it).
  void SetPairQueryListener(std::function<void(const proto::PairQuery&)> listener);
  // Called (on the reader thread) with the master's Reachability answer when it comes.
  void SetReachabilityListener(std::function<void(const proto::Reachability&)> listener);
  // Sends a Heartbeat every `interval` from a background thread until Close().
  void StartHeartbeats(Duration interval);
  // What a verdict's caller is told: Ok with the verdict of its key, or why none will come
  // (Unavailable as Wait if the connection is lost or replaced; `verdict` is then empty).
  using VerdictCallback = std::function<void(const Status& status, const proto::Verdict& verdict)>;
  // Calls `then` once, as soon as the verdict of `key` is here (and forgets it), or the
  // connection is lost or replaced. On this thread if that is so already; otherwise on the
  // thread that learns it (the reader, Reconnect, Close), after releasing mu_: `then` may
  // take other locks, but must not wait for the master.
  void OnVerdict(const proto::OpKey& key, VerdictCallback then);
  // Calls the callbacks registered for `key` with `why` (and an empty verdict) unless its
  // verdict reached them already: for a report that could not be sent after OnVerdict.
  void AbandonVerdict(const proto::OpKey& key, const Status& why);
  // Waits on this thread for what OnVerdict would give `then`. With `report`, runs it once
  // the wait is registered (a verdict that comes at once then goes straight to this wait,
  // instead of being stored and copied); if it fails, so does the wait, with its status.
  Status WaitVerdict(const proto::OpKey& key, proto::Verdict* out,
                     const std::function<Status()>& report = nullptr);
  // Takes the verdict of `key` if it came already (a verdict may arrive before this peer
  // started the operation, when the others failed it).
  bool TakeVerdict(const proto::OpKey& key, proto::Verdict* out);
  // Copies the verdict of `key` if it came already, leaving it for WaitVerdict.
  bool PeekVerdict(const proto::OpKey& key, proto::Verdict* out);

  // Unavailable once the connection is gone (Kicked if the master removed this peer).
  Status lost();
  void Close();

 private:
  // Connects and proves the run secret: the socket of Connect and Reconnect.
  static Status Dial(const net::Endpoint& master, const auth::RunAuth& auth, Deadline deadline,
                     net::Socket* out);
  void ReaderLoop();
  bool TakeVerdictLocked(const proto::OpKey& key, proto::Verdict* out);  // needs mu_
  void HeartbeatLoop(Duration interval);

  std::mutex life_mu_;  // Connect, Reconnect and Close: who starts and joins the threads
  net::Socket socket_;  // replaced by Reconnect under send_mu_, with no reader running
  net::Socket stale_;   // the connection Reconnect replaced, until MarkWelcomed
  std::mutex send_mu_;
  std::thread reader_;
  std::thread heartbeat_;

  std::mutex mu_;
  // The heartbeat and topology threads wait on cv_ for messages and for the connection's
  // end (WakeAllLocked). A verdict (one per operation) wakes none of them: it goes to the
  // callback registered for its key (OnVerdict), and only to that one, not to the callers
  // of other operations (with DDP's buckets or an isend beside an irecv, several wait at
  // once). What ends the connection (lost_, Reconnect's generation_, Close) calls every
  // callback registered before it (TakeVerdictCallbacksLocked).
  std::condition_variable cv_;
  void WakeAllLocked() { cv_.notify_all(); }  // needs mu_
  // (Nodes from CallMemory, as the callbacks' lists below: one per collective.)
  std::pmr::multimap<proto::OpKey, VerdictCallback> verdict_waits_
      PCCL_GUARDED_BY(mu_){CallMemory()};
  // Removes every registered callback (all, or those of `key`), to be called once mu_ is
  // released.
  using VerdictCallbacks = std::pmr::vector<VerdictCallback>;
  VerdictCallbacks TakeVerdictCallbacksLocked(const proto::OpKey* key);
  struct Message {
    proto::Kind kind;
    std::string payload;
    uint64_t arrival;  // 1, 2, ... in the order the master sent them
  };
  std::deque<Message> inbox_ PCCL_GUARDED_BY(mu_);
  uint64_t arrivals_ PCCL_GUARDED_BY(mu_) = 0;
  std::map<proto::OpKey, proto::Verdict> verdicts_ PCCL_GUARDED_BY(mu_);
  std::deque<proto::OpKey> verdict_order_ PCCL_GUARDED_BY(mu_);
  std::function<void(const proto::Verdict&)> listener_ PCCL_GUARDED_BY(mu_);
  std::function<void(const proto::Topology&)> topology_listener_ PCCL_GUARDED_BY(mu_);
  std::function<void(const proto::Reachability&)> reachability_listener_ PCCL_GUARDED_BY(mu_);
  std::function<void(const proto::PairQuery&)> pair_query_listener_ PCCL_GUARDED_BY(mu_);
  Status lost_ PCCL_GUARDED_BY(mu_);
  TimePoint last_heard_ PCCL_GUARDED_BY(mu_) = Clock::now();  // the master's latest frame
  Duration heard_rto_ PCCL_GUARDED_BY(mu_){0};  // the socket's RTO at that moment
  Status kicked_ PCCL_GUARDED_BY(mu_);  // the master's Error{Kicked}, if it sent one
  std::optional<proto::Reachability> reachability_ PCCL_GUARDED_BY(mu_);
  bool closing_ PCCL_GUARDED_BY(mu_) = false;
  bool welcomed_ PCCL_GUARDED_BY(mu_) = false;   // see MarkWelcomed
  // Connections so far: a wait that began on one ends when Reconnect replaces it, even if
  // it never ran while lost_ said why (a starved thread can sleep through that window).
  uint64_t generation_ PCCL_GUARDED_BY(mu_) = 0;
  // The round trip of heartbeats (sent -> ack), told to the master in the next one.
  bool beat_outstanding_ PCCL_GUARDED_BY(mu_) = false;
  TimePoint beat_sent_ PCCL_GUARDED_BY(mu_);
  Duration beat_rtt_ PCCL_GUARDED_BY(mu_){0};
  bool resumable_ PCCL_GUARDED_BY(mu_) = false;  // see SetResumable
};

}  // namespace pccl::comm
