// Control-plane and peer-to-peer messages, and their versioned encoding.
//
// Every message is one frame (net/wire.h) whose header carries the protocol version and
// the message kind below; the payload is the fields in order, little-endian, strings
// length-prefixed. Decode() validates every field (lengths, ranges, trailing bytes) and
// returns InvalidArgument naming the message and field; the receiver then drops the sender.
//
// Each message's fields are listed ONCE, in wire order, in its field list in messages.cc, and
// that list drives both Encode and Decode (proto/codec.h tells how). To add a field, add the
// member to the struct below and one line to the message's list, e.g. for a new
// `uint32_t priority` of P2PHello: `U32("priority", &P2PHello::priority),` (Bool, Str, List,
// Nested and Rule cover the other shapes and checks). The format has no optional fields:
// every such change is a new net::kProtocolVersion, and tests/cpp/proto_test.cc pins the bytes.
//
// The conversation, master <-> peer:
//   peer: Hello                    master: Welcome (peer id; accepted now or pending)
//   master: Topology (epoch, members in ring order)   when the peer is admitted, and on
//           every later change; the peer connects its ring links, then sends LinksReady;
//   master: TopologyComplete       once every member's links are ready.
//   peer: VoteTopology (ring epoch, collectives started per tag)   update_topology();
//                                  master answers TopologyUnchanged at once if nobody is
//                                  pending, else admits the pending peers when every member
//                                  voted and the collectives every member had started are
//                                  decided (Topology ... TopologyComplete).
//   peer: QueryPending (seq, joint) are_peers_pending(), a joint call: master answers every
//                                  member with the same PendingReply (seq echoed) once
//                                  every member asked (joint 0: at once, to this peer).
//   peer: OpDone (op key, ok, descriptor hash)   after a collective finished locally;
//   master: Verdict (op key, ok, reason, code)   to every member of the op's peer group
//                                  once all reported ok, or as soon as one failed.
//   A send/recv (comm/point_to_point.cc) is decided by its receiver: the receiver reports
//   OpDone (ok or not), the sender only a failure. The master answers a failure to both
//   ends, a success only to a sender that reported a failure first.
//   master: PairQuery (op key, the sender's code and reason)   to a receiver that has not
//                                  reported a transfer whose sender failed: it reports
//                                  OpDone for it (a failure if it had not begun it).
//   peer: Goodbye                  close(); master: Error (code, text) before dropping a peer.
//   peer: Heartbeat                every Welcome.heartbeat_interval_ms; a peer silent for
//                                  the master's heartbeat timeout is kicked (Error{Kicked}).
//   master: HeartbeatAck           answers each Heartbeat: a peer that hears nothing from
//                                  the master for the heartbeat timeout calls it lost.
//   peer: LinkBroken (ring epoch, other peer, reason)   a ring link of this peer's group
//                                  broke (or could not be built) while both ends live; the
//                                  master starts an epoch that re-dials the group's ring,
//                                  or removes one end of a pair that keeps failing.
// Ring order (optimize_topology), every member takes part:
//   peer: OptimizeTopology (the epoch it is in)
//   master: MeasureBandwidth (round, probe duration, the peers to measure: zero or one)
//           once every member asked, one round at a time; each member probes its target
//   peer: BandwidthReport (round, bytes/s to each target)   when its probe is done;
//   master: the next round's MeasureBandwidth, and after the last round either
//           TopologyUnchanged or a Topology in the new ring order (then as above).
// Shared state (sync_shared_state), one round per peer group at a time:
//   peer: SyncState (revision, strategy, entries: key, size, dtype, content hash)
//   master: SyncPlan (elected revision, what to fetch from whom)   once every member of the
//           group sent SyncState and the election succeeded; every member gets one, maybe
//           empty. A key appears once per source that holds its elected content (at most
//           kMaxStateSources, preferred source first). Peers fetch over p2p, then send
//           SyncDone (ok or why not).
//   master: SyncComplete (ok, code, reason)   exactly one per participant and round: success
//           once every participant reported done, failure as soon as the election failed,
//           a participant failed or gave up (SyncDone ok=0, also before its plan came)
//           or a member of the group left (before or after the plan).
// Any connection in a run with a secret starts with a handshake instead of its plain first
// frame (auth/handshake.h); once it succeeds the conversation goes on as below:
//   dialer: Greeting (purpose, from, to, epoch, slot, transport, cipher, nonce)
//   acceptor: Challenge (cipher, nonce, proof)   or Error (code, text): refused
//   dialer: Proof (proof)          acceptor: P2PWelcome (ok) on every plane, or Error
//   then the plane's conversation (Hello to the master, data on a ring link, ...), as
//   records (secure/records.h) if the transport is encrypted.
// Peer -> peer (ring links, one TCP connection per pool slot):
//   connector: P2PHello (epoch, from, to, slot)   acceptor: P2PWelcome (ok, reason)
//   then Data frames: a 40-byte DataHeader, then the payload bytes of one segment.
// Peer -> peer (pair links for send/recv, comm/point_to_point.cc): the same, opening with
//   PairHello (P2PHello's fields; epoch is the group's ring epoch); each end dials a pool to
//   the other, so both directions stripe like a ring of two.
// Peer -> peer (shared state; a receiver opens several connections to every source):
//   receiver: StateHello (from, to)         source: P2PWelcome (ok, reason)
//   receiver: StateRequest (key, hash,      source: StateData frame whose payload is exactly
//             offset, length)                       bytes [offset, offset + length) of the
//                                                   entry, or Error (code, text) if the key,
//                                                   hash or range is not what it serves
//   (requests repeat on a connection; the receiver closes it when done)
// Peer -> peer (bandwidth probe; the prober opens one connection per pool slot):
//   prober: ProbeHello (from, to)           target: P2PWelcome (ok, reason)
//   prober: ProbeData frames (filler bytes) for the probe's duration, then one empty one;
//                                           target: ProbeResult (bytes, nanoseconds it
//                                           measured between the first and last frame)
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pccl/common/status.h"

namespace pccl::proto {

enum class Kind : uint16_t {
  kHello = 1,
  kWelcome = 2,
  kVoteTopology = 3,
  kTopology = 4,
  kLinksReady = 5,
  kTopologyComplete = 6,
  kTopologyUnchanged = 7,
  kQueryPending = 8,
  kPendingReply = 9,
  kOpDone = 10,
  kVerdict = 11,
  kGoodbye = 12,
  kError = 13,
  kHeartbeat = 14,
  kOptimizeTopology = 15,
  kMeasureBandwidth = 16,
  kBandwidthReport = 17,
  kHeartbeatAck = 18,
  kLinkBroken = 19,
  kReachabilityQuery = 20,
  kReachability = 21,
  kPairQuery = 22,
  kP2PHello = 32,
  kP2PWelcome = 33,
  kData = 34,
  kSyncState = 40,
  kSyncPlan = 41,
  kSyncDone = 42,
  kSyncComplete = 43,
  kStateHello = 44,
  kStateRequest = 45,
  kStateData = 46,
  kProbeHello = 47,
  kProbeData = 48,
  kProbeResult = 49,
  kDialBack = 50,
  kPairHello = 51,
  // Relay connections (master/relay.h), the first frames on the relay's own port.
  kRelayPark = 70,
  kRelayDial = 71,
  kRelayReady = 72,
  kRelayIncoming = 73,
  kGreeting = 60,
  kChallenge = 61,
  kProof = 62,
};
const char* KindName(uint16_t kind);

// Limits every decoder enforces.
inline constexpr size_t kMaxHostLength = 255;
inline constexpr size_t kMaxReasonLength = 4096;
// OpDone::report, and all of them together in a Verdict.
inline constexpr size_t kMaxReportLength = 16 * 1024;
inline constexpr size_t kMaxReportsLength = 8 * 1024 * 1024;
inline constexpr size_t kChallengeLength = 32;
inline constexpr uint32_t kMaxMembers = 4096;
inline constexpr size_t kMaxStateKeyLength = 1024;
inline constexpr uint32_t kMaxStateEntries = 16384;
// Sources a SyncPlan lists per key: enough to stripe a joiner's transfer over several
// holders, few enough that a plan stays small.
inline constexpr uint32_t kMaxStateSources = 8;
// A peer's X25519 public key: 32 bytes, or none in a run without a secret.
inline constexpr size_t kPublicKeyLength = 32;
// Handshake nonces and proofs.
inline constexpr size_t kNonceLength = 32;
inline constexpr size_t kProofLength = 32;

struct BandwidthSample {
  uint64_t to_peer_id = 0;
  uint64_t bytes_per_second = 0;  // 0: the probe failed
};

struct Hello {
  uint32_t peer_group = 0;
  uint16_t p2p_port = 0;
  // Host other peers should dial; empty: the address the master sees this peer at.
  std::string advertise_host;
  // In a run with a secret: the peer's X25519 public key, which the master passes on to the
  // other members so that peer-to-peer handshakes prove who is at each end. Empty otherwise.
  std::string public_key;
  // A peer that lost the master and reconnects says what it knows of the run, so that a
  // restarted master rebuilds it (master/admission.cc, "Resuming"). resume_peer_id 0: a
  // fresh join, and the other resume fields are 0 and empty.
  uint64_t resume_peer_id = 0;
  uint64_t resume_epoch = 0;       // the last topology epoch this peer applied
  uint64_t resume_ring_epoch = 0;  // its group's ring epoch then
  // Its group's ring in order (itself included), each with the bandwidth this peer last
  // measured towards that member (0: not measured).
  std::vector<BandwidthSample> resume_ring;
  // 1 + the revision of this peer's last successful shared-state sync; 0: none.
  uint64_t resume_state_revision = 0;
};

struct Welcome {
  uint64_t peer_id = 0;
  uint8_t accepted = 0;  // 1: admitted at once (first peer); 0: pending until a vote
  // How often the peer must send Heartbeat; a peer silent for the master's heartbeat
  // timeout (a few intervals) is removed from the run as if it had died.
  uint32_t heartbeat_interval_ms = 0;
  // The run's relay (master/relay.h): its host (empty: the master's, as the peer dialled
  // it) and port (0: no relay), and this peer's ticket for it.
  uint16_t relay_port = 0;
  std::string relay_ticket;
  std::string relay_host;
};

struct Member {
  uint64_t peer_id = 0;
  std::string host;
  uint16_t port = 0;
  uint32_t peer_group = 0;
  std::string public_key;  // from the member's Hello (empty in a run without a secret)
  // Topology only: the epoch in which this member's group got its current ring (its
  // members and their order). Ring links and collectives of a group carry this epoch, so
  // a topology change that leaves a group's ring as it was does not disturb that group.
  uint64_t ring_epoch = 0;
  // Topology only: whether the master could dial this member back (kReachabilityUnknown
  // until its check ended). Only a member that is not kReachable is worth trying through
  // the relay when a direct connection fails (link/routes.h).
  uint8_t reachable = 0;
};
inline constexpr uint8_t kReachabilityUnknown = 0;
inline constexpr uint8_t kReachable = 1;
inline constexpr uint8_t kUnreachable = 2;

// All members, in ring order; a group's ring is the members of that group in this order.
struct Topology {
  uint64_t epoch = 0;
  std::vector<Member> members;
};

struct EpochMessage {  // LinksReady, OptimizeTopology
  uint64_t epoch = 0;
};

struct TopologyComplete {
  uint64_t epoch = 0;
};

// How many collectives with `tag` a peer has started on its group's current ring.
struct TagCount {
  uint64_t tag = 0;
  uint64_t count = 0;
};

// update_topology(): a member's vote to admit the pending peers, with the collectives it
// has started on its group's ring (ring epoch) so far. When every member of a group that
// the admission changes started the same ones, the master lets them finish on the old
// ring before it starts the new epoch; otherwise it fails them at once.
struct Vote {
  uint64_t ring_epoch = 0;
  std::vector<TagCount> started;  // ascending tags, counts > 0
};
inline constexpr uint32_t kMaxVoteTags = 16384;

// are_peers_pending(): the query's number, echoed by the reply, so that a reply to a query
// whose caller timed out is never taken for the answer to a later one. `joint` 1: answered
// once every member asked (the same answer for all); 0: answered to this peer alone, at
// once, or (`wait` 1) once a peer is pending: a member waiting for the run to grow
// (wait_for_world) then hears of a joiner the moment it arrives, without asking again.
struct PendingQuery {
  uint64_t seq = 0;
  uint8_t joint = 1;
  uint8_t wait = 0;
};

struct PendingReply {
  uint64_t seq = 0;
  uint8_t pending = 0;
};

// Identifies one collective across peers: the topology epoch, the peer group, the user's
// tag and the per-tag sequence number within the epoch. A send/recv between two members
// also names its sender and receiver (both 0 for a collective of the whole group); its
// seq counts the transfers from that sender to that receiver with that tag, times two,
// plus one when the sender's id is the larger, so that the two directions of a pair never
// share a key on the pair's links.
struct OpKey {
  uint64_t epoch = 0;
  uint32_t peer_group = 0;
  uint64_t tag = 0;
  uint64_t seq = 0;
  uint64_t from_peer = 0;
  uint64_t to_peer = 0;
  bool pair() const { return from_peer != 0 || to_peer != 0; }
  bool operator==(const OpKey&) const = default;
  bool operator<(const OpKey& o) const;
  std::string ToString() const;
};

struct OpDone {
  OpKey key;
  uint8_t ok = 0;
  uint64_t descriptor_hash = 0;  // count, dtype, op, quantization: must match across peers
  std::string reason;            // why it failed locally (empty when ok)
  uint32_t code = 0;             // the local failure's pccl::StatusCode (0 when ok)
  // What the peer wants every member to see, through the master (ReduceMode.VERIFIED's
  // hashes, comm/exact_allreduce.cc); usually empty.
  std::string report;
  // For the master's metrics: the bytes this peer sent for the operation and how long it
  // took here, from its start to this report (0 for a step that moved no data).
  uint64_t tx_bytes = 0;
  uint32_t duration_us = 0;
};

// The master asks a send/recv's receiver how the transfer `key` ended, because its sender
// reported the failure (`code`, `reason`) and the receiver has not reported yet.
struct PairQuery {
  OpKey key;
  uint32_t code = 0;
  std::string reason;
};

// A peer's heartbeat, with the round trip of its previous one (sent -> the master's ack;
// 0: none measured yet), for the master's metrics.
struct Heartbeat {
  uint32_t rtt_us = 0;
};

struct Verdict {
  OpKey key;
  uint8_t ok = 0;
  std::string reason;
  uint32_t code = 0;  // on failure: the StatusCode peers should raise (Aborted by default)
  // On failure: the master is replacing the group's ring (a member left, a ring link broke,
  // the ring changed). The links of key.epoch are finished: a retry waits for the new
  // Topology instead of running on them.
  uint8_t ring_replaced = 0;
  // On success: 32 fresh random bytes from the master, drawn when every member had
  // reported, so that no member knew them while the operation's data moved (the
  // challenge of ReduceMode.VERIFIED).
  std::string challenge;
  // On success, if members reported something (OpDone::report): every member's report,
  // each as u32 length + bytes, in the order the master received them.
  std::string reports;
};

// The master's answer to ReachabilityQuery (empty, peer -> master: "can others dial me?").
// The master dials the endpoint the peer advertised, sends DialBack (empty) on that
// connection if it opens, and answers with what it saw.
struct Reachability {
  std::string observed_host;  // where the master sees the peer's own connection come from
  uint16_t observed_port = 0;
  uint8_t reachable = 0;  // 1: the dial to the advertised endpoint connected
  std::string detail;     // the endpoint dialled, and why it failed if it did
};

// Relay connections (master/relay.h). A peer that cannot be dialled parks connections at
// the relay (RelayPark); a dialer asks for one of them (RelayDial) and is answered
// RelayReady once paired, or with the reason it is not; the parked connection is told
// RelayIncoming. From then on the relay forwards raw bytes both ways. With `punch`, each
// end is also told where the relay sees the other's connection come from (its NAT's
// mapping), for a hole-punching attempt (link/routes.h).
inline constexpr size_t kMaxTicketLength = 64;
struct RelayPark {
  uint64_t peer_id = 0;
  std::string ticket;
};
struct RelayDial {
  uint64_t from_peer_id = 0;
  std::string ticket;  // the dialer's
  uint64_t to_peer_id = 0;
  uint8_t punch = 0;   // 1: both ends try hole punching after the pairing
};
struct RelayReady {
  uint8_t ok = 0;
  std::string reason;      // why not, when !ok
  std::string peer_host;   // with punch: where the relay sees the parked connection from
  uint16_t peer_port = 0;
};
struct RelayIncoming {
  uint64_t from_peer_id = 0;
  uint8_t punch = 0;
  std::string peer_host;   // with punch: where the relay sees the dialer from
  uint16_t peer_port = 0;
};

// A ring link of the sender's group broke, or could not be built, between it and
// `peer_id` (its ring neighbour), in the group's ring epoch `ring_epoch`.
struct LinkBroken {
  uint64_t ring_epoch = 0;
  uint64_t peer_id = 0;
  std::string reason;
};

struct ErrorMessage {
  uint32_t code = 0;  // a pccl::StatusCode
  std::string message;
};

// The handshake of a connection in a run with a secret (any plane; auth/handshake.h tells
// the story). The dialer's first frame says what the connection is for, whom it is for,
// and the transport it expects, with a fresh nonce:
struct Greeting {
  // The kind of the plain first frame this greeting stands for: Hello (the master link),
  // P2PHello (a ring link), StateHello or ProbeHello.
  uint16_t purpose = 0;
  uint64_t from_peer_id = 0;  // peer-to-peer only; 0 on the master link
  uint64_t to_peer_id = 0;    // peer-to-peer only
  uint64_t epoch = 0;         // ring links only
  uint32_t slot = 0;          // ring links only
  uint8_t transport = 0;      // 0 plain, 1 encrypted
  uint8_t cipher = 0;         // encrypted: the dialer's preferred secure::Cipher
  std::string nonce;          // kNonceLength bytes
};
// The acceptor's answer: its nonce, the cipher both will use (0 when plain), and its proof
// that it knows the run secret (and, peer to peer, its own private key).
struct Challenge {
  uint8_t cipher = 0;
  std::string nonce;  // kNonceLength bytes
  std::string proof;  // kProofLength bytes
};
// The dialer's proof; after it, an encrypted connection carries only records.
struct Proof {
  std::string proof;  // kProofLength bytes
};

struct P2PHello {
  uint64_t epoch = 0;
  uint64_t from_peer_id = 0;
  uint64_t to_peer_id = 0;
  uint32_t slot = 0;
};

struct P2PWelcome {
  uint8_t ok = 0;
  std::string reason;
};

// Precedes a data payload. Decoded from a fixed 40-byte block.
struct DataHeader {
  uint64_t tag = 0;
  uint64_t seq = 0;
  uint64_t descriptor_hash = 0;
  uint32_t step = 0;
  uint32_t segment = 0;
  uint64_t payload_bytes = 0;
};
inline constexpr size_t kDataHeaderBytes = 40;

// One entry of a peer's shared state, as the master sees it: no bytes, only their hash.
struct StateEntry {
  std::string key;
  uint64_t bytes = 0;
  uint8_t dtype = 0;  // a pccl::DType
  uint64_t hash = 0;  // kernels::Hash64 of the bytes
  uint8_t allow_content_inequality = 0;
};

enum class SyncStrategy : uint8_t { kEnforcePopular = 0, kReceiveOnly = 1, kSendOnly = 2 };

struct SyncState {
  // The peer's sync_shared_state() call number, echoed in its SyncPlan and SyncComplete, so
  // that the answer to a call that gave up is never taken for the answer to a later one.
  uint64_t call = 0;
  uint64_t revision = 0;
  uint8_t strategy = 0;  // a SyncStrategy
  std::vector<StateEntry> entries;
};

// Fetch entry `key` (content hash `hash`) from the source peer at host:port. A plan holds
// one StateFetch per (key, source), all with the same hash; the receiver may take any
// range of the entry from any of them.
struct StateFetch {
  std::string key;
  uint64_t hash = 0;
  uint64_t source_peer_id = 0;
  std::string source_host;
  uint16_t source_port = 0;
};

struct SyncPlan {
  uint64_t call = 0;      // the SyncState's
  uint64_t revision = 0;  // the elected revision every participant has once it completes
  std::vector<StateFetch> fetches;
};

struct SyncResult {  // SyncDone and SyncComplete
  uint64_t call = 0;  // the SyncState's
  uint8_t ok = 0;
  uint32_t code = 0;  // on failure: the StatusCode to raise
  std::string reason;
};

struct StateHello {  // also ProbeHello
  uint64_t from_peer_id = 0;
  uint64_t to_peer_id = 0;
};

struct StateRequest {
  std::string key;
  uint64_t hash = 0;  // the content the receiver expects; the source refuses another
  uint64_t offset = 0;  // the range of the entry's bytes wanted; the source refuses a
  uint64_t length = 0;  // range that does not lie inside the entry
};

// One round of bandwidth measurement: probe each target for `duration_ms` (the master
// sends at most one target per member and round, so probes do not share a sender).
struct MeasureBandwidth {
  uint32_t round = 0;
  uint32_t duration_ms = 0;
  std::vector<Member> targets;
};

struct BandwidthReport {
  uint32_t round = 0;
  std::vector<BandwidthSample> samples;
};

// What a probed peer measured: `bytes` of ProbeData payload that arrived `nanoseconds`
// after the first ProbeData frame (the first frame itself is not counted).
struct ProbeResult {
  uint64_t bytes = 0;
  uint64_t nanoseconds = 0;
};

// What a master writes to its state file (master/server.h, MasterOptions::state_file), so
// that once restarted it knows the run it had before any peer resumes it (master/
// admission.cc, "Resuming"). Not sent over the network.
struct GroupRevision {
  uint32_t peer_group = 0;
  uint64_t revision = 0;  // of the group's last successful shared-state sync
};
struct MeasuredLink {
  uint64_t from_peer_id = 0;
  uint64_t to_peer_id = 0;
  uint64_t bytes_per_second = 0;
};
struct NamedCount {
  std::string name;
  uint64_t value = 0;
};
struct MasterState {
  uint64_t epoch = 0;
  std::vector<Member> members;  // ring order, each with its group's ring epoch
  std::vector<GroupRevision> revisions;
  std::vector<MeasuredLink> bandwidths;
  std::vector<NamedCount> counters;  // the RunLog's (master/run_status.h)
};
inline constexpr uint32_t kMaxStateLinks = 1 << 16;
inline constexpr uint32_t kMaxStateCounters = 256;
inline constexpr size_t kMaxCounterName = 64;

std::string Encode(const Hello& m);
std::string Encode(const Welcome& m);
std::string Encode(const Topology& m);
std::string Encode(const EpochMessage& m);
std::string Encode(const TopologyComplete& m);
std::string Encode(const Vote& m);
std::string Encode(const PendingQuery& m);
std::string Encode(const PendingReply& m);
std::string Encode(const OpDone& m);
// An OpDone into *out, reusing its room (a report per collective: none from the heap).
void EncodeInto(const OpDone& m, std::string* out);
std::string Encode(const Heartbeat& m);
std::string Encode(const Verdict& m);
std::string Encode(const ErrorMessage& m);
std::string Encode(const LinkBroken& m);
std::string Encode(const PairQuery& m);
std::string Encode(const Reachability& m);
std::string Encode(const RelayPark& m);
std::string Encode(const RelayDial& m);
std::string Encode(const RelayIncoming& m);
std::string Encode(const RelayReady& m);
std::string Encode(const Greeting& m);
std::string Encode(const Challenge& m);
std::string Encode(const Proof& m);
std::string Encode(const P2PHello& m);
std::string Encode(const P2PWelcome& m);
std::string Encode(const SyncState& m);
std::string Encode(const SyncPlan& m);
std::string Encode(const SyncResult& m);
std::string Encode(const StateHello& m);
std::string Encode(const StateRequest& m);
std::string Encode(const MeasureBandwidth& m);
std::string Encode(const BandwidthReport& m);
std::string Encode(const ProbeResult& m);
std::string Encode(const MasterState& m);
void EncodeDataHeader(const DataHeader& h, uint8_t out[kDataHeaderBytes]);

Status Decode(const std::string& payload, Hello* m);
Status Decode(const std::string& payload, Welcome* m);
Status Decode(const std::string& payload, Topology* m);
Status Decode(const std::string& payload, EpochMessage* m);
Status Decode(const std::string& payload, TopologyComplete* m);
Status Decode(const std::string& payload, Vote* m);
Status Decode(const std::string& payload, PendingQuery* m);
Status Decode(const std::string& payload, PendingReply* m);
Status Decode(const std::string& payload, OpDone* m);
Status Decode(const std::string& payload, Heartbeat* m);
Status Decode(const std::string& payload, Verdict* m);
Status Decode(const std::string& payload, ErrorMessage* m);
Status Decode(const std::string& payload, LinkBroken* m);
Status Decode(const std::string& payload, PairQuery* m);
Status Decode(const std::string& payload, Reachability* m);
Status Decode(const std::string& payload, RelayPark* m);
Status Decode(const std::string& payload, RelayDial* m);
Status Decode(const std::string& payload, RelayIncoming* m);
Status Decode(const std::string& payload, RelayReady* m);
Status Decode(const std::string& payload, Greeting* m);
Status Decode(const std::string& payload, Challenge* m);
Status Decode(const std::string& payload, Proof* m);
Status Decode(const std::string& payload, P2PHello* m);
Status Decode(const std::string& payload, P2PWelcome* m);
Status Decode(const std::string& payload, SyncState* m);
Status Decode(const std::string& payload, SyncPlan* m);
Status Decode(const std::string& payload, SyncResult* m);
Status Decode(const std::string& payload, StateHello* m);
Status Decode(const std::string& payload, StateRequest* m);
Status Decode(const std::string& payload, MeasureBandwidth* m);
Status Decode(const std::string& payload, BandwidthReport* m);
Status Decode(const std::string& payload, MasterState* m);
Status Decode(const std::string& payload, ProbeResult* m);
DataHeader DecodeDataHeader(const uint8_t in[kDataHeaderBytes]);
// An empty payload (TopologyUnchanged, Heartbeat, Goodbye): InvalidArgument otherwise.
Status DecodeEmpty(const std::string& payload, const char* name);

}  // namespace pccl::proto
