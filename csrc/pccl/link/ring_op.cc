#include "pccl/link/ring_op.h"

#include <algorithm>
#include <cstring>

#include "pccl/link/ring_links.h"

namespace pccl::link {
namespace {

using proto::DataHeader;

// How often a receiver waiting for room in the early budget looks again (besides being
// woken when its own operation declares the segment or fails).
constexpr auto kEarlyRetry = std::chrono::milliseconds(10);
// Where an empty segment "lands" (a send/recv of nothing still sends one): a receiver
// drops the payload of a null destination, and an empty one must count as arrived.
char kEmptyPayload;

std::string SegmentName(const DataHeader& h) {
  return "segment " + std::to_string(h.segment) + " of step " + std::to_string(h.step) +
         " (tag " + std::to_string(h.tag) + ", seq " + std::to_string(h.seq) + ")";
}

}  // namespace

bool EarlyBudget::TryReserve(uint64_t bytes) {
  uint64_t used = used_.load();
  do {
    if (used + bytes > limit_ && used > 0) return false;  // one oversized segment may pass alone
  } while (!used_.compare_exchange_weak(used, used + bytes));
  return true;
}

RingOp::RingOp(RingLinks* links, proto::OpKey key, std::shared_ptr<EarlyBudget> budget)
    : links_(links), key_(key), budget_(std::move(budget)) {}

RingOp::~RingOp() { budget_->Release(early_bytes_); }

void RingOp::Open(uint64_t descriptor_hash, Deadline deadline) {
  std::lock_guard<std::mutex> lock(mu_);
  opened_ = true;
  descriptor_hash_ = descriptor_hash;
  deadline_ = deadline;
  if (have_peer_hash_ && peer_descriptor_hash_ != descriptor_hash && status_.ok()) {
    status_ = InvalidArgument("the previous peer runs a different operation for tag " +
                              std::to_string(key_.tag) +
                              " (count, dtype, op, quantization or reduce mode differ)");
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
  Declare(step, segment, data, bytes, /*in_slot=*/false, /*keep_early=*/false);
}

void RingOp::ExpectOrKeepEarly(uint32_t step, uint32_t segment, void* data, size_t bytes) {
  Declare(step, segment, data, bytes, /*in_slot=*/false, /*keep_early=*/true);
}

void RingOp::ExpectInSlot(uint32_t step, uint32_t segment, size_t bytes) {
  Declare(step, segment, nullptr, bytes, /*in_slot=*/true, /*keep_early=*/false);
}

void RingOp::SetReceiveSlots(void* memory, size_t slot_bytes, size_t count) {
  std::lock_guard<std::mutex> lock(mu_);
  slot_memory_ = static_cast<char*>(memory);
  slot_bytes_ = slot_bytes;
  slot_count_ = count;
  free_slots_.clear();
  for (size_t i = count; i > 0; --i) free_slots_.push_back(static_cast<int>(i - 1));
}

void RingOp::Declare(uint32_t step, uint32_t segment, void* data, size_t bytes, bool in_slot,
                     bool keep_early) {
  std::lock_guard<std::mutex> lock(mu_);
  auto fail = [&](const std::string& why) {
    if (status_.ok()) status_ = InvalidArgument(why);
    cv_.notify_all();
  };
  if (keep_early && !handler_) {
    return fail("segment " + std::to_string(segment) + " of step " + std::to_string(step) +
                " expected or kept early without an arrival handler");  // the algorithm's bug
  }
  if (in_slot && (!handler_ || bytes > slot_bytes_ || slot_count_ == 0)) {
    return fail("segment " + std::to_string(segment) + " of step " + std::to_string(step) +
                " expected in a receive slot without an arrival handler or a slot of " +
                std::to_string(bytes) + " bytes");  // the algorithm's bug, not a peer's
  }
  declared_steps_end_ = std::max(declared_steps_end_, step + 1);
  Slot& slot = slots_[{step, segment}];
  slot.expected = true;
  slot.in_slot = in_slot;
  slot.keep_early = keep_early;
  slot.data = data;
  slot.bytes = bytes;
  if (!slot.has_early) {
    WakeReceiversLocked();  // one may wait for this very segment
    return;
  }
  if (slot.early_bytes != bytes) {
    return fail("segment " + std::to_string(segment) + " of step " + std::to_string(step) +
                " arrived with " + std::to_string(slot.early_bytes) + " bytes, expected " +
                std::to_string(bytes));
  }
  DeliverEarlyLocked(slot);
  slot.has_early = false;
  slot.arrived = true;
  arrivals_.push_back({{step, segment}, false});  // WaitArrivals runs the handler
  cv_.notify_all();
}

void RingOp::DeliverEarlyLocked(Slot& slot) {
  if (slot.in_slot || slot.keep_early) {
    slot.data = slot.bytes == 0 ? &kEmptyPayload : slot.early.data.get();  // read where it waited
    return;  // freed once handled (ReleaseLocked)
  }
  if (slot.bytes > 0) std::memcpy(slot.data, slot.early.data.get(), slot.bytes);
  ReleaseLocked(slot);
}

void RingOp::ReleaseLocked(Slot& slot) {
  if (slot.receive_slot >= 0) {
    free_slots_.push_back(slot.receive_slot);
    slot.receive_slot = -1;
    if (slot_waiters_ > 0) cv_.notify_all();  // one waits for a free slot
  }
  if (slot.early_bytes > 0) {
    early_bytes_ -= slot.early_bytes;
    budget_->Release(slot.early_bytes);
    slot.early_bytes = 0;
    BlockCache::Shared().Give(std::move(slot.early));
    WakeReceiversLocked();  // one may wait for room in the budget
  }
}

bool RingOp::DueLocked() {
  return !status_.ok() || (awaited_arrivals_ > 0 && arrivals_.size() >= awaited_arrivals_) ||
         (awaiting_sends_ && pending_sends_ == 0) || (quiet_waiters_ > 0 && IdleLocked()) ||
         (detaching_ && handlers_running_ == 0);
}

void RingOp::SetArrivalHandler(ArrivalHandler handler) {
  std::unique_lock<std::mutex> lock(mu_);
  if (handler) {
    handler_ = std::move(handler);
    return;
  }
  detaching_ = true;
  cv_.wait(lock, [&] { return handlers_running_ == 0; });
  detaching_ = false;
  handler_ = nullptr;
}

void RingOp::WakeReceivers() {
  std::lock_guard<std::mutex> lock(mu_);
  WakeReceiversLocked();
}

void RingOp::WakeReceiversLocked() {
  if (waiting_receivers_ > 0) cv_.notify_all();
}

Status RingOp::WaitArrivals(size_t count, Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  // The algorithm waits for data now: a segment it did not declare (yet) must not keep
  // its connection waiting, so receivers holding one look again (and read it early).
  AlgorithmWaits waits(*this);
  size_t counted = 0;
  while (counted < count) {
    if (!status_.ok()) return status_;
    if (arrivals_.empty()) {
      awaited_arrivals_ = count - counted;  // FinishReceive wakes this thread once they are here
      bool timed_out = false;
      if (deadline.never()) {
        cv_.wait(lock);
      } else {
        timed_out = cv_.wait_until(lock, deadline.when()) == std::cv_status::timeout;
      }
      awaited_arrivals_ = 0;
      if (timed_out && status_.ok() && arrivals_.empty()) {
        status_ = Status(StatusCode::kDeadlineExceeded,
                         "no data from the previous peer before the deadline (" +
                             key_.ToString() + ")");
        cv_.notify_all();  // a receiver waiting for a receive slot gives up
      }
      continue;
    }
    const Arrival arrival = arrivals_.front();
    arrivals_.pop_front();
    ++counted;
    if (arrival.handled || !handler_) continue;
    // A payload that came before its Expect: this thread hands it to the handler.
    ArrivalHandler handler = handler_;  // this thread owns the algorithm: no detach races
    const void* landed = slots_[arrival.key].data;
    lock.unlock();
    Status st = handler(arrival.key.first, arrival.key.second, landed);
    lock.lock();
    ReleaseLocked(slots_[arrival.key]);
    if (!st.ok() && status_.ok()) {
      status_ = st;
      cv_.notify_all();
    }
  }
  return Status::Ok();
}

Status RingOp::WaitSends(Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  AlgorithmWaits waits(*this);  // as in WaitArrivals
  awaiting_sends_ = true;
  while (status_.ok() && pending_sends_ > 0) {
    if (deadline.never()) {
      cv_.wait(lock);
    } else if (cv_.wait_until(lock, deadline.when()) == std::cv_status::timeout &&
               status_.ok() && pending_sends_ > 0) {
      status_ = Status(StatusCode::kDeadlineExceeded,
                       "sends to the next peer did not finish before the deadline (" +
                           key_.ToString() + ")");
      cv_.notify_all();
    }
  }
  awaiting_sends_ = false;
  return status_;
}

void RingOp::Fail(const Status& why) {
  std::pmr::vector<std::weak_ptr<RingOp>> followers(CallMemory());
  Status failed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (status_.ok()) status_ = why;
    cv_.notify_all();
    followers.swap(followers_);
    failed = status_;
    // Payloads that came early will never be expected now: give their memory and budget
    // back (an op failed by a verdict before this peer opened it may never be opened).
    for (auto& [key, slot] : slots_) {
      if (slot.has_early && !slot.writing) {
        slot.has_early = false;
        ReleaseLocked(slot);
      }
    }
  }
  for (auto& follower : followers) {
    if (auto op = follower.lock()) op->Fail(failed);
  }
}

void RingOp::PassFailureTo(std::weak_ptr<RingOp> follower) {
  Status failed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (status_.ok()) {
      followers_.push_back(std::move(follower));
      return;
    }
    failed = status_;
  }
  if (auto op = follower.lock()) op->Fail(failed);
}

Status RingOp::status() {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void* RingOp::ClaimForReceive(const DataHeader& header, const std::string& peer) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!status_.ok() || closed_) return nullptr;
  auto fail = [&](const std::string& why) {
    status_ = InvalidArgument(why);
    cv_.notify_all();
    return nullptr;
  };
  if (opened_ && header.descriptor_hash != descriptor_hash_) {
    return fail("peer " + peer + " runs a different operation for tag " +
                std::to_string(key_.tag) +
                " (count, dtype, op, quantization or reduce mode differ)");
  }
  if (!opened_) {
    if (have_peer_hash_ && peer_descriptor_hash_ != header.descriptor_hash) {
      return fail("peer " + peer + " changed the descriptor of tag " + std::to_string(key_.tag));
    }
    have_peer_hash_ = true;
    peer_descriptor_hash_ = header.descriptor_hash;
  }
  Slot& slot = slots_[{header.step, header.segment}];
  const uint64_t bytes = header.payload_bytes;
  while (true) {
    // Looked at again after every wait: the operation may have started (Expect), failed,
    // ended here (closed), or another connection may have brought the same segment.
    if (!status_.ok() || closed_) return nullptr;
    if (slot.arrived || slot.writing || slot.has_early) {
      return fail("peer " + peer + " sent " + SegmentName(header) + " twice");
    }
    if (slot.expected) {
      if (slot.bytes != bytes) {
        return fail("peer " + peer + " sent " + SegmentName(header) + " with " +
                    std::to_string(bytes) + " bytes, expected " + std::to_string(slot.bytes) +
                    " (do the peers agree on count and dtype?)");
      }
      if (slot.in_slot) {
        if (free_slots_.empty()) {  // every slot is being handled: one comes back soon
          ++slot_waiters_;
          cv_.wait(lock);
          --slot_waiters_;
          continue;
        }
        slot.receive_slot = free_slots_.back();
        free_slots_.pop_back();
        slot.data = slot_memory_ + static_cast<size_t>(slot.receive_slot) * slot_bytes_;
      }
      slot.writing = true;
      slot.writing_early = false;
      ++active_receives_;
      return bytes == 0 ? &kEmptyPayload : slot.data;
    }
    // Not declared yet, and nothing else runs here (this operation is not open here, or
    // its algorithm is still setting up): the payload waits in its socket until the
    // operation declares it, another operation opens (RingLinks::OpenOp wakes this) or
    // this one starts waiting (WaitArrivals, WaitSends). Else it waits only for budget room.
    // A segment of a window after the one the algorithm waits for may wait in its socket
    // even then: the previous peer began that window once every send of the windows
    // before it was in its connections' queues, so on each connection nothing this
    // algorithm waits for can stand behind it.
    const bool later_window = opened_ && header.step >= declared_steps_end_;
    const bool hold = (!algorithm_waits_ || later_window) && links_->HoldsEarly(opened_);
    if (!hold && budget_->TryReserve(bytes)) break;
    ++waiting_receivers_;
    if (hold) {
      cv_.wait(lock);
    } else {
      cv_.wait_for(lock, kEarlyRetry);  // Declare() and Fail() wake it at once
    }
    --waiting_receivers_;
  }
  slot.early = BlockCache::Shared().Take(bytes);
  links_->early_rx_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  slot.early_bytes = bytes;
  early_bytes_ += bytes;
  slot.writing = true;
  slot.writing_early = true;
  ++active_receives_;
  return bytes == 0 ? &kEmptyPayload : slot.early.data.get();
}

void RingOp::FinishReceive(const DataHeader& header, const Status& status) {
  const SlotKey key{header.step, header.segment};
  bool run_handler = false;
  bool due = false;
  const void* landed = nullptr;
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
      if (slot.early_bytes != slot.bytes) {
        if (status_.ok()) status_ = InvalidArgument("size mismatch for " + SegmentName(header));
      } else {
        DeliverEarlyLocked(slot);
        slot.arrived = true;
        run_handler = handler_ != nullptr && status_.ok();
      }
    } else {
      slot.has_early = true;
    }
    --active_receives_;
    if (!run_handler) {
      if (slot.arrived) arrivals_.push_back({key, false});
      if (!status_.ok()) ReleaseLocked(slot);  // nobody handles it now
      due = DueLocked();
    } else {
      ++handlers_running_;
      landed = slot.data;
    }
  }
  if (run_handler) {
    // Handle the segment here, on the thread that received it, while its bytes are hot in
    // this core's cache. handlers_running_ keeps the algorithm from returning meanwhile.
    Status st = handler_(header.step, header.segment, landed);
    std::lock_guard<std::mutex> lock(mu_);
    if (!st.ok() && status_.ok()) status_ = st;
    ReleaseLocked(slots_[key]);
    arrivals_.push_back({key, true});
    --handlers_running_;
    due = DueLocked();
  }
  if (due) cv_.notify_all();  // unlocked (see DueLocked); the caller holds this op
}

void RingOp::FinishSend(const Status& status) {
  bool due;
  {
    std::lock_guard<std::mutex> lock(mu_);
    --pending_sends_;
    if (!status.ok() && status_.ok()) status_ = status;
    due = DueLocked();
  }
  if (due) cv_.notify_all();  // unlocked (see DueLocked); the caller holds this op
}

void RingOp::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  cv_.notify_all();  // a receiver waiting for a declaration or for room drops its payload
}

bool RingOp::WaitQuiet(Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  ++quiet_waiters_;
  while (!IdleLocked()) {
    if (deadline.never()) {
      cv_.wait(lock);
    } else if (cv_.wait_until(lock, deadline.when()) == std::cv_status::timeout) {
      break;
    }
  }
  --quiet_waiters_;
  return IdleLocked();
}

}  // namespace pccl::link
