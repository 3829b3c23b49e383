// Choosing the ring order from measured bandwidths (optimize_topology()).
//
// A ring all-reduce moves the same bytes over every link of the ring at once, so it runs
// at the speed of its slowest link: the best ring maximises its bottleneck. Many rings
// often share the best bottleneck (every ring between two regions crosses the narrow
// link at least twice; one that crosses it four times has the same slowest link, but two
// of its transfers then share that link), so among the rings whose bottleneck is within
// `tolerance` of the best, the solver takes the one with the least total time per byte
// (the sum over its links of 1 / bandwidth): fewer slow links.
//
// Links are directed (bandwidth[i][j] is i sending to j; uplinks are often asymmetric);
// 0 means unknown or unreachable. Small worlds (up to kExactRingLimit peers) are solved
// exactly by enumerating every ring; larger ones by a heuristic: greedy "widest next
// link" rings from every start and a budgeted search for a ring above a threshold
// (binary search on the threshold), improved by moving single peers while that helps.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <vector>

namespace pccl::master {

using BandwidthMatrix = std::vector<std::vector<double>>;  // [from][to], bytes/s

inline constexpr size_t kExactRingLimit = 10;

struct RingScore {
  double bottleneck = 0;  // the slowest link's bandwidth
  double cost = 0;        // sum of 1 / bandwidth over the links; infinity if one is 0
};

// The score of the ring `order` (indices into `bandwidth`, each once).
RingScore ScoreRing(const BandwidthMatrix& bandwidth, const std::vector<int>& order);

struct RingSolverOptions {
  double tolerance = 0.1;  // bottlenecks within 10 % of each other count as equal
  bool force_heuristic = false;  // tests: use the large-world heuristic at any size
};

// The best ring order over all peers, starting with `current[0]`. Returns `current` itself
// unless the best ring is clearly better (a bottleneck more than `tolerance` higher, or an
// equal bottleneck with a cost more than `tolerance` lower), so that re-optimising an
// already good ring does not restart the epoch for nothing.
std::vector<int> SolveRing(const BandwidthMatrix& bandwidth, const std::vector<int>& current,
                           const RingSolverOptions& options = {});

}  // namespace pccl::master
