#include "pccl/master/ring_solver.h"

#include <algorithm>
#include <limits>

namespace pccl::master {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// Rotates `order` so that it starts with `first`.
std::vector<int> StartingWith(std::vector<int> order, int first) {
  auto it = std::find(order.begin(), order.end(), first);
  if (it != order.end()) std::rotate(order.begin(), it, order.end());
  return order;
}

// Every ring starting with `first`, in two passes: the best bottleneck, then the cheapest
// ring among those within tolerance of it.
std::vector<int> SolveExactly(const BandwidthMatrix& bw, int first, double tolerance) {
  const int n = static_cast<int>(bw.size());
  std::vector<int> rest;
  for (int i = 0; i < n; ++i) {
    if (i != first) rest.push_back(i);
  }
  auto each_ring = [&](auto&& visit) {
    std::vector<int> tail = rest;
    std::vector<int> order(n);
    order[0] = first;
    do {
      std::copy(tail.begin(), tail.end(), order.begin() + 1);
      visit(order);
    } while (std::next_permutation(tail.begin(), tail.end()));
  };
  double best_bottleneck = -1;
  each_ring([&](const std::vector<int>& order) {
    best_bottleneck = std::max(best_bottleneck, ScoreRing(bw, order).bottleneck);
  });
  const double floor = best_bottleneck * (1 - tolerance);
  std::vector<int> best;
  double best_cost = kInfinity;
  each_ring([&](const std::vector<int>& order) {
    RingScore s = ScoreRing(bw, order);
    if (s.bottleneck < floor) return;
    if (best.empty() || s.cost < best_cost) {
      best = order;
      best_cost = s.cost;
    }
  });
  return best;
}

// From peer `start`, always take the widest link to a peer not yet in the ring.
std::vector<int> GreedyRing(const BandwidthMatrix& bw, int start) {
  const int n = static_cast<int>(bw.size());
  std::vector<int> order{start};
  std::vector<bool> used(n, false);
  used[start] = true;
  for (int step = 1; step < n; ++step) {
    int from = order.back();
    int next = -1;
    for (int j = 0; j < n; ++j) {
      if (!used[j] && (next < 0 || bw[from][j] > bw[from][next])) next = j;
    }
    used[next] = true;
    order.push_back(next);
  }
  return order;
}

// Depth-first search for a ring that uses only links of at least `threshold`, widest
// links first, giving up after `budget` extensions (the problem is NP-hard in general;
// the budget keeps the master responsive and the widest-first order finds rings quickly
// when many exist).
bool RingAbove(const BandwidthMatrix& bw, double threshold, int start, long budget,
               std::vector<int>* out) {
  const int n = static_cast<int>(bw.size());
  std::vector<std::vector<int>> next(n);  // per peer: targets >= threshold, widest first
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      if (i != j && bw[i][j] >= threshold) next[i].push_back(j);
    }
    std::sort(next[i].begin(), next[i].end(), [&](int a, int b) { return bw[i][a] > bw[i][b]; });
  }
  std::vector<int> path{start};
  std::vector<size_t> tried{0};  // per depth: how many of next[path[d]] were tried
  std::vector<bool> used(n, false);
  used[start] = true;
  while (!path.empty() && budget-- > 0) {
    if (static_cast<int>(path.size()) == n) {
      if (bw[path.back()][start] >= threshold) {
        *out = path;
        return true;
      }
      used[path.back()] = false;
      path.pop_back();
      tried.pop_back();
      continue;
    }
    const int at = path.back();
    size_t& k = tried.back();
    while (k < next[at].size() && used[next[at][k]]) ++k;
    if (k == next[at].size()) {
      used[at] = false;
      path.pop_back();
      tried.pop_back();
      continue;
    }
    const int to = next[at][k++];
    used[to] = true;
    path.push_back(to);
    tried.push_back(0);
  }
  return false;
}

// The ring with the highest bottleneck RingAbove() finds: binary search over the
// distinct link bandwidths.
std::vector<int> WidestRingFound(const BandwidthMatrix& bw, int start) {
  std::vector<double> values;
  for (const auto& row : bw) values.insert(values.end(), row.begin(), row.end());
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  constexpr long kBudget = 20000;
  std::vector<int> best;
  size_t lo = 0, hi = values.size();  // invariant: no ring found at values[hi] and above
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    std::vector<int> ring;
    if (RingAbove(bw, values[mid], start, kBudget, &ring)) {
      best = std::move(ring);
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return best;
}

// Local search by relocating one peer at a time, keeping a move while `better` says so.
template <typename Better>
void Relocate(const BandwidthMatrix& bw, std::vector<int>& order, Better better) {
  const size_t n = order.size();
  RingScore current = ScoreRing(bw, order);
  bool improved = true;
  while (improved) {
    improved = false;
    for (size_t from = 0; from < n && !improved; ++from) {
      for (size_t to = 0; to < n && !improved; ++to) {
        if (to == from) continue;
        std::vector<int> candidate = order;
        int peer = candidate[from];
        candidate.erase(candidate.begin() + static_cast<std::ptrdiff_t>(from));
        candidate.insert(candidate.begin() + static_cast<std::ptrdiff_t>(to), peer);
        RingScore s = ScoreRing(bw, candidate);
        if (better(s, current)) {
          order = std::move(candidate);
          current = s;
          improved = true;
        }
      }
    }
  }
}

// Large worlds: the best of the greedy rings and the bottleneck search, then two local
// searches: first raise the bottleneck
// (ties: lower cost), then lower the cost while the bottleneck stays within tolerance of
// what the first search reached. Both accept strict improvements only, so they end.
std::vector<int> SolveHeuristically(const BandwidthMatrix& bw, const std::vector<int>& current,
                                    double tolerance) {
  auto wider = [](const RingScore& a, const RingScore& b) {
    return a.bottleneck > b.bottleneck || (a.bottleneck == b.bottleneck && a.cost < b.cost);
  };
  std::vector<int> best = current;
  for (int start = 0; start < static_cast<int>(bw.size()); ++start) {
    std::vector<int> ring = GreedyRing(bw, start);
    if (wider(ScoreRing(bw, ring), ScoreRing(bw, best))) best = std::move(ring);
  }
  std::vector<int> searched = WidestRingFound(bw, current[0]);
  if (!searched.empty() && wider(ScoreRing(bw, searched), ScoreRing(bw, best))) {
    best = std::move(searched);
  }
  Relocate(bw, best, wider);
  const double floor = ScoreRing(bw, best).bottleneck * (1 - tolerance);
  Relocate(bw, best, [floor](const RingScore& a, const RingScore& b) {
    return a.bottleneck >= floor && a.cost < b.cost;
  });
  return best;
}

}  // namespace

RingScore ScoreRing(const BandwidthMatrix& bandwidth, const std::vector<int>& order) {
  RingScore score{kInfinity, 0};
  if (order.size() < 2) return score;
  for (size_t i = 0; i < order.size(); ++i) {
    double b = bandwidth[order[i]][order[(i + 1) % order.size()]];
    score.bottleneck = std::min(score.bottleneck, b);
    score.cost += b > 0 ? 1 / b : kInfinity;
  }
  return score;
}

std::vector<int> SolveRing(const BandwidthMatrix& bandwidth, const std::vector<int>& current,
                           const RingSolverOptions& options) {
  if (current.size() < 3) return current;  // one ring only (two peers: both directions)
  const int first = current[0];
  std::vector<int> best =
      current.size() <= kExactRingLimit && !options.force_heuristic
          ? SolveExactly(bandwidth, first, options.tolerance)
          : SolveHeuristically(bandwidth, current, options.tolerance);
  best = StartingWith(std::move(best), first);
  RingScore now = ScoreRing(bandwidth, current);
  RingScore next = ScoreRing(bandwidth, best);
  const double t = options.tolerance;
  bool clearly_better = next.bottleneck > now.bottleneck * (1 + t) ||
                        (next.bottleneck >= now.bottleneck * (1 - t) &&
                         next.cost < now.cost * (1 - t));
  return clearly_better ? best : current;
}

}  // namespace pccl::master
