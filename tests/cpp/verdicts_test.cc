// Verdicts (verdicts.h): one verdict per collective for its whole peer group, stored for
// late reporters, failed by departures and ring changes. Whole runs through Membership
// first, then Verdicts alone on a hand-made Roster.
#include "pccl/master/verdicts.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "membership_fixture.h"
#include "pccl/master/membership.h"
#include "pccl/master/roster.h"
#include "pccl/master/step.h"

namespace pccl::master {
namespace {

using proto::Kind;

TEST_F(MembershipTest, AllOkVerdictGoesToTheGroupOnly) {
  Run(3, {0, 0, 1});
  proto::OpKey key{m_.epoch(), 0, 9, 0};
  EXPECT_TRUE(Report(1, key, true).empty());
  auto actions = Report(2, key, true);
  EXPECT_EQ(Recipients(actions, Kind::kVerdict), (std::vector<ConnId>{1, 2}));
  proto::Verdict v = OneVerdict(actions, 1);
  EXPECT_EQ(v.ok, 1);
  EXPECT_EQ(v.key, key);
}

TEST_F(MembershipTest, FailedReportFailsAtOnce) {
  Run(3);
  proto::OpKey key{m_.epoch(), 0, 1, 4};
  auto actions = Report(2, key, false, 7, "connection reset");
  EXPECT_EQ(Recipients(actions, Kind::kVerdict), (std::vector<ConnId>{1, 2, 3}));
  proto::Verdict v = OneVerdict(actions, 3);
  EXPECT_EQ(v.ok, 0);
  EXPECT_NE(v.reason.find("peer 1002 (10.0.0.2)"), std::string::npos) << v.reason;
  EXPECT_NE(v.reason.find("connection reset"), std::string::npos) << v.reason;
}

TEST_F(MembershipTest, ATimedOutReportNamesTheMembersThatHaveNotReported) {
  Run(3);
  proto::OpKey key{m_.epoch(), 0, 1, 4};
  Report(1, key, true, 7);
  auto actions = Report(2, key, false, 7, "no data from the previous peer",
                        static_cast<uint32_t>(StatusCode::kDeadlineExceeded));
  proto::Verdict v = OneVerdict(actions, 1);
  EXPECT_EQ(v.ok, 0);
  EXPECT_NE(v.reason.find("(not reported by peer 1003 (10.0.0.3))"), std::string::npos)
      << v.reason;
  // Any other failure says nothing of the others (they are still running it).
  proto::OpKey other{m_.epoch(), 0, 1, 5};
  v = OneVerdict(Report(2, other, false, 7, "connection reset"), 1);
  EXPECT_EQ(v.reason.find("not reported by"), std::string::npos) << v.reason;
}

TEST_F(MembershipTest, AFailureReportCannotMakeTheOthersThinkTheyLostTheRun) {
  // A member's report may fail a collective, not make the others raise KickedError,
  // MasterUnavailableError or AuthenticationError (which they would not retry).
  Run(3);
  const std::vector<std::pair<StatusCode, StatusCode>> cases = {
      {StatusCode::kKicked, StatusCode::kAborted},
      {StatusCode::kUnavailable, StatusCode::kAborted},
      {StatusCode::kUnauthenticated, StatusCode::kAborted},
      {StatusCode::kInternal, StatusCode::kAborted},
      {static_cast<StatusCode>(99), StatusCode::kAborted},
      {StatusCode::kDeadlineExceeded, StatusCode::kDeadlineExceeded},
      {StatusCode::kDataLoss, StatusCode::kDataLoss},
  };
  uint64_t seq = 0;
  for (const auto& [reported, raised] : cases) {
    proto::OpKey key{m_.epoch(), 0, 1, seq++};
    auto actions = Report(2, key, false, 7, "evil", static_cast<uint32_t>(reported));
    EXPECT_EQ(OneVerdict(actions, 1).code, static_cast<uint32_t>(raised))
        << StatusCodeName(reported);
  }
}

TEST_F(MembershipTest, AMemberThatReportsTooManyCollectivesAloneIsDropped) {
  Run(2);
  const size_t limit = MembershipOptions{}.max_open_ops_per_peer;
  for (uint64_t seq = 0; seq < limit; ++seq) {
    ASSERT_TRUE(Report(1, proto::OpKey{m_.epoch(), 0, 99, seq}, true).empty()) << seq;
  }
  // The other member's reports decide them one by one; only undecided ones count.
  Report(2, proto::OpKey{m_.epoch(), 0, 99, 0}, true);
  EXPECT_FALSE(Dropped(Report(1, proto::OpKey{m_.epoch(), 0, 99, limit}, true), 1));
  auto actions = Report(1, proto::OpKey{m_.epoch(), 0, 99, limit + 1}, true);
  ASSERT_TRUE(Dropped(actions, 1));
  EXPECT_NE(OneError(actions, 1).message.find("no other member has reported"), std::string::npos);
  EXPECT_EQ(Ids(OneTopology(actions, 2)), std::vector<uint64_t>{1002});  // the run goes on
}

TEST_F(MembershipTest, DescriptorMismatchFailsNamingBothPeers) {
  Run(3);
  proto::OpKey key{m_.epoch(), 0, 1, 0};
  Report(1, key, true, 0x11);
  auto actions = Report(3, key, true, 0x22);
  EXPECT_EQ(Recipients(actions, Kind::kVerdict), (std::vector<ConnId>{1, 2, 3}));
  proto::Verdict v = OneVerdict(actions, 2);
  EXPECT_EQ(v.ok, 0);
  EXPECT_NE(v.reason.find("peer 1001"), std::string::npos) << v.reason;
  EXPECT_NE(v.reason.find("peer 1003"), std::string::npos) << v.reason;
  EXPECT_NE(v.reason.find("mismatch"), std::string::npos) << v.reason;
}

TEST_F(MembershipTest, StaleEpochIsAnsweredToTheSenderOnly) {
  Run(2);
  proto::OpKey key{m_.epoch() - 1, 0, 1, 0};
  auto actions = Report(1, key, true);
  EXPECT_EQ(Recipients(actions, Kind::kVerdict), std::vector<ConnId>{1});
  proto::Verdict v = OneVerdict(actions, 1);
  EXPECT_EQ(v.ok, 0);
  EXPECT_NE(v.reason.find("the ring changed"), std::string::npos) << v.reason;
  EXPECT_NE(v.reason.find("pending peers were admitted"), std::string::npos) << v.reason;
}

TEST_F(MembershipTest, AChangeInOneGroupLeavesAnotherGroupsRingAndCollectivesAlone) {
  Run(4, {0, 1, 0, 1});
  const uint64_t before = m_.epoch();
  proto::OpKey group1{before, 1, 9, 0};
  EXPECT_TRUE(Report(2, group1, true).empty());  // group 1's op: one of two reported
  // Peer 3 (group 0) leaves: a new epoch, group 0's ring changes, group 1's does not.
  auto actions = Do(event::Disconnected{3});
  proto::Topology t = OneTopology(actions, 2);
  EXPECT_EQ(t.epoch, before + 1);
  for (const auto& m : t.members) {
    EXPECT_EQ(m.ring_epoch, m.peer_group == 0 ? before + 1 : before) << m.peer_id;
  }
  EXPECT_TRUE(Sent(actions, 2, Kind::kVerdict).empty()) << "group 1's op was not failed";
  auto done = Report(4, group1, true);
  EXPECT_EQ(OneVerdict(done, 2).ok, 1);
  EXPECT_EQ(OneVerdict(done, 4).ok, 1);
  // A joiner into group 1 changes group 1's ring and leaves group 0's.
  for (ConnId c : {1, 2, 4}) Ready(c, m_.epoch());
  Hello(5, 1);
  Vote(1);
  Vote(2);
  actions = Vote(4);
  t = OneTopology(actions, 1);
  for (const auto& m : t.members) {
    EXPECT_EQ(m.ring_epoch, m.peer_group == 1 ? t.epoch : before + 1) << m.peer_id;
  }
}

TEST_F(MembershipTest, InterruptedCollectivesNameWhoLeft) {
  Run(3);
  proto::OpKey key{m_.epoch(), 0, 1, 0};
  Report(1, key, true);
  auto actions = Do(event::Disconnected{3});
  proto::Verdict v = OneVerdict(actions, 1);
  EXPECT_EQ(v.ok, 0);
  EXPECT_NE(v.reason.find("peer 1003"), std::string::npos) << v.reason;
  EXPECT_NE(v.reason.find("left"), std::string::npos) << v.reason;
  // A report of that op arriving after the epoch changed says why too.
  v = OneVerdict(Report(2, key, true), 2);
  EXPECT_NE(v.reason.find("peer 1003 (10.0.0.3) left"), std::string::npos) << v.reason;
}

TEST_F(MembershipTest, LateOpDoneGetsTheStoredVerdict) {
  Run(2);
  proto::OpKey key{m_.epoch(), 0, 3, 1};
  Report(1, key, false, 7, "boom");
  auto late = Report(2, key, true);
  EXPECT_EQ(Recipients(late, Kind::kVerdict), std::vector<ConnId>{2});
  proto::Verdict v = OneVerdict(late, 2);
  EXPECT_EQ(v.ok, 0);
  EXPECT_NE(v.reason.find("boom"), std::string::npos);
}

TEST_F(MembershipTest, DuplicateReportIsRefused) {
  Run(2);
  proto::OpKey key{m_.epoch(), 0, 3, 1};
  Report(1, key, true);
  auto again = Report(1, key, true);
  EXPECT_EQ(OneError(again, 1).code, static_cast<uint32_t>(StatusCode::kFailedPrecondition));
}

TEST_F(MembershipTest, ReportForAnotherGroupIsRefused) {
  Run(2, {0, 1});
  auto actions = Report(1, proto::OpKey{m_.epoch(), 1, 0, 0}, true);
  EXPECT_EQ(OneError(actions, 1).code, static_cast<uint32_t>(StatusCode::kFailedPrecondition));
  EXPECT_FALSE(Dropped(actions, 1));
}

TEST_F(MembershipTest, MemberDisconnectFailsUndecidedOpsAndStartsNewEpoch) {
  Run(3, {0, 0, 1});
  uint64_t epoch = m_.epoch();
  proto::OpKey key{epoch, 0, 1, 0};
  Report(1, key, true);
  auto actions = Do(event::Disconnected{2});
  // Verdict to the rest of the group first, then the new topology.
  EXPECT_EQ(Recipients(actions, Kind::kVerdict), std::vector<ConnId>{1});
  proto::Verdict v = OneVerdict(actions, 1);
  EXPECT_EQ(v.ok, 0);
  EXPECT_NE(v.reason.find("peer 1002 (10.0.0.2) left"), std::string::npos) << v.reason;
  EXPECT_EQ(Recipients(actions, Kind::kTopology), (std::vector<ConnId>{1, 3}));
  EXPECT_EQ(OneTopology(actions, 3).epoch, epoch + 1);
  EXPECT_EQ(m_.MemberIds(), (std::vector<uint64_t>{1001, 1003}));
}

TEST_F(MembershipTest, PeerGroupsAreIndependent) {
  Run(4, {0, 1, 0, 1});
  uint64_t e = m_.epoch();
  proto::OpKey g0{e, 0, 5, 0};
  proto::OpKey g1{e, 1, 5, 0};
  Report(2, g1, true, 0x1);
  auto fail = Report(4, g1, false, 0x1, "oom");
  EXPECT_EQ(Recipients(fail, Kind::kVerdict), (std::vector<ConnId>{2, 4}));
  Report(1, g0, true, 0x2);  // a different hash than group 1's: not compared
  auto ok = Report(3, g0, true, 0x2);
  EXPECT_EQ(Recipients(ok, Kind::kVerdict), (std::vector<ConnId>{1, 3}));
  EXPECT_EQ(OneVerdict(ok, 1).ok, 1);
}

TEST_F(MembershipTest, DecidedVerdictsAreBounded) {
  MembershipOptions o = Options();
  o.max_decided_ops = 2;
  Membership m(o, CountingIds());
  m.Handle(MakeHello(1, 40001, "h"), now_);
  m.Handle(event::LinksReady{1, 1}, now_);
  for (uint64_t seq = 0; seq < 3; ++seq) {
    event::OpDone e;
    e.conn = 1;
    e.op.key = proto::OpKey{1, 0, 0, seq};
    e.op.ok = 1;
    auto a = m.Handle(e, now_);
    ASSERT_EQ(Recipients(a, Kind::kVerdict), std::vector<ConnId>{1});
  }
  // seq 0 was evicted: a new report of it is a new (single-member, so decided) op.
  event::OpDone again;
  again.conn = 1;
  again.op.key = proto::OpKey{1, 0, 0, 2};
  again.op.ok = 1;
  EXPECT_EQ(Recipients(m.Handle(again, now_), Kind::kVerdict), std::vector<ConnId>{1});
}

// --- Verdicts alone --------------------------------------------------------------------------

class VerdictsTest : public ::testing::Test {
 protected:
  // Conns 1, 2 in group 0 and 3 in group 1, epoch 1; conn 4 pending.
  VerdictsTest() : roster_(MakeRoster({0, 0, 1}, {0})), step_(TimePoint{}) {}

  bool Report(ConnId c, proto::OpKey key, bool ok = true) {
    proto::OpDone op;
    op.key = key;
    op.ok = ok ? 1 : 0;
    op.descriptor_hash = 7;
    return verdicts_.OnOpDone(roster_.at(c), op, roster_, step_);
  }

  Roster roster_;
  Verdicts verdicts_;
  Step step_;
};

TEST_F(VerdictsTest, OnOpDoneSaysWhenItDecided) {
  const proto::OpKey key{1, 0, 5, 0};
  EXPECT_FALSE(Report(1, key));
  EXPECT_EQ(verdicts_.open_ops(), 1u);
  EXPECT_TRUE(Report(2, key));
  EXPECT_EQ(Recipients(step_.actions(), Kind::kVerdict), (std::vector<ConnId>{1, 2}));
  EXPECT_EQ(verdicts_.open_ops(), 0u);
  EXPECT_EQ(verdicts_.decided_ops(), 1u);
  EXPECT_FALSE(Report(1, key));  // answered from the store, nothing new decided
  EXPECT_TRUE(Report(3, proto::OpKey{1, 1, 5, 0}, false));  // a failure decides at once
}

TEST_F(VerdictsTest, DecidedCoversEverySeqBelowTheCount) {
  Report(3, proto::OpKey{1, 1, 5, 1});  // out of order: seq 1 before seq 0
  EXPECT_FALSE(verdicts_.Decided(1, 5, 1));
  EXPECT_FALSE(verdicts_.Decided(1, 5, 2));
  Report(3, proto::OpKey{1, 1, 5, 0});
  EXPECT_TRUE(verdicts_.Decided(1, 5, 2));
  EXPECT_FALSE(verdicts_.Decided(1, 5, 3));
  EXPECT_FALSE(verdicts_.Decided(1, 6, 1));  // another tag
  EXPECT_FALSE(verdicts_.Decided(0, 5, 1));  // another group
}

TEST_F(VerdictsTest, PendingPeersTakePartInNoCollective) {
  EXPECT_FALSE(Report(4, proto::OpKey{1, 0, 5, 0}));
  EXPECT_EQ(OneError(step_.actions(), 4).code,
            static_cast<uint32_t>(StatusCode::kFailedPrecondition));
  EXPECT_EQ(verdicts_.open_ops(), 0u);
}

TEST_F(VerdictsTest, FailGroupFailsThatGroupsOpenCollectivesForTheMembersLeft) {
  Report(1, proto::OpKey{1, 0, 5, 0});
  Report(3, proto::OpKey{1, 1, 5, 0});  // decided: group 1 has one member
  Report(1, proto::OpKey{1, 0, 5, 1});
  ASSERT_TRUE(roster_.Remove(2).has_value());  // conn 2 left
  Step step(TimePoint{});
  verdicts_.FailGroup(0, "peer 1002 (10.0.0.2) left", roster_, step);
  EXPECT_EQ(Recipients(step.actions(), Kind::kVerdict), (std::vector<ConnId>{1, 1}));
  proto::Verdict v;
  ASSERT_TRUE(proto::Decode(Sent(step.actions(), 1, Kind::kVerdict).at(0), &v).ok());
  EXPECT_EQ(v.ok, 0);
  EXPECT_EQ(v.code, static_cast<uint32_t>(StatusCode::kAborted));
  EXPECT_EQ(v.reason, "peer 1002 (10.0.0.2) left");
  EXPECT_EQ(verdicts_.open_ops(), 0u);
}

TEST_F(VerdictsTest, OnRingsChangedFailsAndForgetsTheChangedGroupsOnly) {
  Report(1, proto::OpKey{1, 0, 5, 0});
  Report(2, proto::OpKey{1, 0, 5, 0});  // group 0: seq 0 decided
  Report(3, proto::OpKey{1, 1, 5, 0});  // group 1: seq 0 decided
  Report(1, proto::OpKey{1, 0, 5, 1});  // group 0: seq 1 open
  Step step(TimePoint{});
  verdicts_.OnRingsChanged({0}, 2, "pending peers were admitted", roster_, step);
  const proto::OpKey open{1, 0, 5, 1};
  EXPECT_EQ(OneVerdict(step.actions(), 2).reason,
            "the ring changed (epoch 2: pending peers were admitted) before every peer of " +
                open.ToString() + " reported; retry");
  EXPECT_TRUE(Sent(step.actions(), 3, Kind::kVerdict).empty());
  EXPECT_FALSE(verdicts_.Decided(0, 5, 1));  // forgotten with the old ring
  EXPECT_TRUE(verdicts_.Decided(1, 5, 1));   // group 1 carries on
  EXPECT_EQ(verdicts_.decided_ops(), 1u);
}

// --- send/recv: decided by its receiver -------------------------------------------------------

class PairVerdictsTest : public VerdictsTest {
 protected:
  // Conns 1, 2, 3 (peer ids 1001..1003) in group 0, epoch 1; conn 4 pending.
  PairVerdictsTest() { roster_ = MakeRoster({0, 0, 0}, {0}); }

  proto::PairQuery OneQuery(ConnId conn) {
    return OneMessage<proto::PairQuery>(step_.actions(), conn, Kind::kPairQuery);
  }
};

// A transfer from peer 1001 (conn 1) to peer 1003 (conn 3) with tag 5, the first one.
const proto::OpKey kTransfer{1, 0, 5, 0, 1001, 1003};

TEST_F(PairVerdictsTest, TheReceiversOkDecidesItAndGoesToNobody) {
  EXPECT_TRUE(Report(3, kTransfer));
  // Both ends are done already (the sender had the receiver's ack): nothing to send.
  EXPECT_TRUE(step_.actions().empty());
  EXPECT_EQ(verdicts_.open_ops(), 0u);
  EXPECT_EQ(verdicts_.decided_ops(), 1u);
  // Not a collective of the group: no admission vote waits for it.
  EXPECT_FALSE(verdicts_.Decided(0, 5, 1));
  // A sender that lost the ack and reports its failure later gets the success.
  EXPECT_FALSE(Report(1, kTransfer, false));
  EXPECT_EQ(OneVerdict(step_.actions(), 1).ok, 1);
  EXPECT_TRUE(Sent(step_.actions(), 3, Kind::kVerdict).empty());
}

TEST_F(PairVerdictsTest, ASendersFailureAsksTheReceiverWhichDecides) {
  for (bool received : {true, false}) {
    SCOPED_TRACE(received ? "the receiver had committed" : "the receiver had not");
    const proto::OpKey key{1, 0, 5, received ? 2u : 4u, 1001, 1003};
    proto::OpDone failed;
    failed.key = key;
    failed.code = static_cast<uint32_t>(StatusCode::kDeadlineExceeded);
    failed.reason = "no ack in time";
    EXPECT_FALSE(verdicts_.OnOpDone(roster_.at(1), failed, roster_, step_));
    EXPECT_TRUE(Recipients(step_.actions(), Kind::kVerdict).empty());  // not decided yet
    const proto::PairQuery query = OneQuery(3);
    EXPECT_EQ(query.key, key);
    EXPECT_EQ(query.code, static_cast<uint32_t>(StatusCode::kDeadlineExceeded));
    EXPECT_NE(query.reason.find("no ack in time"), std::string::npos) << query.reason;
    EXPECT_EQ(verdicts_.open_ops(), 1u);
    step_ = Step(TimePoint{});
    // The receiver's answer decides, whatever the sender saw.
    EXPECT_TRUE(Report(3, key, received));
    if (received) {
      EXPECT_EQ(Recipients(step_.actions(), Kind::kVerdict), (std::vector<ConnId>{1}));
      EXPECT_EQ(OneVerdict(step_.actions(), 1).ok, 1);
    } else {
      EXPECT_EQ(Recipients(step_.actions(), Kind::kVerdict), (std::vector<ConnId>{1, 3}));
      EXPECT_EQ(OneVerdict(step_.actions(), 1).ok, 0);
    }
    EXPECT_EQ(verdicts_.open_ops(), 0u);
    step_ = Step(TimePoint{});
  }
}

TEST_F(PairVerdictsTest, AFailedReceiverFailsBothAtOnce) {
  EXPECT_TRUE(Report(3, kTransfer, false));
  EXPECT_EQ(Recipients(step_.actions(), Kind::kVerdict), (std::vector<ConnId>{1, 3}));
  EXPECT_EQ(OneVerdict(step_.actions(), 1).ok, 0);
}

TEST_F(PairVerdictsTest, ASenderCannotDecideAndNeitherCanAThirdPeer) {
  EXPECT_FALSE(Report(1, kTransfer));  // a sender reports only a failure
  EXPECT_EQ(OneError(step_.actions(), 1).code,
            static_cast<uint32_t>(StatusCode::kFailedPrecondition));
  EXPECT_FALSE(Report(2, kTransfer));  // neither end
  EXPECT_EQ(OneError(step_.actions(), 2).code,
            static_cast<uint32_t>(StatusCode::kFailedPrecondition));
  EXPECT_TRUE(Recipients(step_.actions(), Kind::kVerdict).empty());
  EXPECT_EQ(verdicts_.open_ops(), 0u);
  EXPECT_EQ(verdicts_.decided_ops(), 0u);
}

TEST_F(PairVerdictsTest, AReceiverThatIsNoMemberFailsItForItsSender) {
  for (uint64_t other : {uint64_t{5555}, uint64_t{1004}}) {  // a stranger; a pending peer
    const proto::OpKey key{1, 0, 5, 0, 1001, other};
    EXPECT_FALSE(Report(1, key, false));
    proto::Verdict v = OneVerdict(step_.actions(), 1);
    EXPECT_EQ(v.code, static_cast<uint32_t>(StatusCode::kInvalidArgument)) << other;
    EXPECT_NE(v.reason.find("is not a member of group 0"), std::string::npos) << v.reason;
    EXPECT_TRUE(Sent(step_.actions(), 1, Kind::kPairQuery).empty());
    step_ = Step(TimePoint{});
  }
  EXPECT_EQ(verdicts_.open_ops(), 0u);
}

TEST_F(PairVerdictsTest, OnlyTheReceiverLeavingFailsIt) {
  Report(1, kTransfer, false);
  const proto::OpKey back{1, 0, 5, 1, 1003, 1001};  // 1003 sends to 1001, which leaves
  Report(3, back, false);
  ASSERT_TRUE(roster_.Remove(1).has_value());
  Step step(TimePoint{});
  verdicts_.FailGroup(0, "peer 1001 (10.0.0.1) left", roster_, step);
  EXPECT_EQ(Recipients(step.actions(), Kind::kVerdict), (std::vector<ConnId>{3}));
  EXPECT_EQ(verdicts_.open_ops(), 1u);  // kTransfer: its receiver still decides
  ASSERT_TRUE(roster_.Remove(3).has_value());
  verdicts_.FailGroup(0, "peer 1003 (10.0.0.3) left", roster_, step);
  EXPECT_EQ(verdicts_.open_ops(), 0u);
}

TEST_F(PairVerdictsTest, ARingChangeLeavesTransfersToTheirReceivers) {
  const proto::OpKey done{1, 0, 5, 2, 1001, 1003};
  EXPECT_TRUE(Report(3, done));    // decided: ok
  Report(1, kTransfer, false);     // open: its receiver was asked
  Step step(TimePoint{});
  verdicts_.OnRingsChanged({0}, 2, "pending peers were admitted", roster_, step);
  EXPECT_TRUE(Recipients(step.actions(), Kind::kVerdict).empty());
  roster_.Advance({1, 2, 3, 4}, roster_.ChangedGroups({1, 2, 3, 4}), "admitted");
  ASSERT_EQ(roster_.RingEpoch(0), 2u);
  step_ = Step(TimePoint{});
  // The receiver committed kTransfer just before the change: its report still decides.
  EXPECT_TRUE(Report(3, kTransfer));
  EXPECT_EQ(OneVerdict(step_.actions(), 1).ok, 1);
  step_ = Step(TimePoint{});
  // And a decided transfer is still answered (its sender lost the ack).
  EXPECT_FALSE(Report(1, done, false));
  EXPECT_EQ(OneVerdict(step_.actions(), 1).ok, 1);
}

}  // namespace
}  // namespace pccl::master
