// What proto/messages.h promises about every message that Decode() accepts, written out
// again here, independently of the field lists in messages.cc that enforce it: string and
// list lengths within their caps, booleans 0 or 1, enums in range, the handshake's fixed
// lengths and the cross-field rules. fuzz_message.cc checks a decoded message against the
// overload for its type; a message that decodes while breaking one is a finding (a cap the
// codec forgot, or a rule that lets something through).
#pragma once

#include <cstddef>
#include <string>

#include "fuzz_check.h"
#include "pccl/common/dtype.h"
#include "pccl/common/status.h"
#include "pccl/proto/messages.h"

namespace pccl::fuzz {

using namespace pccl::proto;  // NOLINT: every type below is a proto message

inline bool IsBool(uint8_t v) { return v <= 1; }
inline bool IsPublicKey(const std::string& key) {
  return key.empty() || key.size() == kPublicKeyLength;
}
inline bool IsCipher(uint8_t v) { return v <= 2; }  // secure::Cipher: none, AES-GCM, ChaCha20

// A Topology member; `ring` false for a MeasureBandwidth target, which has no ring epoch on
// the wire (it must stay 0, whatever the bytes).
inline void CheckMember(const Member& m, bool ring) {
  FUZZ_CHECK(m.host.size() <= kMaxHostLength);
  FUZZ_CHECK(IsPublicKey(m.public_key));
  FUZZ_CHECK(m.reachable <= kUnreachable);
  if (!ring) FUZZ_CHECK(m.ring_epoch == 0 && m.reachable == 0);
}

inline void Invariants(const Hello& m) {
  FUZZ_CHECK(m.p2p_port != 0);
  FUZZ_CHECK(m.advertise_host.size() <= kMaxHostLength);
  FUZZ_CHECK(IsPublicKey(m.public_key));
  FUZZ_CHECK(m.resume_ring.size() <= kMaxMembers);
  if (m.resume_peer_id == 0) {
    FUZZ_CHECK(m.resume_ring.empty() && m.resume_epoch == 0 && m.resume_ring_epoch == 0 &&
               m.resume_state_revision == 0);
  } else if (!m.resume_ring.empty()) {
    bool self = false;
    for (const BandwidthSample& s : m.resume_ring) {
      FUZZ_CHECK(s.to_peer_id != 0);
      self = self || s.to_peer_id == m.resume_peer_id;
    }
    FUZZ_CHECK(self);
  }
}
inline void Invariants(const Welcome& m) { FUZZ_CHECK(IsBool(m.accepted)); }
inline void Invariants(const Topology& m) {
  FUZZ_CHECK(m.members.size() <= kMaxMembers);
  for (const Member& member : m.members) CheckMember(member, /*ring=*/true);
}
inline void Invariants(const EpochMessage&) {}
inline void Invariants(const TopologyComplete&) {}
inline void Invariants(const Vote& m) {
  FUZZ_CHECK(m.started.size() <= kMaxVoteTags);
  for (size_t i = 0; i < m.started.size(); ++i) {
    FUZZ_CHECK(m.started[i].count > 0);
    if (i > 0) FUZZ_CHECK(m.started[i].tag > m.started[i - 1].tag);
  }
}
inline void Invariants(const PendingQuery& m) {
  FUZZ_CHECK(IsBool(m.joint));
  FUZZ_CHECK(IsBool(m.wait));
}
inline void Invariants(const PendingReply& m) { FUZZ_CHECK(IsBool(m.pending)); }
inline void Invariants(const OpDone& m) {
  FUZZ_CHECK(IsBool(m.ok));
  FUZZ_CHECK(m.reason.size() <= kMaxReasonLength);
  FUZZ_CHECK(m.report.size() <= kMaxReportLength);
}
inline void Invariants(const Heartbeat&) {}  // any u32 is a round trip
inline void Invariants(const MasterState& m) {
  FUZZ_CHECK(m.members.size() <= kMaxMembers);
  for (const Member& member : m.members) CheckMember(member, /*ring=*/true);
  FUZZ_CHECK(m.revisions.size() <= kMaxMembers);
  FUZZ_CHECK(m.bandwidths.size() <= kMaxStateLinks);
  FUZZ_CHECK(m.counters.size() <= kMaxStateCounters);
  for (const NamedCount& c : m.counters) FUZZ_CHECK(c.name.size() <= kMaxCounterName);
}
inline void Invariants(const Verdict& m) {
  FUZZ_CHECK(IsBool(m.ok));
  FUZZ_CHECK(IsBool(m.ring_replaced));
  FUZZ_CHECK(m.reason.size() <= kMaxReasonLength);
  FUZZ_CHECK(m.challenge.size() <= kChallengeLength);
  FUZZ_CHECK(m.reports.size() <= kMaxReportsLength);
}
inline void Invariants(const ErrorMessage& m) {
  FUZZ_CHECK(m.message.size() <= kMaxReasonLength);
  // Receivers turn the code into a StatusCode this way: always a failure pccl knows.
  const StatusCode code = StatusCodeFromWire(m.code, StatusCode::kAborted);
  FUZZ_CHECK(code != StatusCode::kOk && code <= StatusCode::kIntegrity);
}
inline void Invariants(const PairQuery& m) { FUZZ_CHECK(m.reason.size() <= kMaxReasonLength); }
inline void Invariants(const LinkBroken& m) { FUZZ_CHECK(m.reason.size() <= kMaxReasonLength); }
inline void Invariants(const Reachability& m) {
  FUZZ_CHECK(m.observed_host.size() <= kMaxHostLength);
  FUZZ_CHECK(m.reachable <= 1);
  FUZZ_CHECK(m.detail.size() <= kMaxReasonLength);
}
inline void Invariants(const RelayPark& m) { FUZZ_CHECK(m.ticket.size() <= kMaxTicketLength); }
inline void Invariants(const RelayDial& m) {
  FUZZ_CHECK(m.ticket.size() <= kMaxTicketLength && m.punch <= 1);
}
inline void Invariants(const RelayIncoming& m) {
  FUZZ_CHECK(m.punch <= 1 && m.peer_host.size() <= kMaxHostLength);
}
inline void Invariants(const RelayReady& m) {
  FUZZ_CHECK(m.ok <= 1 && m.reason.size() <= kMaxReasonLength);
  FUZZ_CHECK(m.peer_host.size() <= kMaxHostLength);
}
inline void Invariants(const Greeting& m) {
  const auto purpose = static_cast<Kind>(m.purpose);
  FUZZ_CHECK(purpose == Kind::kHello || purpose == Kind::kP2PHello ||
             purpose == Kind::kStateHello || purpose == Kind::kProbeHello ||
             purpose == Kind::kPairHello);
  FUZZ_CHECK(m.transport <= 1);
  FUZZ_CHECK(IsCipher(m.cipher));
  FUZZ_CHECK(m.nonce.size() == kNonceLength);
}
inline void Invariants(const Challenge& m) {
  FUZZ_CHECK(IsCipher(m.cipher));
  FUZZ_CHECK(m.nonce.size() == kNonceLength);
  FUZZ_CHECK(m.proof.size() == kProofLength);
}
inline void Invariants(const Proof& m) { FUZZ_CHECK(m.proof.size() == kProofLength); }
inline void Invariants(const P2PHello&) {}
inline void Invariants(const P2PWelcome& m) {
  FUZZ_CHECK(IsBool(m.ok));
  FUZZ_CHECK(m.reason.size() <= kMaxReasonLength);
}
inline void Invariants(const SyncState& m) {
  FUZZ_CHECK(m.strategy <= static_cast<uint8_t>(SyncStrategy::kSendOnly));
  FUZZ_CHECK(m.entries.size() <= kMaxStateEntries);
  for (const StateEntry& e : m.entries) {
    FUZZ_CHECK(e.key.size() <= kMaxStateKeyLength);
    FUZZ_CHECK(e.dtype < kNumDTypes);
    FUZZ_CHECK(IsBool(e.allow_content_inequality));
  }
}
inline void Invariants(const SyncPlan& m) {
  FUZZ_CHECK(m.fetches.size() <= size_t{kMaxStateEntries} * kMaxStateSources);
  for (const StateFetch& f : m.fetches) {
    FUZZ_CHECK(f.key.size() <= kMaxStateKeyLength);
    FUZZ_CHECK(f.source_host.size() <= kMaxHostLength);
  }
}
inline void Invariants(const SyncResult& m) {
  FUZZ_CHECK(IsBool(m.ok));
  FUZZ_CHECK(m.reason.size() <= kMaxReasonLength);
}
inline void Invariants(const StateHello&) {}
inline void Invariants(const StateRequest& m) { FUZZ_CHECK(m.key.size() <= kMaxStateKeyLength); }
inline void Invariants(const MeasureBandwidth& m) {
  FUZZ_CHECK(m.targets.size() <= kMaxMembers);
  for (const Member& target : m.targets) CheckMember(target, /*ring=*/false);
}
inline void Invariants(const BandwidthReport& m) { FUZZ_CHECK(m.samples.size() <= kMaxMembers); }
inline void Invariants(const ProbeResult&) {}

}  // namespace pccl::fuzz
