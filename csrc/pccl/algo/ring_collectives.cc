#include "pccl/algo/ring_collectives.h"

#include <atomic>
#include <cstring>
#include <string>

#include "pccl/algo/ring_blocks.h"

namespace pccl::algo {

using link::RingChannel;
using link::ScopedArrivalHandler;
using internal::AwaitBlocks;
using internal::CheckRoot;
using internal::CheckShape;
using internal::Mod;
using internal::Segments;
using internal::SegmentsOf;
using internal::SlotOf;


size_t ReduceScatterScratchBytes(DType dtype, size_t count, int world) {
  if (world < 2) return 0;
  // float16/bfloat16 between two peers: the one partial is an input, folded in at once.
  if (IsHalfPrecision(dtype) && world > 2) {
    return static_cast<size_t>(world - 1) * count * sizeof(float);
  }
  return static_cast<size_t>(world - 2) * count * DTypeSize(dtype);
}

// Broadcast, pipelined along the ring from the root.
//
// The root sends its buffer to the next peer segment by segment; every other peer
// receives each segment straight into its buffer and, unless it is the last before the
// root, passes it on from there as soon as it has landed. Segment j reaches the far end
// while segment j + 1 is one hop behind, so the time is about S / bandwidth plus one
// segment per hop, and each link carries S bytes once.
Status RingBroadcast(const RingCollectiveOptions& options, RingChannel& channel,
                     Deadline deadline, RingCollectiveStats* stats) {
  PCCL_RETURN_IF_ERROR(CheckRoot(options, "broadcast"));
  if (options.count == 0) return Status::Ok();
  const size_t elem = DTypeSize(options.dtype);
  const Segments segments = SegmentsOf(options);
  auto* recv = static_cast<char*>(options.recv);
  const int distance = Mod(options.rank - options.root, options.world);  // hops from root
  const bool forwards = distance < options.world - 1;  // the last peer keeps what it gets

  if (distance == 0) {
    const auto* send = static_cast<const char*>(options.send);
    if (send != recv) std::memcpy(recv, send, options.count * elem);
    for (uint32_t seg = 0; seg < segments.n(); ++seg) {
      channel.Send(0, seg, send + segments.first(seg) * elem, segments.size(seg) * elem);
    }
    stats->tx_bytes = options.count * elem;
    return channel.WaitSends(deadline);
  }

  std::atomic<uint64_t> tx_bytes{0};
  auto on_arrival = [&](uint32_t, uint32_t seg, const void*) -> Status {
    if (forwards) {
      const size_t bytes = segments.size(seg) * elem;
      channel.Send(0, seg, recv + segments.first(seg) * elem, bytes);
      tx_bytes.fetch_add(bytes, std::memory_order_relaxed);
    }
    return Status::Ok();
  };
  ScopedArrivalHandler handler_scope(channel, on_arrival);
  for (uint32_t seg = 0; seg < segments.n(); ++seg) {
    channel.Expect(0, seg, recv + segments.first(seg) * elem, segments.size(seg) * elem);
  }
  return AwaitBlocks(channel, segments, 1, options.count * elem, tx_bytes, deadline, stats);
}

// All-gather around the ring.
//
// At step s (0 .. world-2) the peer at ring position r sends the block of position r - s
// and receives that of position r - s - 1: its own block at step 0, then each block it
// received the step before. Every block thus travels world - 1 hops, landing directly in
// its slot of every peer's output, from where it is forwarded byte for byte: every peer
// ends with identical bytes.
Status RingAllGather(const RingCollectiveOptions& options, RingChannel& channel,
                     Deadline deadline, RingCollectiveStats* stats) {
  PCCL_RETURN_IF_ERROR(CheckShape(options, "all-gather"));
  if (options.count == 0) return Status::Ok();
  const size_t elem = DTypeSize(options.dtype);
  const size_t block_bytes = options.count * elem;
  const Segments segments = SegmentsOf(options);
  const int world = options.world;
  const int rank = options.rank;
  const int steps = world - 1;
  auto* recv = static_cast<char*>(options.recv);
  auto block = [&](int position) {
    return recv + static_cast<size_t>(SlotOf(options, position)) * block_bytes;
  };
  const auto* own = static_cast<const char*>(options.send);
  if (own != block(rank)) std::memcpy(block(rank), own, block_bytes);

  std::atomic<uint64_t> tx_bytes{0};
  auto send_segment = [&](int step, uint32_t seg, const char* base) {
    const size_t bytes = segments.size(seg) * elem;
    channel.Send(step, seg, base + segments.first(seg) * elem, bytes);
    tx_bytes.fetch_add(bytes, std::memory_order_relaxed);
  };
  auto on_arrival = [&](uint32_t step, uint32_t seg, const void*) -> Status {
    const int next = static_cast<int>(step) + 1;
    if (next < steps) send_segment(next, seg, block(Mod(rank - next, world)));
    return Status::Ok();
  };
  ScopedArrivalHandler handler_scope(channel, on_arrival);
  for (int step = 0; step < steps; ++step) {
    char* into = block(Mod(rank - step - 1, world));
    for (uint32_t seg = 0; seg < segments.n(); ++seg) {
      channel.Expect(step, seg, into + segments.first(seg) * elem, segments.size(seg) * elem);
    }
  }
  for (uint32_t seg = 0; seg < segments.n(); ++seg) send_segment(0, seg, own);
  return AwaitBlocks(channel, segments, static_cast<size_t>(steps), steps * block_bytes,
                     tx_bytes, deadline, stats);
}

// Reduce-scatter around the ring: the first half of the ring all-reduce, shifted by one
// so that every peer ends owning its own block.
//
// At step s (0 .. world-2) the peer at ring position r sends its partial sum of the block
// of position r - s - 1 and receives the previous peer's partial of position r - s - 2,
// to which it adds its own input for that block: that sum is what it sends at step s + 1.
// The partial it receives at the last step is its own block with every other peer's
// contribution in it; adding its own completes it (AVG divides once). Partials land in
// scratch, one block per step (the last straight into the output), so the input is never
// written. float16/bfloat16 partials travel and accumulate in float32 and are rounded
// once, as in the all-reduce; and as there, step 0's are inputs and travel as they are,
// landing in the upper half of their float32 room (kernels::CombineHalf widens them), or
// between two peers, where step 0 is the last, in the output, folded in and rounded at
// once (kernels::FoldHalf): no scratch.
Status RingReduceScatter(const RingCollectiveOptions& options, RingChannel& channel,
                         Deadline deadline, RingCollectiveStats* stats) {
  PCCL_RETURN_IF_ERROR(CheckShape(options, "reduce-scatter"));
  if (options.count == 0) return Status::Ok();
  const int world = options.world;
  if (options.scratch == nullptr &&
      ReduceScatterScratchBytes(options.dtype, options.count, world) > 0) {
    return InvalidArgument("a reduce-scatter needs scratch (ReduceScatterScratchBytes)");
  }
  const bool half = IsHalfPrecision(options.dtype);
  const size_t elem = DTypeSize(options.dtype);
  const size_t acc_elem = half ? sizeof(float) : elem;
  const Segments segments = SegmentsOf(options);
  const int rank = options.rank;
  const int steps = world - 1;
  const uint64_t divisor = options.op == kernels::ReduceOp::kAvg ? world : 1;
  const auto* send = static_cast<const char*>(options.send);
  auto* recv = static_cast<char*>(options.recv);
  auto* scratch = static_cast<char*>(options.scratch);
  auto input = [&](int position, size_t first) {
    return send + (static_cast<size_t>(SlotOf(options, position)) * options.count + first) *
                      elem;
  };
  // Bytes per element of what travels at `step`.
  auto wire_elem = [&](int step) { return half && step > 0 ? acc_elem : elem; };
  // Where the partial received at `step` accumulates: block `step` of the scratch (of
  // float32 for float16/bfloat16), but the last lands in the output, unless it is a
  // float32 sum of halves.
  auto in_output = [&](int step) { return step == steps - 1 && wire_elem(step) == elem; };
  auto partial = [&](int step, size_t first) -> char* {
    if (in_output(step)) return recv + first * elem;
    return scratch + (static_cast<size_t>(step) * options.count + first) * acc_elem;
  };

  std::atomic<uint64_t> tx_bytes{0};
  auto send_segment = [&](int step, uint32_t seg, const char* data) {
    const size_t bytes = segments.size(seg) * wire_elem(step);
    channel.Send(step, seg, data, bytes);
    tx_bytes.fetch_add(bytes, std::memory_order_relaxed);
  };
  auto on_arrival = [&](uint32_t step_u, uint32_t seg, const void* landed) -> Status {
    const int step = static_cast<int>(step_u);
    const size_t first = segments.first(seg);
    const size_t n = segments.size(seg);
    const int position = Mod(rank - step - 2, world);
    char* acc = partial(step, first);
    if (half && in_output(step)) {  // two peers: our own block, complete
      return kernels::FoldHalf(options.dtype, options.op, acc, landed, input(position, first),
                               nullptr, n, divisor);
    }
    if (half && step == 0) {
      PCCL_RETURN_IF_ERROR(kernels::CombineHalf(options.dtype, options.op,
                                                reinterpret_cast<float*>(acc), landed,
                                                input(position, first), n));
    } else if (half) {
      PCCL_RETURN_IF_ERROR(kernels::AccumulateHalf(
          options.dtype, options.op, reinterpret_cast<float*>(acc), input(position, first), n));
    } else {
      PCCL_RETURN_IF_ERROR(
          kernels::Reduce(options.dtype, options.op, acc, input(position, first), n));
    }
    if (step + 1 < steps) {
      send_segment(step + 1, seg, acc);
      return Status::Ok();
    }
    if (half) {  // our own block, complete
      return kernels::NarrowHalf(options.dtype, recv + first * elem,
                                 reinterpret_cast<const float*>(acc), n, divisor);
    }
    return divisor == 1 ? Status::Ok()
                        : kernels::DivideBy(options.dtype, recv + first * elem, n, divisor);
  };
  ScopedArrivalHandler handler_scope(channel, on_arrival);
  uint64_t rx_bytes = 0;
  for (int step = 0; step < steps; ++step) {
    for (uint32_t seg = 0; seg < segments.n(); ++seg) {
      const size_t bytes = segments.size(seg) * wire_elem(step);
      char* at = partial(step, segments.first(seg));
      // A float16/bfloat16 input lands in the upper half of its float32 room.
      channel.Expect(step, seg, half && !in_output(step) && step == 0 ? at + bytes : at,
                     bytes);
      rx_bytes += bytes;
    }
  }
  // Step 0: this peer's own input for the block of position r - 1.
  const int first_position = Mod(rank - 1, world);
  for (uint32_t seg = 0; seg < segments.n(); ++seg) {
    send_segment(0, seg, input(first_position, segments.first(seg)));
  }
  return AwaitBlocks(channel, segments, static_cast<size_t>(steps), rx_bytes, tx_bytes,
                     deadline, stats);
}

}  // namespace pccl::algo
