#include "pccl/proto/messages.h"

#include <set>
#include <tuple>

#include "pccl/net/wire.h"
#include "pccl/proto/codec.h"

namespace pccl::proto {

const char* KindName(uint16_t kind) {
  switch (static_cast<Kind>(kind)) {
    case Kind::kHello: return "Hello";
    case Kind::kWelcome: return "Welcome";
    case Kind::kVoteTopology: return "VoteTopology";
    case Kind::kTopology: return "Topology";
    case Kind::kLinksReady: return "LinksReady";
    case Kind::kTopologyComplete: return "TopologyComplete";
    case Kind::kTopologyUnchanged: return "TopologyUnchanged";
    case Kind::kQueryPending: return "QueryPending";
    case Kind::kPendingReply: return "PendingReply";
    case Kind::kOpDone: return "OpDone";
    case Kind::kVerdict: return "Verdict";
    case Kind::kGoodbye: return "Goodbye";
    case Kind::kError: return "Error";
    case Kind::kHeartbeat: return "Heartbeat";
    case Kind::kHeartbeatAck: return "HeartbeatAck";
    case Kind::kLinkBroken: return "LinkBroken";
    case Kind::kReachabilityQuery: return "ReachabilityQuery";
    case Kind::kReachability: return "Reachability";
    case Kind::kPairQuery: return "PairQuery";
    case Kind::kDialBack: return "DialBack";
    case Kind::kPairHello: return "PairHello";
    case Kind::kRelayPark: return "RelayPark";
    case Kind::kRelayDial: return "RelayDial";
    case Kind::kRelayReady: return "RelayReady";
    case Kind::kRelayIncoming: return "RelayIncoming";
    case Kind::kOptimizeTopology: return "OptimizeTopology";
    case Kind::kMeasureBandwidth: return "MeasureBandwidth";
    case Kind::kBandwidthReport: return "BandwidthReport";
    case Kind::kP2PHello: return "P2PHello";
    case Kind::kP2PWelcome: return "P2PWelcome";
    case Kind::kData: return "Data";
    case Kind::kSyncState: return "SyncState";
    case Kind::kSyncPlan: return "SyncPlan";
    case Kind::kSyncDone: return "SyncDone";
    case Kind::kSyncComplete: return "SyncComplete";
    case Kind::kStateHello: return "StateHello";
    case Kind::kStateRequest: return "StateRequest";
    case Kind::kStateData: return "StateData";
    case Kind::kProbeHello: return "ProbeHello";
    case Kind::kProbeData: return "ProbeData";
    case Kind::kProbeResult: return "ProbeResult";
    case Kind::kGreeting: return "Greeting";
    case Kind::kChallenge: return "Challenge";
    case Kind::kProof: return "Proof";
  }
  return "unknown";
}

bool OpKey::operator<(const OpKey& o) const {
  return std::tie(epoch, peer_group, tag, seq, from_peer, to_peer) <
         std::tie(o.epoch, o.peer_group, o.tag, o.seq, o.from_peer, o.to_peer);
}

std::string OpKey::ToString() const {
  if (pair()) {
    return "send/recv(epoch " + std::to_string(epoch) + ", group " + std::to_string(peer_group) +
           ", peer " + std::to_string(from_peer) + " to peer " + std::to_string(to_peer) +
           ", tag " + std::to_string(tag) + ", #" + std::to_string(seq / 2) + ")";
  }
  return "op(epoch " + std::to_string(epoch) + ", group " + std::to_string(peer_group) +
         ", tag " + std::to_string(tag) + ", seq " + std::to_string(seq) + ")";
}

namespace {

using codec::Bool;
using codec::List;
using codec::MessageOf;
using codec::Nested;
using codec::Rule;
using codec::Str;
using codec::U16;
using codec::U32;
using codec::U64;
using codec::U8;

// --- Rules beyond a field's own width and limit -------------------------------------------

Status PortIsSet(const Hello& m) {
  if (m.p2p_port == 0) return InvalidArgument("field 'p2p_port' must not be 0");
  return Status::Ok();
}

Status PublicKeyFits(const std::string& key) {
  if (key.empty() || key.size() == kPublicKeyLength) return Status::Ok();
  return InvalidArgument("field 'public_key' must be empty or " +
                         std::to_string(kPublicKeyLength) + " bytes, got " +
                         std::to_string(key.size()));
}
Status HelloKeyFits(const Hello& m) { return PublicKeyFits(m.public_key); }

Status ResumeClaimHolds(const Hello& m) {
  if (m.resume_peer_id == 0) {
    if (m.resume_epoch != 0 || m.resume_ring_epoch != 0 || !m.resume_ring.empty() ||
        m.resume_state_revision != 0) {
      return InvalidArgument("resume fields are set but field 'resume_peer_id' is 0");
    }
    return Status::Ok();
  }
  bool self = false;
  std::set<uint64_t> seen;
  for (const BandwidthSample& s : m.resume_ring) {
    if (s.to_peer_id == 0 || !seen.insert(s.to_peer_id).second) {
      return InvalidArgument("field 'resume_ring' must list distinct non-zero peer ids");
    }
    self = self || s.to_peer_id == m.resume_peer_id;
  }
  if (!m.resume_ring.empty() && !self) {
    return InvalidArgument("field 'resume_ring' must include the resuming peer itself");
  }
  return Status::Ok();
}
Status MemberKeyFits(const Member& m) { return PublicKeyFits(m.public_key); }

Status ExactLength(const std::string& value, size_t length, const char* field) {
  if (value.size() == length) return Status::Ok();
  return InvalidArgument(std::string("field '") + field + "' must be " + std::to_string(length) +
                         " bytes, got " + std::to_string(value.size()));
}

Status GreetingIsWellFormed(const Greeting& m) {
  const auto purpose = static_cast<Kind>(m.purpose);
  if (purpose != Kind::kHello && purpose != Kind::kP2PHello && purpose != Kind::kStateHello &&
      purpose != Kind::kProbeHello && purpose != Kind::kPairHello) {
    return InvalidArgument("field 'purpose' must be Hello, P2PHello, StateHello, ProbeHello or "
                           "PairHello, got " +
                           std::to_string(m.purpose));
  }
  if (m.transport > 1) {
    return InvalidArgument("field 'transport' must be 0 or 1, got " + std::to_string(m.transport));
  }
  if (m.cipher > 2) return InvalidArgument("field 'cipher' is " + std::to_string(m.cipher));
  return ExactLength(m.nonce, kNonceLength, "nonce");
}

Status ChallengeIsWellFormed(const Challenge& m) {
  if (m.cipher > 2) return InvalidArgument("field 'cipher' is " + std::to_string(m.cipher));
  PCCL_RETURN_IF_ERROR(ExactLength(m.nonce, kNonceLength, "nonce"));
  return ExactLength(m.proof, kProofLength, "proof");
}

Status ProofIsWellFormed(const Proof& m) { return ExactLength(m.proof, kProofLength, "proof"); }

Status StrategyIsKnown(const SyncState& m) {
  if (m.strategy <= static_cast<uint8_t>(SyncStrategy::kSendOnly)) return Status::Ok();
  return InvalidArgument("field 'strategy' must be 0, 1 or 2, got " +
                         std::to_string(m.strategy));
}

Status DTypeIsKnown(const StateEntry& e) {
  if (e.dtype < 12) return Status::Ok();  // pccl::DType has 12 values
  return InvalidArgument("field 'dtype' of key '" + e.key + "' must be a DataType, got " +
                         std::to_string(e.dtype));
}

Status StartedAscends(const Vote& m) {
  for (size_t i = 0; i < m.started.size(); ++i) {
    if (m.started[i].count == 0 || (i > 0 && m.started[i].tag <= m.started[i - 1].tag)) {
      return InvalidArgument("field 'started' must list ascending tags with counts > 0");
    }
  }
  return Status::Ok();
}

// --- The field lists: every message's fields, once, in wire order ---------------------------
// First the parts several messages share, then the messages (in the order of messages.h but
// Error last). The names are what errors call the fields; a message's name starts its errors.

constexpr std::tuple kOpKey{
    U64("epoch", &OpKey::epoch),
    U32("peer_group", &OpKey::peer_group),
    U64("tag", &OpKey::tag),
    U64("seq", &OpKey::seq),
    U64("from_peer", &OpKey::from_peer),
    U64("to_peer", &OpKey::to_peer),
};
// A bandwidth target; a Topology member also carries its ring epoch.
Status ReachabilityIsKnown(const Member& m) {
  if (m.reachable > kUnreachable) {
    return InvalidArgument("Member: field 'reachable' must be 0, 1 or 2, got " +
                           std::to_string(m.reachable));
  }
  return Status::Ok();
}
constexpr std::tuple kMember{
    U64("peer_id", &Member::peer_id),
    Str("host", &Member::host, kMaxHostLength),
    U16("port", &Member::port),
    U32("peer_group", &Member::peer_group),
    Str("public_key", &Member::public_key, kPublicKeyLength),
    Rule(&MemberKeyFits),
};
constexpr auto kRingMember = std::tuple_cat(
    kMember, std::tuple{U64("ring_epoch", &Member::ring_epoch),
                        U8("reachable", &Member::reachable), Rule(&ReachabilityIsKnown)});
constexpr std::tuple kTagCount{
    U64("tag", &TagCount::tag),
    U64("count", &TagCount::count),
};
constexpr std::tuple kStateEntry{
    Str("key", &StateEntry::key, kMaxStateKeyLength),
    U64("bytes", &StateEntry::bytes),
    U8("dtype", &StateEntry::dtype),
    U64("hash", &StateEntry::hash),
    Bool("allow_content_inequality", &StateEntry::allow_content_inequality),
    Rule(&DTypeIsKnown),
};
constexpr std::tuple kStateFetch{
    Str("key", &StateFetch::key, kMaxStateKeyLength),
    U64("hash", &StateFetch::hash),
    U64("source_peer_id", &StateFetch::source_peer_id),
    Str("source_host", &StateFetch::source_host, kMaxHostLength),
    U16("source_port", &StateFetch::source_port),
};
constexpr std::tuple kBandwidthSample{
    U64("to_peer_id", &BandwidthSample::to_peer_id),
    U64("bytes_per_second", &BandwidthSample::bytes_per_second),
};

constexpr auto kHello = MessageOf<Hello>("Hello", std::tuple{
    U32("peer_group", &Hello::peer_group),
    U16("p2p_port", &Hello::p2p_port),
    Str("advertise_host", &Hello::advertise_host, kMaxHostLength),
    Str("public_key", &Hello::public_key, kPublicKeyLength),
    Rule(&PortIsSet),
    Rule(&HelloKeyFits),
    U64("resume_peer_id", &Hello::resume_peer_id),
    U64("resume_epoch", &Hello::resume_epoch),
    U64("resume_ring_epoch", &Hello::resume_ring_epoch),
    List("resume_ring_count", &Hello::resume_ring, kMaxMembers, kBandwidthSample),
    U64("resume_state_revision", &Hello::resume_state_revision),
    Rule(&ResumeClaimHolds),
});
constexpr auto kWelcome = MessageOf<Welcome>("Welcome", std::tuple{
    U64("peer_id", &Welcome::peer_id),
    Bool("accepted", &Welcome::accepted),
    U32("heartbeat_interval_ms", &Welcome::heartbeat_interval_ms),
    U16("relay_port", &Welcome::relay_port),
    Str("relay_ticket", &Welcome::relay_ticket, kMaxTicketLength),
    Str("relay_host", &Welcome::relay_host, kMaxHostLength),
});
constexpr auto kTopology = MessageOf<Topology>("Topology", std::tuple{
    U64("epoch", &Topology::epoch),
    List("member_count", &Topology::members, kMaxMembers, kRingMember),
});
constexpr auto kEpochMessage = MessageOf<EpochMessage>("EpochMessage", std::tuple{
    U64("epoch", &EpochMessage::epoch),
});
constexpr auto kTopologyComplete = MessageOf<TopologyComplete>("TopologyComplete", std::tuple{
    U64("epoch", &TopologyComplete::epoch),
});
constexpr auto kVote = MessageOf<Vote>("VoteTopology", std::tuple{
    U64("ring_epoch", &Vote::ring_epoch),
    List("started_count", &Vote::started, kMaxVoteTags, kTagCount),
    Rule(&StartedAscends),
});
constexpr auto kPendingQuery = MessageOf<PendingQuery>("QueryPending", std::tuple{
    U64("seq", &PendingQuery::seq),
    Bool("joint", &PendingQuery::joint),
    Bool("wait", &PendingQuery::wait),
});
constexpr auto kPendingReply = MessageOf<PendingReply>("PendingReply", std::tuple{
    U64("seq", &PendingReply::seq),
    Bool("pending", &PendingReply::pending),
});
constexpr auto kOpDone = MessageOf<OpDone>("OpDone", std::tuple{
    Nested(&OpDone::key, kOpKey),
    Bool("ok", &OpDone::ok),
    U64("descriptor_hash", &OpDone::descriptor_hash),
    Str("reason", &OpDone::reason, kMaxReasonLength),
    U32("code", &OpDone::code),
    Str("report", &OpDone::report, kMaxReportLength),
    U64("tx_bytes", &OpDone::tx_bytes),
    U32("duration_us", &OpDone::duration_us),
});
constexpr auto kHeartbeat = MessageOf<Heartbeat>("Heartbeat", std::tuple{
    U32("rtt_us", &Heartbeat::rtt_us),
});
constexpr auto kVerdict = MessageOf<Verdict>("Verdict", std::tuple{
    Nested(&Verdict::key, kOpKey),
    Bool("ok", &Verdict::ok),
    Str("reason", &Verdict::reason, kMaxReasonLength),
    U32("code", &Verdict::code),
    Bool("ring_replaced", &Verdict::ring_replaced),
    Str("challenge", &Verdict::challenge, kChallengeLength),
    Str("reports", &Verdict::reports, kMaxReportsLength),
});
constexpr auto kP2PHello = MessageOf<P2PHello>("P2PHello", std::tuple{
    U64("epoch", &P2PHello::epoch),
    U64("from_peer_id", &P2PHello::from_peer_id),
    U64("to_peer_id", &P2PHello::to_peer_id),
    U32("slot", &P2PHello::slot),
});
constexpr auto kGreeting = MessageOf<Greeting>("Greeting", std::tuple{
    U16("purpose", &Greeting::purpose),
    U64("from_peer_id", &Greeting::from_peer_id),
    U64("to_peer_id", &Greeting::to_peer_id),
    U64("epoch", &Greeting::epoch),
    U32("slot", &Greeting::slot),
    U8("transport", &Greeting::transport),
    U8("cipher", &Greeting::cipher),
    Str("nonce", &Greeting::nonce, kNonceLength),
    Rule(&GreetingIsWellFormed),
});
constexpr auto kChallenge = MessageOf<Challenge>("Challenge", std::tuple{
    U8("cipher", &Challenge::cipher),
    Str("nonce", &Challenge::nonce, kNonceLength),
    Str("proof", &Challenge::proof, kProofLength),
    Rule(&ChallengeIsWellFormed),
});
constexpr auto kProof = MessageOf<Proof>("Proof", std::tuple{
    Str("proof", &Proof::proof, kProofLength),
    Rule(&ProofIsWellFormed),
});
constexpr auto kP2PWelcome = MessageOf<P2PWelcome>("P2PWelcome", std::tuple{
    Bool("ok", &P2PWelcome::ok),
    Str("reason", &P2PWelcome::reason, kMaxReasonLength),
});
constexpr auto kSyncState = MessageOf<SyncState>("SyncState", std::tuple{
    U64("call", &SyncState::call),
    U64("revision", &SyncState::revision),
    U8("strategy", &SyncState::strategy),
    Rule(&StrategyIsKnown),
    List("entry_count", &SyncState::entries, kMaxStateEntries, kStateEntry),
});
constexpr auto kSyncPlan = MessageOf<SyncPlan>("SyncPlan", std::tuple{
    U64("call", &SyncPlan::call),
    U64("revision", &SyncPlan::revision),
    List("fetch_count", &SyncPlan::fetches, kMaxStateEntries * kMaxStateSources, kStateFetch),
});
constexpr auto kSyncResult = MessageOf<SyncResult>("SyncResult", std::tuple{
    U64("call", &SyncResult::call),
    Bool("ok", &SyncResult::ok),
    U32("code", &SyncResult::code),
    Str("reason", &SyncResult::reason, kMaxReasonLength),
});
constexpr auto kStateHello = MessageOf<StateHello>("StateHello", std::tuple{
    U64("from_peer_id", &StateHello::from_peer_id),
    U64("to_peer_id", &StateHello::to_peer_id),
});
constexpr auto kStateRequest = MessageOf<StateRequest>("StateRequest", std::tuple{
    Str("key", &StateRequest::key, kMaxStateKeyLength),
    U64("hash", &StateRequest::hash),
    U64("offset", &StateRequest::offset),
    U64("length", &StateRequest::length),
});
constexpr auto kMeasureBandwidth = MessageOf<MeasureBandwidth>("MeasureBandwidth", std::tuple{
    U32("round", &MeasureBandwidth::round),
    U32("duration_ms", &MeasureBandwidth::duration_ms),
    List("target_count", &MeasureBandwidth::targets, kMaxMembers, kMember),
});
constexpr auto kBandwidthReport = MessageOf<BandwidthReport>("BandwidthReport", std::tuple{
    U32("round", &BandwidthReport::round),
    List("sample_count", &BandwidthReport::samples, kMaxMembers, kBandwidthSample),
});
constexpr auto kProbeResult = MessageOf<ProbeResult>("ProbeResult", std::tuple{
    U64("bytes", &ProbeResult::bytes),
    U64("nanoseconds", &ProbeResult::nanoseconds),
});
constexpr auto kLinkBroken = MessageOf<LinkBroken>("LinkBroken", std::tuple{
    U64("ring_epoch", &LinkBroken::ring_epoch),
    U64("peer_id", &LinkBroken::peer_id),
    Str("reason", &LinkBroken::reason, kMaxReasonLength),
});
constexpr auto kPairQuery = MessageOf<PairQuery>("PairQuery", std::tuple{
    Nested(&PairQuery::key, kOpKey),
    U32("code", &PairQuery::code),
    Str("reason", &PairQuery::reason, kMaxReasonLength),
});
constexpr auto kReachability = MessageOf<Reachability>("Reachability", std::tuple{
    Str("observed_host", &Reachability::observed_host, kMaxHostLength),
    U16("observed_port", &Reachability::observed_port),
    Bool("reachable", &Reachability::reachable),
    Str("detail", &Reachability::detail, kMaxReasonLength),
});
constexpr auto kRelayPark = MessageOf<RelayPark>("RelayPark", std::tuple{
    U64("peer_id", &RelayPark::peer_id),
    Str("ticket", &RelayPark::ticket, kMaxTicketLength),
});
constexpr auto kRelayDial = MessageOf<RelayDial>("RelayDial", std::tuple{
    U64("from_peer_id", &RelayDial::from_peer_id),
    Str("ticket", &RelayDial::ticket, kMaxTicketLength),
    U64("to_peer_id", &RelayDial::to_peer_id),
    Bool("punch", &RelayDial::punch),
});
constexpr auto kRelayReady = MessageOf<RelayReady>("RelayReady", std::tuple{
    Bool("ok", &RelayReady::ok),
    Str("reason", &RelayReady::reason, kMaxReasonLength),
    Str("peer_host", &RelayReady::peer_host, kMaxHostLength),
    U16("peer_port", &RelayReady::peer_port),
});
constexpr auto kRelayIncoming = MessageOf<RelayIncoming>("RelayIncoming", std::tuple{
    U64("from_peer_id", &RelayIncoming::from_peer_id),
    Bool("punch", &RelayIncoming::punch),
    Str("peer_host", &RelayIncoming::peer_host, kMaxHostLength),
    U16("peer_port", &RelayIncoming::peer_port),
});
// Both planes send it: the master before it drops a peer, a state source refusing a request.
constexpr auto kErrorMessage = MessageOf<ErrorMessage>("Error", std::tuple{
    U32("code", &ErrorMessage::code),
    Str("message", &ErrorMessage::message, kMaxReasonLength),
});

// Not a framed message: a fixed block in front of every data payload.
constexpr std::tuple kDataHeader{
    U64("tag", &DataHeader::tag),
    U64("seq", &DataHeader::seq),
    U64("descriptor_hash", &DataHeader::descriptor_hash),
    U32("step", &DataHeader::step),
    U32("segment", &DataHeader::segment),
    U64("payload_bytes", &DataHeader::payload_bytes),
};
static_assert(codec::FixedWireBytes(kDataHeader) == kDataHeaderBytes);

constexpr auto kMasterState = MessageOf<MasterState>("MasterState", std::tuple{
    U64("epoch", &MasterState::epoch),
    List("member_count", &MasterState::members, kMaxMembers, kRingMember),
    List("revision_count", &MasterState::revisions, kMaxMembers,
         std::tuple{U32("peer_group", &GroupRevision::peer_group),
                    U64("revision", &GroupRevision::revision)}),
    List("bandwidth_count", &MasterState::bandwidths, kMaxStateLinks,
         std::tuple{U64("from_peer_id", &MeasuredLink::from_peer_id),
                    U64("to_peer_id", &MeasuredLink::to_peer_id),
                    U64("bytes_per_second", &MeasuredLink::bytes_per_second)}),
    List("counter_count", &MasterState::counters, kMaxStateCounters,
         std::tuple{Str("name", &NamedCount::name, kMaxCounterName),
                    U64("value", &NamedCount::value)}),
});

}  // namespace

// The overloads messages.h declares, each a call into its field list.
#define PCCL_PROTO_CODEC(Type, fields)                          \
  std::string Encode(const Type& m) { return fields.Encode(m); } \
  Status Decode(const std::string& payload, Type* m) { return fields.Decode(payload, m); }
PCCL_PROTO_CODEC(Hello, kHello)
PCCL_PROTO_CODEC(Welcome, kWelcome)
PCCL_PROTO_CODEC(Topology, kTopology)
PCCL_PROTO_CODEC(EpochMessage, kEpochMessage)
PCCL_PROTO_CODEC(TopologyComplete, kTopologyComplete)
PCCL_PROTO_CODEC(Vote, kVote)
PCCL_PROTO_CODEC(PendingQuery, kPendingQuery)
PCCL_PROTO_CODEC(PendingReply, kPendingReply)
PCCL_PROTO_CODEC(OpDone, kOpDone)
void EncodeInto(const OpDone& m, std::string* out) { kOpDone.EncodeInto(m, out); }
PCCL_PROTO_CODEC(Heartbeat, kHeartbeat)
PCCL_PROTO_CODEC(Verdict, kVerdict)
PCCL_PROTO_CODEC(ErrorMessage, kErrorMessage)
PCCL_PROTO_CODEC(Greeting, kGreeting)
PCCL_PROTO_CODEC(Challenge, kChallenge)
PCCL_PROTO_CODEC(Proof, kProof)
PCCL_PROTO_CODEC(P2PHello, kP2PHello)
PCCL_PROTO_CODEC(P2PWelcome, kP2PWelcome)
PCCL_PROTO_CODEC(SyncState, kSyncState)
PCCL_PROTO_CODEC(SyncPlan, kSyncPlan)
PCCL_PROTO_CODEC(SyncResult, kSyncResult)
PCCL_PROTO_CODEC(StateHello, kStateHello)
PCCL_PROTO_CODEC(StateRequest, kStateRequest)
PCCL_PROTO_CODEC(MeasureBandwidth, kMeasureBandwidth)
PCCL_PROTO_CODEC(BandwidthReport, kBandwidthReport)
PCCL_PROTO_CODEC(ProbeResult, kProbeResult)
PCCL_PROTO_CODEC(LinkBroken, kLinkBroken)
PCCL_PROTO_CODEC(PairQuery, kPairQuery)
PCCL_PROTO_CODEC(Reachability, kReachability)
PCCL_PROTO_CODEC(RelayPark, kRelayPark)
PCCL_PROTO_CODEC(RelayDial, kRelayDial)
PCCL_PROTO_CODEC(RelayIncoming, kRelayIncoming)
PCCL_PROTO_CODEC(RelayReady, kRelayReady)
PCCL_PROTO_CODEC(MasterState, kMasterState)
#undef PCCL_PROTO_CODEC

void EncodeDataHeader(const DataHeader& h, uint8_t out[kDataHeaderBytes]) {
  codec::BlockWriter w(out);
  codec::EncodeFields(w, h, kDataHeader);
}

DataHeader DecodeDataHeader(const uint8_t in[kDataHeaderBytes]) {
  DataHeader h;
  codec::Decoder d(in, kDataHeaderBytes);
  codec::DecodeFields(d, h, kDataHeader);  // cannot fail: the block is exactly the fields' width
  return h;
}

Status DecodeEmpty(const std::string& payload, const char* name) {
  if (!payload.empty()) {
    return InvalidArgument(std::string(name) + " carries " + std::to_string(payload.size()) +
                           " unexpected bytes");
  }
  return Status::Ok();
}

}  // namespace pccl::proto
