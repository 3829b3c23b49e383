#include "pccl/proto/messages.h"

#include <tuple>

#include "pccl/net/wire.h"

namespace pccl::proto {

using net::WireReader;
using net::WireWriter;

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
  }
  return "unknown";
}

bool OpKey::operator<(const OpKey& o) const {
  return std::tie(epoch, peer_group, tag, seq) < std::tie(o.epoch, o.peer_group, o.tag, o.seq);
}

std::string OpKey::ToString() const {
  return "op(epoch " + std::to_string(epoch) + ", group " + std::to_string(peer_group) +
         ", tag " + std::to_string(tag) + ", seq " + std::to_string(seq) + ")";
}

namespace {

void PutKey(WireWriter& w, const OpKey& k) {
  w.U64(k.epoch);
  w.U32(k.peer_group);
  w.U64(k.tag);
  w.U64(k.seq);
}

OpKey GetKey(WireReader& r) {
  OpKey k;
  k.epoch = r.U64("epoch");
  k.peer_group = r.U32("peer_group");
  k.tag = r.U64("tag");
  k.seq = r.U64("seq");
  return k;
}

uint8_t GetBool(WireReader& r, const char* field, Status* status) {
  uint8_t v = r.U8(field);
  if (r.ok() && v > 1 && status->ok()) {
    *status = InvalidArgument(std::string("field '") + field + "' must be 0 or 1, got " +
                              std::to_string(v));
  }
  return v;
}

// Reads a u32 element count and checks it against `limit`.
uint32_t GetCount(WireReader& r, const char* field, uint32_t limit, Status* status) {
  uint32_t n = r.U32(field);
  if (r.ok() && n > limit) {
    if (status->ok()) {
      *status = InvalidArgument(std::string("field '") + field + "' is " + std::to_string(n) +
                                ", above the limit of " + std::to_string(limit));
    }
    return 0;
  }
  return n;
}


Status Finish(WireReader& r, const Status& field_status, const char* name) {
  PCCL_RETURN_IF_ERROR(r.Finish(name));
  if (!field_status.ok()) return InvalidArgument(std::string(name) + ": " + field_status.message());
  return Status::Ok();
}

}  // namespace

std::string Encode(const Hello& m) {
  WireWriter w;
  w.U32(m.peer_group);
  w.U16(m.p2p_port);
  w.Str(m.advertise_host);
  return w.Take();
}

Status Decode(const std::string& payload, Hello* m) {
  WireReader r(payload);
  m->peer_group = r.U32("peer_group");
  m->p2p_port = r.U16("p2p_port");
  m->advertise_host = r.Str("advertise_host", kMaxHostLength);
  Status fields;
  if (r.ok() && m->p2p_port == 0) fields = InvalidArgument("field 'p2p_port' must not be 0");
  return Finish(r, fields, "Hello");
}

std::string Encode(const Welcome& m) {
  WireWriter w;
  w.U64(m.peer_id);
  w.U8(m.accepted);
  w.U32(m.heartbeat_interval_ms);
  return w.Take();
}

Status Decode(const std::string& payload, Welcome* m) {
  WireReader r(payload);
  Status fields;
  m->peer_id = r.U64("peer_id");
  m->accepted = GetBool(r, "accepted", &fields);
  m->heartbeat_interval_ms = r.U32("heartbeat_interval_ms");
  return Finish(r, fields, "Welcome");
}

std::string Encode(const Topology& m) {
  WireWriter w;
  w.U64(m.epoch);
  w.U32(static_cast<uint32_t>(m.members.size()));
  for (const Member& member : m.members) {
    w.U64(member.peer_id);
    w.Str(member.host);
    w.U16(member.port);
    w.U32(member.peer_group);
    w.U64(member.ring_epoch);
  }
  return w.Take();
}

Status Decode(const std::string& payload, Topology* m) {
  WireReader r(payload);
  Status fields;
  m->epoch = r.U64("epoch");
  uint32_t n = r.U32("member_count");
  if (r.ok() && n > kMaxMembers) {
    fields = InvalidArgument("member_count " + std::to_string(n) + " exceeds " +
                             std::to_string(kMaxMembers));
    n = 0;
  }
  m->members.clear();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    Member member;
    member.peer_id = r.U64("peer_id");
    member.host = r.Str("host", kMaxHostLength);
    member.port = r.U16("port");
    member.peer_group = r.U32("peer_group");
    member.ring_epoch = r.U64("ring_epoch");
    m->members.push_back(std::move(member));
  }
  return Finish(r, fields, "Topology");
}

std::string Encode(const EpochMessage& m) {
  WireWriter w;
  w.U64(m.epoch);
  return w.Take();
}

Status Decode(const std::string& payload, EpochMessage* m) {
  WireReader r(payload);
  m->epoch = r.U64("epoch");
  return Finish(r, Status::Ok(), "EpochMessage");
}

std::string Encode(const TopologyComplete& m) {
  WireWriter w;
  w.U64(m.epoch);
  return w.Take();
}

Status Decode(const std::string& payload, TopologyComplete* m) {
  WireReader r(payload);
  m->epoch = r.U64("epoch");
  return Finish(r, Status::Ok(), "TopologyComplete");
}

std::string Encode(const Vote& m) {
  WireWriter w;
  w.U64(m.ring_epoch);
  w.U32(static_cast<uint32_t>(m.started.size()));
  for (const TagCount& t : m.started) {
    w.U64(t.tag);
    w.U64(t.count);
  }
  return w.Take();
}

Status Decode(const std::string& payload, Vote* m) {
  WireReader r(payload);
  Status fields;
  m->ring_epoch = r.U64("ring_epoch");
  uint32_t n = GetCount(r, "started_count", kMaxVoteTags, &fields);
  m->started.clear();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    TagCount t;
    t.tag = r.U64("tag");
    t.count = r.U64("count");
    if (r.ok() && fields.ok() && (t.count == 0 || (i > 0 && t.tag <= m->started.back().tag))) {
      fields = InvalidArgument("field 'started' must list ascending tags with counts > 0");
    }
    m->started.push_back(t);
  }
  return Finish(r, fields, "VoteTopology");
}

std::string Encode(const PendingQuery& m) {
  WireWriter w;
  w.U64(m.seq);
  w.U8(m.joint);
  return w.Take();
}

Status Decode(const std::string& payload, PendingQuery* m) {
  WireReader r(payload);
  Status fields;
  m->seq = r.U64("seq");
  m->joint = GetBool(r, "joint", &fields);
  return Finish(r, fields, "QueryPending");
}

std::string Encode(const PendingReply& m) {
  WireWriter w;
  w.U64(m.seq);
  w.U8(m.pending);
  return w.Take();
}

Status Decode(const std::string& payload, PendingReply* m) {
  WireReader r(payload);
  Status fields;
  m->seq = r.U64("seq");
  m->pending = GetBool(r, "pending", &fields);
  return Finish(r, fields, "PendingReply");
}

std::string Encode(const OpDone& m) {
  WireWriter w;
  PutKey(w, m.key);
  w.U8(m.ok);
  w.U64(m.descriptor_hash);
  w.Str(m.reason);
  w.U32(m.code);
  return w.Take();
}

Status Decode(const std::string& payload, OpDone* m) {
  WireReader r(payload);
  Status fields;
  m->key = GetKey(r);
  m->ok = GetBool(r, "ok", &fields);
  m->descriptor_hash = r.U64("descriptor_hash");
  m->reason = r.Str("reason", kMaxReasonLength);
  m->code = r.U32("code");
  return Finish(r, fields, "OpDone");
}

std::string Encode(const Verdict& m) {
  WireWriter w;
  PutKey(w, m.key);
  w.U8(m.ok);
  w.Str(m.reason);
  w.U32(m.code);
  return w.Take();
}

Status Decode(const std::string& payload, Verdict* m) {
  WireReader r(payload);
  Status fields;
  m->key = GetKey(r);
  m->ok = GetBool(r, "ok", &fields);
  m->reason = r.Str("reason", kMaxReasonLength);
  m->code = r.U32("code");
  return Finish(r, fields, "Verdict");
}

std::string Encode(const ErrorMessage& m) {
  WireWriter w;
  w.U32(m.code);
  w.Str(m.message);
  return w.Take();
}

Status Decode(const std::string& payload, ErrorMessage* m) {
  WireReader r(payload);
  m->code = r.U32("code");
  m->message = r.Str("message", kMaxReasonLength);
  return Finish(r, Status::Ok(), "Error");
}

std::string Encode(const P2PHello& m) {
  WireWriter w;
  w.U64(m.epoch);
  w.U64(m.from_peer_id);
  w.U64(m.to_peer_id);
  w.U32(m.slot);
  return w.Take();
}

Status Decode(const std::string& payload, P2PHello* m) {
  WireReader r(payload);
  m->epoch = r.U64("epoch");
  m->from_peer_id = r.U64("from_peer_id");
  m->to_peer_id = r.U64("to_peer_id");
  m->slot = r.U32("slot");
  return Finish(r, Status::Ok(), "P2PHello");
}

std::string Encode(const P2PWelcome& m) {
  WireWriter w;
  w.U8(m.ok);
  w.Str(m.reason);
  return w.Take();
}

Status Decode(const std::string& payload, P2PWelcome* m) {
  WireReader r(payload);
  Status fields;
  m->ok = GetBool(r, "ok", &fields);
  m->reason = r.Str("reason", kMaxReasonLength);
  return Finish(r, fields, "P2PWelcome");
}


std::string Encode(const SyncState& m) {
  WireWriter w;
  w.U64(m.call);
  w.U64(m.revision);
  w.U8(m.strategy);
  w.U32(static_cast<uint32_t>(m.entries.size()));
  for (const StateEntry& e : m.entries) {
    w.Str(e.key);
    w.U64(e.bytes);
    w.U8(e.dtype);
    w.U64(e.hash);
    w.U8(e.allow_content_inequality);
  }
  return w.Take();
}

Status Decode(const std::string& payload, SyncState* m) {
  WireReader r(payload);
  Status fields;
  m->call = r.U64("call");
  m->revision = r.U64("revision");
  m->strategy = r.U8("strategy");
  if (r.ok() && m->strategy > static_cast<uint8_t>(SyncStrategy::kSendOnly) && fields.ok()) {
    fields = InvalidArgument("field 'strategy' must be 0, 1 or 2, got " +
                             std::to_string(m->strategy));
  }
  uint32_t n = GetCount(r, "entry_count", kMaxStateEntries, &fields);
  m->entries.clear();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    StateEntry e;
    e.key = r.Str("key", kMaxStateKeyLength);
    e.bytes = r.U64("bytes");
    e.dtype = r.U8("dtype");
    e.hash = r.U64("hash");
    e.allow_content_inequality = GetBool(r, "allow_content_inequality", &fields);
    if (r.ok() && e.dtype >= 12 && fields.ok()) {
      fields = InvalidArgument("field 'dtype' of key '" + e.key + "' must be a DataType, got " +
                               std::to_string(e.dtype));
    }
    m->entries.push_back(std::move(e));
  }
  return Finish(r, fields, "SyncState");
}

std::string Encode(const SyncPlan& m) {
  WireWriter w;
  w.U64(m.call);
  w.U64(m.revision);
  w.U32(static_cast<uint32_t>(m.fetches.size()));
  for (const StateFetch& f : m.fetches) {
    w.Str(f.key);
    w.U64(f.hash);
    w.U64(f.source_peer_id);
    w.Str(f.source_host);
    w.U16(f.source_port);
  }
  return w.Take();
}

Status Decode(const std::string& payload, SyncPlan* m) {
  WireReader r(payload);
  Status fields;
  m->call = r.U64("call");
  m->revision = r.U64("revision");
  uint32_t n = GetCount(r, "fetch_count", kMaxStateEntries * kMaxStateSources, &fields);
  m->fetches.clear();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    StateFetch f;
    f.key = r.Str("key", kMaxStateKeyLength);
    f.hash = r.U64("hash");
    f.source_peer_id = r.U64("source_peer_id");
    f.source_host = r.Str("source_host", kMaxHostLength);
    f.source_port = r.U16("source_port");
    m->fetches.push_back(std::move(f));
  }
  return Finish(r, fields, "SyncPlan");
}

std::string Encode(const SyncResult& m) {
  WireWriter w;
  w.U64(m.call);
  w.U8(m.ok);
  w.U32(m.code);
  w.Str(m.reason);
  return w.Take();
}

Status Decode(const std::string& payload, SyncResult* m) {
  WireReader r(payload);
  Status fields;
  m->call = r.U64("call");
  m->ok = GetBool(r, "ok", &fields);
  m->code = r.U32("code");
  m->reason = r.Str("reason", kMaxReasonLength);
  return Finish(r, fields, "SyncResult");
}

std::string Encode(const StateHello& m) {
  WireWriter w;
  w.U64(m.from_peer_id);
  w.U64(m.to_peer_id);
  return w.Take();
}

Status Decode(const std::string& payload, StateHello* m) {
  WireReader r(payload);
  m->from_peer_id = r.U64("from_peer_id");
  m->to_peer_id = r.U64("to_peer_id");
  return Finish(r, Status::Ok(), "StateHello");
}

std::string Encode(const StateRequest& m) {
  WireWriter w;
  w.Str(m.key);
  w.U64(m.hash);
  w.U64(m.offset);
  w.U64(m.length);
  return w.Take();
}

Status Decode(const std::string& payload, StateRequest* m) {
  WireReader r(payload);
  m->key = r.Str("key", kMaxStateKeyLength);
  m->hash = r.U64("hash");
  m->offset = r.U64("offset");
  m->length = r.U64("length");
  return Finish(r, Status::Ok(), "StateRequest");
}

std::string Encode(const MeasureBandwidth& m) {
  WireWriter w;
  w.U32(m.round);
  w.U32(m.duration_ms);
  w.U32(static_cast<uint32_t>(m.targets.size()));
  for (const Member& t : m.targets) {
    w.U64(t.peer_id);
    w.Str(t.host);
    w.U16(t.port);
    w.U32(t.peer_group);
  }
  return w.Take();
}

Status Decode(const std::string& payload, MeasureBandwidth* m) {
  WireReader r(payload);
  Status fields;
  m->round = r.U32("round");
  m->duration_ms = r.U32("duration_ms");
  uint32_t n = GetCount(r, "target_count", kMaxMembers, &fields);
  m->targets.clear();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    Member t;
    t.peer_id = r.U64("peer_id");
    t.host = r.Str("host", kMaxHostLength);
    t.port = r.U16("port");
    t.peer_group = r.U32("peer_group");
    m->targets.push_back(std::move(t));
  }
  return Finish(r, fields, "MeasureBandwidth");
}

std::string Encode(const BandwidthReport& m) {
  WireWriter w;
  w.U32(m.round);
  w.U32(static_cast<uint32_t>(m.samples.size()));
  for (const BandwidthSample& s : m.samples) {
    w.U64(s.to_peer_id);
    w.U64(s.bytes_per_second);
  }
  return w.Take();
}

Status Decode(const std::string& payload, BandwidthReport* m) {
  WireReader r(payload);
  Status fields;
  m->round = r.U32("round");
  uint32_t n = GetCount(r, "sample_count", kMaxMembers, &fields);
  m->samples.clear();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    BandwidthSample s;
    s.to_peer_id = r.U64("to_peer_id");
    s.bytes_per_second = r.U64("bytes_per_second");
    m->samples.push_back(s);
  }
  return Finish(r, fields, "BandwidthReport");
}

std::string Encode(const ProbeResult& m) {
  WireWriter w;
  w.U64(m.bytes);
  w.U64(m.nanoseconds);
  return w.Take();
}

Status Decode(const std::string& payload, ProbeResult* m) {
  WireReader r(payload);
  m->bytes = r.U64("bytes");
  m->nanoseconds = r.U64("nanoseconds");
  return Finish(r, Status::Ok(), "ProbeResult");
}

void EncodeDataHeader(const DataHeader& h, uint8_t out[kDataHeaderBytes]) {
  net::PutU64(out, h.tag);
  net::PutU64(out + 8, h.seq);
  net::PutU64(out + 16, h.descriptor_hash);
  net::PutU32(out + 24, h.step);
  net::PutU32(out + 28, h.segment);
  net::PutU64(out + 32, h.payload_bytes);
}

DataHeader DecodeDataHeader(const uint8_t in[kDataHeaderBytes]) {
  DataHeader h;
  h.tag = net::GetU64(in);
  h.seq = net::GetU64(in + 8);
  h.descriptor_hash = net::GetU64(in + 16);
  h.step = net::GetU32(in + 24);
  h.segment = net::GetU32(in + 28);
  h.payload_bytes = net::GetU64(in + 32);
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
