// Gather, scatter and all-to-all around the ring: blocks addressed to one peer each.
//
// Data flows one way, from each peer to the next. A block travels from its source to its
// destination through the peers between them and no further, so every block crosses
// exactly as many links as the ring distance between the two, the least a ring can do.
// A peer that only passes a block on receives it into scratch and forwards it segment by
// segment as soon as each lands; the destination receives it straight into its output.
//
// Each block is a stream of its own, named by the step number of the channel: which block
// it is follows from the step and the positions of sender and receiver, so no header is
// needed. Distances below are ring distances in the direction of the data, from the
// root (gather, scatter) or from the source (all-to-all).
#include <atomic>
#include <cstring>

#include "pccl/algo/ring_blocks.h"
#include "pccl/algo/ring_collectives.h"

namespace pccl::algo {

using link::RingChannel;
using link::ScopedArrivalHandler;
using internal::AwaitBlocks;
using internal::CheckRoot;
using internal::CheckShape;
using internal::ExpectBlock;
using internal::SendBlock;
using internal::Mod;
using internal::Segments;
using internal::SegmentsOf;
using internal::SlotOf;

size_t GatherScratchBytes(DType dtype, size_t count, int world) {
  return world < 3 ? 0 : static_cast<size_t>(world - 2) * count * DTypeSize(dtype);
}

size_t AllToAllScratchBytes(DType dtype, size_t count, int world) {
  if (world < 3) return 0;
  const size_t blocks = static_cast<size_t>(world - 1) * static_cast<size_t>(world - 2) / 2;
  return blocks * count * DTypeSize(dtype);
}

// Gather towards the root. The peer at distance k sends its own block as stream k and
// forwards the streams 1 .. k-1 of the peers before it; the root, at distance 0, receives
// streams 1 .. world-1 (from the peer at that distance) into their blocks of `recv`. The
// peer at distance k thus sends k blocks, and the root none.
Status RingGather(const RingCollectiveOptions& options, RingChannel& channel,
                  Deadline deadline, RingCollectiveStats* stats) {
  PCCL_RETURN_IF_ERROR(CheckRoot(options, "gather"));
  if (options.count == 0) return Status::Ok();
  const int world = options.world;
  const size_t elem = DTypeSize(options.dtype);
  const size_t block_bytes = options.count * elem;
  const Segments segments = SegmentsOf(options);
  const int distance = Mod(options.rank - options.root, world);
  const auto* send = static_cast<const char*>(options.send);
  auto* recv = static_cast<char*>(options.recv);
  auto* scratch = static_cast<char*>(options.scratch);
  if (distance > 1 && scratch == nullptr) {
    return InvalidArgument("a gather needs scratch (GatherScratchBytes)");
  }
  // Where stream j (the block of the peer at distance j) lands here.
  auto landing = [&](int j) -> char* {
    if (distance == 0) {
      const int source = Mod(options.root + j, world);
      return recv + static_cast<size_t>(SlotOf(options, source)) * block_bytes;
    }
    return scratch + static_cast<size_t>(j - 1) * block_bytes;
  };
  std::atomic<uint64_t> tx_bytes{0};
  auto on_arrival = [&](uint32_t step, uint32_t seg, const void*) -> Status {
    if (distance != 0) {  // pass it on towards the root
      const size_t bytes = segments.size(seg) * elem;
      channel.Send(step, seg, landing(static_cast<int>(step)) + segments.first(seg) * elem,
                   bytes);
      tx_bytes.fetch_add(bytes, std::memory_order_relaxed);
    }
    return Status::Ok();
  };
  ScopedArrivalHandler handler_scope(channel, on_arrival);
  const int streams = distance == 0 ? world - 1 : distance - 1;
  for (int j = 1; j <= streams; ++j) {
    ExpectBlock(channel, segments, elem, static_cast<uint32_t>(j), landing(j));
  }
  if (distance == 0) {
    char* own = recv + static_cast<size_t>(SlotOf(options, options.rank)) * block_bytes;
    if (own != send) std::memcpy(own, send, block_bytes);
  } else {
    SendBlock(channel, segments, elem, static_cast<uint32_t>(distance), send, &tx_bytes);
  }
  return AwaitBlocks(channel, segments, static_cast<size_t>(streams), block_bytes, tx_bytes,
                     deadline, stats);
}

// Scatter from the root. The root sends the block for the peer at distance d as stream
// d, the farthest first so that the pipeline fills; the peer at distance k keeps stream k
// (straight into `recv`) and forwards streams k+1 .. world-1. The root thus sends
// world - 1 blocks and the peer at distance k world - 1 - k.
Status RingScatter(const RingCollectiveOptions& options, RingChannel& channel,
                   Deadline deadline, RingCollectiveStats* stats) {
  PCCL_RETURN_IF_ERROR(CheckRoot(options, "scatter"));
  if (options.count == 0) return Status::Ok();
  const int world = options.world;
  const size_t elem = DTypeSize(options.dtype);
  const size_t block_bytes = options.count * elem;
  const Segments segments = SegmentsOf(options);
  const int distance = Mod(options.rank - options.root, world);
  const auto* send = static_cast<const char*>(options.send);
  auto* recv = static_cast<char*>(options.recv);
  auto* scratch = static_cast<char*>(options.scratch);
  if (distance != 0 && distance < world - 1 && scratch == nullptr) {
    return InvalidArgument("a scatter needs scratch (GatherScratchBytes)");
  }
  auto landing = [&](int d) -> char* {  // stream d, at a peer at distance >= 1
    return d == distance ? recv : scratch + static_cast<size_t>(d - distance - 1) * block_bytes;
  };
  std::atomic<uint64_t> tx_bytes{0};
  if (distance == 0) {
    for (int d = world - 1; d >= 1; --d) {
      const int target = Mod(options.root + d, world);
      SendBlock(channel, segments, elem, static_cast<uint32_t>(d),
                send + static_cast<size_t>(SlotOf(options, target)) * block_bytes, &tx_bytes);
    }
    const char* own = send + static_cast<size_t>(SlotOf(options, options.rank)) * block_bytes;
    if (own != recv) std::memcpy(recv, own, block_bytes);
    stats->tx_bytes = tx_bytes.load();
    return channel.WaitSends(deadline);
  }
  auto on_arrival = [&](uint32_t step, uint32_t seg, const void*) -> Status {
    const int d = static_cast<int>(step);
    if (d != distance) {
      const size_t bytes = segments.size(seg) * elem;
      channel.Send(step, seg, landing(d) + segments.first(seg) * elem, bytes);
      tx_bytes.fetch_add(bytes, std::memory_order_relaxed);
    }
    return Status::Ok();
  };
  ScopedArrivalHandler handler_scope(channel, on_arrival);
  for (int d = distance; d < world; ++d) {
    ExpectBlock(channel, segments, elem, static_cast<uint32_t>(d), landing(d));
  }
  return AwaitBlocks(channel, segments, static_cast<size_t>(world - distance), block_bytes,
                     tx_bytes, deadline, stats);
}

// All-to-all around the ring. The block from source s to destination t travels
// h = t - s hops. A peer receives from the previous one the blocks of every source j
// hops back (j = 1 .. world-1) whose destination is i more hops ahead (i = 0 .. world-1-j),
// as stream j * world + i: i = 0 lands in its `recv` block for that source, the others in
// scratch, from where they go on as stream (j + 1) * world + (i - 1). Its own blocks
// start as streams world + (h - 1). Each peer sends its world - 1 blocks and forwards
// (world-1)(world-2)/2, world(world-1)/2 blocks in all.
Status RingAllToAll(const RingCollectiveOptions& options, RingChannel& channel,
                    Deadline deadline, RingCollectiveStats* stats) {
  PCCL_RETURN_IF_ERROR(CheckShape(options, "all-to-all"));
  if (options.count == 0) return Status::Ok();
  const int world = options.world;
  const int rank = options.rank;
  const size_t elem = DTypeSize(options.dtype);
  const size_t block_bytes = options.count * elem;
  const Segments segments = SegmentsOf(options);
  const auto* send = static_cast<const char*>(options.send);
  auto* recv = static_cast<char*>(options.recv);
  auto* scratch = static_cast<char*>(options.scratch);
  if (world > 2 && scratch == nullptr) {
    return InvalidArgument("an all-to-all needs scratch (AllToAllScratchBytes)");
  }
  auto stream = [&](int j, int i) { return static_cast<uint32_t>(j * world + i); };
  // Scratch holds, for j = 1 .. world-2, the blocks i = 1 .. world-1-j, one after another.
  auto landing = [&](int j, int i) -> char* {
    if (i == 0) {
      return recv + static_cast<size_t>(SlotOf(options, Mod(rank - j, world))) * block_bytes;
    }
    size_t before = 0;  // blocks of the streams j' < j
    for (int earlier = 1; earlier < j; ++earlier) {
      before += static_cast<size_t>(world - 1 - earlier);
    }
    return scratch + (before + static_cast<size_t>(i - 1)) * block_bytes;
  };
  std::atomic<uint64_t> tx_bytes{0};
  auto on_arrival = [&](uint32_t step, uint32_t seg, const void*) -> Status {
    const int j = static_cast<int>(step) / world;
    const int i = static_cast<int>(step) % world;
    if (i > 0) {
      const size_t bytes = segments.size(seg) * elem;
      channel.Send(stream(j + 1, i - 1), seg, landing(j, i) + segments.first(seg) * elem,
                   bytes);
      tx_bytes.fetch_add(bytes, std::memory_order_relaxed);
    }
    return Status::Ok();
  };
  ScopedArrivalHandler handler_scope(channel, on_arrival);
  size_t expected = 0;  // blocks
  for (int j = 1; j < world; ++j) {
    for (int i = 0; i <= world - 1 - j; ++i) {
      ExpectBlock(channel, segments, elem, stream(j, i), landing(j, i));
      ++expected;
    }
  }
  for (int h = world - 1; h >= 1; --h) {  // the farthest first
    const int target = Mod(rank + h, world);
    SendBlock(channel, segments, elem, stream(1, h - 1),
              send + static_cast<size_t>(SlotOf(options, target)) * block_bytes, &tx_bytes);
  }
  const size_t own = static_cast<size_t>(SlotOf(options, rank)) * block_bytes;
  if (recv + own != send + own) std::memcpy(recv + own, send + own, block_bytes);
  return AwaitBlocks(channel, segments, expected, block_bytes, tx_bytes, deadline, stats);
}

}  // namespace pccl::algo
