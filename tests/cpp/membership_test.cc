// Membership as a pure state machine: events in, actions out, a fake clock, fixed peer ids.
#include "pccl/master/membership.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace pccl::master {
namespace {

using proto::Kind;

constexpr auto kLinkTimeout = std::chrono::seconds(30);

event::Hello MakeHello(ConnId conn, uint16_t p2p_port, std::string observed_host) {
  event::Hello e;
  e.conn = conn;
  e.hello.p2p_port = p2p_port;
  e.observed_host = std::move(observed_host);
  return e;
}

// Peer ids 1001, 1002, ... in Hello order (after a 0, which Membership must skip).
PeerIdGenerator CountingIds() {
  return [next = uint64_t{1000}, first = true]() mutable -> uint64_t {
    if (first) {
      first = false;
      return 0;
    }
    return ++next;
  };
}

class MembershipTest : public ::testing::Test {
 protected:
  MembershipTest() : m_(Options(), CountingIds()) {}

  static MembershipOptions Options() {
    MembershipOptions o;
    o.link_timeout = kLinkTimeout;
    // These tests move the clock by whole link timeouts; heartbeats are not their subject
    // (MembershipHeartbeatTest sets its own).
    o.heartbeat_timeout = std::chrono::hours(24);
    return o;
  }

  std::vector<Action> Do(const Event& e) { return last_ = m_.Handle(e, now_); }

  std::vector<Action> Hello(ConnId conn, uint32_t group = 0, std::string advertise = "") {
    event::Hello e;
    e.conn = conn;
    e.hello.peer_group = group;
    e.hello.p2p_port = static_cast<uint16_t>(40000 + conn);
    e.hello.advertise_host = std::move(advertise);
    e.observed_host = "10.0.0." + std::to_string(conn);
    return Do(e);
  }
  std::vector<Action> Vote(ConnId c) { return Do(event::VoteTopology{c, {}}); }
  std::vector<Action> Ready(ConnId c, uint64_t epoch) { return Do(event::LinksReady{c, epoch}); }
  std::vector<Action> Report(ConnId c, proto::OpKey key, bool ok, uint64_t hash = 7,
                             std::string reason = "") {
    event::OpDone e;
    e.conn = c;
    e.op.key = key;
    e.op.ok = ok ? 1 : 0;
    e.op.descriptor_hash = hash;
    e.op.reason = std::move(reason);
    return Do(e);
  }

  // Messages of `kind` sent to `conn` in `actions`.
  static std::vector<std::string> Sent(const std::vector<Action>& actions, ConnId conn,
                                       Kind kind) {
    std::vector<std::string> out;
    for (const Action& a : actions) {
      if (const Send* s = std::get_if<Send>(&a); s && s->conn == conn && s->kind == kind) {
        out.push_back(s->payload);
      }
    }
    return out;
  }
  static std::vector<ConnId> Recipients(const std::vector<Action>& actions, Kind kind) {
    std::vector<ConnId> out;
    for (const Action& a : actions) {
      if (const Send* s = std::get_if<Send>(&a); s && s->kind == kind) out.push_back(s->conn);
    }
    return out;
  }
  static bool Dropped(const std::vector<Action>& actions, ConnId conn) {
    return std::any_of(actions.begin(), actions.end(), [conn](const Action& a) {
      const Drop* d = std::get_if<Drop>(&a);
      return d && d->conn == conn;
    });
  }
  static proto::Topology OneTopology(const std::vector<Action>& actions, ConnId conn) {
    auto payloads = Sent(actions, conn, Kind::kTopology);
    EXPECT_EQ(payloads.size(), 1u);
    proto::Topology t;
    if (!payloads.empty()) {
      EXPECT_TRUE(proto::Decode(payloads[0], &t).ok());
    }
    return t;
  }
  static proto::Verdict OneVerdict(const std::vector<Action>& actions, ConnId conn) {
    auto payloads = Sent(actions, conn, Kind::kVerdict);
    EXPECT_EQ(payloads.size(), 1u) << "verdicts to conn " << conn;
    proto::Verdict v;
    if (!payloads.empty()) {
      EXPECT_TRUE(proto::Decode(payloads[0], &v).ok());
    }
    return v;
  }
  static proto::ErrorMessage OneError(const std::vector<Action>& actions, ConnId conn) {
    auto payloads = Sent(actions, conn, Kind::kError);
    EXPECT_EQ(payloads.size(), 1u);
    proto::ErrorMessage e;
    if (!payloads.empty()) {
      EXPECT_TRUE(proto::Decode(payloads[0], &e).ok());
    }
    return e;
  }
  static std::vector<uint64_t> Ids(const proto::Topology& t) {
    std::vector<uint64_t> ids;
    for (const auto& member : t.members) ids.push_back(member.peer_id);
    return ids;
  }

  // Admits conns 1..n (groups from `groups`, default 0) and completes their link phase.
  void Run(int n, std::vector<uint32_t> groups = {}) {
    groups.resize(n, 0);
    Hello(1, groups[0]);
    Ready(1, 1);
    for (int c = 2; c <= n; ++c) Hello(c, groups[c - 1]);
    if (n > 1) Vote(1);
    for (int c = 1; c <= n; ++c) Ready(c, m_.epoch());
    ASSERT_FALSE(m_.links_pending());
    ASSERT_EQ(m_.MemberIds().size(), static_cast<size_t>(n));
  }

  Membership m_;
  TimePoint now_ = TimePoint() + std::chrono::hours(1);
  std::vector<Action> last_;
};

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

TEST_F(MembershipTest, MalformedInputIsRejectedAndDropped) {
  // A first message that is not Hello.
  auto actions = Vote(5);
  EXPECT_EQ(OneError(actions, 5).code, static_cast<uint32_t>(StatusCode::kInvalidArgument));
  EXPECT_TRUE(Dropped(actions, 5));
  // A decoding failure reported by the server.
  actions = Do(event::ProtocolError{6, "bad magic"});
  EXPECT_EQ(OneError(actions, 6).message, "bad magic");
  EXPECT_TRUE(Dropped(actions, 6));
  // A second Hello from a member removes it.
  Run(2);
  actions = Hello(2);
  EXPECT_EQ(OneError(actions, 2).code, static_cast<uint32_t>(StatusCode::kInvalidArgument));
  EXPECT_TRUE(Dropped(actions, 2));
  EXPECT_EQ(Ids(OneTopology(actions, 1)), std::vector<uint64_t>{1001});
}

TEST_F(MembershipTest, UnknownConnectionLeavingIsHarmless) {
  EXPECT_TRUE(Do(event::Disconnected{42}).empty());
  EXPECT_TRUE(Do(event::Goodbye{42}).empty());
  EXPECT_TRUE(Do(event::Tick{}).empty());
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

TEST_F(MembershipTest, SameEventsGiveSameActions) {
  auto script = [](Membership& m, TimePoint t) {
    std::vector<std::string> log;
    std::vector<Event> events = {
        MakeHello(1, 1, "a"),    event::LinksReady{1, 1}, MakeHello(2, 2, "b"),
        event::VoteTopology{1, {}}, event::LinksReady{1, 2}, event::Tick{},
        event::QueryPending{1, 0, true}};
    for (size_t i = 0; i < events.size(); ++i) {
      TimePoint at = t + (i == 5 ? kLinkTimeout : std::chrono::seconds(0));
      for (const Action& a : m.Handle(events[i], at)) {
        if (const Send* s = std::get_if<Send>(&a)) {
          log.push_back(std::to_string(s->conn) + ":" + std::to_string(int(s->kind)) + ":" +
                        s->payload);
        } else {
          log.push_back("drop " + std::to_string(std::get<Drop>(a).conn));
        }
      }
    }
    return log;
  };
  Membership a(Options(), CountingIds());
  Membership b(Options(), CountingIds());
  auto la = script(a, now_);
  EXPECT_EQ(la, script(b, now_));
  EXPECT_NE(std::find(la.begin(), la.end(), "drop 2"), la.end());
}

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
  EXPECT_TRUE(m.Handle(event::Heartbeat{1}, now).empty());
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

// --- shared state ----------------------------------------------------------------------

proto::SyncState State(uint64_t revision, uint64_t hash, std::string key = "w") {
  proto::SyncState s;
  s.revision = revision;
  s.entries.push_back(proto::StateEntry{std::move(key), 16, 10, hash, 0});
  return s;
}

proto::SyncResult Result(const std::vector<Action>& actions, ConnId conn) {
  std::vector<std::string> payloads;
  for (const Action& a : actions) {
    if (const Send* s = std::get_if<Send>(&a); s && s->conn == conn && s->kind == Kind::kSyncComplete) {
      payloads.push_back(s->payload);
    }
  }
  EXPECT_EQ(payloads.size(), 1u) << "SyncComplete to conn " << conn;
  proto::SyncResult r;
  if (!payloads.empty()) {
    EXPECT_TRUE(proto::Decode(payloads[0], &r).ok());
  }
  return r;
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

}  // namespace
}  // namespace pccl::master
