// Membership (membership.h) as a whole: routing (input before Hello, malformed input),
// determinism, and the order in which one event's consequences in several machines come
// out. Each machine's own behaviour is tested in admission_test.cc, departures_test.cc,
// verdicts_test.cc, sync_rounds_test.cc and optimize_test.cc.
#include "pccl/master/membership.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "membership_fixture.h"

namespace pccl::master {
namespace {

using proto::Kind;

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

TEST_F(MembershipTest, EveryMessageBeforeHelloIsRejectedNamingIt) {
  const std::vector<std::pair<Event, std::string>> cases = {
      {event::VoteTopology{}, "VoteTopology"},     {event::LinksReady{}, "LinksReady"},
      {event::QueryPending{}, "QueryPending"},     {event::OpDone{}, "OpDone"},
      {event::Heartbeat{}, "Heartbeat"},           {event::SyncState{}, "SyncState"},
      {event::SyncDone{}, "SyncDone"},             {event::OptimizeTopology{}, "OptimizeTopology"},
      {event::BandwidthReport{}, "BandwidthReport"}};
  ConnId conn = 10;
  for (auto [e, name] : cases) {
    ++conn;
    std::visit(
        [conn](auto& ev) {
          if constexpr (requires { ev.conn; }) ev.conn = conn;
        },
        e);
    auto actions = Do(e);
    EXPECT_EQ(OneError(actions, conn).message, "first message must be Hello, got " + name);
    EXPECT_EQ(OneError(actions, conn).code, static_cast<uint32_t>(StatusCode::kInvalidArgument));
    EXPECT_TRUE(Dropped(actions, conn));
  }
  EXPECT_TRUE(m_.PendingIds().empty());
}

// A departure concerns every machine. In one step: the group's undecided collectives fail,
// then its shared-state round, then the survivors' epoch starts, whose Topology also
// answers their optimize_topology().
TEST_F(MembershipTest, ADepartureFailsVerdictsThenTheSyncRoundThenStartsTheEpoch) {
  Run(3);
  const proto::OpKey key{m_.epoch(), 0, 1, 0};
  Report(1, key, true);
  EXPECT_TRUE(Do(event::SyncState{1, proto::SyncState{}}).empty());
  EXPECT_TRUE(Do(event::OptimizeTopology{1, m_.epoch()}).empty());
  auto actions = Do(event::Disconnected{3});
  std::vector<Kind> to_1;
  for (const Action& a : actions) {
    if (const Send* s = std::get_if<Send>(&a); s && s->conn == 1) to_1.push_back(s->kind);
  }
  EXPECT_EQ(to_1, (std::vector<Kind>{Kind::kVerdict, Kind::kSyncComplete, Kind::kTopology}));
  EXPECT_EQ(Result(actions, 1).ok, 0);
  // The optimize_topology() round ended: asking again in the new epoch starts a new one.
  const uint64_t epoch = m_.epoch();
  Ready(1, epoch);
  Ready(2, epoch);
  EXPECT_TRUE(Do(event::OptimizeTopology{1, epoch}).empty());
  EXPECT_EQ(Recipients(Do(event::OptimizeTopology{2, epoch}), Kind::kMeasureBandwidth),
            (std::vector<ConnId>{1, 2}));
}

// An admission waits for the verdict, and the verdict goes out before the Topology.
TEST_F(MembershipTest, AFailedCollectiveLetsAWaitingAdmissionGoOn) {
  Run(2);
  Hello(3);
  const uint64_t ring = m_.epoch();
  proto::Vote vote{ring, {proto::TagCount{5, 1}}};
  Do(event::VoteTopology{1, vote});
  EXPECT_TRUE(Do(event::VoteTopology{2, vote}).empty());
  auto actions = Report(2, proto::OpKey{ring, 0, 5, 0}, false, 7, "oom");
  EXPECT_EQ(OneVerdict(actions, 1).ok, 0);
  EXPECT_EQ(Ids(OneTopology(actions, 3)), (std::vector<uint64_t>{1001, 1002, 1003}));
}

}  // namespace
}  // namespace pccl::master
