// What the ring collectives of ring_collectives.cc and ring_routed.cc share: blocks cut
// into segments, ring arithmetic, and the checks of their options. Internal to algo/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pccl/algo/ring_collectives.h"
#include "pccl/common/dtype.h"
#include "pccl/common/status.h"

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
    std::vector<bool> seen(options.world, false);
    for (int s : options.slot_of) {
      if (s < 0 || s >= options.world || seen[s]) {
        return InvalidArgument(std::string(what) + ": slot_of is not a permutation");
      }
      seen[s] = true;
    }
  }
  return Status::Ok();
}

inline int SlotOf(const RingCollectiveOptions& options, int position) {
  return options.slot_of.empty() ? position : options.slot_of[position];
}


}  // namespace pccl::algo::internal
