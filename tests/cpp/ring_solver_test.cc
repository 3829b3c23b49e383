// The ring solver on matrices whose best ring is known.
#include "pccl/master/ring_solver.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <set>

namespace pccl::master {
namespace {

std::vector<int> Identity(int n) {
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  return order;
}

bool IsPermutation(const std::vector<int>& order, int n) {
  std::set<int> seen(order.begin(), order.end());
  return static_cast<int>(order.size()) == n && static_cast<int>(seen.size()) == n &&
         *seen.begin() == 0 && *seen.rbegin() == n - 1;
}

// Peers alternate between two regions (0, 1, 0, 1, ...): fast inside a region, slow across.
BandwidthMatrix TwoRegions(int n, double fast, double slow) {
  BandwidthMatrix bw(n, std::vector<double>(n, 0));
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      if (i != j) bw[i][j] = (i % 2 == j % 2) ? fast : slow;
    }
  }
  return bw;
}

int Crossings(const std::vector<int>& order) {
  int n = 0;
  for (size_t i = 0; i < order.size(); ++i) n += order[i] % 2 != order[(i + 1) % order.size()] % 2;
  return n;
}

TEST(RingSolverTest, ScoreIsTheSlowestLinkAndTheSumOfInverses) {
  BandwidthMatrix bw{{0, 4, 1}, {1, 0, 2}, {8, 1, 0}};
  RingScore s = ScoreRing(bw, {0, 1, 2});  // 0->1 (4), 1->2 (2), 2->0 (8)
  EXPECT_EQ(s.bottleneck, 2);
  EXPECT_DOUBLE_EQ(s.cost, 1.0 / 4 + 1.0 / 2 + 1.0 / 8);
  EXPECT_TRUE(std::isinf(ScoreRing(BandwidthMatrix{{0, 0}, {1, 0}}, {0, 1}).cost));
}

TEST(RingSolverTest, TwoRegionsCrossTheNarrowLinkOnlyTwice) {
  for (bool heuristic : {false, true}) {
    for (int n : {4, 6, 8, 10}) {
      BandwidthMatrix bw = TwoRegions(n, 1000, 10);
      RingSolverOptions options;
      options.force_heuristic = heuristic;
      std::vector<int> order = SolveRing(bw, Identity(n), options);
      ASSERT_TRUE(IsPermutation(order, n));
      EXPECT_EQ(order[0], 0);
      EXPECT_EQ(Crossings(order), 2) << "n=" << n << " heuristic=" << heuristic;
    }
  }
}

TEST(RingSolverTest, DirectionMattersOnAsymmetricLinks) {
  // 0->1->2->3->0 is fast; every other directed link, the reverse ring included, is slow.
  const int n = 4;
  BandwidthMatrix bw(n, std::vector<double>(n, 1));
  for (int i = 0; i < n; ++i) bw[i][i] = 0;
  for (int i = 0; i < n; ++i) bw[i][(i + 1) % n] = 100;
  std::vector<int> reverse{0, 3, 2, 1};
  EXPECT_EQ(SolveRing(bw, reverse), (std::vector<int>{0, 1, 2, 3}));
}

TEST(RingSolverTest, FindsAPlantedWideRing) {
  // A hidden ring of wide links (80-100) among narrower random ones (1-60): the best
  // bottleneck is the planted ring's, found exactly for small worlds and by the heuristic
  // for a large one.
  std::mt19937 rng(7);
  for (int n : {7, 9, 24}) {
    std::vector<int> planted = Identity(n);
    std::shuffle(planted.begin() + 1, planted.end(), rng);
    BandwidthMatrix bw(n, std::vector<double>(n, 0));
    std::uniform_real_distribution<double> narrow(1, 60);
    std::uniform_real_distribution<double> wide(80, 100);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        if (i != j) bw[i][j] = narrow(rng);
      }
    }
    for (int i = 0; i < n; ++i) bw[planted[i]][planted[(i + 1) % n]] = wide(rng);
    std::vector<int> order = SolveRing(bw, Identity(n));
    ASSERT_TRUE(IsPermutation(order, n));
    EXPECT_GE(ScoreRing(bw, order).bottleneck, 0.9 * ScoreRing(bw, planted).bottleneck)
        << "n=" << n;
  }
}

TEST(RingSolverTest, HeuristicFindsTheExactBottleneckOnSmallRandomWorlds) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> any(1, 100);
  for (int trial = 0; trial < 20; ++trial) {
    const int n = 5 + trial % 4;
    BandwidthMatrix bw(n, std::vector<double>(n, 0));
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        if (i != j) bw[i][j] = any(rng);
      }
    }
    RingSolverOptions exact;
    exact.tolerance = 0;
    RingSolverOptions heuristic = exact;
    heuristic.force_heuristic = true;
    double best = ScoreRing(bw, SolveRing(bw, Identity(n), exact)).bottleneck;
    double found = ScoreRing(bw, SolveRing(bw, Identity(n), heuristic)).bottleneck;
    EXPECT_EQ(found, best) << "trial " << trial;
  }
}

TEST(RingSolverTest, KeepsTheCurrentRingUnlessClearlyBetter) {
  BandwidthMatrix bw = TwoRegions(4, 1000, 10);
  EXPECT_EQ(SolveRing(bw, {0, 2, 1, 3}), (std::vector<int>{0, 2, 1, 3}));  // already 2 crossings
  BandwidthMatrix equal(5, std::vector<double>(5, 50));
  EXPECT_EQ(SolveRing(equal, {0, 3, 1, 4, 2}), (std::vector<int>{0, 3, 1, 4, 2}));
  // A dead link (0) in the current ring is always replaced.
  BandwidthMatrix dead = equal;
  dead[3][1] = 0;
  std::vector<int> order = SolveRing(dead, {0, 3, 1, 4, 2});
  EXPECT_GT(ScoreRing(dead, order).bottleneck, 0);
}

TEST(RingSolverTest, TinyWorldsAreLeftAlone) {
  EXPECT_EQ(SolveRing({{0}}, {0}), std::vector<int>{0});
  EXPECT_EQ(SolveRing({{0, 1}, {5, 0}}, {1, 0}), (std::vector<int>{1, 0}));
}

}  // namespace
}  // namespace pccl::master
