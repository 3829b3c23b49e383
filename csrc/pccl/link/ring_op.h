// RingOp: one collective operation's RingChannel (link/channel.h) on a RingLinks.
//
// The algorithm sends segments (queued on the links' senders, striped over the pool) and
// declares where expected segments land; the links' receivers claim that memory for each
// arriving payload (ClaimForReceive) and finish it (FinishReceive), which runs the arrival
// handler on the receiving thread and counts the segment for WaitArrivals. A segment that
// arrives before the local operation declared it waits in a block of its own
// (link/block_cache.h: blocks are reused across operations) and is copied to its place
// once declared. All operations of
// one RingLinks share a budget for those (EarlyBudget), and a receiver whose segment does
// not fit waits (its connection stalls, and TCP holds the sender back) until the operation
// starts here and declares it, so no neighbour, honest or not, can make a peer buffer more
// than the budget. On a near link a receiver waits so before the budget is even asked,
// while no operation runs here (RingLinks::HoldsEarly: the story in link/ring_links.h).
// The first failure (a peer that disagrees on the descriptor, a duplicate or mis-sized
// segment, the deadline, a failed verdict) sticks and wakes the algorithm.
//
// Wake-ups: the I/O threads finish a segment at a time, and each used to wake every thread
// waiting on the operation: the algorithm waiting for 64 arrivals woke 64 times, and a
// sender waiting for its receiver's answer woke once per segment it sent (with 4 peers'
// send/recv, three quarters of pccl's context switches). Each waiter now says what it waits for
// (a number of arrivals, the sends, quiet, a free receive slot, handlers to finish), and
// a finished segment wakes the waiters only once that is there (DueLocked), or on
// a failure. Rarer events (a declaration, a failure, Close, Open) still wake everyone.
//
// Thread-safety: the algorithm's thread calls the RingChannel methods; the links' I/O
// threads call the private receive/send hooks; Fail() may come from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "pccl/link/block_cache.h"
#include "pccl/link/channel.h"
#include "pccl/common/call_memory.h"
#include "pccl/common/clock.h"
#include "pccl/common/status.h"
#include "pccl/common/thread_annotations.h"
#include "pccl/proto/messages.h"

namespace pccl::link {

class RingLinks;

// Bytes the operations of one RingLinks may hold for segments that arrived before their
// operation started here; shared by the links and their operations.
class EarlyBudget {
 public:
  explicit EarlyBudget(uint64_t limit) : limit_(limit) {}
  bool TryReserve(uint64_t bytes);
  void Release(uint64_t bytes) { used_.fetch_sub(bytes); }
  uint64_t used() const { return used_.load(); }

 private:
  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
};

// One collective operation's RingChannel on a RingLinks.
class RingOp : public RingChannel, public std::enable_shared_from_this<RingOp> {
 public:
  RingOp(RingLinks* links, proto::OpKey key, std::shared_ptr<EarlyBudget> budget);
  ~RingOp() override;

  void Send(uint32_t step, uint32_t segment, const void* data, size_t bytes) override;
  void Expect(uint32_t step, uint32_t segment, void* data, size_t bytes) override;
  void ExpectOrKeepEarly(uint32_t step, uint32_t segment, void* data, size_t bytes) override;
  void ExpectInSlot(uint32_t step, uint32_t segment, size_t bytes) override;
  void SetReceiveSlots(void* memory, size_t slot_bytes, size_t count) override;
  Status WaitArrivals(size_t count, Deadline deadline) override;
  Status WaitSends(Deadline deadline) override;
  void SetArrivalHandler(ArrivalHandler handler) override;

  // Fails the operation (first failure wins); wakes the algorithm and frees what arrived
  // early for it. Any thread.
  void Fail(const Status& why);
  // Once Fail() fails this operation (a verdict, its links broke; at once if it has),
  // `follower` fails with the same status: for a collective whose data moves over other
  // links than the ones its verdict reaches (comm/direct_collectives.cc). Any thread.
  void PassFailureTo(std::weak_ptr<RingOp> follower);
  Status status();
  const proto::OpKey& key() const { return key_; }

 private:
  friend class RingLinks;
  friend class RingOpTestPeer;  // tests/cpp/ring_op_test.cc plays the links' I/O threads
  struct Slot {
    void* data = nullptr;  // where the payload lands (or landed: what the handler reads)
    size_t bytes = 0;
    bool expected = false;
    bool in_slot = false;      // ExpectInSlot: lands in a receive slot (or stays early)
    bool keep_early = false;   // ExpectOrKeepEarly: an early payload is read where it waited
    int receive_slot = -1;     // the receive slot it holds, -1: none
    bool arrived = false;
    bool writing = false;
    bool writing_early = false;
    BlockCache::Block early;  // payload that arrived before Expect() (BlockCache::Shared)
    size_t early_bytes = 0;
    bool has_early = false;
  };
  using SlotKey = std::pair<uint32_t, uint32_t>;  // (step, segment)
  // For the scope of WaitArrivals or WaitSends (mu_ held): sets algorithm_waits_ and wakes
  // the receivers holding an undeclared segment, which then read it aside.
  struct AlgorithmWaits {
    explicit AlgorithmWaits(RingOp& op) : op(op) {
      op.algorithm_waits_ = true;
      op.WakeReceiversLocked();
    }
    ~AlgorithmWaits() { op.algorithm_waits_ = false; }
    RingOp& op;
  };

  // Expect, ExpectOrKeepEarly and ExpectInSlot (`data` null) alike.
  void Declare(uint32_t step, uint32_t segment, void* data, size_t bytes, bool in_slot,
               bool keep_early);
  // A payload that waited in `slot.early`, now expected (same size): copied to where it was
  // expected, or (in a receive slot's stead, or kept) read where it waited. Needs mu_.
  void DeliverEarlyLocked(Slot& slot);
  // After a slot's payload was handled (or failed): gives back its receive slot or early
  // buffer.
  void ReleaseLocked(Slot& slot);  // needs mu_
  // After an I/O thread finished a segment: whether what one of the waiters waits for is
  // there now, or the operation failed, so that the thread wakes them. It does so once it
  // released mu_: a waiter woken while mu_ is still held would only wake to wait for it
  // (one more context switch on the way to the algorithm's next step). Needs mu_.
  bool DueLocked();
  // Called by RingLinks when the local algorithm opens the op.
  void Open(uint64_t descriptor_hash, Deadline deadline);
  // Wakes receivers waiting in ClaimForReceive to look again (another operation opened).
  void WakeReceivers();
  void WakeReceiversLocked();  // needs mu_
  // Receiver side: where `header`'s payload goes (nullptr: drain it).
  void* ClaimForReceive(const proto::DataHeader& header, const std::string& peer);
  void FinishReceive(const proto::DataHeader& header, const Status& status);
  void FinishSend(const Status& status);
  // The operation ended here (RingLinks::CloseOp): a receiver that has not claimed its
  // payload yet, or waits to, drops it instead of writing to the operation's memory.
  void Close();
  // Waits until no I/O thread uses the op's memory.
  bool WaitQuiet(Deadline deadline);
  bool IdleLocked() const { return active_receives_ == 0 && pending_sends_ == 0; }

  RingLinks* links_;
  const proto::OpKey key_;
  const std::shared_ptr<EarlyBudget> budget_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool opened_ PCCL_GUARDED_BY(mu_) = false;
  bool closed_ PCCL_GUARDED_BY(mu_) = false;  // Close(): no more payloads land
  uint64_t descriptor_hash_ PCCL_GUARDED_BY(mu_) = 0;
  uint64_t peer_descriptor_hash_ PCCL_GUARDED_BY(mu_) = 0;
  bool have_peer_hash_ PCCL_GUARDED_BY(mu_) = false;
  Deadline deadline_ PCCL_GUARDED_BY(mu_) = Deadline::Never();
  std::pmr::map<SlotKey, Slot> slots_ PCCL_GUARDED_BY(mu_){CallMemory()};
  // Arrived segments not yet counted by WaitArrivals; `handled`: the handler already ran.
  struct Arrival {
    SlotKey key;
    bool handled;
  };
  std::pmr::deque<Arrival> arrivals_ PCCL_GUARDED_BY(mu_){CallMemory()};
  ArrivalHandler handler_ PCCL_GUARDED_BY(mu_);
  int handlers_running_ PCCL_GUARDED_BY(mu_) = 0;
  Status status_ PCCL_GUARDED_BY(mu_);
  int active_receives_ PCCL_GUARDED_BY(mu_) = 0;
  // Receivers waiting in ClaimForReceive for the segment to be declared (or for room in
  // the budget): Declare, WaitArrivals and WaitSends wake them.
  int waiting_receivers_ PCCL_GUARDED_BY(mu_) = 0;
  // The algorithm is in WaitArrivals or WaitSends (AlgorithmWaits): no undeclared segment
  // waits in its socket meanwhile (RingLinks::HoldsEarly).
  bool algorithm_waits_ PCCL_GUARDED_BY(mu_) = false;
  // One past the latest step declared (Declare). A segment of a later step belongs to a
  // later window of this operation (algo::ForEachWindow), which the algorithm does not
  // wait for: it may wait in its socket even while the algorithm waits (ClaimForReceive).
  // Sound because every algorithm declares all it receives (of a window) before it waits,
  // and a peer sends a later window only once its sends of the earlier ones are queued:
  // an algorithm that declared in phases, its peer sending the next phase before the
  // last segments of this one, would need more than this.
  uint32_t declared_steps_end_ PCCL_GUARDED_BY(mu_) = 0;
  // What the other waiters wait for (DueLocked). The algorithm in WaitArrivals:
  // this many entries in arrivals_ (0: it does not wait for arrivals).
  size_t awaited_arrivals_ PCCL_GUARDED_BY(mu_) = 0;
  bool awaiting_sends_ PCCL_GUARDED_BY(mu_) = false;  // WaitSends
  int quiet_waiters_ PCCL_GUARDED_BY(mu_) = 0;        // WaitQuiet
  bool detaching_ PCCL_GUARDED_BY(mu_) = false;       // SetArrivalHandler(nullptr)
  int slot_waiters_ PCCL_GUARDED_BY(mu_) = 0;         // receivers waiting for a free slot
  int pending_sends_ PCCL_GUARDED_BY(mu_) = 0;
  uint64_t early_bytes_ PCCL_GUARDED_BY(mu_) = 0;  // reserved from budget_
  // SetReceiveSlots: the algorithm's memory for ExpectInSlot, and which slots are free.
  char* slot_memory_ PCCL_GUARDED_BY(mu_) = nullptr;
  size_t slot_bytes_ PCCL_GUARDED_BY(mu_) = 0;
  size_t slot_count_ PCCL_GUARDED_BY(mu_) = 0;
  std::pmr::vector<int> free_slots_ PCCL_GUARDED_BY(mu_){CallMemory()};
  std::pmr::vector<std::weak_ptr<RingOp>> followers_ PCCL_GUARDED_BY(mu_){CallMemory()};
};

}  // namespace pccl::link
