// Send and recv between two members of a group, with a collective's guarantees.
//
// The story of one transfer: the sender calls send(to = B), the receiver recv(from = A),
// each on its own schedule. Each binds its call to the group's ring epoch and takes the
// next key of the direction A -> B with that tag (Session::BindPair); the n-th send of A
// to B meets the n-th recv of B from A. Each then gets the pair's links (dialled on the
// first transfer between the two, session_pairs.cc) and runs its half (algo/
// point_to_point.h): the sender hands its segments to the pool's connections, the
// receiver's links land them straight in the receive buffer, and the receiver answers
// that it has them all (the sender's deadline bounds the wait). Then both report to the
// master, which decides for the two of them alone (master/verdicts.cc): success once both
// reported it, failure as soon as one failed (a mismatched count or dtype, a deadline, a
// lost link) or left. So both ends see the same outcome, a failed transfer can be retried
// by both, and the send buffer is never written. A failed recv's buffer may hold part of
// the data. An async send or recv (send_async, recv_async) is ended by the thread that
// reads the verdict (ExecutePairThen): nothing is left to do after it, so no worker waits.
//
// A send is therefore synchronous: it returns once the receiver has the data (or the
// transfer failed), like MPI's Ssend. Two peers that each send to the other before they
// receive need the async calls (or torch's batch_isend_irecv), as with NCCL.
//
// A recv from any source first waits for a member's transfer to this peer with its tag to
// begin (Session::AwaitAnySender: its first segment arrived, or it is dialling the pair's
// links), then receives that one like any recv from that member.
#include <string>

#include "pccl/algo/point_to_point.h"
#include "pccl/comm/collectives.h"
#include "pccl/common/params.h"

namespace pccl::comm {

Status Collectives::BindPair(const CollectiveRequest& request, Deadline deadline,
                             RingBinding* bound) {
  const bool sending = request.kind == CollectiveKind::kSend;
  const char* what = sending ? "send" : "recv";
  if (request.mode != 0 || request.modulus != 0 ||
      request.quant.algorithm != kernels::QuantAlgorithm::kNone) {
    return InvalidArgument(std::string(what) +
                           " moves the buffer as it is: no reduce mode, no quantization");
  }
  if (request.count > 0 && (sending ? request.send == nullptr : request.recv == nullptr)) {
    return InvalidArgument(std::string("null buffer for a ") + what + " of " +
                           std::to_string(request.count) + " elements");
  }
  uint64_t peer = request.peer;
  if (peer == 0) {
    if (sending) return InvalidArgument("send needs the receiver's peer id");
    PCCL_RETURN_IF_ERROR(session_.AwaitAnySender(request.tag, deadline, &peer));
  }
  return session_.BindPair(peer, request.tag, sending, deadline, bound);
}

// The transfer itself: this end's half over the pair's links. What it concludes with.
struct Collectives::PairOutcome {
  proto::OpKey key;
  uint64_t descriptor_hash = 0;
  Status local;
  Duration took{};
  ReduceInfo info;  // as the caller gets it if the verdict is success
};

Collectives::PairOutcome Collectives::TransferPair(const CollectiveRequest& request,
                                                   const RingBinding& bound, Deadline deadline) {
  const bool sending = request.kind == CollectiveKind::kSend;
  const size_t segment_bytes = static_cast<size_t>(GetParams().segment_bytes);
  const size_t bytes = request.count * DTypeSize(request.dtype);
  const uint64_t other = sending ? bound.key.to_peer : bound.key.from_peer;
  PairOutcome out;
  out.key = bound.key;
  out.descriptor_hash = DescriptorHash(request, segment_bytes);
  const TimePoint started = Clock::now();
  std::shared_ptr<link::RingLinks> links;
  out.local = session_.ConnectPair(bound.key, other, deadline, &links);
  if (out.local.ok()) {
    std::shared_ptr<link::RingOp> op;
    out.local = session_.OpenOp(*links, bound.key, out.descriptor_hash, deadline, &op);
    if (out.local.ok()) {
      out.local =
          sending ? algo::SendBuffer(*op, request.send, bytes, segment_bytes, deadline)
                  : algo::ReceiveBuffer(*op, request.recv, bytes, segment_bytes, deadline);
      links->CloseOp(op, kAbortGrace);  // from here on no I/O thread touches the buffer
    }
  }
  out.took = Clock::now() - started;
  const uint64_t moved = out.local.ok() ? bytes : 0;
  out.info.local_world_size = static_cast<uint32_t>(bound.world);
  out.info.tx_bytes = sending ? moved : 0;
  out.info.rx_bytes = sending ? 0 : moved;
  out.info.peer = other;
  return out;
}

Status Collectives::ExecutePair(const CollectiveRequest& request, const RingBinding& bound,
                                Deadline deadline, ReduceInfo* info) {
  const PairOutcome out = TransferPair(request, bound, deadline);
  proto::Verdict verdict;
  PCCL_RETURN_IF_ERROR(Conclude(out.key, out.descriptor_hash, out.local, "", deadline, &verdict,
                                out.info.tx_bytes, out.took));
  *info = out.info;
  return Status::Ok();
}

void Collectives::ExecutePairThen(const CollectiveRequest& request, const RingBinding& bound,
                                  Deadline deadline, Finish finish) {
  // The verdict is the last thing a send or recv waits for, and nothing is left to do
  // after it: the thread that gets it (the master connection's reader) finishes the call.
  // This worker is free meanwhile, and the caller waiting for the call is woken one
  // hand-off earlier than through a worker woken by the verdict.
  PairOutcome out = TransferPair(request, bound, deadline);
  ConcludeThen(out.key, out.descriptor_hash, out.local, out.info.tx_bytes, out.took,
               [info = out.info, finish = std::move(finish)](const Status& st) {
                 finish(st, st.ok() ? info : ReduceInfo());
               });
}

}  // namespace pccl::comm
