#include "pccl/link/ring_links.h"

#include <algorithm>

#include "pccl/common/logging.h"
#include "pccl/common/params.h"
#include "pccl/common/thread_name.h"
#include "pccl/link/handshake.h"
#include "pccl/net/wire.h"

namespace pccl::link {
namespace {

using proto::DataHeader;
using proto::Kind;

// Largest data frame anyone accepts: a segment of float32 partials of the largest segment
// size, plus its header.
constexpr uint64_t kMaxDataFrameBytes = (uint64_t{64} << 20) * 4 + proto::kDataHeaderBytes;
// Closed operations remembered so that their late frames are discarded, not buffered.
constexpr size_t kClosedMemory = 4096;

// Bytes a segment's data frame takes on the stream: frame header, data header, payload.
uint64_t FrameBytes(const DataHeader& header) {
  return net::kFrameHeaderBytes + proto::kDataHeaderBytes + header.payload_bytes;
}

// True on the links' own sender and receiver threads (see Enqueue).
thread_local bool t_io_thread = false;

// The largest of a pool's smallest RTTs (Socket::MinRtt) in `longest`; false if some
// connection cannot tell.
template <typename Ends>
bool LongestMinRtt(const Ends& ends, uint32_t* longest) {
  bool known = true;
  *longest = 0;
  for (const auto& end : ends) {
    uint32_t rtt = 0;
    known = known && end->socket.MinRtt(&rtt);
    *longest = std::max(*longest, rtt);
  }
  return known;
}

}  // namespace

RingLinks::RingLinks(uint64_t epoch, uint64_t self_id, LinkPeer next, LinkPeer prev,
                     uint32_t pool_size, FaultHandler on_fault, Purpose purpose)
    : epoch_(epoch),
      self_id_(self_id),
      next_(std::move(next)),
      prev_(std::move(prev)),
      pool_size_(pool_size),
      purpose_(purpose),
      // Bytes held for segments whose operation has not started here; a receiver whose
      // segment does not fit waits for the operation (link/ring_op.h).
      early_budget_(std::make_shared<EarlyBudget>(
          static_cast<uint64_t>(GetParams().early_budget_bytes))),
      on_fault_(std::move(on_fault)) {}

RingLinks::~RingLinks() {
  Break(Status(StatusCode::kAborted, "ring links closed"));
  for (auto& s : senders_) {
    if (s->thread.joinable()) s->thread.join();
  }
  for (auto& r : receivers_) {
    if (r->thread.joinable()) r->thread.join();
  }
}

Status RingLinks::Establish(IncomingPool& incoming, const Credentials& credentials, Routes& routes,
                            Deadline deadline, const std::function<bool()>& give_up) {
  const int64_t buffer_bytes = GetParams().socket_buffer_bytes;
  // Dial every slot at once: each costs a TCP handshake and a P2PHello round trip, which
  // on a long link adds up to seconds for a large pool if done one after another. This
  // thread looks at give_up() while they run and calls them off through their deadline's
  // stop flag: a neighbour that stopped (SIGSTOP: its kernel still accepts, nobody
  // answers the hello) would else hold them to the deadline, and one whose machine is gone
  // (no answer to SYNs) to the connect timeout, long after the master replaced the ring.
  std::vector<net::Socket> dialed(pool_size_);
  std::vector<Status> statuses(pool_size_);
  std::atomic<bool> stop{false};
  std::mutex dial_mu;
  std::condition_variable dial_cv;
  uint32_t dials_done = 0;
  std::vector<std::thread> dialers;
  for (uint32_t slot = 0; slot < pool_size_; ++slot) {
    dialers.emplace_back([&, slot] {
      Hello hello{purpose_, self_id_, next_.peer_id, epoch_, slot};
      Status st = DialPeer(routes, next_.endpoint, hello, credentials, deadline.Or(stop),
                           &dialed[slot]);
      std::lock_guard<std::mutex> lock(dial_mu);
      statuses[slot] = std::move(st);
      ++dials_done;
      dial_cv.notify_all();
    });
  }
  {
    std::unique_lock<std::mutex> lock(dial_mu);
    while (!dial_cv.wait_for(lock, Deadline::kStopLook,
                             [&] { return dials_done == pool_size_; })) {
      if (stop.load() || !give_up) continue;
      lock.unlock();  // give_up() may take the caller's locks; hold none of ours
      const bool over = give_up();
      lock.lock();
      if (over) stop.store(true, std::memory_order_release);
    }
  }
  for (auto& t : dialers) t.join();
  if (stop.load()) {  // not the neighbour's fault: this ring is over already
    return Status(StatusCode::kAborted, "gave up dialling peer " +
                                            std::to_string(next_.peer_id) + " for ring epoch " +
                                            std::to_string(epoch_));
  }
  for (uint32_t slot = 0; slot < pool_size_; ++slot) {
    if (!statuses[slot].ok()) {
      Fault(next_.peer_id, statuses[slot]);
      return statuses[slot];
    }
    auto sender = std::make_unique<Sender>();
    sender->socket = std::move(dialed[slot]);
    senders_.push_back(std::move(sender));
  }
  std::vector<net::Socket> sockets;
  Status taken = incoming.Take(epoch_, prev_.peer_id, pool_size_, deadline, give_up, &sockets);
  if (!taken.ok()) {
    if (taken.code() == StatusCode::kDeadlineExceeded) Fault(prev_.peer_id, taken);
    return taken;
  }
  for (auto& socket : sockets) {
    socket.SetBufferSizes(buffer_bytes);
    auto receiver = std::make_unique<Receiver>();
    receiver->socket = std::move(socket);
    receivers_.push_back(std::move(receiver));
  }
  uint32_t longest = 0;
  const bool known = LongestMinRtt(senders_, &longest);
  stripes_ = StripesFor(pool_size_, known, longest);
  uint32_t prev_longest = 0;
  hold_early_ = LongestMinRtt(receivers_, &prev_longest) && prev_longest < kNearRttUs;
  PCCL_LOG(kDebug, "links to " + std::to_string(next_.peer_id) + ": striping over " +
                       std::to_string(stripes_.load()) + " of " + std::to_string(pool_size_) +
                       " connections (smallest RTT " +
                       (known ? std::to_string(longest) + " us)" : "unknown)"));
  for (auto& s : senders_) {
    Sender* raw = s.get();
    s->thread = std::thread([this, raw] { SenderLoop(raw); });
  }
  for (auto& r : receivers_) {
    Receiver* raw = r.get();
    r->thread = std::thread([this, raw] { ReceiverLoop(raw); });
  }
  return Status::Ok();
}

Status RingLinks::OpenOp(const proto::OpKey& key, uint64_t descriptor_hash, Deadline deadline,
                         std::shared_ptr<RingOp>* out) {
  std::shared_ptr<RingOp> op;
  Status broken;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto id = std::make_pair(key.tag, key.seq);
    if (closed_.count(id)) {
      return FailedPrecondition(key.ToString() + " was already run on these links");
    }
    auto it = ops_.find(id);
    if (it == ops_.end()) {
      op = NewOp(key);
      ops_[id] = op;
    } else {
      op = it->second;
    }
    broken = broken_;
  }
  // Counted before the op opens, so that its own receivers, woken by the open, see one
  // operation open here (their own) and may keep holding its undeclared segments.
  const int open_before = open_ops_.fetch_add(1);
  op->Open(descriptor_hash, deadline);
  // From now on no segment of another operation waits in its socket here: receivers
  // holding one (its operation not started here, or started but setting up) read it into
  // a block and move on, in case this operation's segments are behind it. With two or
  // more open before, none holds: nobody to wake.
  if (open_before <= 1) {
    // This thread's list, kept from call to call (emptied after each: it holds the ops).
    thread_local std::vector<std::shared_ptr<RingOp>> others;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, other] : ops_) {
        if (other != op) others.push_back(other);
      }
    }
    for (auto& other : others) other->WakeReceivers();
    others.clear();
  }
  // On broken links the op fails at once, and its caller reports it like any failure: the
  // master's verdict then fails it for every peer that runs it.
  if (!broken.ok()) op->Fail(broken);
  *out = op;
  return Status::Ok();
}

void RingLinks::CloseOp(const std::shared_ptr<RingOp>& op, Duration grace) {
  op->Close();  // no payload claims its memory from now on; then wait for those that did
  if (!op->WaitQuiet(Deadline::In(grace))) {
    // Some I/O of the op is stuck (a hung peer): cut the links so the I/O threads let go
    // of the op's memory. The wait that follows has no deadline and needs none: Break
    // shuts every socket down, so blocked sends and receives return at once, and what is
    // left of a handler is bounded compute on memory the op still owns.
    Break(Status(StatusCode::kAborted, "ring links cut: " + op->key().ToString() +
                                           " did not stop in time after failing"));
    op->WaitQuiet(Deadline::Never());
  }
  open_ops_.fetch_sub(1);
  std::lock_guard<std::mutex> lock(mu_);
  auto id = std::make_pair(op->key().tag, op->key().seq);
  ops_.erase(id);
  if (closed_.insert(id).second) {
    closed_order_.push_back(id);
    if (closed_order_.size() > kClosedMemory) {
      closed_.erase(closed_order_.front());
      closed_order_.pop_front();
    }
  }
}

void RingLinks::FailOp(const proto::OpKey& key, const Status& why) {
  std::shared_ptr<RingOp> op;
  bool created = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (key.epoch != epoch_) return;  // a verdict about another ring's operation
    auto id = std::make_pair(key.tag, key.seq);
    if (closed_.count(id)) return;  // done with already
    auto it = ops_.find(id);
    if (it == ops_.end()) {
      // The verdict came before this peer started the operation (another peer failed
      // early): create it failed, so that OpenOp() finds it failed instead of running it
      // until its deadline for data nobody sends.
      it = ops_.emplace(id, NewOp(key)).first;
      created = true;
    }
    op = it->second;
  }
  op->Fail(why);
  if (created && on_new_op_) on_new_op_();
}

void RingLinks::Fault(uint64_t peer_id, const Status& why) {
  if (stopping_.load()) return;  // broken on purpose first: nothing to report
  // Report first, then fail the operations: the master then hears of the broken link
  // before this peer's failed OpDone, and marks the verdict "ring replaced".
  if (on_fault_ && !fault_reported_.exchange(true)) on_fault_(peer_id, why);
  Break(why);
}

void RingLinks::Break(const Status& why) {
  std::vector<std::shared_ptr<RingOp>> ops;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_.ok()) {
      broken_ = why;
      // With no operation open (a neighbour that left between calls, or at the end of a
      // run) nothing is lost here: the master rebuilds the ring, and no call fails.
      if (why.code() != StatusCode::kAborted && open_ops_.load() > 0) {
        PCCL_LOG(kWarning, "ring links broken: " + why.ToString());
      } else if (why.code() != StatusCode::kAborted) {
        PCCL_LOG(kInfo, "ring links broken, no operation open: " + why.ToString());
      }
    }
    for (auto& [id, op] : ops_) ops.push_back(op);
  }
  stopping_.store(true);
  for (auto& op : ops) op->Fail(why);
  for (auto& s : senders_) {
    s->socket.Shutdown();
    std::lock_guard<std::mutex> lock(s->mu);
    s->cv.notify_all();
  }
  for (auto& r : receivers_) r->socket.Shutdown();
}

RingLinks::Counters RingLinks::counters() const {
  Counters c;
  c.tx_bytes = tx_bytes_.load(std::memory_order_relaxed);
  c.rx_bytes = rx_bytes_.load(std::memory_order_relaxed);
  c.early_rx_bytes = early_rx_bytes_.load(std::memory_order_relaxed);
  // The pools are fixed once Establish returned (the Session hands out only such links);
  // their sockets stay open until the links are destroyed.
  auto view = [](const auto& pool, uint32_t* rtt_us, uint64_t* retransmits) {
    uint64_t rtt_sum = 0;
    uint32_t n = 0;
    for (const auto& end : pool) {
      uint32_t rtt = 0;
      uint64_t retrans = 0;
      if (!end->socket.TcpInfo(&rtt, &retrans)) continue;
      rtt_sum += rtt;
      *retransmits += retrans;
      ++n;
    }
    *rtt_us = n == 0 ? 0 : static_cast<uint32_t>(rtt_sum / n);
  };
  view(senders_, &c.next_rtt_us, &c.next_retransmits);
  view(receivers_, &c.prev_rtt_us, &c.prev_retransmits);
  return c;
}

bool RingLinks::HasOp(uint64_t tag, uint64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  return ops_.count({tag, seq}) > 0;
}

Status RingLinks::broken_status() {
  std::lock_guard<std::mutex> lock(mu_);
  return broken_;
}

uint32_t RingLinks::StripesFor(uint32_t pool_size, bool known, uint32_t min_rtt_us) {
  if (!known || min_rtt_us >= kNearRttUs) return pool_size;
  return std::min(pool_size, kNearStripes);
}

void RingLinks::Enqueue(SendItem item) {
  Sender* best = nullptr;
  uint64_t best_bytes = 0;
  const size_t stripes = std::min<size_t>(stripes_.load(), senders_.size());
  for (size_t i = 0; i < stripes; ++i) {
    Sender* s = senders_[i].get();
    std::lock_guard<std::mutex> lock(s->mu);
    if (best == nullptr || s->queued_bytes < best_bytes) {
      best = s;
      best_bytes = s->queued_bytes;
    }
  }
  if (best == nullptr) {
    item.op->FinishSend(Status(StatusCode::kAborted, "ring links closed"));
    return;
  }
  std::unique_lock<std::mutex> lock(best->mu);
  // Checked under the sender's lock: a sender that saw stopping_ drains its queue under
  // this lock and exits, so an item queued after that would never be finished.
  if (stopping_.load()) {
    lock.unlock();
    item.op->FinishSend(Status(StatusCode::kAborted, "ring links closed"));
    return;
  }
  if (!best->busy && best->queue.empty() && item.header.payload_bytes <= kInlineSendBytes &&
      (!t_io_thread || best->socket.HasSendRoom(FrameBytes(item.header)))) {
    // The connection is idle: write the frame on this thread rather than wake its sender
    // for it. For a small frame the wake-up costs more than the write, and it lies on the
    // critical path of every small collective step, ack and answer. `busy` keeps the
    // sender out meanwhile; what is queued behind it goes to the sender once this write
    // is done. A receiver thread (an arrival handler passing a segment on) writes only
    // when the kernel has room for the frame: blocked in a send, it would stop reading
    // its own connection, and two peers' receivers could wait on each other.
    best->busy = true;
    lock.unlock();
    Transmit(best, item);
    lock.lock();
    best->busy = false;
    if (!best->queue.empty()) best->cv.notify_one();
    return;
  }
  best->queued_bytes += item.header.payload_bytes;
  best->queue.push_back(std::move(item));
  best->cv.notify_one();
}

void RingLinks::Transmit(Sender* sender, const SendItem& item) {
  if (!item.op->status().ok()) {  // the operation failed: skip its remaining segments
    item.op->FinishSend(Status::Ok());
    return;
  }
  uint8_t frame[net::kFrameHeaderBytes];
  net::EncodeFrameHeader(static_cast<uint16_t>(Kind::kData),
                         proto::kDataHeaderBytes + item.header.payload_bytes, frame);
  uint8_t data_header[proto::kDataHeaderBytes];
  proto::EncodeDataHeader(item.header, data_header);
  struct iovec iov[3] = {{frame, sizeof(frame)},
                         {data_header, sizeof(data_header)},
                         {const_cast<void*>(item.data), item.header.payload_bytes}};
  Status st = sender->socket.SendAllV(iov, 3, item.deadline);
  if (st.ok()) {
    tx_bytes_.fetch_add(FrameBytes(item.header), std::memory_order_relaxed);
  } else {  // the next peer is gone or stuck
    st = Status(StatusCode::kAborted,
                "sending to next peer " + next_.endpoint.ToString() + ": " + st.message());
  }
  item.op->FinishSend(st);
  if (!st.ok()) Fault(next_.peer_id, st);
}

void RingLinks::SenderLoop(Sender* sender) {
  NameThisThread("pccl-link-tx");
  t_io_thread = true;
  while (true) {
    SendItem item;
    {
      std::unique_lock<std::mutex> lock(sender->mu);
      sender->cv.wait(lock, [&] {
        return stopping_.load() || (!sender->queue.empty() && !sender->busy);
      });
      if (stopping_.load()) {
        for (auto& dropped : sender->queue) {
          dropped.op->FinishSend(Status(StatusCode::kAborted, "ring links closed"));
        }
        sender->queue.clear();
        return;
      }
      item = std::move(sender->queue.front());
      sender->queue.pop_front();
      sender->queued_bytes -= item.header.payload_bytes;
      sender->busy = true;
    }
    Transmit(sender, item);
    std::lock_guard<std::mutex> lock(sender->mu);
    sender->busy = false;
  }
}

std::shared_ptr<RingOp> RingLinks::NewOp(const proto::OpKey& key) {
  return MakeSharedInCallMemory<RingOp>(this, key, early_budget_);
}

std::shared_ptr<RingOp> RingLinks::FindOrCreateOp(const DataHeader& header, bool* closed) {
  std::shared_ptr<RingOp> op;
  {
    std::lock_guard<std::mutex> lock(mu_);
    *closed = false;
    if (!broken_.ok()) return nullptr;
    auto id = std::make_pair(header.tag, header.seq);
    auto it = ops_.find(id);
    if (it != ops_.end()) return it->second;
    if (closed_.count(id)) {
      *closed = true;
      return nullptr;
    }
    proto::OpKey key{epoch_, 0, header.tag, header.seq};
    op = NewOp(key);
    ops_[id] = op;
  }
  if (on_new_op_) on_new_op_();
  return op;
}

void RingLinks::ReceiverLoop(Receiver* receiver) {
  NameThisThread("pccl-link-rx");
  t_io_thread = true;
  net::Socket& socket = receiver->socket;
  const std::string peer = "previous peer " + prev_.endpoint.ToString();
  std::vector<char> scratch;
  auto lost = [&](const Status& st) {
    if (!stopping_.load()) {
      // A protocol violation stays InvalidArgument; anything else means the peer is gone.
      Fault(prev_.peer_id,
            Status(st.code() == StatusCode::kInvalidArgument ? st.code() : StatusCode::kAborted,
                   "ring link from " + peer + ": " + st.message()));
    }
  };
  while (!stopping_.load()) {
    net::FrameHeader frame;
    Status st = net::RecvFrameHeader(socket, kMaxDataFrameBytes, Deadline::Never(), &frame);
    if (!st.ok()) return lost(st);
    if (frame.kind != static_cast<uint16_t>(Kind::kData) ||
        frame.length < proto::kDataHeaderBytes) {
      return lost(InvalidArgument(std::string("unexpected ") + proto::KindName(frame.kind) +
                                  " frame of " + std::to_string(frame.length) + " bytes"));
    }
    uint8_t bytes[proto::kDataHeaderBytes];
    st = socket.RecvAll(bytes, sizeof(bytes), Deadline::Never());
    if (!st.ok()) return lost(st);
    DataHeader header = proto::DecodeDataHeader(bytes);
    rx_bytes_.fetch_add(frame.length + net::kFrameHeaderBytes, std::memory_order_relaxed);
    if (header.payload_bytes != frame.length - proto::kDataHeaderBytes) {
      return lost(InvalidArgument("data header says " + std::to_string(header.payload_bytes) +
                                  " payload bytes, frame carries " +
                                  std::to_string(frame.length - proto::kDataHeaderBytes)));
    }
    bool closed = false;
    std::shared_ptr<RingOp> op = FindOrCreateOp(header, &closed);
    void* dest = op ? op->ClaimForReceive(header, prev_.endpoint.ToString()) : nullptr;
    if (dest != nullptr) {
      st = socket.RecvAll(dest, header.payload_bytes, Deadline::Never());
      if (!st.ok()) {
        // The previous peer is gone mid-segment: the op fails as a lost peer (Aborted),
        // not with the socket's Unavailable, which would read as a lost master.
        st = Status(StatusCode::kAborted, "ring link from " + peer + ": " + st.message());
      }
      op->FinishReceive(header, st);
      if (!st.ok()) return lost(st);
      continue;
    }
    // Nobody wants this payload (a failed or finished operation): read and drop it.
    uint64_t left = header.payload_bytes;
    scratch.resize(std::min<uint64_t>(left, 1 << 20));
    while (left > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(left, scratch.size()));
      st = socket.RecvAll(scratch.data(), n, Deadline::Never());
      if (!st.ok()) return lost(st);
      left -= n;
    }
  }
}

}  // namespace pccl::link
