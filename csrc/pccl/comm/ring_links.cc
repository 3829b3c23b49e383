#include "pccl/comm/ring_links.h"

#include <algorithm>
#include <cstring>

#include "pccl/common/logging.h"
#include "pccl/common/params.h"
#include "pccl/net/wire.h"

namespace pccl::comm {
namespace {

using proto::DataHeader;
using proto::Kind;

// Largest data frame anyone accepts: a segment of float32 partials of the largest segment
// size, plus its header.
constexpr uint64_t kMaxDataFrameBytes = (uint64_t{64} << 20) * 4 + proto::kDataHeaderBytes;
// Bytes an operation may buffer for segments that arrive before it starts locally.
constexpr uint64_t kMaxEarlyBytes = uint64_t{1} << 30;
// Closed operations remembered so that their late frames are discarded, not buffered.
constexpr size_t kClosedMemory = 4096;

std::string SegmentName(const DataHeader& h) {
  return "segment " + std::to_string(h.segment) + " of step " + std::to_string(h.step) +
         " (tag " + std::to_string(h.tag) + ", seq " + std::to_string(h.seq) + ")";
}

}  // namespace

// ---------------------------------------------------------------------------------------
// IncomingPool

bool IncomingPool::Key::operator<(const Key& o) const {
  return std::tie(epoch, from, slot) < std::tie(o.epoch, o.from, o.slot);
}

void IncomingPool::Deposit(const proto::P2PHello& hello, net::Socket socket) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return;
  sockets_[Key{hello.epoch, hello.from_peer_id, hello.slot}] = std::move(socket);
  cv_.notify_all();
}

Status IncomingPool::Take(uint64_t epoch, uint64_t from_peer, uint32_t count, Deadline deadline,
                          const std::function<bool()>& give_up, std::vector<net::Socket>* out) {
  std::unique_lock<std::mutex> lock(mu_);
  for (auto it = sockets_.begin(); it != sockets_.end();) {
    it = it->first.epoch < epoch ? sockets_.erase(it) : std::next(it);
  }
  auto have = [&] {
    uint32_t n = 0;
    for (uint32_t slot = 0; slot < count; ++slot) n += sockets_.count(Key{epoch, from_peer, slot});
    return n;
  };
  while (!closed_ && have() < count) {
    if (deadline.expired()) {
      return Status(StatusCode::kDeadlineExceeded,
                    "previous peer " + std::to_string(from_peer) + " opened " +
                        std::to_string(have()) + " of " + std::to_string(count) +
                        " ring connections for epoch " + std::to_string(epoch) + " in time");
    }
    lock.unlock();
    bool stop = give_up();
    lock.lock();
    if (stop) return Status(StatusCode::kAborted, "topology superseded");
    cv_.wait_until(lock, std::min(deadline.when(), Clock::now() + std::chrono::milliseconds(50)));
  }
  if (closed_) return Status(StatusCode::kAborted, "communicator closed");
  out->clear();
  for (uint32_t slot = 0; slot < count; ++slot) {
    auto it = sockets_.find(Key{epoch, from_peer, slot});
    out->push_back(std::move(it->second));
    sockets_.erase(it);
  }
  return Status::Ok();
}

void IncomingPool::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  sockets_.clear();
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------
// RingOp

RingOp::RingOp(RingLinks* links, proto::OpKey key) : links_(links), key_(key) {}

void RingOp::Open(uint64_t descriptor_hash, Deadline deadline) {
  std::lock_guard<std::mutex> lock(mu_);
  opened_ = true;
  descriptor_hash_ = descriptor_hash;
  deadline_ = deadline;
  if (have_peer_hash_ && peer_descriptor_hash_ != descriptor_hash && status_.ok()) {
    status_ = InvalidArgument("the previous peer runs a different operation for tag " +
                              std::to_string(key_.tag) +
                              " (count, dtype, op or quantization differ)");
    cv_.notify_all();
  }
}

void RingOp::Send(uint32_t step, uint32_t segment, const void* data, size_t bytes) {
  DataHeader header;
  Deadline deadline = Deadline::Never();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!status_.ok()) return;
    ++pending_sends_;
    header.descriptor_hash = descriptor_hash_;
    deadline = deadline_;
  }
  header.tag = key_.tag;
  header.seq = key_.seq;
  header.step = step;
  header.segment = segment;
  header.payload_bytes = bytes;
  links_->Enqueue(RingLinks::SendItem{shared_from_this(), header, data, deadline});
}

void RingOp::Expect(uint32_t step, uint32_t segment, void* data, size_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  Slot& slot = slots_[{step, segment}];
  slot.expected = true;
  slot.data = data;
  slot.bytes = bytes;
  if (!slot.has_early) return;
  if (slot.early.size() != bytes && status_.ok()) {
    status_ = InvalidArgument("segment " + std::to_string(segment) + " of step " +
                              std::to_string(step) + " arrived with " +
                              std::to_string(slot.early.size()) + " bytes, expected " +
                              std::to_string(bytes));
    cv_.notify_all();
    return;
  }
  std::memcpy(data, slot.early.data(), bytes);
  early_bytes_ -= slot.early.size();
  std::vector<char>().swap(slot.early);
  slot.has_early = false;
  slot.arrived = true;
  arrivals_.push_back({{step, segment}, false});  // WaitRecv runs the handler
  cv_.notify_all();
}

void RingOp::SetArrivalHandler(ArrivalHandler handler) {
  std::unique_lock<std::mutex> lock(mu_);
  if (handler) {
    handler_ = std::move(handler);
    return;
  }
  cv_.wait(lock, [&] { return handlers_running_ == 0; });
  handler_ = nullptr;
}

Status RingOp::WaitRecv(Deadline deadline, uint32_t* step, uint32_t* segment) {
  std::unique_lock<std::mutex> lock(mu_);
  while (status_.ok() && arrivals_.empty()) {
    if (deadline.never()) {
      cv_.wait(lock);
    } else if (cv_.wait_until(lock, deadline.when()) == std::cv_status::timeout &&
               status_.ok() && arrivals_.empty()) {
      status_ = Status(StatusCode::kDeadlineExceeded,
                       "no data from the previous peer before the deadline (" +
                           key_.ToString() + ")");
    }
  }
  if (!status_.ok()) return status_;
  Arrival arrival = arrivals_.front();
  arrivals_.pop_front();
  *step = arrival.key.first;
  *segment = arrival.key.second;
  if (!arrival.handled && handler_) {
    ArrivalHandler handler = handler_;  // this thread owns the algorithm: no detach races
    lock.unlock();
    Status st = handler(*step, *segment);
    if (!st.ok()) Fail(st);
    return st;
  }
  return Status::Ok();
}

Status RingOp::WaitSends(Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  while (status_.ok() && pending_sends_ > 0) {
    if (deadline.never()) {
      cv_.wait(lock);
    } else if (cv_.wait_until(lock, deadline.when()) == std::cv_status::timeout &&
               status_.ok() && pending_sends_ > 0) {
      status_ = Status(StatusCode::kDeadlineExceeded,
                       "sends to the next peer did not finish before the deadline (" +
                           key_.ToString() + ")");
    }
  }
  return status_;
}

void RingOp::Fail(const Status& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (status_.ok()) status_ = why;
  cv_.notify_all();
}

Status RingOp::status() {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void* RingOp::ClaimForReceive(const DataHeader& header, const std::string& peer) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!status_.ok()) return nullptr;
  auto fail = [&](const std::string& why) {
    status_ = InvalidArgument(why);
    cv_.notify_all();
    return nullptr;
  };
  if (opened_ && header.descriptor_hash != descriptor_hash_) {
    return fail("peer " + peer + " runs a different operation for tag " +
                std::to_string(key_.tag) + " (count, dtype, op or quantization differ)");
  }
  if (!opened_) {
    if (have_peer_hash_ && peer_descriptor_hash_ != header.descriptor_hash) {
      return fail("peer " + peer + " changed the descriptor of tag " + std::to_string(key_.tag));
    }
    have_peer_hash_ = true;
    peer_descriptor_hash_ = header.descriptor_hash;
  }
  Slot& slot = slots_[{header.step, header.segment}];
  if (slot.arrived || slot.writing || slot.has_early) {
    return fail("peer " + peer + " sent " + SegmentName(header) + " twice");
  }
  if (slot.expected) {
    if (slot.bytes != header.payload_bytes) {
      return fail("peer " + peer + " sent " + SegmentName(header) + " with " +
                  std::to_string(header.payload_bytes) + " bytes, expected " +
                  std::to_string(slot.bytes) + " (do the peers agree on count and dtype?)");
    }
    slot.writing = true;
    slot.writing_early = false;
    ++active_receives_;
    return slot.data;
  }
  if (early_bytes_ + header.payload_bytes > kMaxEarlyBytes) {
    return fail("peer " + peer + " sent more than " + std::to_string(kMaxEarlyBytes) +
                " bytes for an operation that has not started here");
  }
  slot.early.resize(header.payload_bytes);
  early_bytes_ += header.payload_bytes;
  slot.writing = true;
  slot.writing_early = true;
  ++active_receives_;
  return slot.early.data();
}

void RingOp::FinishReceive(const DataHeader& header, const Status& status) {
  const SlotKey key{header.step, header.segment};
  bool run_handler = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Slot& slot = slots_[key];
    slot.writing = false;
    if (!status.ok()) {
      if (status_.ok()) status_ = status;
    } else if (!slot.writing_early) {
      slot.arrived = true;
      run_handler = handler_ != nullptr && status_.ok();
    } else if (slot.expected) {
      // Expect() came while the early copy was being written: deliver it now.
      if (slot.early.size() != slot.bytes) {
        if (status_.ok()) status_ = InvalidArgument("size mismatch for " + SegmentName(header));
      } else {
        std::memcpy(slot.data, slot.early.data(), slot.bytes);
        early_bytes_ -= slot.early.size();
        std::vector<char>().swap(slot.early);
        slot.arrived = true;
        run_handler = handler_ != nullptr && status_.ok();
      }
    } else {
      slot.has_early = true;
    }
    --active_receives_;
    if (!run_handler) {
      if (slot.arrived) arrivals_.push_back({key, false});
      cv_.notify_all();
      return;
    }
    ++handlers_running_;
  }
  // Handle the segment here, on the thread that received it, while its bytes are hot in
  // this core's cache. handlers_running_ keeps the algorithm from returning meanwhile.
  Status st = handler_(header.step, header.segment);
  std::lock_guard<std::mutex> lock(mu_);
  if (!st.ok() && status_.ok()) status_ = st;
  arrivals_.push_back({key, true});
  --handlers_running_;
  cv_.notify_all();
}

void RingOp::FinishSend(const Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  --pending_sends_;
  if (!status.ok() && status_.ok()) status_ = status;
  cv_.notify_all();
}

bool RingOp::WaitQuiet(Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  while (!IdleLocked()) {
    if (deadline.never()) {
      cv_.wait(lock);
    } else if (cv_.wait_until(lock, deadline.when()) == std::cv_status::timeout) {
      return IdleLocked();
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// RingLinks

RingLinks::RingLinks(uint64_t epoch, uint64_t self_id, LinkPeer next, LinkPeer prev,
                     uint32_t pool_size)
    : epoch_(epoch),
      self_id_(self_id),
      next_(std::move(next)),
      prev_(std::move(prev)),
      pool_size_(pool_size) {}

RingLinks::~RingLinks() {
  Break(Status(StatusCode::kAborted, "ring links closed"));
  for (auto& s : senders_) {
    if (s->thread.joinable()) s->thread.join();
  }
  for (auto& r : receivers_) {
    if (r->thread.joinable()) r->thread.join();
  }
}

Status RingLinks::Establish(IncomingPool& incoming, Deadline deadline,
                            const std::function<bool()>& give_up) {
  const int64_t buffer_bytes = GetParams().socket_buffer_bytes;
  // Dial every slot at once: each costs a TCP handshake and a P2PHello round trip, which
  // on a long link adds up to seconds for a large pool if done one after another.
  std::vector<net::Socket> dialed(pool_size_);
  std::vector<Status> statuses(pool_size_);
  std::vector<std::thread> dialers;
  for (uint32_t slot = 0; slot < pool_size_; ++slot) {
    dialers.emplace_back([&, slot] { statuses[slot] = Dial(slot, buffer_bytes, deadline, &dialed[slot]); });
  }
  for (auto& t : dialers) t.join();
  for (uint32_t slot = 0; slot < pool_size_; ++slot) {
    PCCL_RETURN_IF_ERROR(statuses[slot]);
    auto sender = std::make_unique<Sender>();
    sender->socket = std::move(dialed[slot]);
    senders_.push_back(std::move(sender));
  }
  std::vector<net::Socket> sockets;
  PCCL_RETURN_IF_ERROR(
      incoming.Take(epoch_, prev_.peer_id, pool_size_, deadline, give_up, &sockets));
  for (auto& socket : sockets) {
    socket.SetBufferSizes(buffer_bytes);
    auto receiver = std::make_unique<Receiver>();
    receiver->socket = std::move(socket);
    receivers_.push_back(std::move(receiver));
  }
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!broken_.ok()) return broken_;
    auto id = std::make_pair(key.tag, key.seq);
    if (closed_.count(id)) {
      return FailedPrecondition(key.ToString() + " was already run on these links");
    }
    auto it = ops_.find(id);
    if (it == ops_.end()) {
      op = std::make_shared<RingOp>(this, key);
      ops_[id] = op;
    } else {
      op = it->second;
    }
  }
  op->Open(descriptor_hash, deadline);
  *out = op;
  return Status::Ok();
}

void RingLinks::CloseOp(const std::shared_ptr<RingOp>& op, Duration grace) {
  if (!op->WaitQuiet(Deadline::In(grace))) {
    // Some I/O of the op is stuck (a hung peer): cut the links so the I/O threads let go
    // of the op's memory.
    Break(Status(StatusCode::kAborted, "ring links cut: " + op->key().ToString() +
                                           " did not stop in time after failing"));
    op->WaitQuiet(Deadline::Never());
  }
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
      it = ops_.emplace(id, std::make_shared<RingOp>(this, key)).first;
    }
    op = it->second;
  }
  op->Fail(why);
}

void RingLinks::Break(const Status& why) {
  std::vector<std::shared_ptr<RingOp>> ops;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (broken_.ok()) {
      broken_ = why;
      if (why.code() != StatusCode::kAborted) PCCL_LOG(kWarning, "ring links broken: " + why.ToString());
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

Status RingLinks::broken_status() {
  std::lock_guard<std::mutex> lock(mu_);
  return broken_;
}

Status RingLinks::Dial(uint32_t slot, int64_t buffer_bytes, Deadline deadline, net::Socket* out) {
  net::Socket socket;
  PCCL_RETURN_IF_ERROR(net::Socket::Connect(next_.endpoint, deadline, &socket));
  socket.SetBufferSizes(buffer_bytes);
  proto::P2PHello hello{epoch_, self_id_, next_.peer_id, slot};
  PCCL_RETURN_IF_ERROR(net::SendFrame(socket, static_cast<uint16_t>(Kind::kP2PHello),
                                      proto::Encode(hello), deadline));
  net::FrameHeader header;
  std::string payload;
  PCCL_RETURN_IF_ERROR(net::RecvFrame(socket, net::kMaxControlPayload, deadline, &header, &payload));
  if (header.kind != static_cast<uint16_t>(Kind::kP2PWelcome)) {
    return InvalidArgument("peer " + next_.endpoint.ToString() + " answered P2PHello with " +
                           proto::KindName(header.kind));
  }
  proto::P2PWelcome welcome;
  PCCL_RETURN_IF_ERROR(proto::Decode(payload, &welcome));
  if (!welcome.ok) {
    return Status(StatusCode::kUnavailable,
                  "peer " + next_.endpoint.ToString() + " refused the ring link: " + welcome.reason);
  }
  *out = std::move(socket);
  return Status::Ok();
}

void RingLinks::Enqueue(SendItem item) {
  Sender* best = nullptr;
  uint64_t best_bytes = 0;
  for (auto& s : senders_) {
    std::lock_guard<std::mutex> lock(s->mu);
    if (best == nullptr || s->queued_bytes < best_bytes) {
      best = s.get();
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
  best->queued_bytes += item.header.payload_bytes;
  best->queue.push_back(std::move(item));
  best->cv.notify_one();
}

void RingLinks::SenderLoop(Sender* sender) {
  while (true) {
    SendItem item;
    {
      std::unique_lock<std::mutex> lock(sender->mu);
      sender->cv.wait(lock, [&] { return stopping_.load() || !sender->queue.empty(); });
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
    }
    if (!item.op->status().ok()) {  // the operation failed: skip its remaining segments
      item.op->FinishSend(Status::Ok());
      continue;
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
    if (!st.ok()) {  // the next peer is gone or stuck
      st = Status(StatusCode::kAborted,
                  "sending to next peer " + next_.endpoint.ToString() + ": " + st.message());
    }
    item.op->FinishSend(st);
    if (!st.ok()) Break(st);
  }
}

std::shared_ptr<RingOp> RingLinks::FindOrCreateOp(const DataHeader& header, bool* closed) {
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
  auto op = std::make_shared<RingOp>(this, key);
  ops_[id] = op;
  return op;
}

void RingLinks::ReceiverLoop(Receiver* receiver) {
  net::Socket& socket = receiver->socket;
  const std::string peer = "previous peer " + prev_.endpoint.ToString();
  std::vector<char> scratch;
  auto lost = [&](const Status& st) {
    if (!stopping_.load()) {
      // A protocol violation stays InvalidArgument; anything else means the peer is gone.
      Break(Status(st.code() == StatusCode::kInvalidArgument ? st.code() : StatusCode::kAborted,
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

}  // namespace pccl::comm
