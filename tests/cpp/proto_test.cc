// Message encoding (proto/messages.h, net/wire.h): round trips, and refusal of every kind
// of malformed payload with an error that names the message and field.
#include <gtest/gtest.h>

#include "pccl/net/wire.h"
#include "pccl/proto/messages.h"

namespace pccl::proto {
namespace {

// A fresh join's Hello (no resume claim).
Hello HelloOf(uint32_t peer_group, uint16_t p2p_port, std::string host, std::string key) {
  Hello h;
  h.peer_group = peer_group;
  h.p2p_port = p2p_port;
  h.advertise_host = std::move(host);
  h.public_key = std::move(key);
  return h;
}

TEST(ProtoTest, TopologyRoundTrip) {
  Topology t;
  t.epoch = 7;
  t.members.push_back(Member{1, "10.0.0.1", 4000, 0, ""});
  t.members.push_back(Member{2, "::1", 4001, 3, ""});
  Topology back;
  ASSERT_TRUE(Decode(Encode(t), &back).ok());
  EXPECT_EQ(back.epoch, 7u);
  ASSERT_EQ(back.members.size(), 2u);
  EXPECT_EQ(back.members[1].host, "::1");
  EXPECT_EQ(back.members[1].peer_group, 3u);
}

TEST(ProtoTest, VerdictRoundTripKeepsCode) {
  Verdict v{OpKey{1, 2, 3, 4}, 0, "peer left", 4, 1, "", ""};
  Verdict back;
  ASSERT_TRUE(Decode(Encode(v), &back).ok());
  EXPECT_EQ(back.key, v.key);
  EXPECT_EQ(back.code, 4u);
  EXPECT_EQ(back.reason, "peer left");
  EXPECT_EQ(back.ring_replaced, 1);
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
  std::string payload = Encode(HelloOf(5, 4000, "host", ""));
  Hello back;
  // Into "host" (the 36 bytes after it are the empty resume claim).
  Status st = Decode(payload.substr(0, payload.size() - 36 - 6), &back);
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
  Hello h = HelloOf(0, 1, std::string(kMaxHostLength + 1, 'a'), "");
  Hello back;
  EXPECT_EQ(Decode(Encode(h), &back).code(), StatusCode::kInvalidArgument);
}

TEST(ProtoTest, BooleansOtherThanZeroOrOneAreRefused) {
  std::string payload = Encode(Welcome{9, 1, 500, 0, "", ""});
  payload[8] = 2;  // the `accepted` byte, after the u64 peer id
  Welcome back;
  EXPECT_EQ(Decode(payload, &back).code(), StatusCode::kInvalidArgument);
}

TEST(ProtoTest, BandwidthMessagesRoundTrip) {
  MeasureBandwidth m{3, 300, {Member{42, "10.0.0.2", 4000, 1, ""}}};
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

// --- The wire format, pinned ------------------------------------------------------------------
// One sample of every message with every field set, and its bytes as the hand-written encoder
// wrote them before the field-list codec existed (hex captured from that encoder; version 2
// added the public keys of Hello and Member, and the handshake; version 4 the two ends of
// a send/recv in OpKey, and PairHello; version 5 PairQuery, and a send/recv decided by its
// receiver; version 6 changed no message: a ring's float16/bfloat16 step 0 sends inputs at
// their own width): a change here is a
// protocol change and needs a new net::kProtocolVersion. Each sample also
// round-trips (re-encoding what was decoded gives the same bytes, so no field is dropped),
// and every strict prefix and one trailing byte are refused with the message's name.

std::string Hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (unsigned char c : bytes) {
    hex += kDigits[c >> 4];
    hex += kDigits[c & 15];
  }
  return hex;
}

template <typename M>
void ExpectWire(const M& sample, const std::string& name, const std::string& golden_hex) {
  SCOPED_TRACE(name);
  std::string bytes = Encode(sample);
  EXPECT_EQ(Hex(bytes), golden_hex);
  M back;
  Status st = Decode(bytes, &back);
  ASSERT_TRUE(st.ok()) << st.message();
  EXPECT_EQ(Hex(Encode(back)), golden_hex);
  for (size_t n = 0; n < bytes.size(); ++n) {
    st = Decode(bytes.substr(0, n), &back);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << n << " bytes";
    EXPECT_EQ(st.message().rfind(name + ": truncated message: field '", 0), 0u) << st.message();
  }
  st = Decode(bytes + '\0', &back);
  EXPECT_EQ(st.message(), name + ": 1 unexpected trailing bytes");
}

const OpKey kSampleKey{0x0102030405060708, 9, 0x0a0b, 0x0c0d, 0x11, 0x12};

TEST(ProtoGoldenTest, EveryMessageKeepsItsBytes) {
  ExpectWire(HelloOf(0x01020304, 8080, "peer.example", ""), "Hello",
             "04030201901f0c000000706565722e6578616d706c6500000000"
             "000000000000000000000000000000000000000000000000000000000000000000000000");
  Hello resume = HelloOf(0x01020304, 8080, "peer.example", "");
  resume.resume_peer_id = 10;
  resume.resume_epoch = 11;
  resume.resume_ring_epoch = 12;
  resume.resume_ring = {BandwidthSample{10, 16}, BandwidthSample{9, 0}};
  resume.resume_state_revision = 13;
  ExpectWire(resume, "Hello",  // a resuming peer's
             "04030201901f0c000000706565722e6578616d706c6500000000"
             "0a000000000000000b000000000000000c00000000000000020000000a000000000000001000000000000000090000000000000000000000000000000d00000000000000");
  ExpectWire(Welcome{0x1122334455667788, 1, 2500, 0, "", ""}, "Welcome",
             "887766554433221101c4090000" "0000" "00000000" "00000000");
  ExpectWire(Welcome{1, 0, 1, 0x1234, "tk", "r"}, "Welcome",
             "01000000000000000001000000" "3412" "02000000746b" "0100000072");
  ExpectWire(RelayDial{1, "t", 2, 1}, "RelayDial",
             "0100000000000000" "0100000074" "0200000000000000" "01");
  ExpectWire(RelayReady{1, "", "h", 0x1234}, "RelayReady", "01" "00000000" "0100000068" "3412");
  ExpectWire(Topology{7, {Member{1, "10.0.0.1", 4000, 2, "", 5, 1},
                          Member{2, "::1", 4001, 3, "", 6, 2}}},
             "Topology",
             "07000000000000000200000001000000000000000800000031302e302e302e31a00f02000000"
             "00000000050000000000000001"
             "0200000000000000030000003a3a31a10f0300000000000000060000000000000002");
  ExpectWire(EpochMessage{9}, "EpochMessage", "0900000000000000");
  ExpectWire(TopologyComplete{10}, "TopologyComplete", "0a00000000000000");
  ExpectWire(Vote{11, {TagCount{1, 2}, TagCount{5, 1}}}, "VoteTopology",
             "0b00000000000000020000000100000000000000020000000000000005000000000000000100"
             "000000000000");
  ExpectWire(PendingQuery{12, 0, 1}, "QueryPending", "0c000000000000000001");
  ExpectWire(PendingReply{13, 1}, "PendingReply", "0d0000000000000001");
  ExpectWire(OpDone{kSampleKey, 1, 0xabcdef, "timed out", 6, "rep", 0x1000, 0x20}, "OpDone",
             "0807060504030201090000000b0a0000000000000d0c000000000000"
             "11000000000000001200000000000000" "01efcdab000000000009"
             "00000074696d6564206f757406000000" "03000000726570" "0010000000000000" "20000000");
  ExpectWire(Heartbeat{0x1234}, "Heartbeat", "34120000");
  ExpectWire(Verdict{kSampleKey, 0, "late", 4, 1, "ch", "r"}, "Verdict",
             "0807060504030201090000000b0a0000000000000d0c000000000000"
             "11000000000000001200000000000000" "00040000006c61746504"
             "00000001" "020000006368" "0100000072");
  ExpectWire(PairQuery{kSampleKey, 4, "late"}, "PairQuery",
             "0807060504030201090000000b0a0000000000000d0c000000000000"
             "11000000000000001200000000000000" "04000000" "040000006c617465");
  ExpectWire(ErrorMessage{10, "kicked"}, "Error", "0a000000060000006b69636b6564");
  ExpectWire(P2PHello{17, 18, 19, 3}, "P2PHello",
             "11000000000000001200000000000000130000000000000003000000");
  ExpectWire(P2PWelcome{1, "welcome"}, "P2PWelcome", "010700000077656c636f6d65");
  ExpectWire(SyncState{20, 21, 2,
                       {StateEntry{"w", 64, 7, 0x1234, 1}, StateEntry{"b", 8, 11, 0x5678, 0}}},
             "SyncState",
             "1400000000000000150000000000000002020000000100000077400000000000000007341200"
             "000000000001010000006208000000000000000b785600000000000000");
  ExpectWire(SyncPlan{22, 23, {StateFetch{"w", 0x1234, 2, "10.0.0.2", 4002}}}, "SyncPlan",
             "1600000000000000170000000000000001000000010000007734120000000000000200000000"
             "0000000800000031302e302e302e32a20f");
  ExpectWire(SyncResult{24, 1, 5, "done"}, "SyncResult",
             "1800000000000000010500000004000000646f6e65");
  ExpectWire(StateHello{25, 26}, "StateHello", "19000000000000001a00000000000000");
  ExpectWire(StateRequest{"w", 0x1234, 16, 48}, "StateRequest",
             "0100000077341200000000000010000000000000003000000000000000");
  // Bandwidth targets carry no ring epoch on the wire.
  ExpectWire(MeasureBandwidth{27, 300, {Member{42, "10.0.0.3", 4003, 1, "", 0}}}, "MeasureBandwidth",
             "1b0000002c010000010000002a000000000000000800000031302e302e302e33a30f0100000000000000");
  // The handshake of a run with a secret (protocol version 2).
  ExpectWire(Greeting{32, 1, 2, 3, 4, 1, 1, std::string(32, '\xaa')}, "Greeting",
             "200001000000000000000200000000000000030000000000000004000000010120000000" +
                 std::string(64, 'a'));
  ExpectWire(Challenge{2, std::string(32, '\xbb'), std::string(32, '\xcc')}, "Challenge",
             "0220000000" + std::string(64, 'b') + "20000000" + std::string(64, 'c'));
  ExpectWire(Proof{std::string(32, '\xdd')}, "Proof", "20000000" + std::string(64, 'd'));
  ExpectWire(BandwidthReport{28, {BandwidthSample{42, 123456789}, BandwidthSample{43, 0}}},
             "BandwidthReport",
             "1c000000020000002a0000000000000015cd5b07000000002b00000000000000000000000000"
             "0000");
  ExpectWire(ProbeResult{uint64_t{1} << 20, 5000}, "ProbeResult",
             "00001000000000008813000000000000");
  ExpectWire(Reachability{"1.2", 0x1234, 1, "x"}, "Reachability",
             "03000000312e323412010100000078");
}

TEST(ProtoGoldenTest, DataHeaderKeepsItsBytes) {
  DataHeader h{0x0102030405060708, 0x1112131415161718, 0x2122232425262728, 0x31323334,
               0x41424344, 0x5152535455565758};
  uint8_t bytes[kDataHeaderBytes];
  EncodeDataHeader(h, bytes);
  EXPECT_EQ(Hex(std::string(reinterpret_cast<const char*>(bytes), kDataHeaderBytes)),
            "0807060504030201181716151413121128272625242322213433323144434241585756555453"
            "5251");
  DataHeader back = DecodeDataHeader(bytes);
  EXPECT_EQ(back.tag, h.tag);
  EXPECT_EQ(back.seq, h.seq);
  EXPECT_EQ(back.descriptor_hash, h.descriptor_hash);
  EXPECT_EQ(back.step, h.step);
  EXPECT_EQ(back.segment, h.segment);
  EXPECT_EQ(back.payload_bytes, h.payload_bytes);
}

// --- Validation, pinned ---------------------------------------------------------------------
// Every rule a decoder enforces, with the text it answers (captured from the hand-written
// decoders): the message, the field, and the value that broke the rule.

template <typename M>
std::string DecodeError(const std::string& payload) {
  M back;
  return Decode(payload, &back).message();
}

// `bytes` with the byte at `offset` replaced by `value`.
std::string WithByte(std::string bytes, size_t offset, uint8_t value) {
  bytes.replace(offset, 1, 1, static_cast<char>(value));
  return bytes;
}

// `empty`, a message whose list is empty and last, with that list's count set to `count`.
std::string WithCount(const std::string& empty, uint32_t count) {
  net::WireWriter w;
  w.U32(count);
  return empty.substr(0, empty.size() - 4) + w.data();
}

TEST(ProtoValidationTest, BooleansMustBeZeroOrOne) {
  EXPECT_EQ(DecodeError<Welcome>(WithByte(Encode(Welcome{1, 1, 1, 0, "", ""}), 8, 2)),
            "Welcome: field 'accepted' must be 0 or 1, got 2");
  EXPECT_EQ(DecodeError<PendingQuery>(WithByte(Encode(PendingQuery{1, 1}), 8, 2)),
            "QueryPending: field 'joint' must be 0 or 1, got 2");
  EXPECT_EQ(DecodeError<PendingQuery>(WithByte(Encode(PendingQuery{1, 0, 1}), 9, 2)),
            "QueryPending: field 'wait' must be 0 or 1, got 2");
  EXPECT_EQ(DecodeError<PendingReply>(WithByte(Encode(PendingReply{1, 1}), 8, 3)),
            "PendingReply: field 'pending' must be 0 or 1, got 3");
  // The ok byte follows the 44-byte OpKey.
  EXPECT_EQ(DecodeError<OpDone>(WithByte(Encode(OpDone{kSampleKey, 1, 2, "", 0, "", 0, 0}), 44, 2)),
            "OpDone: field 'ok' must be 0 or 1, got 2");
  EXPECT_EQ(DecodeError<Verdict>(WithByte(Encode(Verdict{kSampleKey, 1, "", 0, 0, "", ""}), 44, 255)),
            "Verdict: field 'ok' must be 0 or 1, got 255");
  EXPECT_EQ(DecodeError<P2PWelcome>(WithByte(Encode(P2PWelcome{1, "x"}), 0, 2)),
            "P2PWelcome: field 'ok' must be 0 or 1, got 2");
  EXPECT_EQ(DecodeError<SyncResult>(WithByte(Encode(SyncResult{1, 1, 0, ""}), 8, 2)),
            "SyncResult: field 'ok' must be 0 or 1, got 2");
}

TEST(ProtoValidationTest, RangesAndOrder) {
  EXPECT_EQ(DecodeError<Hello>(Encode(HelloOf(1, 0, "h", ""))), "Hello: field 'p2p_port' must not be 0");
  // SyncState{call, revision, strategy, entries}: strategy at byte 16; the first entry's
  // dtype at 34 and allow_content_inequality at 43 (key "w"). The first broken rule, in wire
  // order, is the one reported (an entry's dtype is checked once the whole entry is read).
  std::string state = Encode(SyncState{1, 2, 0, {StateEntry{"w", 64, 7, 0x1234, 1}}});
  EXPECT_EQ(DecodeError<SyncState>(WithByte(state, 16, 3)),
            "SyncState: field 'strategy' must be 0, 1 or 2, got 3");
  EXPECT_EQ(DecodeError<SyncState>(WithByte(state, 34, 12)),
            "SyncState: field 'dtype' of key 'w' must be a DataType, got 12");
  EXPECT_EQ(DecodeError<SyncState>(WithByte(WithByte(state, 34, 12), 43, 2)),
            "SyncState: field 'allow_content_inequality' must be 0 or 1, got 2");
  EXPECT_EQ(DecodeError<SyncState>(WithByte(WithByte(state, 16, 3), 43, 2)),
            "SyncState: field 'strategy' must be 0, 1 or 2, got 3");
  EXPECT_EQ(DecodeError<Vote>(Encode(Vote{1, {TagCount{4, 1}, TagCount{4, 1}}})),
            "VoteTopology: field 'started' must list ascending tags with counts > 0");
  EXPECT_EQ(DecodeError<Vote>(Encode(Vote{1, {TagCount{4, 1}, TagCount{5, 0}}})),
            "VoteTopology: field 'started' must list ascending tags with counts > 0");
  // A truncated payload names the field that did not fit, before any broken rule.
  std::string hello = Encode(HelloOf(1, 0, "h", ""));
  // No resume claim (36 bytes), no key, no "h".
  EXPECT_EQ(DecodeError<Hello>(hello.substr(0, hello.size() - 36 - 5)),
            "Hello: truncated message: field 'advertise_host' needs 1 bytes, 0 left");
}

TEST(ProtoValidationTest, CountsAndLengthsHaveLimits) {
  EXPECT_EQ(DecodeError<Topology>(WithCount(Encode(Topology{}), kMaxMembers + 1)),
            "Topology: field 'member_count' is 4097, above the limit of 4096");
  EXPECT_EQ(DecodeError<Vote>(WithCount(Encode(Vote{}), kMaxVoteTags + 1)),
            "VoteTopology: field 'started_count' is 16385, above the limit of 16384");
  EXPECT_EQ(DecodeError<SyncState>(WithCount(Encode(SyncState{}), kMaxStateEntries + 1)),
            "SyncState: field 'entry_count' is 16385, above the limit of 16384");
  uint32_t max_fetches = kMaxStateEntries * kMaxStateSources;
  EXPECT_EQ(DecodeError<SyncPlan>(WithCount(Encode(SyncPlan{}), max_fetches + 1)),
            "SyncPlan: field 'fetch_count' is 131073, above the limit of 131072");
  EXPECT_EQ(DecodeError<MeasureBandwidth>(WithCount(Encode(MeasureBandwidth{}), kMaxMembers + 1)),
            "MeasureBandwidth: field 'target_count' is 4097, above the limit of 4096");
  EXPECT_EQ(DecodeError<BandwidthReport>(WithCount(Encode(BandwidthReport{}), kMaxMembers + 1)),
            "BandwidthReport: field 'sample_count' is 4097, above the limit of 4096");
  // A count over its limit reads no elements: the elements that follow are trailing bytes.
  // (A Topology is the epoch, 8 bytes, the count, 4, then the members.)
  std::string member = Encode(Topology{1, {Member{1, "h", 1, 0, "", 0}}}).substr(12);
  EXPECT_EQ(DecodeError<Topology>(WithCount(Encode(Topology{}), kMaxMembers + 1) + member),
            "Topology: 32 unexpected trailing bytes");

  std::string reason(kMaxReasonLength + 1, 'r');
  std::string key(kMaxStateKeyLength + 1, 'k');
  std::string host(kMaxHostLength + 1, 'h');
  EXPECT_EQ(DecodeError<ErrorMessage>(Encode(ErrorMessage{1, reason})),
            "Error: field 'message' is 4097 bytes, limit 4096");
  EXPECT_EQ(DecodeError<StateRequest>(Encode(StateRequest{key, 1, 2, 3})),
            "StateRequest: field 'key' is 1025 bytes, limit 1024");
  EXPECT_EQ(DecodeError<Topology>(Encode(Topology{1, {Member{1, host, 1, 0, "", 0}}})),
            "Topology: field 'host' is 256 bytes, limit 255");
  EXPECT_EQ(DecodeError<Topology>(Encode(Topology{1, {Member{1, "h", 1, 0, "short", 0}}})),
            "Topology: field 'public_key' must be empty or 32 bytes, got 5");
  EXPECT_EQ(DecodeError<Hello>(Encode(HelloOf(1, 4000, "h", std::string(33, 'k')))),
            "Hello: field 'public_key' is 33 bytes, limit 32");
  // At the limit is fine.
  reason.pop_back();
  EXPECT_EQ(DecodeError<Verdict>(Encode(Verdict{kSampleKey, 0, reason, 4, 0, "", ""})), "");
}

TEST(ProtoValidationTest, EmptyMessages) {
  EXPECT_TRUE(DecodeEmpty("", "Heartbeat").ok());
  EXPECT_EQ(DecodeEmpty("ab", "Heartbeat").message(), "Heartbeat carries 2 unexpected bytes");
}

// The frame caps (net/wire.h) bound what a stranger can send, never an honest message: the
// largest messages the decoders' own limits admit fit their direction's cap.
TEST(ProtoTest, TheLargestHonestMessagesFitTheFrameCaps) {
  const std::string host(kMaxHostLength, 'h');
  const std::string key(kMaxStateKeyLength, 'k');
  Topology topology;
  for (uint32_t i = 0; i < kMaxMembers; ++i) {
    topology.members.push_back(Member{i + 1, host, 4000, i % 7, "", 3});
  }
  const size_t topology_bytes = Encode(topology).size();
  EXPECT_GT(topology_bytes, size_t{1} << 20);  // beyond the old single cap
  EXPECT_LE(topology_bytes, net::kMaxMasterMessage);

  SyncState state;  // a peer's report: kMaxStateEntries entries with the longest keys
  for (uint32_t i = 0; i < kMaxStateEntries; ++i) state.entries.push_back(StateEntry{key, 8, 10, i, 0});
  EXPECT_LE(Encode(state).size(), net::kMaxPeerMessage);

  SyncPlan plan;  // 10,000 keys of 100 bytes, each from kMaxStateSources sources
  const std::string name(100, 'n');
  for (uint32_t i = 0; i < 10000; ++i) {
    for (uint32_t s = 0; s < kMaxStateSources; ++s) {
      plan.fetches.push_back(StateFetch{name, i, s + 1, host, 4000});
    }
  }
  EXPECT_LE(Encode(plan).size(), net::kMaxMasterMessage);

  BandwidthReport report;
  for (uint32_t i = 0; i < kMaxMembers; ++i) report.samples.push_back(BandwidthSample{i, 1});
  EXPECT_LE(Encode(report).size(), net::kMaxPeerMessage);
  Hello resume = HelloOf(1, 4000, host, std::string(kPublicKeyLength, 'k'));
  resume.resume_peer_id = 1;
  for (uint32_t i = 1; i <= kMaxMembers; ++i) resume.resume_ring.push_back(BandwidthSample{i, 1});
  EXPECT_LE(Encode(resume).size(), net::kMaxHelloPayload);
}

}  // namespace
}  // namespace pccl::proto
