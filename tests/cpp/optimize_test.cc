// RingOptimizer (ring_optimizer.h): optimize_topology() rounds, bandwidth measurements and
// the solved ring order. Whole runs through Membership first, then RingOptimizer alone on
// a hand-made Roster.
#include "pccl/master/ring_optimizer.h"

#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "membership_fixture.h"
#include "pccl/master/membership.h"
#include "pccl/master/roster.h"
#include "pccl/master/step.h"

namespace pccl::master {
namespace {

using proto::Kind;

// --- optimize_topology() -------------------------------------------------------------------

// Bandwidth between peer ids 1001.. by region: peers in the same region are fast, peers in
// different regions share a narrow link.
double RegionBandwidth(const std::vector<int>& region, uint64_t from, uint64_t to) {
  return region[from - 1001] == region[to - 1001] ? 1000.0 : 10.0;
}

class OptimizeTest : public MembershipTest {
 protected:
  // Every conn in `conns` asks to optimize; measurement rounds are answered with
  // `bandwidth(from id, to id)` until the master stops asking. Returns the last round's
  // actions (the answer) and counts the rounds and probes.
  template <typename Bandwidth>
  std::vector<Action> Optimize(const std::vector<ConnId>& conns, Bandwidth bandwidth) {
    std::vector<Action> actions;
    for (ConnId c : conns) {
      auto more = Do(event::OptimizeTopology{c, m_.epoch()});
      actions.insert(actions.end(), more.begin(), more.end());
    }
    rounds_ = probes_ = 0;
    while (true) {
      std::map<ConnId, proto::MeasureBandwidth> asks;
      for (ConnId c : conns) {
        auto payloads = Sent(actions, c, Kind::kMeasureBandwidth);
        if (payloads.empty()) continue;
        EXPECT_EQ(payloads.size(), 1u);
        EXPECT_TRUE(proto::Decode(payloads[0], &asks[c]).ok());
      }
      if (asks.empty()) return actions;
      EXPECT_EQ(asks.size(), conns.size()) << "every member takes part in every round";
      ++rounds_;
      actions.clear();
      for (const auto& [c, ask] : asks) {
        EXPECT_LE(ask.targets.size(), 1u) << "one probe per peer and round";
        event::BandwidthReport report;
        report.conn = c;
        report.report.round = ask.round;
        for (const proto::Member& t : ask.targets) {
          ++probes_;
          probed_.insert({1000 + c, t.peer_id});
          report.report.samples.push_back(
              {t.peer_id, static_cast<uint64_t>(bandwidth(1000 + c, t.peer_id))});
        }
        auto more = Do(report);
        actions.insert(actions.end(), more.begin(), more.end());
      }
    }
  }
  // How many links of the ring `ids` join different regions.
  static int Crossings(const std::vector<uint64_t>& ids, const std::vector<int>& region) {
    int n = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      n += region[ids[i] - 1001] != region[ids[(i + 1) % ids.size()] - 1001];
    }
    return n;
  }
  int rounds_ = 0;
  int probes_ = 0;
  std::set<std::pair<uint64_t, uint64_t>> probed_;
};

TEST_F(OptimizeTest, TwoRegionsEndUpCrossingTheNarrowLinkTwice) {
  const std::vector<int> region{0, 1, 0, 1, 0, 1};  // join order alternates regions
  Run(6);
  ASSERT_EQ(Crossings(m_.MemberIds(), region), 6);
  const uint64_t epoch = m_.epoch();
  auto bw = [&](uint64_t a, uint64_t b) { return RegionBandwidth(region, a, b); };
  auto answer = Optimize({1, 2, 3, 4, 5, 6}, bw);
  EXPECT_EQ(rounds_, 5);   // shifts 1..5 of a 6-peer ring
  EXPECT_EQ(probes_, 30);  // every ordered pair once
  EXPECT_EQ(probed_.size(), 30u);
  proto::Topology t = OneTopology(answer, 1);
  EXPECT_EQ(t.epoch, epoch + 1);
  EXPECT_EQ(Crossings(Ids(t), region), 2);
  EXPECT_EQ(Ids(t)[0], 1001u);  // the ring keeps its first member
  EXPECT_EQ(Recipients(answer, Kind::kTopology).size(), 6u);
  EXPECT_TRUE(m_.MeasuredBandwidth(1001, 1002).has_value());
  EXPECT_EQ(*m_.MeasuredBandwidth(1001, 1003), 1000.0);

  // Measured recently: the next call probes nothing and keeps the (already good) ring.
  for (ConnId c = 1; c <= 6; ++c) Ready(c, m_.epoch());
  answer = Optimize({1, 2, 3, 4, 5, 6}, bw);
  EXPECT_EQ(rounds_, 0);
  EXPECT_EQ(Recipients(answer, Kind::kTopologyUnchanged).size(), 6u);
  EXPECT_EQ(Recipients(answer, Kind::kTopology).size(), 0u);
}

TEST_F(OptimizeTest, OldMeasurementsAreTakenAgain) {
  const std::vector<int> region{0, 0, 0};
  Run(3);
  auto bw = [&](uint64_t a, uint64_t b) { return RegionBandwidth(region, a, b); };
  Optimize({1, 2, 3}, bw);
  EXPECT_EQ(probes_, 6);
  now_ += MembershipOptions{}.bandwidth_max_age + std::chrono::seconds(1);
  auto answer = Optimize({1, 2, 3}, bw);
  EXPECT_EQ(probes_, 6);
  EXPECT_EQ(Recipients(answer, Kind::kTopologyUnchanged).size(), 3u);  // equal links
}

TEST_F(OptimizeTest, OnlyPairsWithinAPeerGroupAreMeasured) {
  Run(4, {0, 1, 0, 1});
  Optimize({1, 2, 3, 4}, [](uint64_t, uint64_t) { return 100.0; });
  EXPECT_EQ(rounds_, 1);
  EXPECT_EQ(probed_, (std::set<std::pair<uint64_t, uint64_t>>{
                         {1001, 1003}, {1003, 1001}, {1002, 1004}, {1004, 1002}}));
}

TEST_F(OptimizeTest, WaitsForEveryMemberAndADepartureEndsTheRound) {
  Run(3);
  EXPECT_TRUE(Do(event::OptimizeTopology{1, m_.epoch()}).empty());
  EXPECT_TRUE(Do(event::OptimizeTopology{2, m_.epoch()}).empty());
  auto first_round = Do(event::OptimizeTopology{3, m_.epoch()});
  EXPECT_EQ(Recipients(first_round, Kind::kMeasureBandwidth).size(), 3u);
  // Peer 3 dies mid-round: the survivors' new epoch answers their optimize_topology().
  auto gone = Do(event::Disconnected{3});
  EXPECT_EQ(Recipients(gone, Kind::kTopology), (std::vector<ConnId>{1, 2}));
  EXPECT_FALSE(m_.MeasuredBandwidth(1003, 1001).has_value());
  // A report of the abandoned round is ignored, not refused.
  event::BandwidthReport late;
  late.conn = 1;
  late.report.samples.push_back({1002, 5});
  EXPECT_TRUE(Do(late).empty());
  // An optimize request of the epoch before is answered already (by that Topology).
  EXPECT_TRUE(Do(event::OptimizeTopology{1, m_.epoch() - 1}).empty());
}

TEST_F(OptimizeTest, ReportForAPeerNotAskedIsRefused) {
  Run(3);
  Do(event::OptimizeTopology{1, m_.epoch()});
  Do(event::OptimizeTopology{2, m_.epoch()});
  Do(event::OptimizeTopology{3, m_.epoch()});
  event::BandwidthReport wrong;
  wrong.conn = 1;
  wrong.report.samples.push_back({1001, 5});  // itself: never a target
  auto actions = Do(wrong);
  EXPECT_EQ(OneError(actions, 1).code, static_cast<uint32_t>(StatusCode::kFailedPrecondition));
  EXPECT_FALSE(Dropped(actions, 1));
}

TEST_F(OptimizeTest, AskingForAnotherEpochOrTwiceIsRefused) {
  Run(2);
  auto actions = Do(event::OptimizeTopology{1, m_.epoch() + 1});
  EXPECT_EQ(OneError(actions, 1).code, static_cast<uint32_t>(StatusCode::kFailedPrecondition));
  Do(event::OptimizeTopology{1, m_.epoch()});
  actions = Do(event::OptimizeTopology{1, m_.epoch()});
  EXPECT_EQ(OneError(actions, 1).code, static_cast<uint32_t>(StatusCode::kFailedPrecondition));
}

// --- RingOptimizer alone ---------------------------------------------------------------------

class RingOptimizerTest : public ::testing::Test {
 protected:
  // Every member of roster_ asks; returns what MaybeStart sent and returned.
  std::optional<std::vector<ConnId>> AllAsk(Step& step) {
    for (ConnId c : roster_.members()) {
      EXPECT_TRUE(optimizer_.OnRequest(roster_.at(c), roster_.epoch(), roster_, step));
    }
    return optimizer_.MaybeStart(roster_, step);
  }
  // Answers the measurement rounds that `asks` starts with `bandwidth(from id, to id)`;
  // returns the last report's answer, with its actions in `last`.
  template <typename Bandwidth>
  std::optional<std::vector<ConnId>> Measure(Step asks, Bandwidth bandwidth, Step& last) {
    std::optional<std::vector<ConnId>> order;
    while (!Recipients(asks.actions(), Kind::kMeasureBandwidth).empty()) {
      Step answers(now_);
      for (ConnId c : roster_.members()) {
        auto ask = OneMessage<proto::MeasureBandwidth>(asks.actions(), c, Kind::kMeasureBandwidth);
        proto::BandwidthReport report;
        report.round = ask.round;
        for (const proto::Member& t : ask.targets) {
          report.samples.push_back(
              {t.peer_id, static_cast<uint64_t>(bandwidth(roster_.at(c).peer_id, t.peer_id))});
        }
        order = optimizer_.OnBandwidthReport(roster_.at(c), report, roster_, answers);
      }
      asks = std::move(answers);
    }
    last = std::move(asks);
    return order;
  }

  TimePoint now_ = TimePoint() + std::chrono::hours(1);
  Roster roster_ = MakeRoster({0, 0, 0});
  RingOptimizer optimizer_;
};

TEST_F(RingOptimizerTest, MeasuresOnceEveryMemberAskedThenReturnsTheBetterOrder) {
  Step first(now_);
  EXPECT_TRUE(optimizer_.OnRequest(roster_.at(1), 1, roster_, first));
  EXPECT_FALSE(optimizer_.MaybeStart(roster_, first).has_value());
  EXPECT_TRUE(first.actions().empty());  // members 2 and 3 have not asked
  EXPECT_FALSE(optimizer_.measuring());

  Step asks(now_);
  EXPECT_TRUE(optimizer_.OnRequest(roster_.at(2), 1, roster_, asks));
  EXPECT_TRUE(optimizer_.OnRequest(roster_.at(3), 1, roster_, asks));
  EXPECT_FALSE(optimizer_.MaybeStart(roster_, asks).has_value());
  EXPECT_TRUE(optimizer_.measuring());
  EXPECT_EQ(Recipients(asks.actions(), Kind::kMeasureBandwidth), (std::vector<ConnId>{1, 2, 3}));
  // Links 1001 -> 1002 -> 1003 -> 1001 are slow, the other direction fast.
  auto bandwidth = [](uint64_t from, uint64_t to) {
    return to == (from - 1001 + 1) % 3 + 1001 ? 10 : 1000;
  };
  Step last(now_);
  std::optional<std::vector<ConnId>> order = Measure(std::move(asks), bandwidth, last);
  ASSERT_TRUE(order.has_value());
  EXPECT_EQ(*order, (std::vector<ConnId>{1, 3, 2}));
  EXPECT_TRUE(last.actions().empty());  // Membership starts the epoch that answers them
  EXPECT_FALSE(optimizer_.measuring());
  EXPECT_EQ(optimizer_.MeasuredBandwidth(1001, 1002).value_or(-1), 10.0);
  EXPECT_EQ(optimizer_.MeasuredBandwidth(1001, 1003).value_or(-1), 1000.0);
}

TEST_F(RingOptimizerTest, AnUnchangedRingIsAnsweredAndFreshMeasurementsAreNotTakenAgain) {
  Step asks(now_);
  EXPECT_FALSE(AllAsk(asks).has_value());
  Step last(now_);
  EXPECT_FALSE(Measure(std::move(asks), [](uint64_t, uint64_t) { return 100; }, last).has_value());
  EXPECT_EQ(Recipients(last.actions(), Kind::kTopologyUnchanged), (std::vector<ConnId>{1, 2, 3}));
  Step again(now_);
  EXPECT_FALSE(AllAsk(again).has_value());  // nothing to measure: answered at once
  EXPECT_TRUE(Recipients(again.actions(), Kind::kMeasureBandwidth).empty());
  EXPECT_EQ(Recipients(again.actions(), Kind::kTopologyUnchanged), (std::vector<ConnId>{1, 2, 3}));
}

TEST_F(RingOptimizerTest, AbandonIgnoresTheRoundsLaterReportsAndForgetPeerItsMeasurements) {
  Step asks(now_);
  AllAsk(asks);
  auto ask = OneMessage<proto::MeasureBandwidth>(asks.actions(), 1, Kind::kMeasureBandwidth);
  ASSERT_EQ(ask.targets.size(), 1u);
  proto::BandwidthReport report;
  report.samples.push_back({ask.targets[0].peer_id, 500});
  Step step(now_);
  EXPECT_FALSE(optimizer_.OnBandwidthReport(roster_.at(1), report, roster_, step).has_value());
  EXPECT_EQ(optimizer_.MeasuredBandwidth(1001, ask.targets[0].peer_id).value_or(-1), 500.0);
  optimizer_.Abandon();  // the epoch changed
  EXPECT_FALSE(optimizer_.measuring());
  EXPECT_FALSE(optimizer_.OnBandwidthReport(roster_.at(2), report, roster_, step).has_value());
  EXPECT_TRUE(step.actions().empty());  // ignored, not refused
  optimizer_.ForgetPeer(1001);
  EXPECT_FALSE(optimizer_.MeasuredBandwidth(1001, ask.targets[0].peer_id).has_value());
}

TEST_F(RingOptimizerTest, PendingPeersAndOtherEpochsAreNotRecorded) {
  roster_ = MakeRoster({0, 0}, {0});
  Step step(now_);
  EXPECT_FALSE(optimizer_.OnRequest(roster_.at(3), 1, roster_, step));  // pending
  EXPECT_EQ(OneError(step.actions(), 3).code,
            static_cast<uint32_t>(StatusCode::kFailedPrecondition));
  EXPECT_FALSE(optimizer_.OnRequest(roster_.at(1), 0, roster_, step));  // answered already
  EXPECT_TRUE(Sent(step.actions(), 1, Kind::kError).empty());
  EXPECT_FALSE(optimizer_.OnRequest(roster_.at(1), 2, roster_, step));  // from the future
  EXPECT_EQ(OneError(step.actions(), 1).code,
            static_cast<uint32_t>(StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace pccl::master
