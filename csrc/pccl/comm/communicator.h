// Communicator: one peer of a pccl run, the C++ API the Python Communicator wraps.
//
// A peer registers with the master, is admitted into the ring when the accepted peers
// vote (UpdateTopology), and then runs collectives with its ring neighbours over pools of
// TCP connections (RingLinks). Every collective ends with one round trip to the master,
// which hands every peer of the group the same verdict: a peer applies a result only if
// every peer succeeded, so nobody keeps a result that another discarded.
//
// Thread-safety: every method may be called from any thread. Control calls (Connect,
// UpdateTopology, ArePeersPending) are serialised; collectives with distinct tags may run
// concurrently with each other (all_reduce_async).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "pccl/comm/bandwidth_probe.h"
#include "pccl/comm/buffer_pool.h"
#include "pccl/comm/master_client.h"
#include "pccl/comm/ring_links.h"
#include "pccl/comm/shared_state.h"
#include "pccl/common/clock.h"
#include "pccl/common/dtype.h"
#include "pccl/common/status.h"
#include "pccl/common/thread_annotations.h"
#include "pccl/kernels/quantize.h"
#include "pccl/kernels/reduce.h"
#include "pccl/net/socket.h"
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
};

// PCCL 1.0's attribute numbering (PCCL_ATTRIBUTE_*).
enum class Attribute : int {
  kGlobalWorldSize = 1,
  kLocalWorldSize = 2,
  kNumDistinctPeerGroups = 3,
  kLargestPeerGroupWorldSize = 4,
};

struct AllReduceRequest {
  const void* send = nullptr;
  void* recv = nullptr;  // may equal send (in place)
  size_t count = 0;
  DType dtype = DType::kFloat32;
  kernels::ReduceOp op = kernels::ReduceOp::kSum;
  uint64_t tag = 0;
  // algorithm kNone: exact all-reduce; otherwise segments travel quantized
  // (algo/quantized_allreduce.h).
  kernels::QuantizeOptions quant{kernels::QuantAlgorithm::kNone};
};

struct ReduceInfo {
  uint32_t local_world_size = 0;
  uint64_t tx_bytes = 0;
  uint64_t rx_bytes = 0;
};

class Communicator;

// An all-reduce bound to the ring it runs on: its key (ring epoch, group, tag, sequence
// number) and the links, rank and group size of that ring.
struct BoundAllReduce {
  proto::OpKey key;
  std::shared_ptr<RingLinks> links;
  int rank = 0;
  int world = 0;
};

// An all-reduce running on its own thread (Communicator::StartAllReduce). The caller keeps
// the buffers alive and untouched until Wait() returns. Destroying it waits for the op.
class AsyncAllReduce {
 public:
  ~AsyncAllReduce();
  AsyncAllReduce(const AsyncAllReduce&) = delete;
  AsyncAllReduce& operator=(const AsyncAllReduce&) = delete;
  // Blocks until the operation is done; its status and, on success, its info.
  Status Wait(ReduceInfo* info);
  bool done();

 private:
  friend class Communicator;
  AsyncAllReduce(Communicator* comm, AllReduceRequest request, BoundAllReduce bound,
                 Deadline deadline);
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  Status status_;
  ReduceInfo info_;
  std::thread thread_;  // last: starts once the members it writes exist
};

class Communicator {
 public:
  explicit Communicator(CommunicatorOptions options);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  // Registers with the master and returns once admitted into the ring (the first peer at
  // once; later ones when the accepted peers call UpdateTopology).
  Status Connect(Deadline deadline);
  // Admits pending peers if there are any (every accepted peer must call it); returns at
  // once when nobody is pending. Collectives in flight on other threads finish on the ring
  // they started on when every member started them, and fail at once otherwise.
  Status UpdateTopology(Deadline deadline);
  // Whether peers wait for admission: a joint call of every member (PCCL 1.0's semantics),
  // answered alike for all by the master once all asked. Does not wait for collectives.
  // `joint` false asks the master alone (an answer that other members may not share).
  Status ArePeersPending(Deadline deadline, bool joint, bool* pending);
  Status GetAttribute(Attribute attribute, int64_t* value);
  // Measures the bandwidth between the members of each group as the master asks (this
  // peer probes at most one peer at a time, comm/bandwidth_probe.h) and adopts the ring
  // order the master picks from it (master/ring_solver.h). Every member must call it.
  // Waits for this peer's collectives in flight first, like UpdateTopology.
  Status OptimizeTopology(Deadline deadline);
  // This peer's group in ring order (peer ids); empty before Connect.
  std::vector<uint64_t> RingOrder();
  // Makes GetAttribute and RingOrder report the topology applied now (they otherwise
  // change only inside calls; see view_). For pccl's own adapters, e.g. the torch backend.
  void RefreshView();

  // Blocks until the all-reduce is done and every peer's verdict is in. On failure the
  // send buffer is intact (in place too) and recv holds no result.
  Status AllReduce(const AllReduceRequest& request, Deadline deadline, ReduceInfo* info);
  // Starts an all-reduce on its own thread. Concurrent ones need distinct tags. An
  // all-reduce that cannot start (bad request, too few peers, no master) fails here, with
  // the error AllReduce would return, and `started` stays empty.
  Status StartAllReduce(const AllReduceRequest& request, Deadline deadline,
                        std::unique_ptr<AsyncAllReduce>* started);

  // Syncs the shared state of this peer's group (comm/shared_state.h): every member of
  // the group must call it; the master elects the content and this peer fetches what
  // differs, straight into the entries' memory. Returns the elected revision and the bytes
  // moved. FailedPrecondition while collectives of this peer are in flight.
  Status SyncSharedState(const SharedStateSyncRequest& request, Deadline deadline,
                         SharedStateSyncInfo* info);

  // Says goodbye to the master and stops every thread. Idempotent.
  void Close();

  uint64_t peer_id() const { return peer_id_.load(); }
  // Collectives of this peer running now (all_reduce on any thread, all_reduce_async).
  int collectives_in_flight() {
    std::lock_guard<std::mutex> lock(mu_);
    return in_flight_;
  }
  uint16_t p2p_port() const { return listener_.port(); }

 private:
  friend class AsyncAllReduce;
  Status RunAllReduce(const AllReduceRequest& request, Deadline deadline, ReduceInfo* info);
  // RunAllReduce in two halves: check the request, apply a topology that changes this
  // group's ring, and bind the operation to the current ring (taking its sequence number);
  // then run it there and wait for the verdict.
  Status BindAllReduce(const AllReduceRequest& request, Deadline deadline,
                       BoundAllReduce* bound);
  Status ExecuteAllReduce(const AllReduceRequest& request, const BoundAllReduce& bound,
                          Deadline deadline, ReduceInfo* info);
  // In-flight accounting for UpdateTopology and ArePeersPending.
  void BeginCollective();
  void EndCollective();
  Status WaitForIdle(Deadline deadline, const char* caller);
  // Takes control_mu_ by `deadline` (DeadlineExceeded naming `caller` otherwise).
  Status LockControl(Deadline deadline, const char* caller,
                     std::unique_lock<std::timed_mutex>* lock);
  void AcceptLoop();
  // Applies topologies the master pushes while this peer makes no call (see .cc).
  void WatchTopologies();
  Status RunSyncLocked(const SharedStateSyncRequest& request, Deadline deadline,
                       SharedStateSyncInfo* info);
  // Builds the links of `topology`, reports them ready and waits for TopologyComplete.
  Status ApplyTopologyLocked(proto::Topology topology, Deadline deadline);
  // Applies topologies the master pushed on its own (after a peer left).
  Status ApplyPushedTopologiesLocked(Deadline deadline);
  Status WaitAdmissionLocked(Deadline deadline);
  void OnVerdict(const proto::Verdict& verdict);
  void OnTopologyChange(const proto::Topology& topology);
  // Whether the latest topology the master pushed changes this peer's group's ring.
  bool RingChangePushed();
  uint32_t pool_size() const;
  // Refreshes the view when the call that declares it returns, whatever the outcome.
  struct RefreshViewOnReturn {
    Communicator* comm;
    ~RefreshViewOnReturn() { comm->RefreshView(); }
  };

  const CommunicatorOptions options_;
  MasterClient master_;
  net::Listener listener_;
  IncomingPool incoming_;
  StateServer state_server_;  // serves this peer's shared state while a sync runs
  ProbeServer probe_server_;  // answers other peers' bandwidth probes
  std::thread acceptor_;
  std::thread topology_watcher_;  // started once Connect succeeded
  std::atomic<uint64_t> peer_id_{0};
  std::atomic<bool> closed_{false};
  // This group's ring epoch in the latest Topology the master sent (reader thread).
  std::atomic<uint64_t> pushed_ring_epoch_{0};
  uint64_t pending_query_seq_ = 0;  // under control_mu_: ArePeersPending's query numbers
  uint64_t sync_call_ = 0;          // under control_mu_: SyncSharedState's call numbers

  BufferPool buffers_;     // staging and workspaces, reused across collectives
  std::timed_mutex control_mu_;  // one control call at a time (LockControl)
  std::mutex id_mu_;       // peer_id_ is set once, after Welcome
  std::condition_variable id_cv_;
  std::condition_variable idle_cv_;  // signalled (with mu_) when in_flight_ drops to 0

  std::mutex mu_;
  bool connected_ PCCL_GUARDED_BY(mu_) = false;
  proto::Topology topology_ PCCL_GUARDED_BY(mu_);
  std::shared_ptr<RingLinks> links_ PCCL_GUARDED_BY(mu_);
  uint64_t ring_epoch_ PCCL_GUARDED_BY(mu_) = 0;  // the OpKey epoch of this group's ring
  int rank_ PCCL_GUARDED_BY(mu_) = 0;
  int group_world_ PCCL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, uint64_t> next_seq_ PCCL_GUARDED_BY(mu_);  // per tag, in this epoch
  int in_flight_ PCCL_GUARDED_BY(mu_) = 0;  // collectives running right now
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
