// Collectives: the operations a peer runs with its group over the ring its Session
// keeps: the all-reduce (ring, quantized ring, or exact: exact_allreduce.cc) and the ring
// broadcast, all-gather, reduce-scatter, gather, scatter and all-to-all
// (ring_collectives.cc), and send/recv between two members over their pair's links
// (point_to_point.cc), blocking or on a worker of a pool.
//
// A collective, step by step: bind it to the current ring (Session::BindRing: the OpKey of
// ring epoch, group, tag and the tag's next sequence number); run the algorithm
// (algo/ring_allreduce.h, algo/quantized_allreduce.h or algo/ring_collectives.h) over the
// ring's channel for that key (link/ring_op.h), with scratch memory from the buffer pool;
// report the outcome to the master and wait for the group's verdict
// (Session::AwaitVerdict). Every peer applies the result only if every peer succeeded;
// otherwise the caller's input is restored (in place too), so the retry computes the same
// result. A collective started in the background (StartCollective) runs its algorithm on
// a worker, which reports it and is then free: the thread that reads the verdict from the
// master ends the call, waking its caller directly (a failure goes to a worker first,
// which restores the input). Only the exact all-reduce modes, several operations each
// with a verdict, keep their worker until the last.
//
// Thread-safety: every method may be called from any thread; concurrent collectives need
// distinct tags.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pccl/comm/buffer_pool.h"
#include "pccl/comm/worker_pool.h"
#include "pccl/comm/session.h"
#include "pccl/common/call_memory.h"
#include "pccl/common/clock.h"
#include "pccl/common/dtype.h"
#include "pccl/common/status.h"
#include "pccl/kernels/modular.h"
#include "pccl/kernels/quantize.h"
#include "pccl/kernels/reduce.h"

namespace pccl::algo {
struct RingCollectiveOptions;
struct RingCollectiveStats;
}  // namespace pccl::algo
namespace pccl::link {
class RingOp;
}  // namespace pccl::link

namespace pccl::comm {

// How long a failed collective may take to let go of its buffers (RingLinks::CloseOp)
// before its links are cut.
inline constexpr auto kAbortGrace = std::chrono::milliseconds(500);

enum class CollectiveKind : uint8_t {
  kAllReduce = 0,
  kBroadcast = 1,      // `count` elements from the peer `root` to every peer's `recv`
  kAllGather = 2,      // `count` elements from each peer into `world` blocks of `recv`
  kReduceScatter = 3,  // `world` blocks of `send` reduced; each peer gets its own block
  kGather = 4,         // `count` elements from each peer into `world` blocks on `root`
  kScatter = 5,        // `world` blocks of `root`'s `send`, one to each peer's `recv`
  kAllToAll = 6,       // block b of every peer's `send` to the peer of block b
  kSend = 7,           // `count` elements of `send` to the member `peer` (its kRecv)
  kRecv = 8,           // `count` elements from the member `peer` (its kSend) into `recv`;
                       // `peer` 0: from whichever member sends to this one first
};
const char* CollectiveKindName(CollectiveKind kind);

struct CollectiveRequest {
  CollectiveKind kind = CollectiveKind::kAllReduce;
  const void* send = nullptr;
  void* recv = nullptr;  // may equal send (in place: all-reduce, broadcast)
  size_t count = 0;      // elements of `send`
  // Elements of `recv`: `count` for the all-reduce, the broadcast and the all-to-all,
  // count * world for the all-gather (and the gather's root), count / world for the
  // reduce-scatter (and the scatter; its root's `count` is recv_count * world). Checked
  // once the operation is bound to a ring of `world` peers (and the operation fails on
  // every peer if it does not match, say because the world changed since the caller
  // sized its buffers). A gather's `recv` and a scatter's `send` are the root's only.
  size_t recv_count = 0;
  // Broadcast, gather, scatter: the peer id of the root.
  uint64_t root = 0;
  // Send, recv: the peer id of the other end (a recv: 0 takes any member's).
  uint64_t peer = 0;
  // The collectives with blocks: the peer ids of the ring in block order (every peer must
  // pass the same list). Empty: ascending peer id.
  std::vector<uint64_t> order;
  // In place (all-reduce, a broadcast's receivers): false skips what restores the buffer
  // after a failure (a copy of it), for callers that recompute their input; the buffer
  // then holds garbage after a failure. A local choice: peers may differ.
  bool restore_input = true;
  DType dtype = DType::kFloat32;
  kernels::ReduceOp op = kernels::ReduceOp::kSum;
  uint64_t tag = 0;
  // algorithm kNone: exact all-reduce; otherwise segments travel quantized
  // (algo/quantized_allreduce.h).
  kernels::QuantizeOptions quant{kernels::QuantAlgorithm::kNone};
  // Nonzero: the buffers hold uint32 residues mod this modulus and the sum is taken mod it
  // (kernels/modular.h, ModAdd): integer arithmetic, so every peer's result is the same
  // whatever the ring order (the exact modes encode their inputs this way).
  uint32_t modulus = 0;
  // pccl.ReduceMode: 0, or kModeExact with kModePrivate and/or kModeVerified
  // (exact_allreduce.cc). Every peer must pass the same mode; it is part of the descriptor
  // every peer checks.
  uint32_t mode = 0;
};

inline constexpr uint32_t kModeExact = 1;    // fixed-point residues summed mod a prime
inline constexpr uint32_t kModePrivate = 2;  // ... masked pairwise (implies kModeExact)
inline constexpr uint32_t kModeVerified = 4; // ... checked by linear hashes (implies Exact)
inline constexpr uint32_t kModeMask = kModeExact | kModePrivate | kModeVerified;

struct ReduceInfo {
  uint32_t local_world_size = 0;
  uint64_t tx_bytes = 0;
  uint64_t rx_bytes = 0;
  uint64_t peer = 0;  // send/recv: the other end (a recv from any source: its sender)
};

class Collectives;

// A collective started in the background (Collectives::StartCollective). The caller keeps
// the buffers alive and untouched until Wait() returns. Destroying it waits for the op.
class AsyncCollective final : public InCallMemory {
 public:
  ~AsyncCollective();
  AsyncCollective(const AsyncCollective&) = delete;
  AsyncCollective& operator=(const AsyncCollective&) = delete;
  // Blocks until the operation is done; its status and, on success, its info.
  Status Wait(ReduceInfo* info);
  bool done();

 private:
  friend class Collectives;
  // The call's record: what its worker runs, and its result. Shared with the thread that
  // ends the call, which may still be unlocking it when the handle goes. The handle and
  // the record come from CallMemory, as everything a call makes (no heap per call).
  struct State {
    Collectives* collectives = nullptr;
    OpKind kind = OpKind::kAllReduce;
    CollectiveRequest request;
    RingBinding bound;
    Deadline deadline = Deadline::Never();
    // Itself, from StartCollective until its worker takes it (the queued task holds a
    // pointer, which a std::function keeps inline).
    std::shared_ptr<State> queued;
    TimePoint started;  // when its worker began it (its statistics)
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    Status status;
    ReduceInfo info;
  };
  explicit AsyncCollective(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

// What the exact all-reduce asks of Collectives::Execute beyond the request.
struct ExecuteExtras {
  void* received = nullptr;          // algo::AllReduceOptions::received
  bool corruptible = false;          // the test fault switch may act (VERIFIED sums)
  std::string* challenge = nullptr;  // out: the success verdict's challenge
};

class Collectives {
 public:
  explicit Collectives(Session& session);
  Collectives(const Collectives&) = delete;
  Collectives& operator=(const Collectives&) = delete;

  // Blocks until the collective is done and every peer's verdict is in. On failure the
  // send buffer is intact (in place too) and recv holds no result.
  Status Collective(const CollectiveRequest& request, Deadline deadline, ReduceInfo* info);
  // Starts a collective on a worker. Concurrent ones need distinct tags. One that cannot
  // start (bad request, too few peers, no master) fails here, with the error Collective
  // would return, and `started` stays empty.
  Status StartCollective(const CollectiveRequest& request, Deadline deadline,
                         std::unique_ptr<AsyncCollective>* started);

 private:
  friend class AsyncCollective;
  // An all-reduce in two halves: check the request and bind it to the current ring (on
  // the caller's thread); then run it there and wait for the verdict.
  Status Bind(const CollectiveRequest& request, Deadline deadline, RingBinding* bound);
  Status Execute(const CollectiveRequest& request, const RingBinding& bound, Deadline deadline,
                 ReduceInfo* info, const ExecuteExtras& extras = {});
  // Ends a call started in the background, once: its statistics, and the handle's result
  // (Wait returns it). Holds the call's record.
  class Finish {
   public:
    explicit Finish(std::shared_ptr<AsyncCollective::State> call) : call_(std::move(call)) {}
    void operator()(const Status& status, const ReduceInfo& info) const;

   private:
    std::shared_ptr<AsyncCollective::State> call_;
  };
  // StartCollective's task on a worker: runs the call `queued` (which holds its record
  // until then) with the Then variant for its kind.
  void RunStarted(AsyncCollective::State* queued);
  // The same as Execute for StartCollective (no extras): returns once the algorithm ended
  // and was reported, and calls `finish` with what Execute would return, on the thread
  // that gets the verdict (or on this one, if it is known at once).
  void ExecuteThen(const CollectiveRequest& request, const RingBinding& bound,
                   Deadline deadline, Finish finish);
  // Ends a call started in the background with its concluded status: `run` (what it leased
  // and did; dropping it uncommitted restores the input) goes before `finish` is called.
  template <class Running>
  void EndAsync(std::unique_ptr<Running> run, const Status& concluded, const ReduceInfo& info,
                Finish finish);
  // Execute's and ExecuteThen's first half: opens the operation and runs the algorithm
  // (*out: what it leased and did, to conclude); an error return is a failure before
  // anything was sent.
  struct AllReduceRun;
  Status RunAllReduce(const CollectiveRequest& request, const RingBinding& bound,
                      Deadline deadline, const ExecuteExtras& extras,
                      std::unique_ptr<AllReduceRun>* out);
  // The second half for any kind and mode: Execute, RunExact for the exact modes, or
  // ExecuteRing for the broadcast, all-gather and reduce-scatter.
  Status Run(const CollectiveRequest& request, const RingBinding& bound, Deadline deadline,
             ReduceInfo* info);
  // ring_collectives.cc: what Bind checks of a broadcast, all-gather or reduce-scatter
  // before anything is sent, and the rest of it.
  static Status CheckRingCollective(const CollectiveRequest& request);
  Status ExecuteRing(const CollectiveRequest& request, const RingBinding& bound,
                     Deadline deadline, ReduceInfo* info);
  // The same for StartCollective, as ExecuteThen is for Execute; and both's first half.
  void ExecuteRingThen(const CollectiveRequest& request, const RingBinding& bound,
                       Deadline deadline, Finish finish);
  struct RingRun;
  Status RunRing(const CollectiveRequest& request, const RingBinding& bound, Deadline deadline,
                 std::unique_ptr<RingRun>* out);
  // What a successful collective tells its caller.
  static ReduceInfo ReduceInfoOf(int world, uint64_t tx_bytes, uint64_t rx_bytes);
  // Where a blocking call on this thread receives its verdict: kept with its strings' room,
  // as the challenge every success carries (32 bytes) would be a heap copy per call.
  static proto::Verdict& ThisThreadsVerdict();
  // direct_collectives.cc: a gather, scatter or all-to-all, its blocks sent straight to
  // their destinations over the pair links, or the ring's own between two peers
  // (ExecuteRing opened `ring_op`, the collective's operation on the ring, and concludes).
  Status RunDirect(const CollectiveRequest& request, const RingBinding& bound,
                   const algo::RingCollectiveOptions& options,
                   const std::shared_ptr<link::RingOp>& ring_op, uint64_t descriptor_hash,
                   Deadline deadline, algo::RingCollectiveStats* stats);
  // point_to_point.cc: a send or recv, checked and bound (Session::BindPair), then run
  // over the pair's links and decided by its receiver.
  Status BindPair(const CollectiveRequest& request, Deadline deadline, RingBinding* bound);
  Status ExecutePair(const CollectiveRequest& request, const RingBinding& bound,
                     Deadline deadline, ReduceInfo* info);
  // The same for StartCollective: returns once the transfer is over here (and a failure
  // reported), and calls `finish` with what ExecutePair would return: on this thread if
  // it succeeded, else on the thread that gets the verdict (or this one, if it is known
  // at once).
  void ExecutePairThen(const CollectiveRequest& request, const RingBinding& bound,
                       Deadline deadline, Finish finish);
  // Both's first half: this end's transfer over the pair's links, and what it concludes
  // with (point_to_point.cc).
  struct PairOutcome;
  PairOutcome TransferPair(const CollectiveRequest& request, const RingBinding& bound,
                           Deadline deadline);
  // What every peer of `request` must agree on (hashed into every frame and report).
  static uint64_t DescriptorHash(const CollectiveRequest& request, size_t segment_bytes);
  // The elements per window of an all-reduce that keeps scratch per element (float16/
  // bfloat16 partial sums in float32, quantized wire slots) for one window at a time; 0:
  // the whole tensor in one pass.
  static size_t WindowOf(const CollectiveRequest& request);
  // The operations (sequence numbers) one all-reduce takes: 1, or the exact modes' steps.
  static uint32_t StepsOf(const CollectiveRequest& request);
  // The exact modes (exact_allreduce.cc); `bound` is the binding of its first step.
  Status CheckExact(const CollectiveRequest& request);
  Status RunExact(const CollectiveRequest& request, const RingBinding& bound, Deadline deadline,
                  ReduceInfo* info);
  // RunExact's steps; `reported`: the last step whose OpDone went to the master.
  Status RunExactSteps(const CollectiveRequest& request, const RingBinding& bound,
                       Deadline deadline, ReduceInfo* info, uint32_t* reported);
  // Reports this peer's outcome `local` of operation `key` (with `report`, if any, and for
  // the master's metrics the bytes it sent and the time it took) and waits for the group's
  // verdict (in *verdict): its failure, `local`'s, or OK.
  Status Conclude(const proto::OpKey& key, uint64_t descriptor_hash, const Status& local,
                  std::string report, Deadline deadline, proto::Verdict* verdict,
                  uint64_t tx_bytes = 0, Duration took = Duration(0));
  // Conclude without waiting, for a run (AllReduceRun, RingRun) whose verdict callback
  // becomes its only owner, so that a failure's restore is done before `finish` runs
  // (EndAsync), even when the verdict comes before this returns. The callback runs on
  // this thread or on the thread that gets the verdict (Session::ReportThen).
  template <class Running>
  void ConcludeRunThen(const proto::OpKey& key, std::unique_ptr<Running> started,
                       Finish finish);
  // Their report, and what they make of the verdict: `waited` is how the wait for it
  // ended (Session::AwaitVerdict's status).
  static proto::OpDone OpDoneOf(const proto::OpKey& key, uint64_t descriptor_hash,
                                const Status& local, std::string report, uint64_t tx_bytes,
                                Duration took);
  static Status Judge(const Status& local, const Status& waited, proto::Verdict* verdict);
  // Judge for a callback of Session::ReportThen: `waited` as the master client gave it.
  // The verdict is copied only on failure (Judge may add to its reason).
  Status JudgeReported(const Status& local, const Status& waited,
                       const proto::Verdict& verdict) const;
  // Reports `bound`'s operation as failed with `why` without running it, and waits for
  // its verdict (a step skipped after an earlier one failed).
  void ReportFailure(const CollectiveRequest& request, const RingBinding& bound,
                     const Status& why, Deadline deadline);
  // VERIFIED: hashes `vectors` (input residues, received partials, result) with the
  // challenge, reports them through the master and checks everyone's (exact_allreduce.cc).
  Status Verify(const kernels::Modulus& m, const CollectiveRequest& request,
                const RingBinding& scale_bound, const std::string& challenge,
                const void* const vectors[3], Deadline deadline, uint32_t* reported);
  // An operation without data: reports `report` for `bound`'s key and waits for the
  // verdict, whose members' reports land in `reports` (proto/reports.h). With
  // `greet_neighbours`, first a one-byte frame each way around the ring, so that a
  // neighbour running another operation under the key fails at once.
  Status Report(const CollectiveRequest& request, const RingBinding& bound, std::string report,
                bool greet_neighbours, Deadline deadline, std::string* reports);
  // PRIVATE: adds this peer's pairwise masks for the operation `bound` to `residues`.
  Status AddMasks(const kernels::Modulus& m, const RingBinding& bound, void* residues,
                  size_t count, Deadline deadline);

  Session& session_;
  BufferPool buffers_;  // staging and workspaces, reused across collectives
  WorkerPool workers_;  // last: its destructor waits for the tasks that use the rest
};

template <class Running>
void Collectives::ConcludeRunThen(const proto::OpKey& key, std::unique_ptr<Running> started,
                                  Finish finish) {
  // The callback owns the run and `finish` through one record from CallMemory: a
  // std::function keeps a pointer inline, where they would cost it an allocation. It is
  // called exactly once (MasterClient::OnVerdict) and frees the record.
  struct Awaiting final : InCallMemory {
    Collectives* collectives;
    std::unique_ptr<Running> run;
    Finish finish;
  };
  auto* awaiting = new Awaiting{{}, this, std::move(started), std::move(finish)};
  const Running& ran = *awaiting->run;
  const proto::OpDone done =
      OpDoneOf(key, ran.descriptor_hash, ran.local, "", ran.stats.tx_bytes, ran.took);
  session_.ReportThen(done, [awaiting](const Status& waited, const proto::Verdict& verdict) {
    std::unique_ptr<Awaiting> owned(awaiting);
    Running& run = *owned->run;
    const Status concluded = owned->collectives->JudgeReported(run.local, waited, verdict);
    run.committed = concluded.ok();
    const ReduceInfo info = concluded.ok() ? run.Info() : ReduceInfo();
    owned->collectives->EndAsync(std::move(owned->run), concluded, info,
                                 std::move(owned->finish));
  });
}

template <class Running>
void Collectives::EndAsync(std::unique_ptr<Running> run, const Status& concluded,
                           const ReduceInfo& info, Finish finish) {
  // A success ends here, on the thread that got the verdict: the run only returns its
  // leases. A failure first puts the input back (the run's destructor, before the caller
  // may look at it): a copy as large as what the algorithm overwrote, made on a worker so
  // that it does not hold up the master connection's reader and its next messages.
  if (concluded.ok()) {
    run.reset();
    return finish(concluded, info);
  }
  workers_.Submit([run = std::shared_ptr<Running>(std::move(run)), concluded,
                   finish = std::move(finish)]() mutable {
    run.reset();
    finish(concluded, ReduceInfo());
  });
}

}  // namespace pccl::comm
