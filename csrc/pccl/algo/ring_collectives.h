// The ring collectives besides the all-reduce: broadcast, all-gather and reduce-scatter,
// over the same RingChannel (each peer sends only to the next and receives only from the
// previous, in segments striped over the connection pool). Gather, scatter and
// all-to-all, whose blocks each have one destination, go straight there (direct.h) and
// share these options.
//
// Every byte crosses a link once per hop it has to travel, which is the least a ring can
// do: a broadcast of S bytes puts S on every link but the one into the root, an
// all-gather or reduce-scatter of c bytes per peer sends (world - 1) * c from every peer.
//
// Slots: the all-gather's output and the reduce-scatter's input hold `world` blocks of
// `count` elements, one per peer. Which block belongs to which peer is the caller's
// choice (slot_of: ring position -> block), so that the layout does not depend on the
// ring order, which the master may change between calls.
//
// Thread-safety: each function runs on the calling thread; its buffers belong to the
// caller until it returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <vector>

#include "pccl/common/call_memory.h"
#include "pccl/common/clock.h"
#include "pccl/common/dtype.h"
#include "pccl/common/status.h"
#include "pccl/kernels/reduce.h"
#include "pccl/link/channel.h"

namespace pccl::algo {

struct RingCollectiveOptions {
  DType dtype = DType::kFloat32;
  kernels::ReduceOp op = kernels::ReduceOp::kSum;  // reduce-scatter only
  // Broadcast: elements of the buffer. All-gather and reduce-scatter: elements per block.
  size_t count = 0;
  // Broadcast: the root's data (read on the root only; it may equal recv). All-gather:
  // this peer's block. Reduce-scatter: `world` blocks. Never written.
  const void* send = nullptr;
  // Broadcast: where every peer (the root too) gets the root's data. All-gather: `world`
  // blocks. Reduce-scatter: this peer's block of the reduction. Must not overlap `send`
  // except that a broadcast may run in place, and an all-gather's `send` may be its own
  // block of `recv`.
  void* recv = nullptr;
  int rank = 0;   // position in the ring, 0 <= rank < world
  int world = 1;  // peers in the ring, >= 2
  int root = 0;   // broadcast, gather, scatter: the root's ring position
  // Every collective with blocks: slot_of[p] is the block of ring position p (a
  // permutation of 0 .. world-1). Empty: block p.
  std::pmr::vector<int> slot_of{CallMemory()};  // (made once per call: see CallMemory)
  size_t segment_bytes = size_t{1} << 20;  // payload bytes per segment
  // Reduce-scatter: ReduceScatterScratchBytes() of scratch, any contents.
  void* scratch = nullptr;
};

struct RingCollectiveStats {
  uint64_t tx_bytes = 0;
  uint64_t rx_bytes = 0;
};

// Bytes of RingCollectiveOptions::scratch a reduce-scatter needs: the partials this peer
// receives (float32 for float16/bfloat16, which also need one block to widen their own).
size_t ReduceScatterScratchBytes(DType dtype, size_t count, int world);

// On error `recv` holds garbage (`send` is never written) and the caller fails the
// operation; the master's verdict tells every peer whether all succeeded.
Status RingBroadcast(const RingCollectiveOptions& options, link::RingChannel& channel,
                     Deadline deadline, RingCollectiveStats* stats);
Status RingAllGather(const RingCollectiveOptions& options, link::RingChannel& channel,
                     Deadline deadline, RingCollectiveStats* stats);
Status RingReduceScatter(const RingCollectiveOptions& options, link::RingChannel& channel,
                         Deadline deadline, RingCollectiveStats* stats);

}  // namespace pccl::algo
