// LinkRepairs (link_repairs.h) through whole runs: a ring link that broke between live
// peers gets its group's ring re-dialled as a new epoch after a short grace, a report about
// an older ring is ignored, a departure makes the repair moot, and a pair that keeps
// breaking loses its later-admitted member.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "membership_fixture.h"
#include "pccl/master/membership.h"

namespace pccl::master {
namespace {

using proto::Kind;

constexpr auto kGrace = LinkRepairOptions{}.grace;

class LinkRepairTest : public MembershipTest {
 protected:
  std::vector<Action> Broken(ConnId reporter, uint64_t other_id, uint64_t ring_epoch) {
    return Do(event::LinkBroken{reporter, proto::LinkBroken{ring_epoch, other_id, "reset"}});
  }
  std::vector<Action> After(Duration d) {
    now_ += d;
    return Do(event::Tick{});
  }
  // Completes the current link phase.
  void AllReady(int n) {
    for (ConnId c = 1; c <= static_cast<ConnId>(n); ++c) Ready(c, m_.epoch());
  }
};

TEST_F(LinkRepairTest, ABrokenLinkReDialsTheRingAfterTheGrace) {
  Run(3);
  const uint64_t epoch = m_.epoch();
  EXPECT_TRUE(Broken(1, 1002, epoch).empty());  // acted on at a Tick, not at once
  EXPECT_TRUE(Broken(2, 1001, epoch).empty());  // the other end's report of the same break
  EXPECT_EQ(m_.NextDeadline(), now_ + kGrace);
  EXPECT_TRUE(After(kGrace / 2).empty());
  auto actions = After(kGrace);
  for (ConnId c : {1, 2, 3}) {
    proto::Topology t = OneTopology(actions, c);
    EXPECT_EQ(t.epoch, epoch + 1);
    EXPECT_EQ(Ids(t), (std::vector<uint64_t>{1001, 1002, 1003}));  // the same members
    for (const auto& member : t.members) EXPECT_EQ(member.ring_epoch, epoch + 1);  // re-dialled
  }
  EXPECT_TRUE(m_.links_pending());
}

TEST_F(LinkRepairTest, TheRepairFailsTheCollectivesOfTheBrokenRing) {
  Run(2);
  const uint64_t epoch = m_.epoch();
  proto::OpKey key{epoch, 0, 3, 0};
  Report(1, key, true);
  Broken(2, 1001, epoch);
  auto actions = After(kGrace);
  EXPECT_EQ(OneVerdict(actions, 1).ok, 0);  // retried by the peers on the new links
  EXPECT_EQ(OneTopology(actions, 2).epoch, epoch + 1);
}

TEST_F(LinkRepairTest, FailuresWhileALinkIsBrokenTellThePeersToWaitForTheNewRing) {
  Run(2);
  const uint64_t epoch = m_.epoch();
  proto::OpKey before{epoch, 0, 3, 0};
  EXPECT_EQ(OneVerdict(Report(1, before, false), 1).ring_replaced, 0);  // links still fine
  // A link breaks (peer 2 reports it before its failed OpDone): until the re-dial, failed
  // verdicts say the ring is being replaced, so that nobody retries on its links.
  proto::OpKey during{epoch, 0, 3, 1};
  Broken(2, 1001, epoch);
  Report(1, during, true);
  proto::Verdict verdict = OneVerdict(Report(2, during, false), 1);
  EXPECT_EQ(verdict.ok, 0);
  EXPECT_EQ(verdict.ring_replaced, 1);
  // The repair fails what is still open the same way; on the new ring the mark is gone.
  proto::OpKey open{epoch, 0, 3, 2};
  Report(1, open, true);
  auto actions = After(kGrace);
  EXPECT_EQ(OneVerdict(actions, 1).ring_replaced, 1);
  AllReady(2);
  proto::OpKey after{m_.epoch(), 0, 3, 0};
  EXPECT_EQ(OneVerdict(Report(1, after, false), 1).ring_replaced, 0);
}

TEST_F(LinkRepairTest, AReportAboutAnOlderRingOrAStrangerIsIgnored) {
  Run(2);
  Broken(1, 1002, m_.epoch() - 1);
  Broken(1, 4242, m_.epoch());
  EXPECT_GT(m_.NextDeadline(), now_ + std::chrono::hours(1));  // nothing due but heartbeats
  EXPECT_TRUE(After(kGrace * 4).empty());
}

TEST_F(LinkRepairTest, ADepartureWithinTheGraceMakesTheRepairMoot) {
  Run(3);
  const uint64_t epoch = m_.epoch();
  Broken(1, 1002, epoch);  // peer 2 died: its neighbour saw the link go first
  auto left = Do(event::Disconnected{2});
  EXPECT_EQ(Ids(OneTopology(left, 1)), (std::vector<uint64_t>{1001, 1003}));
  AllReady(3);
  EXPECT_TRUE(After(kGrace * 2).empty());  // no second epoch for the same break
  EXPECT_EQ(m_.epoch(), epoch + 1);
}

TEST_F(LinkRepairTest, APairThatKeepsBreakingLosesItsLaterMember) {
  Run(3);
  for (int attempt = 0; attempt < LinkRepairOptions{}.max_attempts - 1; ++attempt) {
    Broken(2, 1003, m_.epoch());
    auto repaired = After(kGrace);
    ASSERT_EQ(Recipients(repaired, Kind::kTopology).size(), 3u);
  }
  Broken(3, 1002, m_.epoch());  // the third break, reported from the other end
  auto actions = After(kGrace);
  proto::ErrorMessage error = OneError(actions, 3);  // conn 3 was admitted last
  EXPECT_EQ(error.code, static_cast<uint32_t>(StatusCode::kKicked));
  EXPECT_NE(error.message.find("peer 1002"), std::string::npos) << error.message;
  EXPECT_TRUE(Dropped(actions, 3));
  EXPECT_EQ(m_.MemberIds(), (std::vector<uint64_t>{1001, 1002}));
}

TEST_F(LinkRepairTest, AVoteRoundSurvivesARepair) {
  Run(2);
  Hello(3);
  Vote(1);
  Broken(2, 1001, m_.epoch());
  auto repaired = After(kGrace);
  EXPECT_EQ(Ids(OneTopology(repaired, 2)), (std::vector<uint64_t>{1001, 1002}));
  AllReady(2);
  // Member 1 took the repair's Topology as its answer; member 2's vote completes the round.
  auto admitted = Vote(2);
  EXPECT_EQ(Ids(OneTopology(admitted, 3)), (std::vector<uint64_t>{1001, 1002, 1003}));
}

}  // namespace
}  // namespace pccl::master
