// Admission (admission.h) and its Roster (roster.h): joining, voting, the started
// collectives an admission waits for, link phases and the are_peers_pending() round. Whole
// runs through Membership first, then each machine alone.
#include "pccl/master/admission.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "membership_fixture.h"
#include "pccl/master/membership.h"
#include "pccl/master/roster.h"

namespace pccl::master {
namespace {

using proto::Kind;

TEST_F(MembershipTest, FirstPeerIsAdmittedAtOnce) {
  auto actions = Hello(1);
  auto welcome_payloads = Sent(actions, 1, Kind::kWelcome);
  ASSERT_EQ(welcome_payloads.size(), 1u);
  proto::Welcome w;
  ASSERT_TRUE(proto::Decode(welcome_payloads[0], &w).ok());
  EXPECT_EQ(w.accepted, 1);
  EXPECT_EQ(w.peer_id, 1001u);  // the generator's 0 was skipped
  proto::Topology t = OneTopology(actions, 1);
  EXPECT_EQ(t.epoch, 1u);
  ASSERT_EQ(t.members.size(), 1u);
  EXPECT_EQ(t.members[0].host, "10.0.0.1");
  EXPECT_EQ(t.members[0].port, 40001);
  EXPECT_TRUE(m_.links_pending());
  EXPECT_EQ(Recipients(Ready(1, 1), Kind::kTopologyComplete), std::vector<ConnId>{1});
  EXPECT_FALSE(m_.links_pending());
}

TEST_F(MembershipTest, AdvertiseHostOverridesObservedAddress) {
  EXPECT_EQ(OneTopology(Hello(1, 0, "peer.example"), 1).members[0].host, "peer.example");
}

TEST(MembershipHeartbeatTest, WelcomeTellsTheHeartbeatInterval) {
  MembershipOptions o;
  o.heartbeat_timeout = std::chrono::seconds(2);
  Membership m(o, CountingIds());
  event::Hello e;
  e.conn = 1;
  e.hello.p2p_port = 4000;
  auto actions = m.Handle(e, TimePoint{});
  const auto* send = std::get_if<Send>(&actions.at(0));
  ASSERT_NE(send, nullptr);
  ASSERT_EQ(send->kind, Kind::kWelcome);
  proto::Welcome welcome;
  ASSERT_TRUE(proto::Decode(send->payload, &welcome).ok());
  EXPECT_EQ(welcome.heartbeat_interval_ms, 500u);
}

TEST_F(MembershipTest, SecondPeerPendingUntilEveryMemberVotes) {
  Run(2);
  auto actions = Hello(3);
  proto::Welcome w;
  ASSERT_TRUE(proto::Decode(Sent(actions, 3, Kind::kWelcome).at(0), &w).ok());
  EXPECT_EQ(w.accepted, 0);
  EXPECT_EQ(Recipients(actions, Kind::kTopology).size(), 0u);
  EXPECT_EQ(m_.PendingIds(), std::vector<uint64_t>{1003});

  // are_peers_pending() is a joint call: the answer comes once every member asked.
  EXPECT_TRUE(Do(event::QueryPending{1, 5, true}).empty());
  actions = Do(event::QueryPending{2, 9, true});
  EXPECT_EQ(Recipients(actions, Kind::kPendingReply), (std::vector<ConnId>{1, 2}));
  proto::PendingReply reply;
  ASSERT_TRUE(proto::Decode(Sent(actions, 1, Kind::kPendingReply).at(0), &reply).ok());
  EXPECT_EQ(reply.pending, 1);
  EXPECT_EQ(reply.seq, 5u);  // each member's own query number comes back
  ASSERT_TRUE(proto::Decode(Sent(actions, 2, Kind::kPendingReply).at(0), &reply).ok());
  EXPECT_EQ(reply.pending, 1);
  EXPECT_EQ(reply.seq, 9u);

  EXPECT_TRUE(Vote(2).empty());  // one of two members voted
  actions = Vote(1);
  for (ConnId c : {1, 2, 3}) {
    proto::Topology t = OneTopology(actions, c);
    EXPECT_EQ(t.epoch, 3u);
    EXPECT_EQ(Ids(t), (std::vector<uint64_t>{1001, 1002, 1003}));  // ring order, then arrivals
  }
  EXPECT_TRUE(m_.PendingIds().empty());
}

TEST_F(MembershipTest, TopologyUnchangedWhenNobodyIsPending) {
  Run(2);
  auto actions = Vote(2);
  EXPECT_EQ(Recipients(actions, Kind::kTopologyUnchanged), std::vector<ConnId>{2});
  EXPECT_EQ(actions.size(), 1u);
}

TEST_F(MembershipTest, VoteByPendingPeerIsRefusedAndKept) {
  Run(1);
  Hello(2);
  auto actions = Vote(2);
  EXPECT_EQ(OneError(actions, 2).code, static_cast<uint32_t>(StatusCode::kFailedPrecondition));
  EXPECT_FALSE(Dropped(actions, 2));
  EXPECT_EQ(m_.PendingIds(), std::vector<uint64_t>{1002});
}

TEST_F(MembershipTest, LinksPhaseCompletesWhenEveryMemberIsReady) {
  Run(1);
  Hello(2);
  Hello(3);
  Vote(1);
  ASSERT_EQ(m_.epoch(), 2u);
  EXPECT_TRUE(Ready(1, 2).empty());
  // A LinksReady of a superseded epoch is a race (the epoch changed while the member built
  // its links), ignored; one of a future epoch is refused.
  EXPECT_TRUE(Ready(2, 1).empty());
  auto wrong = Ready(2, 3);
  EXPECT_EQ(OneError(wrong, 2).code, static_cast<uint32_t>(StatusCode::kFailedPrecondition));
  EXPECT_FALSE(Dropped(wrong, 2));
  EXPECT_TRUE(Ready(2, 2).empty());
  auto done = Ready(3, 2);
  EXPECT_EQ(Recipients(done, Kind::kTopologyComplete), (std::vector<ConnId>{1, 2, 3}));
  proto::TopologyComplete e;
  ASSERT_TRUE(proto::Decode(Sent(done, 1, Kind::kTopologyComplete).at(0), &e).ok());
  EXPECT_EQ(e.epoch, 2u);
}

TEST_F(MembershipTest, PendingQueryRoundCompletesWhenTheMemberItWaitsForLeaves) {
  Run(3);
  EXPECT_TRUE(Do(event::QueryPending{1, 1, true}).empty());
  EXPECT_TRUE(Do(event::QueryPending{2, 1, true}).empty());
  auto actions = Do(event::Disconnected{3});
  EXPECT_EQ(Recipients(actions, Kind::kPendingReply), (std::vector<ConnId>{1, 2}));
}

TEST_F(MembershipTest, NonJointQueryIsAnsweredAtOnce) {
  Run(2);
  Hello(3);
  auto actions = Do(event::QueryPending{1, 2, false});
  EXPECT_EQ(Recipients(actions, Kind::kPendingReply), std::vector<ConnId>{1});
}

// wait_for_world's query (alone, waiting): held until a peer is pending, so that members
// waiting for the run to grow hear of each joiner at once instead of asking again and again.
TEST_F(MembershipTest, WaitingQueryIsAnsweredWhenAPeerArrives) {
  Run(2);
  EXPECT_TRUE(Do(event::QueryPending{1, 7, false, true}).empty());  // nobody pending: held
  EXPECT_TRUE(Do(event::QueryPending{2, 3, false, true}).empty());
  EXPECT_TRUE(Do(event::QueryPending{2, 4, false, true}).empty());  // replaces seq 3
  auto actions = Hello(3);
  EXPECT_EQ(Recipients(actions, Kind::kPendingReply), (std::vector<ConnId>{1, 2}));
  proto::PendingReply reply;
  ASSERT_TRUE(proto::Decode(Sent(actions, 1, Kind::kPendingReply).at(0), &reply).ok());
  EXPECT_EQ(reply.seq, 7u);
  EXPECT_EQ(reply.pending, 1);
  ASSERT_EQ(Sent(actions, 2, Kind::kPendingReply).size(), 1u);  // one answer, to the latest
  ASSERT_TRUE(proto::Decode(Sent(actions, 2, Kind::kPendingReply).at(0), &reply).ok());
  EXPECT_EQ(reply.seq, 4u);
  // Answered once: the next joiner finds no query waiting; with one pending, at once.
  EXPECT_TRUE(Recipients(Hello(4), Kind::kPendingReply).empty());
  EXPECT_EQ(Recipients(Do(event::QueryPending{1, 8, false, true}), Kind::kPendingReply),
            std::vector<ConnId>{1});
}

TEST_F(MembershipTest, WaitingQueryOfAPeerThatLeftIsForgotten) {
  Run(2);
  EXPECT_TRUE(Do(event::QueryPending{2, 3, false, true}).empty());
  Do(event::Disconnected{2});
  EXPECT_TRUE(Recipients(Hello(3), Kind::kPendingReply).empty());  // nobody is told
}

TEST_F(MembershipTest, PendingPeerQueryIsAnsweredAlone) {
  Run(2);
  Hello(3);
  auto actions = Do(event::QueryPending{3, 4, true});
  EXPECT_EQ(Recipients(actions, Kind::kPendingReply), std::vector<ConnId>{3});
}

// update_topology() while collectives are in flight: the vote lists what each member
// started on its ring. When all started the same, the master lets them finish first.
TEST_F(MembershipTest, AdmissionWaitsForCollectivesEveryMemberStarted) {
  Run(2);
  Hello(3);
  const uint64_t ring = m_.epoch();
  proto::Vote vote{ring, {proto::TagCount{5, 1}}};
  EXPECT_TRUE(Do(event::VoteTopology{1, vote}).empty());
  EXPECT_TRUE(Do(event::VoteTopology{2, vote}).empty());  // all voted; op (tag 5, seq 0) runs
  EXPECT_EQ(m_.epoch(), ring);
  proto::OpKey key{ring, 0, 5, 0};
  EXPECT_TRUE(Report(1, key, true).empty());
  auto actions = Report(2, key, true);
  // The verdict (success) goes out before the Topology that admits peer 3.
  EXPECT_EQ(OneVerdict(actions, 1).ok, 1);
  size_t verdict_at = 0, topology_at = 0;
  for (size_t i = 0; i < actions.size(); ++i) {
    if (const Send* send = std::get_if<Send>(&actions[i]); send && send->conn == 1) {
      if (send->kind == Kind::kVerdict) verdict_at = i;
      if (send->kind == Kind::kTopology) topology_at = i;
    }
  }
  EXPECT_LT(verdict_at, topology_at);
  EXPECT_EQ(Ids(OneTopology(actions, 3)), (std::vector<uint64_t>{1001, 1002, 1003}));
}

TEST_F(MembershipTest, AdmissionFailsCollectivesNotEveryMemberStarted) {
  Run(2);
  Hello(3);
  const uint64_t ring = m_.epoch();
  proto::OpKey key{ring, 0, 5, 0};
  Report(1, key, true);  // member 1 ran it; member 2 never started it
  EXPECT_TRUE(Do(event::VoteTopology{1, proto::Vote{ring, {proto::TagCount{5, 1}}}}).empty());
  auto actions = Do(event::VoteTopology{2, proto::Vote{ring, {}}});
  EXPECT_EQ(OneVerdict(actions, 1).ok, 0);  // failed at once: it could never complete
  EXPECT_EQ(Ids(OneTopology(actions, 3)), (std::vector<uint64_t>{1001, 1002, 1003}));
}

TEST_F(MembershipTest, VoteDuringLinkPhaseIsAnsweredByTopologyComplete) {
  Run(1);
  Hello(2);
  Vote(1);
  EXPECT_TRUE(Vote(1).empty());
  Ready(1, 2);
  EXPECT_EQ(Recipients(Ready(2, 2), Kind::kTopologyComplete), (std::vector<ConnId>{1, 2}));
}

// --- Roster alone ----------------------------------------------------------------------------

TEST(RosterTest, AdvanceAdmitsThePendingAndMovesOnlyTheChangedGroupsRingEpoch) {
  Roster r = MakeRoster({0, 1}, {1});  // members 1, 2 in epoch 1; conn 3 pending in group 1
  EXPECT_EQ(r.epoch(), 1u);
  EXPECT_EQ(r.RingEpoch(0), 1u);
  EXPECT_EQ(r.RingEpoch(7), 0u);  // no such group
  EXPECT_EQ(r.pending(), std::vector<ConnId>{3});
  EXPECT_EQ(r.at(3).role, Role::kPending);

  const std::vector<ConnId> next{1, 2, 3};
  const std::set<uint32_t> changed = r.ChangedGroups(next);
  EXPECT_EQ(changed, std::set<uint32_t>{1});
  r.Advance(next, changed, "pending peers were admitted");
  EXPECT_EQ(r.epoch(), 2u);
  EXPECT_EQ(r.epoch_cause(), "pending peers were admitted");
  EXPECT_EQ(r.RingEpoch(0), 1u);
  EXPECT_EQ(r.RingEpoch(1), 2u);
  EXPECT_TRUE(r.pending().empty());
  EXPECT_EQ(r.at(3).role, Role::kMember);
  EXPECT_EQ(r.GroupMembers(1), (std::vector<ConnId>{2, 3}));

  proto::Topology t = r.Topology();
  EXPECT_EQ(t.epoch, 2u);
  EXPECT_EQ(Ids(t), (std::vector<uint64_t>{1001, 1002, 1003}));
  EXPECT_EQ(t.members[0].ring_epoch, 1u);
  EXPECT_EQ(t.members[2].ring_epoch, 2u);
  EXPECT_EQ(t.members[2].host, "10.0.0.3");
}

TEST(RosterTest, ChangedGroupsComparesWithTheRingsLastSent) {
  Roster r = MakeRoster({0, 0, 1});
  EXPECT_TRUE(r.ChangedGroups({1, 2, 3}).empty());
  EXPECT_EQ(r.ChangedGroups({2, 1, 3}), std::set<uint32_t>{0});  // reordered
  // A departed member is gone from members() but not from the ring last sent.
  ASSERT_TRUE(r.Remove(2).has_value());
  EXPECT_FALSE(r.Remove(2).has_value());
  EXPECT_EQ(r.Find(2), nullptr);
  EXPECT_EQ(r.members(), (std::vector<ConnId>{1, 3}));
  EXPECT_EQ(r.ChangedGroups(r.members()), std::set<uint32_t>{0});
  // A group without members has no ring epoch.
  ASSERT_TRUE(r.Remove(3).has_value());
  r.Advance({1}, r.ChangedGroups({1}), "peer 1003 (10.0.0.3) left");
  EXPECT_EQ(r.RingEpoch(1), 0u);
  EXPECT_EQ(r.RingEpoch(0), 2u);
}

TEST(RosterTest, DescribeNamesThePeerByIdAndHost) {
  Roster r = MakeRoster({0});
  EXPECT_EQ(Describe(r.at(1)), "peer 1001 (10.0.0.1)");
  EXPECT_TRUE(r.IdInUse(1001));
  EXPECT_FALSE(r.IdInUse(1002));
}

// --- Admission alone -------------------------------------------------------------------------

TEST_F(AdmissionTest, TheFirstHelloDecidesTheFirstEpochLaterOnesWait) {
  Step step = NewStep();
  std::optional<NextEpoch> first = a_.OnHello(MakeHello(1, 40001, "10.0.0.1"), step);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->members, std::vector<ConnId>{1});
  EXPECT_EQ(first->cause, "the first peer joined");
  EXPECT_EQ(Recipients(step.actions(), Kind::kWelcome), std::vector<ConnId>{1});
  EXPECT_TRUE(Recipients(step.actions(), Kind::kTopology).empty());  // Membership starts it
  Start(*first, step);
  EXPECT_EQ(a_.roster().epoch(), 1u);
  EXPECT_TRUE(a_.links_pending());
  EXPECT_EQ(a_.NextDeadline(), now_ + std::chrono::seconds(3));  // the heartbeat comes first
  EXPECT_EQ(Recipients(step.actions(), Kind::kTopology), std::vector<ConnId>{1});

  Step second = NewStep();
  EXPECT_FALSE(a_.OnHello(MakeHello(2, 40002, "10.0.0.2"), second).has_value());
  EXPECT_EQ(a_.roster().pending(), std::vector<ConnId>{2});
}

TEST_F(AdmissionTest, ReadyToAdmitOnceEveryMemberVotedNamingTheCollectivesTheyAllStarted) {
  Run(2);
  Hello(3);     // joins group 0: its ring changes
  Hello(4, 1);  // a new group
  const proto::Vote vote{a_.roster().RingEpoch(0), {proto::TagCount{5, 2}, {9, 1}}};
  Step step = NewStep();
  EXPECT_TRUE(a_.OnVote(P(1), vote, step));
  EXPECT_FALSE(a_.ReadyToAdmit().has_value());  // member 2 has not voted
  EXPECT_TRUE(a_.OnVote(P(2), vote, step));
  std::optional<Admit> admit = a_.ReadyToAdmit();
  ASSERT_TRUE(admit.has_value());
  EXPECT_EQ(admit->next.members, (std::vector<ConnId>{1, 2, 3, 4}));
  EXPECT_EQ(admit->next.cause, "pending peers were admitted");
  ASSERT_EQ(admit->wait_for.size(), 2u);
  EXPECT_EQ(admit->wait_for[0].peer_group, 0u);
  EXPECT_EQ(admit->wait_for[0].tag, 5u);
  EXPECT_EQ(admit->wait_for[0].count, 2u);
  EXPECT_EQ(admit->wait_for[1].tag, 9u);
  EXPECT_TRUE(step.actions().empty());
}

TEST_F(AdmissionTest, VotesThatDisagreeOrNameAnOlderRingWaitForNothing) {
  Run(2);
  Hello(3);
  const uint64_t ring = a_.roster().RingEpoch(0);
  Step step = NewStep();
  a_.OnVote(P(1), proto::Vote{ring, {proto::TagCount{5, 2}}}, step);
  a_.OnVote(P(2), proto::Vote{ring, {proto::TagCount{5, 1}}}, step);
  ASSERT_TRUE(a_.ReadyToAdmit().has_value());
  EXPECT_TRUE(a_.ReadyToAdmit()->wait_for.empty());
  a_.OnVote(P(1), proto::Vote{ring - 1, {proto::TagCount{5, 1}}}, step);  // votes again
  ASSERT_TRUE(a_.ReadyToAdmit().has_value());
  EXPECT_TRUE(a_.ReadyToAdmit()->wait_for.empty());
}

TEST_F(AdmissionTest, OnLinksReadySaysWhenItEndedThePhase) {
  Run(1);
  Hello(2);
  Vote(1);
  ASSERT_TRUE(a_.links_pending());
  Step step = NewStep();
  EXPECT_FALSE(a_.OnLinksReady(P(1), a_.roster().epoch(), step));
  EXPECT_TRUE(a_.OnLinksReady(P(2), a_.roster().epoch(), step));
  EXPECT_EQ(Recipients(step.actions(), Kind::kTopologyComplete), (std::vector<ConnId>{1, 2}));
  EXPECT_FALSE(a_.links_pending());
  EXPECT_FALSE(a_.OnLinksReady(P(2), a_.roster().epoch(), step));  // a repeat
}

}  // namespace
}  // namespace pccl::master
