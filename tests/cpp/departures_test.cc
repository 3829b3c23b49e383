// Admission (admission.h), continued: departures and liveness. Goodbye, disconnects, link
// timeouts and silence remove peers; the survivors' epoch, carried votes and the pending
// peers of an emptied run. Whole runs through Membership first, then Admission alone.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "membership_fixture.h"
#include "pccl/master/admission.h"
#include "pccl/master/membership.h"

namespace pccl::master {
namespace {

using proto::Kind;

TEST_F(MembershipTest, MemberLeavingMidVoteKeepsTheSurvivorsVotes) {
  Run(3);
  Hello(4);
  Vote(1);
  auto left = Do(event::Goodbye{2});  // before member 3 voted
  for (ConnId c : {1, 3}) EXPECT_EQ(Ids(OneTopology(left, c)), (std::vector<uint64_t>{1001, 1003}));
  const uint64_t epoch = m_.epoch();
  Ready(1, epoch);
  Ready(3, epoch);
  // Member 1 took that Topology as the answer to its vote and does not vote again; member
  // 3's vote completes the round.
  auto admitted = Vote(3);
  for (ConnId c : {1, 3, 4}) {
    EXPECT_EQ(Ids(OneTopology(admitted, c)), (std::vector<uint64_t>{1001, 1003, 1004}));
  }
}

TEST_F(MembershipTest, LinkTimeoutDropsTheLaggard) {
  Run(1);
  Hello(2);
  Hello(3);
  Vote(1);
  TimePoint started = now_;
  EXPECT_EQ(m_.NextDeadline(), started + kLinkTimeout);
  Ready(1, 2);
  Ready(3, 2);
  now_ = started + kLinkTimeout - std::chrono::milliseconds(1);
  EXPECT_TRUE(Do(event::Tick{}).empty());
  now_ = started + kLinkTimeout;
  auto actions = Do(event::Tick{});
  EXPECT_EQ(OneError(actions, 2).code, static_cast<uint32_t>(StatusCode::kDeadlineExceeded));
  EXPECT_TRUE(Dropped(actions, 2));
  for (ConnId c : {1, 3}) {
    proto::Topology t = OneTopology(actions, c);
    EXPECT_EQ(t.epoch, 3u);
    EXPECT_EQ(Ids(t), (std::vector<uint64_t>{1001, 1003}));
  }
  EXPECT_TRUE(Sent(actions, 2, Kind::kTopology).empty());
  EXPECT_EQ(m_.NextDeadline(), now_ + kLinkTimeout);
}

TEST_F(MembershipTest, GoodbyeDuringLinkPhaseRestartsItWithTheSurvivors) {
  Run(1);
  Hello(2);
  Hello(3);
  Vote(1);
  Ready(1, 2);
  auto actions = Do(event::Goodbye{3});
  EXPECT_TRUE(Sent(actions, 3, Kind::kTopology).empty());
  EXPECT_EQ(OneTopology(actions, 2).epoch, 3u);
  Ready(1, 3);
  EXPECT_EQ(Recipients(Ready(2, 3), Kind::kTopologyComplete), (std::vector<ConnId>{1, 2}));
}

TEST_F(MembershipTest, PendingPeerLeavingEndsTheRoundUnchanged) {
  Run(2);
  Hello(3);
  Vote(1);
  auto actions = Do(event::Disconnected{3});
  EXPECT_EQ(Recipients(actions, Kind::kTopologyUnchanged), std::vector<ConnId>{1});
  EXPECT_TRUE(m_.PendingIds().empty());
  EXPECT_EQ(Recipients(Vote(2), Kind::kTopologyUnchanged), std::vector<ConnId>{2});
}

TEST_F(MembershipTest, LastMemberLeavingAdmitsThePending) {
  Run(1);
  Hello(2);
  auto actions = Do(event::Goodbye{1});
  EXPECT_EQ(Ids(OneTopology(actions, 2)), std::vector<uint64_t>{1002});
  EXPECT_TRUE(m_.PendingIds().empty());
}

TEST(MembershipHeartbeatTest, APeerOnASlowPathGetsALongerAllowance) {
  MembershipOptions o;
  o.heartbeat_timeout = std::chrono::seconds(3);
  Membership m(o, CountingIds());
  TimePoint now{};
  m.Handle(MakeHello(1, 40001, "10.0.0.1"), now);
  m.Handle(MakeHello(2, 40002, "10.0.0.2"), now);
  // Peer 2's connection retransmits after 500 ms (a long, lossy path): 3 s plus room for
  // four back-to-back retransmissions beyond the 200 ms floor, 15 x 300 ms.
  m.Handle(event::Heartbeat{2, std::chrono::milliseconds(500)}, now);
  m.Handle(event::Heartbeat{1, std::chrono::milliseconds(200)}, now);
  now += std::chrono::seconds(3);
  auto first = m.Handle(event::Tick{}, now);
  EXPECT_TRUE(Dropped(first, 1));   // loopback-like: 3 s
  EXPECT_FALSE(Dropped(first, 2));
  now += std::chrono::milliseconds(4499);
  EXPECT_FALSE(Dropped(m.Handle(event::Tick{}, now), 2));
  now += std::chrono::milliseconds(1);
  auto second = m.Handle(event::Tick{}, now);
  EXPECT_TRUE(Dropped(second, 2));
  EXPECT_NE(OneError(second, 2).message.find("7500 ms"), std::string::npos)
      << OneError(second, 2).message;
}

TEST(MembershipHeartbeatTest, TheMastersOwnPauseIsForgiven) {
  MembershipOptions o;
  o.heartbeat_timeout = std::chrono::seconds(3);
  Membership m(o, CountingIds());
  TimePoint now{};
  m.Handle(MakeHello(1, 40001, "10.0.0.1"), now);
  // The master process was stopped for 10 s: its server reports the pause before anything
  // else, and the peer, whose beats wait unread, is not kicked for it.
  now += std::chrono::seconds(10);
  EXPECT_TRUE(m.Handle(event::Resumed{std::chrono::seconds(10)}, now).empty());
  EXPECT_FALSE(Dropped(m.Handle(event::Tick{}, now), 1));
  now += std::chrono::seconds(3);  // then real silence counts again
  EXPECT_TRUE(Dropped(m.Handle(event::Tick{}, now), 1));
}

TEST(MembershipHeartbeatTest, SilentPeersAreKickedAndTheRestGoOn) {
  MembershipOptions o;
  o.heartbeat_timeout = std::chrono::seconds(3);
  Membership m(o, CountingIds());
  TimePoint now{};
  auto hello = [&](ConnId c) {
    event::Hello e;
    e.conn = c;
    e.hello.p2p_port = static_cast<uint16_t>(40000 + c);
    e.observed_host = "10.0.0." + std::to_string(c);
    return m.Handle(e, now);
  };
  hello(1);
  m.Handle(event::LinksReady{1, 1}, now);
  hello(2);
  m.Handle(event::VoteTopology{1, {}}, now);
  m.Handle(event::LinksReady{1, 2}, now);
  m.Handle(event::LinksReady{2, 2}, now);
  ASSERT_EQ(m.MemberIds().size(), 2u);
  proto::OpKey key{m.epoch(), 0, 5, 0};
  proto::OpDone done;
  done.key = key;
  done.ok = 1;
  m.Handle(event::OpDone{1, done}, now);  // peer 2 never reports: it hangs

  // Peer 1 keeps heart-beating, peer 2 is silent.
  now += std::chrono::seconds(2);
  // A beat is answered (the peer's proof that the master lives), and nothing else happens.
  auto beat = m.Handle(event::Heartbeat{1}, now);
  ASSERT_EQ(beat.size(), 1u);
  EXPECT_EQ(std::get<Send>(beat[0]).kind, Kind::kHeartbeatAck);
  EXPECT_EQ(std::get<Send>(beat[0]).conn, 1u);
  EXPECT_EQ(m.NextDeadline(), TimePoint{} + std::chrono::seconds(3));
  now += std::chrono::milliseconds(999);
  EXPECT_TRUE(m.Handle(event::Tick{}, now).empty());
  now += std::chrono::milliseconds(1);
  auto actions = m.Handle(event::Tick{}, now);

  bool kicked = false, dropped = false, failed = false, new_epoch = false;
  for (const Action& a : actions) {
    if (const auto* send = std::get_if<Send>(&a)) {
      if (send->conn == 2 && send->kind == Kind::kError) {
        proto::ErrorMessage error;
        ASSERT_TRUE(proto::Decode(send->payload, &error).ok());
        kicked = error.code == static_cast<uint32_t>(StatusCode::kKicked);
      }
      if (send->conn == 1 && send->kind == Kind::kVerdict) {
        proto::Verdict v;
        ASSERT_TRUE(proto::Decode(send->payload, &v).ok());
        failed = v.key == key && !v.ok && v.code == static_cast<uint32_t>(StatusCode::kAborted);
      }
      if (send->conn == 1 && send->kind == Kind::kTopology) new_epoch = true;
    } else if (const auto* drop = std::get_if<Drop>(&a)) {
      dropped = dropped || drop->conn == 2;
    }
  }
  EXPECT_TRUE(kicked);
  EXPECT_TRUE(dropped);
  EXPECT_TRUE(failed) << "the hung peer's undecided collective must fail for the others";
  EXPECT_TRUE(new_epoch);
  EXPECT_EQ(m.MemberIds(), (std::vector<uint64_t>{1001}));
}

// --- Admission alone -------------------------------------------------------------------------

TEST_F(AdmissionTest, ForgetReturnsTheMembersAmongTheConnections) {
  Run(3);
  Hello(4);
  std::vector<Peer> gone = a_.Forget({4, 2, 99});  // a pending peer, a member, a stranger
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].conn, 2u);
  EXPECT_EQ(gone[0].peer_id, 1002u);
  EXPECT_TRUE(a_.roster().pending().empty());
  EXPECT_EQ(a_.roster().members(), (std::vector<ConnId>{1, 3}));
}

TEST_F(AdmissionTest, AfterMembersLeftCarriesTheVotesOfAnUnfinishedRound) {
  Run(3);
  Hello(4);
  Vote(1);
  a_.Forget({2});
  std::optional<NextEpoch> next = a_.AfterMembersLeft("peer 1002 (10.0.0.2) left");
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->members, (std::vector<ConnId>{1, 3}));  // without the pending peer
  EXPECT_EQ(next->cause, "peer 1002 (10.0.0.2) left");
  EXPECT_TRUE(next->keep_votes);
  Step step = NewStep();
  Start(*next, step);
  Ready(1);
  Ready(3);
  // Member 1's vote carried over: member 3's completes the round.
  Step vote = NewStep();
  EXPECT_TRUE(a_.OnVote(P(3), proto::Vote{}, vote));
  ASSERT_TRUE(a_.ReadyToAdmit().has_value());
  EXPECT_EQ(a_.ReadyToAdmit()->next.members, (std::vector<ConnId>{1, 3, 4}));
}

TEST_F(AdmissionTest, AfterMembersLeftAdmitsThePendingWhenEverySurvivorVoted) {
  Run(3);
  Hello(4);
  Vote(1);
  Vote(3);
  a_.Forget({2});
  std::optional<NextEpoch> next = a_.AfterMembersLeft("peer 1002 (10.0.0.2) left");
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->members, (std::vector<ConnId>{1, 3, 4}));
  EXPECT_FALSE(next->keep_votes);
}

TEST_F(AdmissionTest, WhenNoMemberIsLeftThePendingPeersBecomeTheRun) {
  Run(1);
  Hello(2);
  Hello(3);
  a_.Forget({1});
  std::optional<NextEpoch> next = a_.AfterMembersLeft("peer 1001 (10.0.0.1) left");
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->members, (std::vector<ConnId>{2, 3}));
  EXPECT_EQ(next->cause, "every member left");
  EXPECT_FALSE(a_.links_pending());
  // And with nobody pending, nobody is left at all.
  a_.Forget({2, 3});
  EXPECT_FALSE(a_.AfterMembersLeft("gone").has_value());
}

TEST_F(AdmissionTest, AfterPendingLeftAnswersTheVotersWhenNobodyIsLeftToAdmit) {
  Run(2);
  Hello(3);
  Vote(1);
  EXPECT_TRUE(a_.Forget({3}).empty());
  Step step = NewStep();
  a_.AfterPendingLeft(step);
  EXPECT_EQ(Recipients(step.actions(), Kind::kTopologyUnchanged), std::vector<ConnId>{1});
}

TEST_F(AdmissionTest, KickSilentAndDropLateLinksNameWhoToRemoveAndWhy) {
  Run(2);
  Hello(3);
  Vote(1);
  Vote(2);  // epoch with 1, 2, 3: a link phase
  ASSERT_EQ(a_.roster().members().size(), 3u);
  Ready(1);
  Ready(3);
  now_ += std::chrono::seconds(2);
  Step alive = NewStep();
  a_.Touch(1, now_);
  a_.Touch(2, now_);
  EXPECT_TRUE(a_.KickSilent(alive).conns.empty());
  EXPECT_FALSE(a_.DropLateLinks(alive).has_value());  // before the link deadline

  now_ += std::chrono::seconds(1);  // conn 3 silent for 3 s
  Step kick = NewStep();
  Removal silent = a_.KickSilent(kick);
  EXPECT_EQ(silent.conns, std::vector<ConnId>{3});
  EXPECT_EQ(OneError(kick.actions(), 3).code, static_cast<uint32_t>(StatusCode::kKicked));
  EXPECT_TRUE(Dropped(kick.actions(), 3));
  EXPECT_EQ(silent.cause(P(3)),
            "peer 1003 (10.0.0.3) stopped responding (no heartbeat for 3000 ms)");

  now_ += kLinkTimeout;
  Step late = NewStep();
  std::optional<Removal> laggards = a_.DropLateLinks(late);
  ASSERT_TRUE(laggards.has_value());
  EXPECT_EQ(laggards->conns, std::vector<ConnId>{2});  // only 2 never reported its links
  EXPECT_EQ(OneError(late.actions(), 2).code,
            static_cast<uint32_t>(StatusCode::kDeadlineExceeded));
  EXPECT_NE(laggards->cause(P(2)).find("ring links not ready within 30000 ms"),
            std::string::npos);
}

}  // namespace
}  // namespace pccl::master
