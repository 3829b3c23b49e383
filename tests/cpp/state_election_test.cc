// The master's shared-state election, a pure function: who wins, who fetches what from whom.
#include "pccl/master/state_election.h"

#include <gtest/gtest.h>

#include <set>

#include <string>
#include <vector>

namespace pccl::master {
namespace {

using proto::SyncStrategy;

SyncParticipant Peer(uint64_t id, uint64_t revision, std::vector<uint64_t> hashes,
                     SyncStrategy strategy = SyncStrategy::kEnforcePopular) {
  SyncParticipant p;
  p.peer_id = id;
  p.host = std::string("10.0.0.").append(std::to_string(id));
  p.port = static_cast<uint16_t>(4000 + id);
  p.ever_synced = true;
  p.state.revision = revision;
  p.state.strategy = static_cast<uint8_t>(strategy);
  for (size_t k = 0; k < hashes.size(); ++k) {
    std::string key(1, 'k');
    key.append(std::to_string(k));
    p.state.entries.push_back(proto::StateEntry{key, 64, /*float32*/ 10, hashes[k], 0});
  }
  return p;
}

// The keys a plan fetches, once each, in plan order (a key repeats once per source).
std::vector<std::string> Keys(const proto::SyncPlan& plan) {
  std::vector<std::string> keys;
  for (const auto& f : plan.fetches) {
    if (keys.empty() || keys.back() != f.key) keys.push_back(f.key);
  }
  return keys;
}

// The sources a plan lists for `key`, in plan order.
std::vector<uint64_t> Sources(const proto::SyncPlan& plan, const std::string& key) {
  std::vector<uint64_t> sources;
  for (const auto& f : plan.fetches) {
    if (f.key == key) sources.push_back(f.source_peer_id);
  }
  return sources;
}

TEST(StateElectionTest, AgreementMovesNothing) {
  Election e = ElectSharedState({Peer(1, 3, {7, 8}), Peer(2, 3, {7, 8})}, 2);
  ASSERT_TRUE(e.status.ok()) << e.status.ToString();
  EXPECT_EQ(e.revision, 3u);
  EXPECT_TRUE(e.plans[0].fetches.empty());
  EXPECT_TRUE(e.plans[1].fetches.empty());
}

TEST(StateElectionTest, TieGoesToTheFirstInRingOrder) {
  Election e = ElectSharedState({Peer(9, 0, {1}), Peer(2, 0, {2})}, std::nullopt);
  ASSERT_TRUE(e.status.ok());
  EXPECT_TRUE(e.plans[0].fetches.empty());
  ASSERT_EQ(e.plans[1].fetches.size(), 1u);
  EXPECT_EQ(e.plans[1].fetches[0].source_peer_id, 9u);
  EXPECT_EQ(e.plans[1].fetches[0].hash, 1u);
  EXPECT_EQ(e.plans[1].fetches[0].source_host, "10.0.0.9");
  EXPECT_EQ(e.plans[1].fetches[0].source_port, 4009);
}

TEST(StateElectionTest, PopularContentWinsAndOnlyDifferingKeysMove) {
  Election e = ElectSharedState(
      {Peer(1, 0, {1, 2, 3}), Peer(2, 0, {1, 5, 3}), Peer(3, 0, {1, 5, 3})}, std::nullopt);
  ASSERT_TRUE(e.status.ok());
  EXPECT_EQ(Keys(e.plans[0]), std::vector<std::string>{"k1"});
  EXPECT_EQ(e.plans[0].fetches[0].hash, 5u);
  EXPECT_NE(e.plans[0].fetches[0].source_peer_id, 1u);
  EXPECT_TRUE(e.plans[1].fetches.empty());
  EXPECT_TRUE(e.plans[2].fetches.empty());
}

TEST(StateElectionTest, HighestRevisionVotesAlone) {
  // Two stale peers agree, but the one peer at the newest revision decides.
  Election e = ElectSharedState({Peer(1, 4, {1}), Peer(2, 4, {1}), Peer(3, 5, {2})}, 4);
  ASSERT_TRUE(e.status.ok());
  EXPECT_EQ(e.revision, 5u);
  EXPECT_EQ(Keys(e.plans[0]), std::vector<std::string>{"k0"});
  EXPECT_EQ(e.plans[0].fetches[0].source_peer_id, 3u);
  EXPECT_TRUE(e.plans[2].fetches.empty());
}

TEST(StateElectionTest, StalePeerWithMatchingContentFetchesNothing) {
  Election e = ElectSharedState({Peer(1, 5, {1}), Peer(2, 4, {1})}, 4);
  ASSERT_TRUE(e.status.ok());
  EXPECT_EQ(e.revision, 5u);
  EXPECT_TRUE(e.plans[1].fetches.empty());
  EXPECT_EQ(e.plans[1].revision, 5u);
}

TEST(StateElectionTest, RevisionJumpIsRefused) {
  Election e = ElectSharedState({Peer(1, 7, {1}), Peer(2, 5, {1})}, 5);
  EXPECT_EQ(e.status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(e.status.message().find("peer 1"), std::string::npos) << e.status.message();
  EXPECT_NE(e.status.message().find("revision 7"), std::string::npos);
  // The first sync of a group may start anywhere; going back is allowed.
  EXPECT_TRUE(ElectSharedState({Peer(1, 7, {1})}, std::nullopt).status.ok());
  EXPECT_TRUE(ElectSharedState({Peer(1, 2, {1})}, 5).status.ok());
}

TEST(StateElectionTest, AbsurdRevisionsAreRefusedSoNoGroupCanBeWedged) {
  // A revision of 2^64 - 1 would make every later sync overflow L + 1: refused, as every
  // revision of 2^63 or more, whatever the group's history.
  for (uint64_t lie : {~uint64_t{0}, uint64_t{1} << 63}) {
    Election e = ElectSharedState({Peer(1, 3, {1}), Peer(2, lie, {2})}, std::nullopt);
    EXPECT_EQ(e.status.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(e.status.message().find("peer 2"), std::string::npos) << e.status.message();
    EXPECT_NE(e.status.message().find("below 2^63"), std::string::npos) << e.status.message();
  }
  const uint64_t top = (uint64_t{1} << 63) - 1;
  EXPECT_TRUE(ElectSharedState({Peer(1, top, {1})}, top - 1).status.ok());
}

TEST(StateElectionTest, ReceiveOnlyNeitherVotesNorSends) {
  Election e = ElectSharedState({Peer(1, 9, {4}, SyncStrategy::kReceiveOnly), Peer(2, 1, {1}),
                                 Peer(3, 1, {2}), Peer(4, 1, {2})},
                                std::nullopt);
  ASSERT_TRUE(e.status.ok());
  EXPECT_EQ(e.revision, 1u);
  ASSERT_EQ(Keys(e.plans[0]), std::vector<std::string>{"k0"});
  EXPECT_EQ(e.plans[0].fetches[0].hash, 2u);
  std::vector<uint64_t> sources = Sources(e.plans[0], "k0");
  EXPECT_EQ(std::set<uint64_t>(sources.begin(), sources.end()), (std::set<uint64_t>{3, 4}));
  for (const auto& plan : e.plans) {
    for (const auto& f : plan.fetches) EXPECT_NE(f.source_peer_id, 1u);
  }
  Election none = ElectSharedState({Peer(1, 0, {1}, SyncStrategy::kReceiveOnly)}, std::nullopt);
  EXPECT_EQ(none.status.code(), StatusCode::kInvalidArgument);
}

TEST(StateElectionTest, SendOnlyNeverReceives) {
  Election ok = ElectSharedState({Peer(1, 0, {1}, SyncStrategy::kReceiveOnly),
                                  Peer(2, 0, {2}, SyncStrategy::kSendOnly)},
                                 std::nullopt);
  ASSERT_TRUE(ok.status.ok());
  EXPECT_EQ(ok.plans[0].fetches.at(0).source_peer_id, 2u);
  Election lost = ElectSharedState(
      {Peer(1, 0, {1}), Peer(2, 0, {1}), Peer(3, 0, {2}, SyncStrategy::kSendOnly)}, std::nullopt);
  EXPECT_EQ(lost.status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(lost.status.message().find("peer 3"), std::string::npos);
  EXPECT_NE(lost.status.message().find("SEND_ONLY"), std::string::npos);
}

TEST(StateElectionTest, DisagreementNamesTheKey) {
  SyncParticipant a = Peer(1, 0, {1, 2});
  SyncParticipant b = Peer(2, 0, {1, 2});
  b.state.entries[1].bytes = 32;
  Election e = ElectSharedState({a, b}, std::nullopt);
  EXPECT_EQ(e.status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(e.status.message().find("'k1'"), std::string::npos) << e.status.message();
  b = Peer(2, 0, {1, 2});
  b.state.entries[0].dtype = 3;
  EXPECT_NE(ElectSharedState({a, b}, std::nullopt).status.message().find("'k0'"),
            std::string::npos);
  b = Peer(2, 0, {1});
  EXPECT_NE(ElectSharedState({a, b}, std::nullopt).status.message().find("'k1'"),
            std::string::npos);
  b = Peer(2, 0, {1, 2, 3});
  EXPECT_NE(ElectSharedState({a, b}, std::nullopt).status.message().find("'k2'"),
            std::string::npos);
}

TEST(StateElectionTest, ContentInequalityGoesOnlyToNewPeers) {
  SyncParticipant a = Peer(1, 0, {1, 2});
  SyncParticipant b = Peer(2, 0, {1, 3});
  SyncParticipant c = Peer(3, 0, {1, 4});
  for (auto* p : {&a, &b, &c}) p->state.entries[1].allow_content_inequality = 1;
  c.ever_synced = false;
  Election e = ElectSharedState({a, b, c}, std::nullopt);
  ASSERT_TRUE(e.status.ok());
  EXPECT_TRUE(e.plans[0].fetches.empty());
  EXPECT_TRUE(e.plans[1].fetches.empty());
  // c's compared content matches, so it is a winner and keeps its own entry too.
  EXPECT_TRUE(e.plans[2].fetches.empty());
  c.state.entries[0].hash = 9;
  e = ElectSharedState({a, b, c}, std::nullopt);
  ASSERT_TRUE(e.status.ok());
  ASSERT_EQ(Keys(e.plans[2]), (std::vector<std::string>{"k0", "k1"}));
  EXPECT_EQ(Sources(e.plans[2], "k0").size(), 2u);
  // The winners' "k1" differ, so only one of them is listed: striping never mixes contents.
  std::vector<uint64_t> k1 = Sources(e.plans[2], "k1");
  ASSERT_EQ(k1.size(), 1u);
  EXPECT_EQ(e.plans[2].fetches.back().hash, k1[0] == 1 ? 2u : 3u);
}

TEST(StateElectionTest, SourcesRotateOverKeys) {
  Election e = ElectSharedState(
      {Peer(1, 0, {1, 2, 3, 4}), Peer(2, 0, {1, 2, 3, 4}), Peer(3, 0, {0, 0, 0, 0})},
      std::nullopt);
  ASSERT_TRUE(e.status.ok());
  std::set<uint64_t> preferred;
  for (const std::string& key : Keys(e.plans[2])) preferred.insert(Sources(e.plans[2], key)[0]);
  EXPECT_EQ(preferred, (std::set<uint64_t>{1, 2}));
}

TEST(StateElectionTest, EveryHolderIsListedOnce) {
  // A joiner (peer 9) and three holders of the elected content, one of them stale.
  Election e = ElectSharedState(
      {Peer(1, 4, {5, 6}), Peer(2, 4, {5, 6}), Peer(3, 3, {5, 6}), Peer(9, 0, {0, 0})}, 3);
  ASSERT_TRUE(e.status.ok()) << e.status.ToString();
  ASSERT_EQ(Keys(e.plans[3]), (std::vector<std::string>{"k0", "k1"}));
  for (const std::string key : {"k0", "k1"}) {
    std::vector<uint64_t> sources = Sources(e.plans[3], key);
    EXPECT_EQ(sources.size(), 3u) << key;
    EXPECT_EQ(std::set<uint64_t>(sources.begin(), sources.end()), (std::set<uint64_t>{1, 2, 3}));
  }
  for (const auto& f : e.plans[3].fetches) {
    EXPECT_EQ(f.hash, f.key == "k0" ? 5u : 6u);
    EXPECT_EQ(f.source_port, 4000 + f.source_peer_id);
  }
  // The plan survives its encoding.
  proto::SyncPlan decoded;
  ASSERT_TRUE(proto::Decode(proto::Encode(e.plans[3]), &decoded).ok());
  EXPECT_EQ(decoded.fetches.size(), 6u);
}

TEST(StateElectionTest, SourcesPerKeyAreBounded) {
  std::vector<SyncParticipant> peers;
  for (uint64_t id = 1; id <= proto::kMaxStateSources + 3; ++id) peers.push_back(Peer(id, 0, {7}));
  peers.push_back(Peer(100, 0, {8}));
  Election e = ElectSharedState(peers, std::nullopt);
  ASSERT_TRUE(e.status.ok());
  EXPECT_EQ(e.plans.back().fetches.size(), proto::kMaxStateSources);
}

}  // namespace
}  // namespace pccl::master
