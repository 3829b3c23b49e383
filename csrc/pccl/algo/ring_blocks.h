// What the collectives of ring_collectives.cc and direct.cc share: blocks cut into
// segments, ring arithmetic, and the checks of their options. Internal to algo/.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pccl/algo/ring_collectives.h"
#include "pccl/common/clock.h"
#include "pccl/common/dtype.h"
#include "pccl/common/status.h"
#include "pccl/link/channel.h"

namespace pccl::algo::internal {

// A block of `count` elements cut into segments of at most `per` elements.
struct Segments {
  size_t count;
  size_t per;

  uint32_t n() const { return static_cast<uint32_t>((count + per - 1) / per); }
  size_t first(uint32_t seg) const { return seg * per; }
  size_t size(uint32_t seg) const {
    size_t begin = first(seg);
    return count - begin < per ? count - begin : per;
  }
};

inline Segments SegmentsOf(const RingCollectiveOptions& options) {
  size_t per = options.segment_bytes / DTypeSize(options.dtype);
  return Segments{options.count, per > 0 ? per : 1};
}

inline int Mod(int a, int world) { return ((a % world) + world) % world; }

inline Status CheckShape(const RingCollectiveOptions& options, const char* what) {
  if (options.world < 2 || options.rank < 0 || options.rank >= options.world) {
    return InvalidArgument(std::string(what) + " needs world >= 2 and 0 <= rank < world, got " +
                           std::to_string(options.rank) + " of " +
                           std::to_string(options.world));
  }
  if (!options.slot_of.empty()) {
    if (options.slot_of.size() != static_cast<size_t>(options.world)) {
      return InvalidArgument(std::string(what) + ": slot_of names " +
                             std::to_string(options.slot_of.size()) + " blocks for " +
                             std::to_string(options.world) + " peers");
    }
    std::pmr::vector<bool> seen(options.world, false, CallMemory());
    for (int s : options.slot_of) {
      if (s < 0 || s >= options.world || seen[s]) {
        return InvalidArgument(std::string(what) + ": slot_of is not a permutation");
      }
      seen[s] = true;
    }
  }
  return Status::Ok();
}

inline Status CheckRoot(const RingCollectiveOptions& options, const char* what) {
  PCCL_RETURN_IF_ERROR(CheckShape(options, what));
  if (options.root < 0 || options.root >= options.world) {
    return InvalidArgument(std::string(what) + " root position " +
                           std::to_string(options.root) + " is not in a ring of " +
                           std::to_string(options.world));
  }
  return Status::Ok();
}

inline int SlotOf(const RingCollectiveOptions& options, int position) {
  return options.slot_of.empty() ? position : options.slot_of[position];
}

// Sends block `data` (options.count elements) as stream `step`, segment by segment.
inline void SendBlock(link::RingChannel& channel, const Segments& segments, size_t elem,
                      uint32_t step, const char* data, std::atomic<uint64_t>* tx_bytes) {
  for (uint32_t seg = 0; seg < segments.n(); ++seg) {
    const size_t bytes = segments.size(seg) * elem;
    channel.Send(step, seg, data + segments.first(seg) * elem, bytes);
    tx_bytes->fetch_add(bytes, std::memory_order_relaxed);
  }
}

inline void ExpectBlock(link::RingChannel& channel, const Segments& segments, size_t elem,
                        uint32_t step, char* into) {
  for (uint32_t seg = 0; seg < segments.n(); ++seg) {
    channel.Expect(step, seg, into + segments.first(seg) * elem, segments.size(seg) * elem);
  }
}

// The end of every collective here: waits until `blocks` expected blocks of `segments`
// have arrived (each handled by the arrival handler) and every send is out, then reports
// the bytes: what the handler and the sends counted in `tx_bytes`, and `rx_bytes`
// received (what the blocks hold).
inline Status AwaitBlocks(link::RingChannel& channel, const Segments& segments, size_t blocks,
                          uint64_t rx_bytes, const std::atomic<uint64_t>& tx_bytes,
                          Deadline deadline, RingCollectiveStats* stats) {
  Status done = link::AwaitArrivalsAndSends(channel, blocks * segments.n(), deadline);
  stats->tx_bytes = tx_bytes.load();
  stats->rx_bytes = rx_bytes;
  return done;
}

}  // namespace pccl::algo::internal
