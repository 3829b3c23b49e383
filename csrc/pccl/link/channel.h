// RingChannel: the only way a collective algorithm (algo/) talks to its ring neighbours.
//
// One channel belongs to one collective operation. The algorithm queues segments for the
// next peer with Send(), says where each segment from the previous peer should land with
// Expect(), and waits for arrivals with WaitArrivals(). The implementation (link/ring_op.h)
// stripes the segments over every connection of the pool and delivers payloads straight
// into the expected memory. Failures (a broken connection, a peer that disagrees on the
// operation, a failed verdict from the master, the deadline) surface as the Status of
// WaitArrivals / WaitSends; after any failure the algorithm stops and returns it.
//
// Thread-safety: one algorithm thread calls these; the channel's own I/O threads deliver
// into it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <utility>

#include "pccl/common/by_ref.h"
#include "pccl/common/clock.h"
#include "pccl/common/status.h"

namespace pccl::link {

class RingChannel {
 public:
  virtual ~RingChannel() = default;

  // Queues `bytes` at `data` as segment (step, segment) for the next peer. `data` must stay
  // valid and unchanged until WaitSends() returns.
  virtual void Send(uint32_t step, uint32_t segment, const void* data, size_t bytes) = 0;
  // Declares that segment (step, segment) from the previous peer is `bytes` long and goes
  // to `data`. A segment of another length is a protocol error that fails the operation.
  virtual void Expect(uint32_t step, uint32_t segment, void* data, size_t bytes) = 0;
  // Like Expect, but a payload that already arrived (before this call) is not copied to
  // `data`: the arrival handler (required) reads it where it waited, at its `landed`
  // argument. For a handler that reads the payload once and keeps nothing of it (an
  // in-place all-reduce folds each partial into the buffer), which saves that copy.
  virtual void ExpectOrKeepEarly(uint32_t step, uint32_t segment, void* data, size_t bytes) {
    Expect(step, segment, data, bytes);
  }
  // Declares that segment (step, segment) from the previous peer is `bytes` long and lands
  // in one of the channel's receive slots (SetReceiveSlots) instead of memory the algorithm
  // names: for data the algorithm folds into memory of its own as it arrives (an in-place
  // reduce-scatter's partial sums), which then needs no landing buffer of the tensor's
  // size. The arrival handler (required) reads it at its `landed` argument; the slot is
  // reused once the handler returns. A receiver waits for a free slot, so the slots bound
  // the memory; the pipeline is not held up while there are as many slots as connections.
  virtual void ExpectInSlot(uint32_t step, uint32_t segment, size_t bytes) = 0;
  // The memory ExpectInSlot lands in: `count` slots of `slot_bytes` each at `memory`, valid
  // until the operation ends. Set it before the first ExpectInSlot.
  virtual void SetReceiveSlots(void* memory, size_t slot_bytes, size_t count) = 0;
  // Waits until `count` more expected segments have fully arrived (and, if an arrival
  // handler is set, have been handled). One wait for all of them, not one per segment: the
  // implementation wakes the waiting thread when the count is reached or the operation
  // fails, and for a payload that only this thread can hand to the handler (one that came
  // before its Expect), not for each arrival the I/O threads handle.
  virtual Status WaitArrivals(size_t count, Deadline deadline) = 0;

  // Optional: runs `handler(step, segment, landed)` for every arrived segment as soon as it
  // lands (`landed`: where its bytes are, the Expect()ed memory or a receive slot), on
  // whichever thread delivered it (often an I/O thread, with the bytes still in its cache),
  // before WaitArrivals counts it. Handlers for different segments may run at the same
  // time. An error from the handler fails the operation. Set it before the first Expect().
  // Setting nullptr detaches it and waits until no handler call is running: an algorithm
  // whose handler captures its stack must do so before it returns.
  using ArrivalHandler =
      std::function<Status(uint32_t step, uint32_t segment, const void* landed)>;
  virtual void SetArrivalHandler(ArrivalHandler handler) = 0;
  // Waits until every queued segment has been handed to the kernel.
  virtual Status WaitSends(Deadline deadline) = 0;
};

// Sets an arrival handler for the lifetime of a scope and detaches it (waiting out running
// calls) on every way out, so a handler that captures its algorithm's stack stays safe.
// The handler is called through a reference (ByRef: no allocation per call), so it must
// be a named callable that outlives the scope.
class ScopedArrivalHandler {
 public:
  template <typename Handler>
  ScopedArrivalHandler(RingChannel& channel, Handler& handler) : channel_(channel) {
    channel_.SetArrivalHandler(ByRef(handler));
  }
  ~ScopedArrivalHandler() { channel_.SetArrivalHandler(nullptr); }
  ScopedArrivalHandler(const ScopedArrivalHandler&) = delete;
  ScopedArrivalHandler& operator=(const ScopedArrivalHandler&) = delete;

 private:
  RingChannel& channel_;
};

// Waits for `expected` arrivals (each handled by the arrival handler), then for every send.
inline Status AwaitArrivalsAndSends(RingChannel& channel, size_t expected, Deadline deadline) {
  PCCL_RETURN_IF_ERROR(channel.WaitArrivals(expected, deadline));
  return channel.WaitSends(deadline);
}

}  // namespace pccl::link
