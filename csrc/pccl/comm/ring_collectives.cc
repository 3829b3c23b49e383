// Collectives::ExecuteRing: the broadcast, all-gather, reduce-scatter, gather, scatter and
// all-to-all, with the all-reduce's guarantees.
//
// They bind to the ring, run over the ring's channel (gather, scatter and all-to-all
// straight to each block's destination: direct_collectives.cc) and end with the master's
// verdict exactly as the all-reduce does (collectives.cc). What is particular to them:
// - Peers are named by id, not by ring position, since the master may reorder the ring
//   between calls: a root is a peer id, and blocks (the all-gather's output, the
//   reduce-scatter's input, ...) are laid out in the order of `order` (ascending peer id
//   by default). Once bound, each peer maps these to ring positions (RingBinding::ring).
// - The caller sized `recv` for the world it saw; if the ring it is bound to has another
//   size, or does not hold the root or the ids of `order`, the operation fails on every
//   peer (this one reports the failure; the verdict carries it to the rest) and nothing
//   is sent.
// - Inputs are never written. A broadcast's buffer on the peers that receive it is an
//   output (in place, as torch's broadcast is); with restore_input it is copied aside
//   first and put back if the verdict fails, so that a failed broadcast leaves every
//   buffer as it was (Python's broadcast() asks for that only when told to: it costs a
//   copy of the buffer per call).
#include <algorithm>
#include <cstring>

#include "pccl/algo/ring_collectives.h"
#include "pccl/comm/collectives.h"
#include "pccl/common/params.h"
#include "pccl/kernels/copy.h"

namespace pccl::comm {
namespace {

// Ring position -> block, from `order` (block -> peer id) and the ring (position -> peer
// id); or why they do not match.
Status SlotsOf(const CollectiveRequest& request, const std::vector<uint64_t>& ring,
               std::pmr::vector<int>* slot_of) {
  std::pmr::vector<uint64_t> order(request.order.begin(), request.order.end(), CallMemory());
  if (order.empty()) {  // ascending peer id
    order.assign(ring.begin(), ring.end());
    std::sort(order.begin(), order.end());
  }
  if (order.size() != ring.size()) {
    return InvalidArgument(std::string(CollectiveKindName(request.kind)) + ": `order` names " +
                           std::to_string(order.size()) + " peers but the group has " +
                           std::to_string(ring.size()));
  }
  slot_of->assign(ring.size(), -1);
  for (size_t position = 0; position < ring.size(); ++position) {
    auto it = std::find(order.begin(), order.end(), ring[position]);
    if (it == order.end()) {
      return InvalidArgument(std::string(CollectiveKindName(request.kind)) + ": peer " +
                             std::to_string(ring[position]) + " of the group is not in `order`");
    }
    (*slot_of)[position] = static_cast<int>(it - order.begin());
  }
  return Status::Ok();
}

// An all-gather's input may lie in its output only as this peer's own block (`slot`):
// another block would be overwritten while it is being sent.
Status CheckOwnBlock(const CollectiveRequest& request, int slot) {
  const size_t elem = DTypeSize(request.dtype);
  const auto* send = static_cast<const char*>(request.send);
  const auto* recv = static_cast<const char*>(request.recv);
  const char* own = recv + static_cast<size_t>(slot) * request.count * elem;
  if (send != nullptr && send != own && send >= recv &&
      send < recv + request.recv_count * elem) {
    return InvalidArgument("all_gather: the input is a block of the output, but not this "
                           "peer's own");
  }
  return Status::Ok();
}

// What the bound ring makes of the request: the algorithm's options, or why the request
// does not fit this ring (sizes for another world, a root or `order` outside the group,
// the root's buffer missing, an all-gather's input inside another peer's block).
Status Shape(const CollectiveRequest& request, const RingBinding& bound,
             algo::RingCollectiveOptions* options) {
  const size_t world = static_cast<size_t>(bound.world);
  const char* what = CollectiveKindName(request.kind);
  if (bound.ring->size() != world || (*bound.ring)[bound.rank] == 0) {
    return Internal(std::string(what) + ": the ring's members are unknown");
  }
  options->dtype = request.dtype;
  options->op = request.op;
  options->send = request.send;
  options->recv = request.recv;
  options->rank = bound.rank;
  options->world = bound.world;
  options->segment_bytes = static_cast<size_t>(GetParams().segment_bytes);
  if (request.kind == CollectiveKind::kBroadcast) {
    // A broadcast is one pipeline: the last peer starts receiving once the first segment
    // crossed world - 1 links, so segments small enough for at least 8 per buffer keep
    // small broadcasts from waiting a whole buffer per hop (64 KiB at least: per-frame
    // costs).
    const size_t bytes = request.count * DTypeSize(request.dtype);
    options->segment_bytes =
        std::clamp<size_t>(bytes / 8, size_t{64} << 10, options->segment_bytes);
  }
  const bool rooted = request.kind == CollectiveKind::kBroadcast ||
                      request.kind == CollectiveKind::kGather ||
                      request.kind == CollectiveKind::kScatter;
  bool is_root = false;
  if (rooted) {
    auto root = std::find(bound.ring->begin(), bound.ring->end(), request.root);
    if (root == bound.ring->end()) {
      return InvalidArgument(std::string(what) + ": the root, peer " +
                             std::to_string(request.root) + ", is not in this group");
    }
    options->root = static_cast<int>(root - bound.ring->begin());
    is_root = options->root == bound.rank;
  }
  if (request.kind != CollectiveKind::kBroadcast) {
    PCCL_RETURN_IF_ERROR(SlotsOf(request, *bound.ring, &options->slot_of));
  }
  // The block each peer contributes or receives, and what the buffers must then hold.
  auto blocks_of = [&](size_t count, const char* buffer) -> Status {
    if (count % world != 0) {
      return InvalidArgument(std::string(what) + ": the " + buffer + "'s " +
                             std::to_string(count) + " elements do not split into " +
                             std::to_string(world) + " blocks");
    }
    options->count = count / world;
    return Status::Ok();
  };
  size_t want_recv = request.count;
  switch (request.kind) {
    case CollectiveKind::kBroadcast:
      options->count = request.count;
      break;
    case CollectiveKind::kAllGather:
      options->count = request.count;
      want_recv = request.count * world;
      PCCL_RETURN_IF_ERROR(CheckOwnBlock(request, options->slot_of[bound.rank]));
      break;
    case CollectiveKind::kGather:
      options->count = request.count;
      want_recv = is_root ? request.count * world : request.recv_count;  // others: unused
      if (is_root && request.recv == nullptr && request.recv_count > 0) {
        return InvalidArgument("gather: the root needs an output buffer");
      }
      break;
    case CollectiveKind::kReduceScatter:
      PCCL_RETURN_IF_ERROR(blocks_of(request.count, "input"));
      want_recv = options->count;
      break;
    case CollectiveKind::kScatter:
      options->count = request.recv_count;
      want_recv = request.recv_count;
      if (is_root && request.send == nullptr && request.count > 0) {
        return InvalidArgument("scatter: the root needs an input buffer");
      }
      if (is_root && request.count != request.recv_count * world) {
        return InvalidArgument("scatter in a group of " + std::to_string(world) +
                               " needs an input of " +
                               std::to_string(request.recv_count * world) +
                               " elements at the root, got " + std::to_string(request.count) +
                               " (did the group change since the buffers were sized?)");
      }
      break;
    case CollectiveKind::kAllToAll:
      PCCL_RETURN_IF_ERROR(blocks_of(request.count, "input"));
      break;
    case CollectiveKind::kAllReduce:
    case CollectiveKind::kSend:
    case CollectiveKind::kRecv:
      return Internal("ExecuteRing runs no all-reduce or send/recv");
  }
  if (request.recv_count != want_recv) {
    return InvalidArgument(std::string(what) + " in a group of " + std::to_string(world) +
                           " needs an output of " + std::to_string(want_recv) +
                           " elements, got " + std::to_string(request.recv_count) +
                           " (did the group change since the buffers were sized?)");
  }
  return Status::Ok();
}

// Bytes of scratch `kind` needs with `options`.
size_t ScratchBytes(CollectiveKind kind, const algo::RingCollectiveOptions& options) {
  switch (kind) {
    case CollectiveKind::kReduceScatter:
      return algo::ReduceScatterScratchBytes(options.dtype, options.count, options.world);
    default:
      return 0;
  }
}

}  // namespace

const char* CollectiveKindName(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::kAllReduce: return "all_reduce";
    case CollectiveKind::kBroadcast: return "broadcast";
    case CollectiveKind::kAllGather: return "all_gather";
    case CollectiveKind::kReduceScatter: return "reduce_scatter";
    case CollectiveKind::kGather: return "gather";
    case CollectiveKind::kScatter: return "scatter";
    case CollectiveKind::kAllToAll: return "all_to_all";
    case CollectiveKind::kSend: return "send";
    case CollectiveKind::kRecv: return "recv";
  }
  return "?";
}

Status Collectives::CheckRingCollective(const CollectiveRequest& request) {
  const char* what = CollectiveKindName(request.kind);
  if (request.mode != 0 || request.modulus != 0 ||
      request.quant.algorithm != kernels::QuantAlgorithm::kNone) {
    return InvalidArgument(std::string(what) +
                           " runs in the default mode only: no reduce mode, no quantization");
  }
  // A gather's `recv` and a scatter's `send` may be null off the root (Shape() checks the
  // root's, once it knows which peer that is).
  const bool needs_send = request.kind != CollectiveKind::kScatter;
  const bool needs_recv = request.kind != CollectiveKind::kGather;
  if ((request.count > 0 && request.send == nullptr && needs_send) ||
      (request.recv_count > 0 && request.recv == nullptr && needs_recv)) {
    return InvalidArgument(std::string("null buffer for a ") + what);
  }
  const size_t elem = DTypeSize(request.dtype);
  const auto* send = static_cast<const char*>(request.send);
  const auto* recv = static_cast<const char*>(request.recv);
  const size_t send_bytes = request.count * elem;
  const size_t recv_bytes = request.recv_count * elem;
  const bool overlap = send < recv + recv_bytes && recv < send + send_bytes;
  switch (request.kind) {
    case CollectiveKind::kBroadcast:
      if (overlap && send != recv) {
        return InvalidArgument("broadcast: send and recv partially overlap");
      }
      break;
    case CollectiveKind::kAllGather:
      // Its own block of the output may be the input (checked once the block is known);
      // any other overlap would be overwritten while it is being sent.
      if (overlap && (send < recv || send + send_bytes > recv + recv_bytes ||
                      (send_bytes > 0 && static_cast<size_t>(send - recv) % send_bytes != 0))) {
        return InvalidArgument("all_gather: the input overlaps the output other than as one "
                               "of its blocks");
      }
      break;
    case CollectiveKind::kReduceScatter:
    case CollectiveKind::kGather:
    case CollectiveKind::kScatter:
    case CollectiveKind::kAllToAll:
      if (overlap) return InvalidArgument(std::string(what) + ": send and recv overlap");
      break;
    case CollectiveKind::kAllReduce:
    case CollectiveKind::kSend:
    case CollectiveKind::kRecv:
      return Internal("CheckRingCollective checks no all-reduce or send/recv");
  }
  return Status::Ok();
}

// One broadcast, all-gather, reduce-scatter, gather, scatter or all-to-all between its start
// and its verdict: what it leased and did. Destroyed uncommitted, a broadcast's receiver
// gets its buffer back first.
struct Collectives::RingRun final : InCallMemory {
  uint64_t descriptor_hash = 0;
  int world = 0;
  algo::RingCollectiveOptions options;
  algo::RingCollectiveStats stats;
  BufferPool::Lease backup, scratch;
  void* restore_to = nullptr;  // the receiver's buffer, saved in `backup`
  size_t restore_bytes = 0;
  Status local;  // how it ended here
  Duration took{};
  bool committed = false;

  ~RingRun() {
    if (!committed && restore_bytes > 0) std::memcpy(restore_to, backup.data(), restore_bytes);
  }
  ReduceInfo Info() const { return ReduceInfoOf(world, stats.tx_bytes, stats.rx_bytes); }
};

Status Collectives::RunRing(const CollectiveRequest& request, const RingBinding& bound,
                            Deadline deadline, std::unique_ptr<RingRun>* out) {
  const size_t segment_bytes = static_cast<size_t>(GetParams().segment_bytes);
  auto run = std::make_unique<RingRun>();
  run->descriptor_hash = DescriptorHash(request, segment_bytes);
  run->world = bound.world;
  algo::RingCollectiveOptions& options = run->options;
  run->local = Shape(request, bound, &options);
  if (!run->local.ok()) {  // nothing sent; the verdict tells the others
    *out = std::move(run);
    return Status::Ok();
  }
  std::shared_ptr<link::RingOp> op;
  PCCL_RETURN_IF_ERROR(
      session_.OpenOp(*bound.links, bound.key, run->descriptor_hash, deadline, &op));

  // A receiver of a broadcast that must give its buffer back if the verdict fails.
  const bool restores = request.kind == CollectiveKind::kBroadcast &&
                        options.root != bound.rank && request.restore_input;
  const size_t bytes = request.recv_count * DTypeSize(request.dtype);
  run->backup = buffers_.Acquire(restores ? bytes : 0);
  if (restores && bytes > 0) {
    kernels::CopyStreaming(run->backup.data(), request.recv, bytes);
    run->restore_to = request.recv;
    run->restore_bytes = bytes;
  }
  run->scratch = buffers_.Acquire(ScratchBytes(request.kind, options));
  options.scratch = run->scratch.data();

  const TimePoint started = Clock::now();
  Status& local = run->local;
  switch (request.kind) {
    case CollectiveKind::kBroadcast:
      local = algo::RingBroadcast(options, *op, deadline, &run->stats);
      break;
    case CollectiveKind::kAllGather:
      local = algo::RingAllGather(options, *op, deadline, &run->stats);
      break;
    case CollectiveKind::kReduceScatter:
      local = algo::RingReduceScatter(options, *op, deadline, &run->stats);
      break;
    case CollectiveKind::kGather:
    case CollectiveKind::kScatter:
    case CollectiveKind::kAllToAll:
      local = RunDirect(request, bound, options, op, run->descriptor_hash, deadline,
                        &run->stats);
      break;
    case CollectiveKind::kAllReduce:
    case CollectiveKind::kSend:
    case CollectiveKind::kRecv:
      local = Internal("ExecuteRing runs no all-reduce or send/recv");
      break;
  }
  bound.links->CloseOp(op, kAbortGrace);  // from here on no I/O thread touches the buffers
  run->took = Clock::now() - started;
  *out = std::move(run);
  return Status::Ok();
}

Status Collectives::ExecuteRing(const CollectiveRequest& request, const RingBinding& bound,
                                Deadline deadline, ReduceInfo* info) {
  std::unique_ptr<RingRun> run;
  PCCL_RETURN_IF_ERROR(RunRing(request, bound, deadline, &run));
  proto::Verdict& verdict = ThisThreadsVerdict();
  PCCL_RETURN_IF_ERROR(Conclude(bound.key, run->descriptor_hash, run->local, "", deadline,
                                &verdict, run->stats.tx_bytes, run->took));
  run->committed = true;
  *info = run->Info();
  return Status::Ok();
}

void Collectives::ExecuteRingThen(const CollectiveRequest& request, const RingBinding& bound,
                                  Deadline deadline, Finish finish) {
  // As ExecuteThen: the thread that gets the verdict ends the call (EndAsync; a broadcast
  // receiver's failure puts its buffer back first).
  std::unique_ptr<RingRun> run;
  Status st = RunRing(request, bound, deadline, &run);
  if (!st.ok()) return finish(st, ReduceInfo());
  ConcludeRunThen(bound.key, std::move(run), std::move(finish));
}

}  // namespace pccl::comm
