// Valid sample messages, a few per type of proto/messages.h: the smallest one and typical
// ones with strings and lists filled in. fuzz_message.cc encodes them into its seeds
// (seeds.h; checked in as tests/fuzz/corpus/<target>/) and decodes every input a second
// time into a struct that holds the richest sample, to catch state a decoder forgets to
// overwrite.
#pragma once

#include <string>
#include <vector>

#include "pccl/proto/messages.h"

namespace pccl::fuzz {

using namespace pccl::proto;  // NOLINT: every type below is a proto message

inline std::string Bytes(size_t n, char c) { return std::string(n, c); }

inline Member SampleMember(uint64_t id, uint64_t ring_epoch) {
  return Member{id, "10.0.0." + std::to_string(id), static_cast<uint16_t>(4000 + id), 1,
                Bytes(kPublicKeyLength, static_cast<char>('a' + id)), ring_epoch,
                static_cast<uint8_t>(id % 3)};
}

// Each overload returns valid messages of one type, the richest last.
inline std::vector<Hello> Samples(const Hello*) {
  Hello fresh;
  fresh.p2p_port = 1;
  Hello keyed = fresh;
  keyed.peer_group = 3;
  keyed.p2p_port = 4000;
  keyed.advertise_host = "peer-1.example.org";
  keyed.public_key = Bytes(kPublicKeyLength, 'k');
  Hello resuming = keyed;  // a peer that lost the master
  resuming.resume_peer_id = 9;
  resuming.resume_epoch = 12;
  resuming.resume_ring_epoch = 11;
  resuming.resume_ring = {BandwidthSample{8, 1000}, BandwidthSample{9, 0}};
  resuming.resume_state_revision = 5;
  return {fresh, keyed, resuming};
}
inline std::vector<Welcome> Samples(const Welcome*) {
  return {Welcome{}, Welcome{42, 1, 500, 0, "", ""}, Welcome{43, 0, 500, 40001, Bytes(32, 't'), ""},
          Welcome{44, 0, 500, 40002, Bytes(32, 't'), "relay.example.org"}};
}
inline std::vector<Topology> Samples(const Topology*) {
  return {Topology{}, Topology{7, {SampleMember(1, 7)}},
          Topology{9, {SampleMember(1, 7), SampleMember(2, 9),
                       Member{3, "::1", 4003, 0, "", 9}}}};
}
inline std::vector<EpochMessage> Samples(const EpochMessage*) {
  return {EpochMessage{}, EpochMessage{12}};
}
inline std::vector<TopologyComplete> Samples(const TopologyComplete*) {
  return {TopologyComplete{}, TopologyComplete{12}};
}
inline std::vector<Vote> Samples(const Vote*) {
  return {Vote{}, Vote{9, {TagCount{0, 3}, TagCount{7, 1}, TagCount{1u << 20, 2}}}};
}
inline std::vector<PendingQuery> Samples(const PendingQuery*) {
  return {PendingQuery{0, 0}, PendingQuery{41, 1}, PendingQuery{42, 0, 1}};
}
inline std::vector<PendingReply> Samples(const PendingReply*) {
  return {PendingReply{}, PendingReply{41, 1}};
}
inline std::vector<Heartbeat> Samples(const Heartbeat*) { return {Heartbeat{}, Heartbeat{2500}}; }
inline std::vector<MasterState> Samples(const MasterState*) {
  MasterState full;
  full.epoch = 9;
  full.members = {Member{1, "10.0.0.1", 4000, 0, Bytes(kPublicKeyLength, 'k'), 8, 1},
                  Member{2, "10.0.0.2", 4001, 0, "", 8, 2}};
  full.revisions = {GroupRevision{0, 41}};
  full.bandwidths = {MeasuredLink{1, 2, 125000000}};
  full.counters = {NamedCount{"joins", 2}, NamedCount{"bytes_sent", 1 << 30}};
  return {MasterState{}, full};
}
inline std::vector<OpDone> Samples(const OpDone*) {
  return {OpDone{}, OpDone{OpKey{3, 1, 5, 2}, 1, 0xfeedULL, "", 0, "", 1 << 20, 1500},
          OpDone{OpKey{3, 1, 5, 3}, 0, 0xfeedULL, "reduce failed: peer 2 left", 4, "", 0, 0},
          OpDone{OpKey{3, 1, 5, 4}, 1, 0xfeedULL, "", 0, std::string(64, 'h'), 0, 0}};
}
inline std::vector<Verdict> Samples(const Verdict*) {
  return {Verdict{}, Verdict{OpKey{3, 1, 5, 2}, 1, "", 0, 0, std::string(32, 'c'), ""},
          Verdict{OpKey{3, 1, 5, 3}, 0, "peer 2 left the group", 4, 1, "", ""},
          Verdict{OpKey{3, 1, 5, 4}, 1, "", 0, 0, std::string(32, 'c'),
                  std::string("\x04\x00\x00\x00" "abcd", 8)}};
}
inline std::vector<ErrorMessage> Samples(const ErrorMessage*) {
  return {ErrorMessage{}, ErrorMessage{10, "kicked: no heartbeat for 30 s"}};
}
inline std::vector<RelayPark> Samples(const RelayPark*) {
  return {RelayPark{}, RelayPark{7, Bytes(32, 't')}};
}
inline std::vector<RelayDial> Samples(const RelayDial*) {
  return {RelayDial{}, RelayDial{7, Bytes(32, 't'), 9, 1}};
}
inline std::vector<RelayIncoming> Samples(const RelayIncoming*) {
  return {RelayIncoming{}, RelayIncoming{7, 1, "203.0.113.9", 40001}};
}
inline std::vector<RelayReady> Samples(const RelayReady*) {
  return {RelayReady{}, RelayReady{1, "", "198.51.100.4", 5123},
          RelayReady{0, "peer 9 has no connection parked at the relay", "", 0}};
}
inline std::vector<Reachability> Samples(const Reachability*) {
  return {Reachability{}, Reachability{"203.0.113.7", 40123, 1, "dialled 203.0.113.7:40000"}};
}
inline std::vector<PairQuery> Samples(const PairQuery*) {
  return {PairQuery{}, PairQuery{OpKey{3, 1, 5, 2, 7, 9}, 4, "peer 7 timed out waiting"}};
}
inline std::vector<LinkBroken> Samples(const LinkBroken*) {
  return {LinkBroken{}, LinkBroken{4, 17, "connection reset by peer"}};
}
inline std::vector<Greeting> Samples(const Greeting*) {
  return {Greeting{static_cast<uint16_t>(Kind::kHello), 0, 0, 0, 0, 0, 0,
                   Bytes(kNonceLength, 'n')},
          Greeting{static_cast<uint16_t>(Kind::kP2PHello), 1, 2, 7, 3, 1, 2,
                   Bytes(kNonceLength, 'm')},
          Greeting{static_cast<uint16_t>(Kind::kPairHello), 2, 1, 7, 0, 0, 1,
                   Bytes(kNonceLength, 'p')}};
}
inline std::vector<Challenge> Samples(const Challenge*) {
  return {Challenge{0, Bytes(kNonceLength, 'n'), Bytes(kProofLength, 'p')},
          Challenge{1, Bytes(kNonceLength, 'm'), Bytes(kProofLength, 'q')}};
}
inline std::vector<Proof> Samples(const Proof*) { return {Proof{Bytes(kProofLength, 'p')}}; }
inline std::vector<P2PHello> Samples(const P2PHello*) {
  return {P2PHello{}, P2PHello{7, 1, 2, 3}};
}
inline std::vector<P2PWelcome> Samples(const P2PWelcome*) {
  return {P2PWelcome{1, ""}, P2PWelcome{0, "not in this epoch's ring"}};
}
inline std::vector<SyncState> Samples(const SyncState*) {
  return {SyncState{},
          SyncState{2, 5, 1,
                    {StateEntry{"model.weight", 4096, 10, 0x1234, 0},
                     StateEntry{"optimizer.step", 8, 6, 0x42, 1}}}};
}
inline std::vector<SyncPlan> Samples(const SyncPlan*) {
  return {SyncPlan{}, SyncPlan{2, 5,
                               {StateFetch{"model.weight", 0x1234, 1, "10.0.0.1", 4001},
                                StateFetch{"model.weight", 0x1234, 3, "::1", 4003}}}};
}
inline std::vector<SyncResult> Samples(const SyncResult*) {
  return {SyncResult{2, 1, 0, ""}, SyncResult{2, 0, 7, "hash mismatch for 'model.weight'"}};
}
inline std::vector<StateHello> Samples(const StateHello*) {
  return {StateHello{}, StateHello{1, 2}};
}
inline std::vector<StateRequest> Samples(const StateRequest*) {
  return {StateRequest{}, StateRequest{"model.weight", 0x1234, 1024, 2048}};
}
inline std::vector<MeasureBandwidth> Samples(const MeasureBandwidth*) {
  return {MeasureBandwidth{}, MeasureBandwidth{1, 250, {SampleMember(2, 0)}}};
}
inline std::vector<BandwidthReport> Samples(const BandwidthReport*) {
  return {BandwidthReport{},
          BandwidthReport{1, {BandwidthSample{2, 0}, BandwidthSample{3, 1u << 30}}}};
}
inline std::vector<ProbeResult> Samples(const ProbeResult*) {
  return {ProbeResult{}, ProbeResult{1u << 24, 250000000}};
}

template <typename T>
std::vector<T> SamplesOf() {
  return Samples(static_cast<const T*>(nullptr));
}

}  // namespace pccl::fuzz
