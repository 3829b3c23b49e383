// Resuming (master/admission.cc, "Resuming"): peers that lost the master say Hello with
// what they know, and the master takes them back: a restarted one rebuilds the run from
// them, one that still knows a peer gives its new connection the old one's place, and one
// that forgot it admits it like a joiner.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "membership_fixture.h"
#include "pccl/master/membership.h"

namespace pccl::master {
namespace {

using proto::Kind;

class ResumeTest : public MembershipTest {
 protected:
  // The Hello of peer `id` resuming on `conn`, which last applied `epoch` and had `ring`.
  std::vector<Action> Resume(ConnId conn, uint64_t id, std::vector<uint64_t> ring,
                             uint64_t epoch = 7, uint64_t ring_epoch = 6,
                             std::string key = "") {
    event::Hello e;
    e.conn = conn;
    e.hello.p2p_port = static_cast<uint16_t>(40000 + conn);
    e.hello.public_key = std::move(key);
    e.hello.resume_peer_id = id;
    e.hello.resume_epoch = epoch;
    e.hello.resume_ring_epoch = ring_epoch;
    for (uint64_t peer : ring) e.hello.resume_ring.push_back(proto::BandwidthSample{peer, 0});
    e.observed_host = "10.0.1." + std::to_string(conn);
    return Do(e);
  }
  std::vector<Action> Tick() { return Do(event::Tick{}); }
};

TEST_F(ResumeTest, ARestartedMasterRebuildsTheRunInTheRingOrderThePeersHad) {
  const std::vector<uint64_t> ring{502, 501, 503};
  auto first = Resume(11, 501, ring);
  proto::Welcome welcome = OneMessage<proto::Welcome>(first, 11, Kind::kWelcome);
  EXPECT_EQ(welcome.peer_id, 501u);  // the peer keeps its id
  EXPECT_EQ(welcome.accepted, 0);    // not a run of one: it waits for the others
  EXPECT_TRUE(Recipients(first, Kind::kTopology).empty());
  EXPECT_TRUE(Recipients(Resume(12, 502, ring), Kind::kTopology).empty());
  auto last = Resume(13, 503, ring);
  for (ConnId c : {11, 12, 13}) {
    proto::Topology t = OneTopology(last, c);
    EXPECT_EQ(Ids(t), ring);
    EXPECT_EQ(t.epoch, 8u);  // above any epoch the peers knew
    for (const proto::Member& m : t.members) EXPECT_EQ(m.ring_epoch, 8u);
  }
}

TEST_F(ResumeTest, TheWindowAdmitsThoseBackAndALateResumerIsAJoiner) {
  const std::vector<uint64_t> ring{501, 502, 503};
  Resume(11, 501, ring);
  Resume(12, 502, ring);
  now_ += MembershipOptions{}.resume_window - std::chrono::milliseconds(1);
  EXPECT_TRUE(Recipients(Tick(), Kind::kTopology).empty());
  now_ += std::chrono::milliseconds(1);
  auto window = Tick();
  EXPECT_EQ(Ids(OneTopology(window, 11)), (std::vector<uint64_t>{501, 502}));
  Ready(11, m_.epoch());
  Ready(12, m_.epoch());
  // The third is back after the window: the run goes on without a vote for it, so it joins
  // like any peer, under its id.
  auto late = Resume(13, 503, ring);
  EXPECT_EQ(OneMessage<proto::Welcome>(late, 13, Kind::kWelcome).peer_id, 503u);
  EXPECT_TRUE(Recipients(late, Kind::kTopology).empty());
  EXPECT_EQ(m_.PendingIds(), (std::vector<uint64_t>{503}));
  Vote(11);
  auto admitted = Vote(12);
  EXPECT_EQ(Ids(OneTopology(admitted, 13)), (std::vector<uint64_t>{501, 502, 503}));
}

TEST_F(ResumeTest, AFreshJoinerDuringTheRecoveryIsNotTheFirstPeer) {
  const std::vector<uint64_t> ring{501, 502};
  Resume(11, 501, ring);
  auto fresh = Hello(20);
  EXPECT_EQ(OneMessage<proto::Welcome>(fresh, 20, Kind::kWelcome).accepted, 0);
  EXPECT_TRUE(Recipients(fresh, Kind::kTopology).empty());
  auto back = Resume(12, 502, ring);
  EXPECT_EQ(Ids(OneTopology(back, 11)), ring);
  EXPECT_TRUE(Sent(back, 20, Kind::kTopology).empty());  // pending until the members vote
  EXPECT_EQ(m_.PendingIds().size(), 1u);
}

TEST_F(ResumeTest, AMemberOnANewConnectionGetsItsPlaceBackAndItsGroupIsRedialled) {
  Run(3);
  const uint64_t ring_epoch = m_.epoch();
  const proto::OpKey key{ring_epoch, 0, 1, 0};
  Report(1, key, true);  // an operation of the old connection's time, undecided
  auto resumed = Resume(21, 1002, {1001, 1002, 1003}, m_.epoch(), ring_epoch);
  EXPECT_TRUE(Dropped(resumed, 2));   // the peer's stale connection
  EXPECT_FALSE(Dropped(resumed, 21));
  EXPECT_EQ(OneMessage<proto::Welcome>(resumed, 21, Kind::kWelcome).accepted, 1);
  EXPECT_EQ(OneVerdict(resumed, 1).ok, 0);  // it can no longer complete
  for (ConnId c : {1, 21, 3}) {
    proto::Topology t = OneTopology(resumed, c);
    EXPECT_EQ(Ids(t), (std::vector<uint64_t>{1001, 1002, 1003}));
    EXPECT_EQ(t.members[0].ring_epoch, m_.epoch());  // a new ring epoch: links re-dialled
  }
  EXPECT_GT(m_.epoch(), ring_epoch);
  EXPECT_TRUE(m_.PendingIds().empty());
}

TEST_F(ResumeTest, ResumingUnderAnotherPeersIdNeedsItsKey) {
  Run(2);
  auto taken = Resume(21, 1002, {1001, 1002}, 2, 2, std::string(proto::kPublicKeyLength, 'k'));
  EXPECT_EQ(OneError(taken, 21).code, static_cast<uint32_t>(StatusCode::kUnauthenticated));
  EXPECT_TRUE(Dropped(taken, 21));
  EXPECT_FALSE(Dropped(taken, 2));
  EXPECT_TRUE(Recipients(taken, Kind::kTopology).empty());
  EXPECT_EQ(m_.MemberIds(), (std::vector<uint64_t>{1001, 1002}));
}

TEST_F(ResumeTest, APeerTheMasterForgotJoinsAgainUnderItsId) {
  Run(2);
  auto back = Resume(21, 777, {777, 1001});
  EXPECT_EQ(OneMessage<proto::Welcome>(back, 21, Kind::kWelcome).peer_id, 777u);
  EXPECT_TRUE(Recipients(back, Kind::kTopology).empty());
  Vote(1);
  auto admitted = Vote(2);
  EXPECT_EQ(Ids(OneTopology(admitted, 21)), (std::vector<uint64_t>{1001, 1002, 777}));
}

TEST_F(ResumeTest, AResumerWhoseFirstConnectionIsStillOpenIsCountedOnce) {
  // A stopped master wakes to two Hellos of one resumer (its first attempt timed out on its
  // side): the second replaces the first, and the recovery does not wait for a ghost.
  const std::vector<uint64_t> ring{501, 502};
  Resume(11, 501, ring);
  auto again = Resume(31, 501, ring);
  EXPECT_TRUE(Dropped(again, 11));
  auto back = Resume(12, 502, ring);
  EXPECT_EQ(Ids(OneTopology(back, 31)), ring);
  EXPECT_TRUE(Sent(back, 11, Kind::kTopology).empty());
}

TEST_F(ResumeTest, AStateFileWarmStartsTheRecoveryOfARestartedMaster) {
  Run(3);
  proto::MasterState state = m_.Persist();
  EXPECT_EQ(Ids(proto::Topology{state.epoch, state.members}),
            (std::vector<uint64_t>{1001, 1002, 1003}));
  state.revisions = {proto::GroupRevision{0, 41}};
  state.bandwidths = {proto::MeasuredLink{1001, 1002, 5000}};
  proto::MasterState back;  // what the file holds comes back whole
  ASSERT_TRUE(proto::Decode(proto::Encode(state), &back).ok());
  EXPECT_EQ(proto::Encode(back), proto::Encode(state));

  // (Its fresh ids must not be the old ones, as random ids are not.)
  Membership restarted(Options(), [next = uint64_t{5000}]() mutable { return ++next; });
  restarted.WarmStart(back, now_);
  auto handle = [&](const Event& e) { return restarted.Handle(e, now_); };
  // A fresh joiner that comes first is not the run: the run is the one in the file.
  event::Hello fresh = MakeHello(20, 40020, "10.0.0.20");
  auto joined = handle(fresh);
  EXPECT_EQ(OneMessage<proto::Welcome>(joined, 20, Kind::kWelcome).accepted, 0);
  std::vector<Action> last;
  for (ConnId c : {11, 12, 13}) {
    event::Hello e = MakeHello(c, static_cast<uint16_t>(40000 + c), "10.0.1.1");
    e.hello.resume_peer_id = 1001 + (c - 11);
    e.hello.resume_epoch = 1;  // older than the file's: the file's epoch counts
    // One sync newer than the file (it lags its master by a moment): the peers' counts.
    e.hello.resume_state_revision = 43;
    last = handle(e);
    if (c < 13) {
      EXPECT_TRUE(Recipients(last, Kind::kTopology).empty());
    }
  }
  proto::Topology t = OneTopology(last, 11);
  EXPECT_EQ(Ids(t), (std::vector<uint64_t>{1001, 1002, 1003}));
  EXPECT_GT(t.epoch, state.epoch);
  RunStatus status = restarted.Snapshot(now_);
  ASSERT_EQ(status.groups.size(), 1u);
  EXPECT_EQ(status.groups[0].state_revision, std::optional<uint64_t>(42));
  EXPECT_EQ(status.groups[0].bytes_per_second[0], 5000);
  EXPECT_EQ(restarted.MeasuredBandwidth(1001, 1002), std::optional<double>(5000));
}

TEST_F(ResumeTest, ARestartedMasterLearnsTheRevisionFromTheResumers) {
  event::Hello e = MakeHello(11, 40011, "10.0.1.1");
  e.hello.resume_peer_id = 501;
  e.hello.resume_state_revision = 8;  // revision 7
  Do(e);
  RunStatus status = m_.Snapshot(now_);
  ASSERT_EQ(status.groups.size(), 1u);
  EXPECT_EQ(status.groups[0].state_revision, std::optional<uint64_t>(7));
}

}  // namespace
}  // namespace pccl::master
