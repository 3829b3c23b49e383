#include "pccl/comm/collectives.h"

#include <algorithm>
#include <cstring>

#include "pccl/algo/quantized_allreduce.h"
#include "pccl/algo/ring_allreduce.h"
#include "pccl/common/call_memory.h"
#include "pccl/common/params.h"
#include "pccl/kernels/hash.h"
#include "pccl/net/wire.h"

namespace pccl::comm {
namespace {

using link::RingLinks;
using link::RingOp;

// Its kind in the op statistics.
OpKind StatsKind(const CollectiveRequest& request) {
  switch (request.kind) {
    case CollectiveKind::kAllReduce: return OpKind::kAllReduce;
    case CollectiveKind::kBroadcast: return OpKind::kBroadcast;
    case CollectiveKind::kAllGather: return OpKind::kAllGather;
    case CollectiveKind::kReduceScatter: return OpKind::kReduceScatter;
    case CollectiveKind::kGather: return OpKind::kGather;
    case CollectiveKind::kScatter: return OpKind::kScatter;
    case CollectiveKind::kAllToAll: return OpKind::kAllToAll;
    case CollectiveKind::kSend: return OpKind::kSend;
    case CollectiveKind::kRecv: return OpKind::kRecv;
  }
  return OpKind::kAllReduce;
}

}  // namespace

size_t Collectives::WindowOf(const CollectiveRequest& request) {
  const bool quantized = request.quant.algorithm != kernels::QuantAlgorithm::kNone;
  const bool windowed = request.kind == CollectiveKind::kAllReduce &&
                        (quantized || IsHalfPrecision(request.dtype));
  return windowed ? algo::kWindowElements : 0;
}

// What every peer of a collective must agree on, hashed into every data frame and report.
uint64_t Collectives::DescriptorHash(const CollectiveRequest& request, size_t segment_bytes) {
  uint8_t bytes[8 + 1 + 1 + 8 + 1 + 1 + 8 + 4 + 4 + 1 + 8 + 8 + 8 + 8];
  // A gather's output and a scatter's input exist on the root only: what all share is the
  // block (the gather's `count`, the scatter's `recv_count`). A send and its recv share
  // the count and dtype: both hash as a send, with no peer.
  const bool gather = request.kind == CollectiveKind::kGather;
  const bool scatter = request.kind == CollectiveKind::kScatter;
  const bool pair =
      request.kind == CollectiveKind::kSend || request.kind == CollectiveKind::kRecv;
  net::PutU64(bytes, scatter ? 0 : request.count);
  bytes[8] = static_cast<uint8_t>(request.dtype);
  bytes[9] = static_cast<uint8_t>(request.op);
  net::PutU64(bytes + 10, segment_bytes);
  bytes[18] = static_cast<uint8_t>(request.quant.algorithm);
  bytes[19] = static_cast<uint8_t>(request.quant.quantized_dtype);
  net::PutU64(bytes + 20, request.quant.block_size);
  net::PutU32(bytes + 28, request.modulus);
  net::PutU32(bytes + 32, request.mode);
  bytes[36] = static_cast<uint8_t>(pair ? CollectiveKind::kSend : request.kind);
  net::PutU64(bytes + 37, gather ? 0 : request.recv_count);
  net::PutU64(bytes + 45, request.root);
  net::PutU64(bytes + 53, request.order.empty()
                              ? 0
                              : kernels::Hash64(request.order.data(),
                                                request.order.size() * sizeof(uint64_t), 1));
  // The window a windowed all-reduce numbers its steps by (Execute): builds that cut the
  // tensor differently disagree here, by name, rather than on the wire.
  net::PutU64(bytes + 61, WindowOf(request));
  return kernels::Hash64(bytes, sizeof(bytes), /*seed=*/0x70636c6cu);
}

Status Collectives::Collective(const CollectiveRequest& request, Deadline deadline,
                               ReduceInfo* info) {
  session_.BeginCollective();
  const TimePoint start = Clock::now();
  RingBinding bound;
  Status st = Bind(request, deadline, &bound);
  if (st.ok()) st = Run(request, bound, deadline, info);
  session_.op_stats().Record(StatsKind(request), st.ok(), Clock::now() - start);
  session_.EndCollective();
  return st;
}

Collectives::Collectives(Session& session)
    : session_(session), buffers_(static_cast<size_t>(GetParams().pool_keep_bytes)) {}

Status Collectives::StartCollective(const CollectiveRequest& request, Deadline deadline,
                                    std::unique_ptr<AsyncCollective>* started) {
  session_.BeginCollective();
  // Bound to the ring here, on the caller's thread: a collective started before a
  // topology change runs (or fails) on the ring it was started on, as its peers' do,
  // however late its own thread gets to run. What cannot start fails here, at the call.
  const TimePoint start = Clock::now();
  RingBinding bound;
  Status bound_status = Bind(request, deadline, &bound);
  if (!bound_status.ok()) {  // failed at once (an early verdict among others): still a call
    session_.op_stats().Record(StatsKind(request), false, Clock::now() - start);
    session_.EndCollective();
    return bound_status;
  }
  // The call's record and handle, from CallMemory; the worker's task holds a pointer to
  // the record (inline in its std::function), and the record itself until it runs.
  auto call = MakeSharedInCallMemory<AsyncCollective::State>();
  call->collectives = this;
  call->kind = StatsKind(request);
  call->request = request;
  call->bound = std::move(bound);
  call->deadline = deadline;
  call->queued = call;
  started->reset(new AsyncCollective(call));
  workers_.Submit([this, queued = call.get()] { RunStarted(queued); });
  return Status::Ok();
}

void Collectives::RunStarted(AsyncCollective::State* queued) {
  const std::shared_ptr<AsyncCollective::State> call = std::move(queued->queued);
  call->started = Clock::now();
  const CollectiveRequest& request = call->request;
  const RingBinding& bound = call->bound;
  // Ends the call: its statistics, and the handle's result. On the thread that got its
  // verdict (ExecutePairThen, ExecuteThen, ExecuteRingThen), or for the exact all-reduce
  // modes (several operations, each with its own verdict) on the worker.
  Finish finish(call);
  if (bound.key.pair()) return ExecutePairThen(request, bound, call->deadline, std::move(finish));
  if (request.kind != CollectiveKind::kAllReduce) {
    return ExecuteRingThen(request, bound, call->deadline, std::move(finish));
  }
  if ((request.mode & kModeMask) == 0) {
    return ExecuteThen(request, bound, call->deadline, std::move(finish));
  }
  ReduceInfo info;
  Status st = Run(request, bound, call->deadline, &info);
  finish(st, info);
}

void Collectives::Finish::operator()(const Status& st, const ReduceInfo& info) const {
  AsyncCollective::State& call = *call_;
  Session& session = call.collectives->session_;
  session.op_stats().Record(call.kind, st.ok(), Clock::now() - call.started);
  session.EndCollective();
  {
    std::lock_guard<std::mutex> lock(call.mu);
    call.status = st;
    call.info = info;
    call.done = true;
  }
  call.cv.notify_all();  // after the unlock, so the waiter does not wait for call.mu
}

AsyncCollective::~AsyncCollective() {
  ReduceInfo unused;
  (void)Wait(&unused);
}

Status AsyncCollective::Wait(ReduceInfo* info) {
  std::unique_lock<std::mutex> lock(state_->mu);
  state_->cv.wait(lock, [this] { return state_->done; });
  *info = state_->info;
  return state_->status;
}

bool AsyncCollective::done() {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->done;
}

Status Collectives::Bind(const CollectiveRequest& request, Deadline deadline,
                         RingBinding* bound) {
  if (request.kind == CollectiveKind::kSend || request.kind == CollectiveKind::kRecv) {
    return BindPair(request, deadline, bound);
  }
  if (request.kind != CollectiveKind::kAllReduce) {
    PCCL_RETURN_IF_ERROR(CheckRingCollective(request));
    return session_.BindRing(request.tag, deadline, bound, StepsOf(request));
  }
  if (request.count > 0 && (request.send == nullptr || request.recv == nullptr)) {
    return InvalidArgument("null buffer for an all-reduce of " + std::to_string(request.count) +
                           " elements");
  }
  const size_t bytes = request.count * DTypeSize(request.dtype);
  const auto* send = static_cast<const char*>(request.send);
  auto* recv = static_cast<char*>(request.recv);
  const bool in_place = send == recv;
  if (!in_place && send < recv + bytes && recv < send + bytes) {
    return InvalidArgument("send and recv buffers partially overlap");
  }
  const bool quantized = request.quant.algorithm != kernels::QuantAlgorithm::kNone;
  if (request.mode != 0) {
    PCCL_RETURN_IF_ERROR(CheckExact(request));
  } else if (request.modulus != 0) {  // refuse what is not supported before anything is sent
    kernels::Modulus m;
    PCCL_RETURN_IF_ERROR(kernels::Modulus::Make(request.modulus, &m));
    if (request.dtype != DType::kUint32 || request.op != kernels::ReduceOp::kSum || quantized) {
      return InvalidArgument("a modular all-reduce sums uint32 residues, unquantized");
    }
  }
  if (quantized) {
    algo::AllReduceOptions shape;
    shape.dtype = request.dtype;
    shape.op = request.op;
    PCCL_RETURN_IF_ERROR(algo::CheckQuantizedAllReduce(shape, request.quant));
  }

  return session_.BindRing(request.tag, deadline, bound, StepsOf(request));
}

Status Collectives::Run(const CollectiveRequest& request, const RingBinding& bound,
                        Deadline deadline, ReduceInfo* info) {
  if (bound.key.pair()) return ExecutePair(request, bound, deadline, info);
  if (request.kind != CollectiveKind::kAllReduce) {
    return ExecuteRing(request, bound, deadline, info);
  }
  if ((request.mode & kModeMask) != 0) return RunExact(request, bound, deadline, info);
  return Execute(request, bound, deadline, info);
}

// One all-reduce between its start and its verdict: what it leased and what its algorithm
// did. Destroyed uncommitted (any failure, the verdict's included), it puts the caller's
// input back first: in place, every segment the algorithm saved to the backup.
struct Collectives::AllReduceRun final : InCallMemory {
  uint64_t descriptor_hash = 0;
  int world = 0;
  kernels::Modulus modulus;  // options.modulus points here
  algo::AllReduceOptions options;
  algo::AllReduceStats stats;
  BufferPool::Lease backup, scratch, workspace, wire;
  Status local;  // how the algorithm ended here
  Duration took{};
  bool committed = false;

  ~AllReduceRun() {
    if (!committed) algo::RestoreInput(options, stats);
  }
  ReduceInfo Info() const { return ReduceInfoOf(world, stats.tx_bytes, stats.rx_bytes); }
};

proto::Verdict& Collectives::ThisThreadsVerdict() {
  thread_local proto::Verdict verdict;
  return verdict;
}

ReduceInfo Collectives::ReduceInfoOf(int world, uint64_t tx_bytes, uint64_t rx_bytes) {
  ReduceInfo info;
  info.local_world_size = static_cast<uint32_t>(world);
  info.tx_bytes = tx_bytes;
  info.rx_bytes = rx_bytes;
  return info;
}

Status Collectives::RunAllReduce(const CollectiveRequest& request, const RingBinding& bound,
                                 Deadline deadline, const ExecuteExtras& extras,
                                 std::unique_ptr<AllReduceRun>* out) {
  const proto::OpKey& key = bound.key;
  const std::shared_ptr<RingLinks>& links = bound.links;
  const auto* send = static_cast<const char*>(request.send);
  auto* recv = static_cast<char*>(request.recv);
  const bool in_place = send == recv;
  const bool quantized = request.quant.algorithm != kernels::QuantAlgorithm::kNone;
  const size_t segment_bytes = static_cast<size_t>(GetParams().segment_bytes);
  auto run = std::make_unique<AllReduceRun>();
  run->descriptor_hash = DescriptorHash(request, segment_bytes);
  run->world = bound.world;
  // Made before the operation opens: no early return leaves it open.
  if (request.modulus != 0) {
    PCCL_RETURN_IF_ERROR(kernels::Modulus::Make(request.modulus, &run->modulus));
  }
  std::shared_ptr<RingOp> op;
  PCCL_RETURN_IF_ERROR(session_.OpenOp(*links, key, run->descriptor_hash, deadline, &op));

  // In place, a failed operation must leave the caller's data as it was (unless every peer
  // succeeded, the verdict, the input is put back): the algorithm saves each input segment
  // to `backup` right before its first overwrite (one tensor of extra memory at most).
  // The partial sums from the previous peer land in the backup itself, where folding them
  // into the caller's buffer leaves the input (algo/ring_allreduce.cc), or in float32 room
  // for float16/bfloat16 among 3 or more peers (mostly in the backup too, as a quantized
  // call's wire slots are). A caller that recomputes its input after a failure
  // (restore_input false) saves the backup: then the partials land in a few receive slots
  // (or the float32 workspace).
  const bool restore = in_place && request.restore_input;
  algo::AllReduceOptions& options = run->options;
  options.dtype = request.dtype;
  options.op = request.op;
  options.count = request.count;
  options.send = send;
  options.recv = recv;
  options.rank = bound.rank;
  options.world = bound.world;
  options.segment_bytes = segment_bytes;
  options.receive_slots = links->pool_size() + 1;  // one per receiving connection, + spare
  // Scratch per element (float16/bfloat16 partial sums in float32 among 3 or more peers,
  // quantized wire slots) is kept for one window of the tensor at a time. (The descriptor
  // hashes WindowOf(request) as it is: the peers share their world.)
  options.window_elements = quantized || algo::AccumulatesWide(options) ? WindowOf(request) : 0;
  run->backup = buffers_.Acquire(restore ? algo::BackupBytes(request.dtype, request.count) : 0);
  options.backup = restore ? run->backup.data() : nullptr;
  run->scratch = buffers_.Acquire(in_place && !quantized ? algo::ScratchBytes(options) : 0);
  run->workspace = buffers_.Acquire(quantized ? 0 : algo::WorkspaceBytes(options));
  options.modulus = request.modulus != 0 ? &run->modulus : nullptr;
  options.workspace = reinterpret_cast<float*>(run->workspace.data());
  options.scratch = run->scratch.data();  // in place only
  options.received = extras.received;
  if (extras.corruptible) options.corrupt_step = static_cast<int>(GetParams().test_corrupt_step);

  const TimePoint started = Clock::now();
  run->wire = buffers_.Acquire(quantized ? algo::QuantizedScratchBytes(options, request.quant)
                                         : 0);
  run->local = quantized ? algo::QuantizedRingAllReduce(options, request.quant, *op, deadline,
                                                        &run->stats, run->wire.data())
                         : algo::RingAllReduce(options, *op, deadline, &run->stats);
  links->CloseOp(op, kAbortGrace);  // from here on no I/O thread touches the buffers
  run->took = Clock::now() - started;
  *out = std::move(run);
  return Status::Ok();
}

Status Collectives::Execute(const CollectiveRequest& request, const RingBinding& bound,
                            Deadline deadline, ReduceInfo* info, const ExecuteExtras& extras) {
  std::unique_ptr<AllReduceRun> run;
  PCCL_RETURN_IF_ERROR(RunAllReduce(request, bound, deadline, extras, &run));
  proto::Verdict& verdict = ThisThreadsVerdict();
  PCCL_RETURN_IF_ERROR(Conclude(bound.key, run->descriptor_hash, run->local, "", deadline,
                                &verdict, run->stats.tx_bytes, run->took));
  run->committed = true;
  if (extras.challenge != nullptr) *extras.challenge = verdict.challenge;
  *info = run->Info();
  return Status::Ok();
}

void Collectives::ExecuteThen(const CollectiveRequest& request, const RingBinding& bound,
                              Deadline deadline, Finish finish) {
  // As ExecutePairThen: the thread that gets the verdict ends the call (EndAsync).
  std::unique_ptr<AllReduceRun> run;
  Status st = RunAllReduce(request, bound, deadline, {}, &run);
  if (!st.ok()) return finish(st, ReduceInfo());
  ConcludeRunThen(bound.key, std::move(run), std::move(finish));
}

proto::OpDone Collectives::OpDoneOf(const proto::OpKey& key, uint64_t descriptor_hash,
                                    const Status& local, std::string report,
                                    uint64_t tx_bytes, Duration took) {
  proto::OpDone done;
  done.tx_bytes = tx_bytes;
  done.duration_us = static_cast<uint32_t>(std::min<int64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(took).count(), UINT32_MAX));
  done.key = key;
  done.ok = local.ok() ? 1 : 0;
  done.descriptor_hash = descriptor_hash;
  done.reason = local.ok() ? "" : local.message();
  done.code = static_cast<uint32_t>(local.code());
  done.report = std::move(report);
  return done;
}

Status Collectives::Conclude(const proto::OpKey& key, uint64_t descriptor_hash,
                             const Status& local, std::string report, Deadline deadline,
                             proto::Verdict* verdict, uint64_t tx_bytes, Duration took) {
  const proto::OpDone done =
      OpDoneOf(key, descriptor_hash, local, std::move(report), tx_bytes, took);
  return Judge(local, session_.AwaitVerdict(done, deadline, verdict), verdict);
}

Status Collectives::Judge(const Status& local, const Status& waited, proto::Verdict* verdict) {
  if (!waited.ok()) return waited;
  if (!verdict->ok) {
    if (verdict->reason.empty()) verdict->reason = local.message();
    return VerdictFailure(*verdict);
  }
  return local;  // a local failure with an ok verdict cannot happen with a sane master
}

Status Collectives::JudgeReported(const Status& local, const Status& waited,
                                  const proto::Verdict& verdict) const {
  const Status st = session_.NoVerdict(waited);
  if (!st.ok()) return st;
  if (verdict.ok) return local;
  proto::Verdict judged = verdict;
  return Judge(local, st, &judged);
}

void Collectives::ReportFailure(const CollectiveRequest& request, const RingBinding& bound,
                                const Status& why, Deadline deadline) {
  proto::Verdict verdict;
  (void)Conclude(bound.key,
                 DescriptorHash(request, static_cast<size_t>(GetParams().segment_bytes)), why,
                 "", deadline, &verdict);  // failed either way
}

Status Collectives::Report(const CollectiveRequest& request, const RingBinding& bound,
                           std::string report, bool greet_neighbours, Deadline deadline,
                           std::string* reports) {
  const uint64_t descriptor_hash =
      DescriptorHash(request, static_cast<size_t>(GetParams().segment_bytes));
  Status local = Status::Ok();
  if (greet_neighbours) {
    // One byte each way around the ring under this key, stamped with the descriptor hash
    // like every data frame: a neighbour that runs another operation under the key (a peer
    // in another reduce mode) fails at once on the mismatch, and so does this peer on its
    // frames, instead of both waiting for data that never comes.
    std::shared_ptr<RingOp> op;
    PCCL_RETURN_IF_ERROR(session_.OpenOp(*bound.links, bound.key, descriptor_hash, deadline, &op));
    const uint8_t greeting = 1;
    uint8_t greeted = 0;
    op->Expect(0, 0, &greeted, 1);
    op->Send(0, 0, &greeting, 1);
    local = link::AwaitArrivalsAndSends(*op, 1, deadline);
    bound.links->CloseOp(op, kAbortGrace);
  }
  proto::Verdict verdict;
  PCCL_RETURN_IF_ERROR(
      Conclude(bound.key, descriptor_hash, local, std::move(report), deadline, &verdict));
  *reports = std::move(verdict.reports);
  return Status::Ok();
}

}  // namespace pccl::comm
