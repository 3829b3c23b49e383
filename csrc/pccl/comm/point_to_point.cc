// Send and recv between two members of a group, with a collective's guarantees.
//
// The story of one transfer: the sender calls send(to = B), the receiver recv(from = A),
// each on its own schedule. Each binds its call to the group's ring epoch and takes the
// next key of the direction A -> B with that tag (Session::BindPair); the n-th send of A
// to B meets the n-th recv of B from A. Each then gets the pair's links (dialled on the
// first transfer between the two, session_pairs.cc) and runs its half (algo/
// point_to_point.h): the sender hands its segments to the pool's connections, the
// receiver's links land them straight in the receive buffer.
//
// The receiver decides. Every frame carries the sender's descriptor hash, so the receiver
// alone knows, once every segment is in, that the transfer is whole and is the one it
// expects. It then commits (Session::CommitReceive), answers the sender with an ack over
// the pair's links, ends its call and reports ok to the master without waiting for
// anything. A sender with the ack ends its call and reports nothing. A transfer that works
// therefore costs one message to the master and no verdict: both ends are done the moment
// the data is.
//
// A failure is decided through the master (master/verdicts.cc), so that both ends see the
// same outcome and can retry in step. A receiver that failed (a mismatched count or dtype,
// its deadline, a lost link) reports it and waits for the verdict, which fails both ends.
// A sender without the ack (its deadline, a lost link) reports a failure and waits too: the
// master asks the receiver (PairQuery), which reports what it did with the transfer. If it
// had committed (only the ack was lost), the sender's call succeeds after all; if it had not
// begun the transfer, the transfer is refused for good (the recv that binds its key later
// fails at once); if it is still receiving (or connecting), its receive fails now. Either
// way the send buffer is never written; a failed recv's buffer may hold part of the data.
//
// A limit: a receiver's ok report that no master hears (the master restarted just then)
// while its sender also lost the ack (two faults at once) leaves the sender failed and
// the receiver done. The sender's wait ends with the lost master, before any new master
// could ask the receiver.
//
// An async send or recv (send_async, recv_async) ends on its worker when it succeeded,
// and on the thread that reads the verdict (ExecutePairThen) when it failed.
//
// A send is therefore synchronous: it returns once the receiver has the data (or the
// transfer failed), like MPI's Ssend. Two peers that each send to the other before they
// receive need the async calls (or torch's batch_isend_irecv), as with NCCL.
//
// A recv from any source first waits for a member's transfer to this peer with its tag to
// begin (Session::AwaitAnySender: its first segment arrived, or it is dialling the pair's
// links), then receives that one like any recv from that member.
#include <atomic>
#include <string>

#include "pccl/algo/point_to_point.h"
#include "pccl/comm/collectives.h"
#include "pccl/common/by_ref.h"
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
  Status local;  // a recv's Ok: committed (and reported)
  Duration took{};
  ReduceInfo info;  // as the caller gets it if the transfer succeeded

  proto::OpDone Report() const {
    return OpDoneOf(key, descriptor_hash, local, "",
                    local.ok() ? info.rx_bytes : 0,  // the receiver reports what came
                    took);
  }
};

namespace {

// PCCL_TEST_SILENT_RECEIVES: whether this receive is one of the first that many.
bool TakeSilentReceive() {
  static std::atomic<int64_t> left{GetParams().test_silent_receives};
  int64_t n = left.load();
  while (n > 0 && !left.compare_exchange_weak(n, n - 1)) {
  }
  return n > 0;
}

}  // namespace

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
  bool silent = false;  // committed without ack or report (PCCL_TEST_SILENT_RECEIVES)
  // A recv still connecting gives up once its sender failed and asked (OnPairQuery).
  auto refused = [&] { return !sending && session_.ReceiptRefused(bound.key); };
  out.local = session_.ConnectPair(bound.key, other, deadline, &links, ByRef(refused));
  if (out.local.ok()) {
    std::shared_ptr<link::RingOp> op;
    out.local = session_.OpenOp(*links, bound.key, out.descriptor_hash, deadline, &op);
    if (out.local.ok()) {
      silent = !sending && TakeSilentReceive();
      out.local =
          sending ? algo::SendBuffer(*op, request.send, bytes, segment_bytes, deadline)
                  : algo::ReceiveBuffer(*op, request.recv, bytes, segment_bytes, deadline,
                                        [&] { return session_.CommitReceive(bound.key); },
                                        /*answer=*/!silent);
      links->CloseOp(op, kAbortGrace);  // from here on no I/O thread touches the buffer
    }
  }
  if (!sending && !out.local.ok()) out.local = session_.NoteReceiveFailed(bound.key, out.local);
  out.took = Clock::now() - started;
  out.info.local_world_size = static_cast<uint32_t>(bound.world);
  out.info.tx_bytes = sending ? bytes : 0;
  out.info.rx_bytes = sending ? 0 : bytes;
  out.info.peer = other;
  // The receiver decided: the master hears of it, and nobody waits for an answer.
  if (!sending && out.local.ok() && !silent) session_.ReportReceived(out.Report());
  return out;
}

Status Collectives::ExecutePair(const CollectiveRequest& request, const RingBinding& bound,
                                Deadline deadline, ReduceInfo* info) {
  const PairOutcome out = TransferPair(request, bound, deadline);
  if (!out.local.ok()) {  // else committed here, or the receiver's ack came
    proto::Verdict verdict;
    const Status waited = session_.AwaitVerdict(out.Report(), deadline, &verdict);
    // The verdict decides, not this end's failure: a sender that lost the ack succeeds
    // if its receiver committed.
    PCCL_RETURN_IF_ERROR(Judge(Status::Ok(), waited, &verdict));
  }
  *info = out.info;
  return Status::Ok();
}

void Collectives::ExecutePairThen(const CollectiveRequest& request, const RingBinding& bound,
                                  Deadline deadline, Finish finish) {
  const PairOutcome out = TransferPair(request, bound, deadline);
  if (out.local.ok()) return finish(Status::Ok(), out.info);
  // A failure waits for its verdict: the thread that gets it (the master connection's
  // reader) finishes the call, and this worker is free meanwhile.
  session_.ReportThen(out.Report(), [this, info = out.info, finish = std::move(finish)](
                                        const Status& waited, const proto::Verdict& verdict) {
    const Status st = JudgeReported(Status::Ok(), waited, verdict);  // as in ExecutePair
    finish(st, st.ok() ? info : ReduceInfo());
  });
}

}  // namespace pccl::comm
