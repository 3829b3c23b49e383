// Message encoding (proto/messages.h, net/wire.h): round trips, and refusal of every kind
// of malformed payload with an error that names the message and field.
#include <gtest/gtest.h>

#include "pccl/net/wire.h"
#include "pccl/proto/messages.h"

namespace pccl::proto {
namespace {

TEST(ProtoTest, TopologyRoundTrip) {
  Topology t;
  t.epoch = 7;
  t.members.push_back(Member{1, "10.0.0.1", 4000, 0});
  t.members.push_back(Member{2, "::1", 4001, 3});
  Topology back;
  ASSERT_TRUE(Decode(Encode(t), &back).ok());
  EXPECT_EQ(back.epoch, 7u);
  ASSERT_EQ(back.members.size(), 2u);
  EXPECT_EQ(back.members[1].host, "::1");
  EXPECT_EQ(back.members[1].peer_group, 3u);
}

TEST(ProtoTest, VerdictRoundTripKeepsCode) {
  Verdict v{OpKey{1, 2, 3, 4}, 0, "peer left", 4};
  Verdict back;
  ASSERT_TRUE(Decode(Encode(v), &back).ok());
  EXPECT_EQ(back.key, v.key);
  EXPECT_EQ(back.code, 4u);
  EXPECT_EQ(back.reason, "peer left");
}

TEST(ProtoTest, VoteRoundTripAndValidation) {
  Vote v{9, {TagCount{0, 3}, TagCount{7, 1}}};
  Vote back;
  ASSERT_TRUE(Decode(Encode(v), &back).ok());
  EXPECT_EQ(back.ring_epoch, 9u);
  ASSERT_EQ(back.started.size(), 2u);
  EXPECT_EQ(back.started[1].tag, 7u);
  EXPECT_EQ(back.started[1].count, 1u);
  // Tags must ascend and counts be positive: a vote lists each tag once.
  Vote unsorted{9, {TagCount{7, 1}, TagCount{0, 3}}};
  EXPECT_EQ(Decode(Encode(unsorted), &back).code(), StatusCode::kInvalidArgument);
  Vote zero{9, {TagCount{7, 0}}};
  EXPECT_EQ(Decode(Encode(zero), &back).code(), StatusCode::kInvalidArgument);
}

TEST(ProtoTest, PendingQueryAndReplyCarryTheirNumber) {
  PendingQuery q{41};
  PendingQuery q_back;
  ASSERT_TRUE(Decode(Encode(q), &q_back).ok());
  EXPECT_EQ(q_back.seq, 41u);
  PendingReply r{41, 1};
  PendingReply r_back;
  ASSERT_TRUE(Decode(Encode(r), &r_back).ok());
  EXPECT_EQ(r_back.seq, 41u);
  EXPECT_EQ(r_back.pending, 1u);
}

TEST(ProtoTest, TruncatedPayloadNamesTheField) {
  std::string payload = Encode(Hello{5, 4000, "host"});
  Hello back;
  Status st = Decode(payload.substr(0, payload.size() - 2), &back);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("advertise_host"), std::string::npos) << st.message();
}

TEST(ProtoTest, TrailingBytesAreRefused) {
  std::string payload = Encode(EpochMessage{3}) + "x";
  EpochMessage back;
  EXPECT_EQ(Decode(payload, &back).code(), StatusCode::kInvalidArgument);
}

TEST(ProtoTest, OversizedStringAndMemberCountAreRefused) {
  net::WireWriter w;
  w.U64(1);
  w.U32(kMaxMembers + 1);
  Topology t;
  EXPECT_EQ(Decode(w.data(), &t).code(), StatusCode::kInvalidArgument);
  Hello h{0, 1, std::string(kMaxHostLength + 1, 'a')};
  Hello back;
  EXPECT_EQ(Decode(Encode(h), &back).code(), StatusCode::kInvalidArgument);
}

TEST(ProtoTest, BooleansOtherThanZeroOrOneAreRefused) {
  std::string payload = Encode(Welcome{9, 1, 500});
  payload[8] = 2;  // the `accepted` byte, after the u64 peer id
  Welcome back;
  EXPECT_EQ(Decode(payload, &back).code(), StatusCode::kInvalidArgument);
}

TEST(ProtoTest, BandwidthMessagesRoundTrip) {
  MeasureBandwidth m{3, 300, {Member{42, "10.0.0.2", 4000, 1}}};
  MeasureBandwidth m2;
  ASSERT_TRUE(Decode(Encode(m), &m2).ok());
  EXPECT_EQ(m2.round, 3u);
  EXPECT_EQ(m2.duration_ms, 300u);
  ASSERT_EQ(m2.targets.size(), 1u);
  EXPECT_EQ(m2.targets[0].host, "10.0.0.2");
  EXPECT_EQ(m2.targets[0].peer_group, 1u);

  BandwidthReport r{2, {{42, 123456789}, {43, 0}}};
  BandwidthReport r2;
  ASSERT_TRUE(Decode(Encode(r), &r2).ok());
  EXPECT_EQ(r2.round, 2u);
  ASSERT_EQ(r2.samples.size(), 2u);
  EXPECT_EQ(r2.samples[0].bytes_per_second, 123456789u);

  ProbeResult p{1 << 20, 5000}, p2;
  ASSERT_TRUE(Decode(Encode(p), &p2).ok());
  EXPECT_EQ(p2.bytes, uint64_t{1} << 20);
  EXPECT_EQ(p2.nanoseconds, 5000u);

  std::string truncated = Encode(r).substr(0, 10);
  Status st = Decode(truncated, &r2);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("BandwidthReport"), std::string::npos) << st.message();
}

TEST(WireTest, FrameHeaderChecksMagicVersionAndLength) {
  uint8_t header[net::kFrameHeaderBytes];
  net::FrameHeader out;
  net::EncodeFrameHeader(4, 100, header);
  EXPECT_TRUE(net::DecodeFrameHeader(header, 100, "test", &out).ok());
  EXPECT_EQ(out.kind, 4);
  EXPECT_EQ(net::DecodeFrameHeader(header, 99, "test", &out).code(),
            StatusCode::kInvalidArgument);
  header[4] = 9;  // version
  EXPECT_EQ(net::DecodeFrameHeader(header, 100, "test", &out).code(),
            StatusCode::kInvalidArgument);
  net::EncodeFrameHeader(4, 100, header);
  header[0] ^= 1;  // magic
  EXPECT_EQ(net::DecodeFrameHeader(header, 100, "test", &out).code(),
            StatusCode::kInvalidArgument);
}

TEST(WireTest, DataHeaderRoundTrip) {
  DataHeader h{1, 2, 3, 4, 5, 6};
  uint8_t bytes[kDataHeaderBytes];
  EncodeDataHeader(h, bytes);
  DataHeader back = DecodeDataHeader(bytes);
  EXPECT_EQ(back.tag, 1u);
  EXPECT_EQ(back.segment, 5u);
  EXPECT_EQ(back.payload_bytes, 6u);
}

}  // namespace
}  // namespace pccl::proto
