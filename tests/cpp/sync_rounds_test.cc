// SyncRounds (sync_rounds.h): shared-state sync rounds per peer group, from SyncState to
// one SyncComplete per participant. Whole runs through Membership first, then SyncRounds
// alone on a hand-made Roster.
#include "pccl/master/sync_rounds.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "membership_fixture.h"
#include "pccl/master/membership.h"
#include "pccl/master/roster.h"
#include "pccl/master/step.h"

namespace pccl::master {
namespace {

using proto::Kind;

proto::SyncState State(uint64_t revision, uint64_t hash, std::string key = "w") {
  proto::SyncState s;
  s.revision = revision;
  s.entries.push_back(proto::StateEntry{std::move(key), 16, 10, hash, 0});
  return s;
}

TEST_F(MembershipTest, SyncPlansOnceEveryGroupMemberReportedAndCompletesWhenAllAreDone) {
  Run(3);
  EXPECT_TRUE(Do(event::SyncState{1, State(1, 5)}).empty());
  EXPECT_TRUE(Do(event::SyncState{2, State(1, 5)}).empty());
  auto plans = Do(event::SyncState{3, State(1, 6)});
  EXPECT_EQ(Recipients(plans, Kind::kSyncPlan), (std::vector<ConnId>{1, 2, 3}));
  proto::SyncPlan plan;
  ASSERT_TRUE(proto::Decode(Sent(plans, 3, Kind::kSyncPlan).at(0), &plan).ok());
  ASSERT_EQ(plan.fetches.size(), 2u);  // the one differing key, from both holders
  EXPECT_EQ(plan.fetches[0].hash, 5u);
  EXPECT_EQ(plan.fetches[1].hash, 5u);
  EXPECT_NE(plan.fetches[0].source_peer_id, plan.fetches[1].source_peer_id);
  EXPECT_EQ(plan.revision, 1u);
  EXPECT_TRUE(Do(event::SyncDone{1, {0, 1, 0, ""}}).empty());
  EXPECT_TRUE(Do(event::SyncDone{3, {0, 1, 0, ""}}).empty());
  auto done = Do(event::SyncDone{2, {0, 1, 0, ""}});
  for (ConnId c : {1, 2, 3}) EXPECT_EQ(Result(done, c).ok, 1);
  // The next sync may advance by one, not more.
  Do(event::SyncState{1, State(3, 5)});
  Do(event::SyncState{2, State(3, 5)});
  auto jump = Do(event::SyncState{3, State(3, 5)});
  EXPECT_TRUE(Recipients(jump, Kind::kSyncPlan).empty());
  proto::SyncResult r = Result(jump, 2);
  EXPECT_EQ(r.ok, 0);
  EXPECT_EQ(r.code, static_cast<uint32_t>(StatusCode::kInvalidArgument));
  EXPECT_NE(r.reason.find("revision"), std::string::npos);
}

TEST_F(MembershipTest, SyncFailsForEveryoneWhenAParticipantGivesUpBeforeThePlan) {
  Run(2);
  proto::SyncState first = State(1, 5);
  first.call = 7;
  EXPECT_TRUE(Do(event::SyncState{1, first}).empty());
  // Peer 1's call reached its deadline while peer 2 was late: it gives up.
  auto gave_up = Do(event::SyncDone{1, {7, 0, static_cast<uint32_t>(StatusCode::kDeadlineExceeded),
                                         "gave up: deadline"}});
  proto::SyncResult r = Result(gave_up, 1);
  EXPECT_EQ(r.ok, 0);
  EXPECT_EQ(r.call, 7u);  // the answer names the call it belongs to
  // The group's next round starts afresh instead of being refused as "in progress".
  first.call = 8;
  EXPECT_TRUE(Do(event::SyncState{2, State(1, 5)}).empty());
  auto plans = Do(event::SyncState{1, first});
  EXPECT_EQ(Recipients(plans, Kind::kSyncPlan), (std::vector<ConnId>{1, 2}));
  proto::SyncPlan plan;
  ASSERT_TRUE(proto::Decode(Sent(plans, 1, Kind::kSyncPlan).at(0), &plan).ok());
  EXPECT_EQ(plan.call, 8u);
}

TEST_F(MembershipTest, SyncDisagreementFailsEveryPeerNamingTheKey) {
  Run(2);
  Do(event::SyncState{1, State(0, 5, "a")});
  auto actions = Do(event::SyncState{2, State(0, 5, "b")});
  for (ConnId c : {1, 2}) {
    proto::SyncResult r = Result(actions, c);
    EXPECT_EQ(r.ok, 0);
    EXPECT_NE(r.reason.find("'a'"), std::string::npos) << r.reason;
  }
}

TEST_F(MembershipTest, SyncFailsWhenAParticipantFailsOrAMemberLeaves) {
  Run(3);
  for (ConnId c : {1, 2, 3}) Do(event::SyncState{c, State(0, c == 3 ? 6 : 5)});
  auto failed = Do(event::SyncDone{3, {0, 0, static_cast<uint32_t>(StatusCode::kAborted), "boom"}});
  for (ConnId c : {1, 2, 3}) {
    proto::SyncResult r = Result(failed, c);
    EXPECT_EQ(r.ok, 0);
    EXPECT_EQ(r.code, static_cast<uint32_t>(StatusCode::kAborted));
    EXPECT_NE(r.reason.find("boom"), std::string::npos);
  }
  EXPECT_TRUE(Do(event::SyncDone{1, {0, 1, 0, ""}}).empty());  // late report of the failed round
  // A source leaves after the plan: the survivors' round fails with Aborted.
  for (ConnId c : {1, 2, 3}) Do(event::SyncState{c, State(0, c == 3 ? 6 : 5)});
  auto left = Do(event::Disconnected{1});
  for (ConnId c : {2, 3}) {
    proto::SyncResult r = Result(left, c);
    EXPECT_EQ(r.ok, 0);
    EXPECT_EQ(r.code, static_cast<uint32_t>(StatusCode::kAborted));
  }
}

TEST_F(MembershipTest, SyncRoundsArePerPeerGroup) {
  Run(4, {0, 0, 1, 1});
  Do(event::SyncState{1, State(0, 5)});
  auto g1 = Do(event::SyncState{3, State(0, 7)});
  EXPECT_TRUE(g1.empty());
  auto g0 = Do(event::SyncState{2, State(0, 5)});
  EXPECT_EQ(Recipients(g0, Kind::kSyncPlan), (std::vector<ConnId>{1, 2}));
}

// --- SyncRounds alone ------------------------------------------------------------------------

class SyncRoundsTest : public ::testing::Test {
 protected:
  // Conns 1, 2 in group 0 and 3 in group 1; conn 4 pending.
  SyncRoundsTest() : roster_(MakeRoster({0, 0, 1}, {0})) {}

  std::vector<Action> Report(ConnId c, proto::SyncState state) {
    Step step(TimePoint{});
    syncs_.OnSyncState(roster_.at(c), state, roster_, step);
    return step.TakeActions();
  }
  std::vector<Action> Done(ConnId c, bool ok, uint64_t call = 0) {
    Step step(TimePoint{});
    syncs_.OnSyncDone(roster_.at(c), proto::SyncResult{call, ok ? uint8_t{1} : uint8_t{0}, 0, ""},
                      roster_, step);
    return step.TakeActions();
  }

  Roster roster_;
  SyncRounds syncs_;
};

TEST_F(SyncRoundsTest, PlansOnceEveryGroupMemberReportedAndRecordsTheRevision) {
  EXPECT_TRUE(Report(1, State(1, 5)).empty());
  EXPECT_TRUE(syncs_.in_progress(0));
  EXPECT_FALSE(syncs_.in_progress(1));
  auto plans = Report(2, State(1, 5));
  EXPECT_EQ(Recipients(plans, Kind::kSyncPlan), (std::vector<ConnId>{1, 2}));
  EXPECT_FALSE(syncs_.revision(0).has_value());
  EXPECT_TRUE(Done(1, true).empty());
  auto done = Done(2, true);
  EXPECT_EQ(Recipients(done, Kind::kSyncComplete), (std::vector<ConnId>{1, 2}));
  EXPECT_FALSE(syncs_.in_progress(0));
  EXPECT_EQ(syncs_.revision(0).value_or(99), 1u);
}

TEST_F(SyncRoundsTest, AMemberLeavingFailsItsGroupsRoundOnly) {
  Report(1, State(0, 5));
  Report(3, State(0, 5));  // group 1's round: planned at once, one member
  std::optional<Peer> gone = roster_.Remove(2);
  ASSERT_TRUE(gone.has_value());
  Step step(TimePoint{});
  syncs_.OnMemberLeft(*gone, "peer 1002 (10.0.0.2) left", roster_, step);
  EXPECT_EQ(Recipients(step.actions(), Kind::kSyncComplete), std::vector<ConnId>{1});
  proto::SyncResult r = Result(step.actions(), 1);
  EXPECT_EQ(r.ok, 0);
  EXPECT_EQ(r.code, static_cast<uint32_t>(StatusCode::kAborted));
  EXPECT_EQ(r.reason, "shared-state sync failed: peer 1002 (10.0.0.2) left");
  EXPECT_FALSE(syncs_.in_progress(0));
  EXPECT_TRUE(syncs_.in_progress(1));
}

TEST_F(SyncRoundsTest, PendingPeersHaveNoStateAndStrangersReportsAreIgnored) {
  auto refused = Report(4, State(0, 5));
  EXPECT_EQ(OneError(refused, 4).code, static_cast<uint32_t>(StatusCode::kFailedPrecondition));
  EXPECT_FALSE(syncs_.in_progress(0));
  Report(1, State(0, 5));
  EXPECT_TRUE(Done(2, false).empty());     // not a participant of this round
  EXPECT_TRUE(Done(1, true, 9).empty());   // another call's report
  EXPECT_TRUE(syncs_.in_progress(0));
}

}  // namespace
}  // namespace pccl::master
