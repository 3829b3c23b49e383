// RingLinks: the ring links of one topology epoch: a pool of TCP connections to the next
// peer (each with a sender thread) and a pool from the previous peer (each with a receiver
// thread), and the RingOp channels (link/ring_op.h) that collectives run over them.
//
// Striping: every segment a collective sends goes to the striped connection whose queue
// holds the fewest bytes, so one large operation uses all of them and concurrent
// operations share them. Which connections are striped is decided once the pool is up
// (StripesFor): all of the pool on a long link, where each TCP connection's rate is
// capped at its window / RTT and only several together fill the link; the first
// kNearStripes on a link whose smallest RTT is under kNearRttUs (a LAN, loopback), where
// one connection already runs as fast as the cores copy and each further one only adds a
// sender and a receiver thread contending for them (with 3-4 peers on 2 cores, send/recv
// ran about 20 % faster over 2 of 8 connections, all-to-all up to 12 %; the all-reduce the
// same within the noise). The others stay open, idle.
// Each connection has a sender thread that writes its queue; a small segment (at most
// kInlineSendBytes) whose connection is idle is written by the calling thread instead
// (a receiver thread passing a segment on: only if the kernel has room for it), which
// saves a thread wake-up per step of every small collective (a 4 KiB all-reduce took
// about 20 % less time with 4 peers).
// Frames are self-describing (tag, sequence number, step, segment), so the receiving
// side does not care which connection a segment took; a receiver thread reads each payload
// straight into the memory the operation declared for it (RingOp::Expect), or into a
// block of its own if it arrives before the local operation has started
// (link/block_cache.h).
// Early segments: on a near link (smallest RTT under kNearRttUs, from the previous peer)
// a segment its operation has not declared yet waits in its socket, unread, while nothing
// here can need the bytes behind it: no operation is open on these links here, or only
// its own, whose algorithm has not started waiting for data (it is still setting up, or
// declaring; it runs without waiting on any peer until it waits on its channel). It is
// read once its operation declares where it goes (straight there: no block, no copy), or
// into a block as soon as another operation opens here (one started in another order
// than the neighbour's may wait for segments behind it) or its own algorithm waits for
// data (the segment may stand in front of one it waits for), unless the segment is of a
// later window of that algorithm (a step past every one declared: algo::ForEachWindow):
// the previous peer sent it after every segment of the window waited for, so none of
// those stands behind it. A peer that finishes a call
// first and starts the next one then costs its neighbour neither memory nor a copy, even
// in the moment between the neighbour opening that call and declaring its segments, which
// used to read them aside (a 256 MiB all-reduce between 2 peers: 0-20 MiB of blocks).
// On a long link the segment is read ahead at once, so that a late receiver finds the
// data there rather than waiting a round trip for it.
//
// Failure: a broken connection, a malformed frame or a peer that disagrees on an
// operation's descriptor fails the affected operations with a Status naming the peer; a
// broken connection or a protocol violation also breaks the whole link set (every later
// operation on it fails at once) because a stream cut inside a frame cannot be resumed.
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "pccl/common/call_memory.h"
#include "pccl/common/clock.h"
#include "pccl/common/status.h"
#include "pccl/common/thread_annotations.h"
#include "pccl/link/incoming_pool.h"
#include "pccl/link/ring_op.h"
#include "pccl/net/address.h"
#include "pccl/link/handshake.h"
#include "pccl/net/socket.h"
#include "pccl/proto/messages.h"

namespace pccl::link {

struct LinkPeer {
  uint64_t peer_id = 0;
  net::Endpoint endpoint;
};

class RingLinks {
 public:
  // Told once when the links fail on their own (a connection to `peer_id` broke, or could
  // not be built), as opposed to Break() by their owner; runs on the failing thread.
  using FaultHandler = std::function<void(uint64_t peer_id, const Status& why)>;

  // `purpose` kPair: the links of a pair (next == prev), dialled with PairHello and taken
  // from the pair links' own IncomingPool (comm/point_to_point.cc).
  RingLinks(uint64_t epoch, uint64_t self_id, LinkPeer next, LinkPeer prev, uint32_t pool_size,
            FaultHandler on_fault = nullptr, Purpose purpose = Purpose::kRing);
  ~RingLinks();
  RingLinks(const RingLinks&) = delete;
  RingLinks& operator=(const RingLinks&) = delete;

  // Called (outside the links' lock) whenever an operation appears here that this peer has
  // not opened: its first segment arrived, or a verdict failed it first (HasOp turns
  // true). Set it before Establish.
  void SetNewOpListener(std::function<void()> listener) { on_new_op_ = std::move(listener); }

  // Dials the pool to the next peer, takes the pool from the previous one out of
  // `incoming`, and starts the I/O threads. Stops waiting (Aborted) once `give_up()`
  // returns true, e.g. because the master already replaced this topology. A neighbour that
  // cannot be dialled, or does not dial in time, is a fault (see FaultHandler).
  Status Establish(IncomingPool& incoming, const Credentials& credentials, Routes& routes,
                   Deadline deadline, const std::function<bool()>& give_up);

  // Opens the channel of operation `key` whose local descriptor hashes to
  // `descriptor_hash`. On broken links the op comes failed (its caller reports it, so
  // that every peer gets the same verdict); an error only for a key run here already.
  Status OpenOp(const proto::OpKey& key, uint64_t descriptor_hash, Deadline deadline,
                std::shared_ptr<RingOp>* out);
  // Ends an operation: waits (up to `grace`) until no I/O thread touches its memory,
  // breaking the links if that takes longer, and forgets it. Frames of it that still
  // arrive are discarded.
  void CloseOp(const std::shared_ptr<RingOp>& op, Duration grace);
  // Fails the operation `key` of this ring (a failed verdict from the master); one not
  // started yet starts failed.
  void FailOp(const proto::OpKey& key, const Status& why);

  // Breaks the links: fails every operation, wakes and stops every I/O thread.
  void Break(const Status& why);
  Status broken_status();
  uint64_t epoch() const { return epoch_; }
  // Whether operation (tag, seq) is known here and not closed: opened, failed by a
  // verdict, or begun by the other end (its first segment arrived). For a recv from any
  // source (comm/session_pairs.cc).
  bool HasOp(uint64_t tag, uint64_t seq);
  // What moved over these links so far, and the kernel's view of their connections: per
  // direction the mean smoothed RTT over the pool's connections and their retransmissions.
  struct Counters {
    uint64_t tx_bytes = 0;  // frames sent to the next peer, headers included
    uint64_t rx_bytes = 0;  // frames received from the previous peer
    // Payload bytes from the previous peer read into blocks before their operation
    // declared them, then copied to their place (see "Early segments" above).
    uint64_t early_rx_bytes = 0;
    uint32_t next_rtt_us = 0;
    uint32_t prev_rtt_us = 0;
    uint64_t next_retransmits = 0;
    uint64_t prev_retransmits = 0;
  };
  Counters counters() const;
  // The peers this ring sends to and receives from.
  uint64_t next_peer_id() const { return next_.peer_id; }
  uint64_t prev_peer_id() const { return prev_.peer_id; }
  uint32_t pool_size() const { return pool_size_; }
  // Connections segments are striped over (fixed by Establish; 0 before it).
  uint32_t stripes() const { return stripes_.load(); }
  // Whether a segment not declared yet may wait in its socket (a near previous peer; see
  // "Early segments" above): no operation is open here but its own (`own_open`: its
  // operation is open here, and its algorithm does not wait for data).
  bool HoldsEarly(bool own_open) const {
    return hold_early_.load() && open_ops_.load() == (own_open ? 1 : 0);
  }

  // A link whose connections' smallest RTT is under kNearRttUs stripes over kNearStripes.
  static constexpr uint32_t kNearRttUs = 2000;
  static constexpr uint32_t kNearStripes = 2;
  // How many of a pool's connections to stripe over, given the largest of their smallest
  // RTTs (`known` false: some connection could not tell, so the whole pool).
  static uint32_t StripesFor(uint32_t pool_size, bool known, uint32_t min_rtt_us);

 private:
  friend class RingOp;
  struct SendItem {
    std::shared_ptr<RingOp> op;
    proto::DataHeader header;
    const void* data;
    Deadline deadline;
  };

  struct Sender {
    net::Socket socket;
    std::mutex mu;
    std::condition_variable cv;
    std::pmr::deque<SendItem> queue{CallMemory()};
    uint64_t queued_bytes = 0;
    // A thread is writing to `socket`: the sender thread, or a caller's inline write
    // (Enqueue). One writer at a time keeps every frame whole on the stream.
    bool busy = false;
    std::thread thread;
  };
  struct Receiver {
    net::Socket socket;
    std::thread thread;
  };

  // Segments of at most this many bytes are written on the calling thread when their
  // connection is idle (Enqueue), instead of waking the connection's sender thread.
  static constexpr uint64_t kInlineSendBytes = 64 << 10;

  void Enqueue(SendItem item);
  // Writes one segment to `sender`'s connection (its caller holds `busy`) and finishes it.
  void Transmit(Sender* sender, const SendItem& item);
  // Breaks the links because of a failure involving `peer_id`, and reports it once.
  void Fault(uint64_t peer_id, const Status& why);
  void SenderLoop(Sender* sender);
  void ReceiverLoop(Receiver* receiver);
  std::shared_ptr<RingOp> FindOrCreateOp(const proto::DataHeader& header, bool* closed);
  // A new operation on these links (in CallMemory).
  std::shared_ptr<RingOp> NewOp(const proto::OpKey& key);
  void Stop();

  const uint64_t epoch_;
  const uint64_t self_id_;
  const LinkPeer next_;
  const LinkPeer prev_;
  const uint32_t pool_size_;
  const Purpose purpose_;
  // Room for segments that come before their operation starts here (link/ring_op.h).
  const std::shared_ptr<EarlyBudget> early_budget_;
  std::vector<std::unique_ptr<Sender>> senders_;
  std::atomic<uint32_t> stripes_{0};  // the first stripes_ senders carry segments
  std::atomic<bool> hold_early_{false};  // the previous peer is near (Establish)
  std::atomic<int> open_ops_{0};  // opened by OpenOp, not closed yet
  std::vector<std::unique_ptr<Receiver>> receivers_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> tx_bytes_{0};
  std::atomic<uint64_t> rx_bytes_{0};
  std::atomic<uint64_t> early_rx_bytes_{0};  // Counters::early_rx_bytes
  const FaultHandler on_fault_;
  std::function<void()> on_new_op_;
  std::atomic<bool> fault_reported_{false};

  std::mutex mu_;
  // Operations by (tag, seq), and those closed lately (their late segments are dropped).
  // Their nodes and the operations come from CallMemory: none from the heap per call.
  std::pmr::map<std::pair<uint64_t, uint64_t>, std::shared_ptr<RingOp>> ops_
      PCCL_GUARDED_BY(mu_){CallMemory()};
  std::pmr::set<std::pair<uint64_t, uint64_t>> closed_ PCCL_GUARDED_BY(mu_){CallMemory()};
  std::pmr::deque<std::pair<uint64_t, uint64_t>> closed_order_
      PCCL_GUARDED_BY(mu_){CallMemory()};
  Status broken_ PCCL_GUARDED_BY(mu_);
};

}  // namespace pccl::link
