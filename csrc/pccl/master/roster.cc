#include "pccl/master/roster.h"

#include <algorithm>

namespace pccl::master {

std::string Describe(const Peer& peer) {
  return "peer " + std::to_string(peer.peer_id) + " (" + peer.host + ")";
}

StatusCode MemberReportedCode(uint32_t wire_code) {
  switch (StatusCodeFromWire(wire_code, StatusCode::kAborted)) {
    case StatusCode::kInvalidArgument: return StatusCode::kInvalidArgument;
    case StatusCode::kOutOfRange: return StatusCode::kOutOfRange;
    case StatusCode::kDeadlineExceeded: return StatusCode::kDeadlineExceeded;
    case StatusCode::kDataLoss: return StatusCode::kDataLoss;
    default: return StatusCode::kAborted;
  }
}

const Peer* Roster::Find(ConnId conn) const {
  auto it = peers_.find(conn);
  return it == peers_.end() ? nullptr : &it->second;
}

const Peer& Roster::at(ConnId conn) const { return peers_.at(conn); }

std::vector<ConnId> Roster::GroupMembers(uint32_t peer_group) const {
  std::vector<ConnId> out;
  for (ConnId m : members_) {
    if (peers_.at(m).peer_group == peer_group) out.push_back(m);
  }
  return out;
}

std::vector<uint64_t> Roster::Ids(const std::vector<ConnId>& conns) const {
  std::vector<uint64_t> out;
  for (ConnId c : conns) out.push_back(peers_.at(c).peer_id);
  return out;
}

bool Roster::IdInUse(uint64_t peer_id) const { return FindId(peer_id) != nullptr; }

const Peer* Roster::FindId(uint64_t peer_id) const {
  for (const auto& [conn, peer] : peers_) {
    if (peer.peer_id == peer_id) return &peer;
  }
  return nullptr;
}

void Roster::RaiseEpoch(uint64_t floor) { epoch_ = std::max(epoch_, floor); }

uint64_t Roster::RingEpoch(uint32_t peer_group) const {
  auto it = ring_epoch_.find(peer_group);
  return it == ring_epoch_.end() ? 0 : it->second;
}

std::map<uint32_t, std::vector<ConnId>> Roster::RingsOf(const std::vector<ConnId>& order) const {
  std::map<uint32_t, std::vector<ConnId>> rings;
  for (ConnId c : order) rings[peers_.at(c).peer_group].push_back(c);
  return rings;
}

std::set<uint32_t> Roster::ChangedGroups(const std::vector<ConnId>& members) const {
  auto new_rings = RingsOf(members);
  std::set<uint32_t> changed;
  for (const auto& [group, ring] : group_rings_) {
    auto it = new_rings.find(group);
    if (it == new_rings.end() || it->second != ring) changed.insert(group);
  }
  for (const auto& [group, ring] : new_rings) {
    if (!group_rings_.count(group)) changed.insert(group);
  }
  return changed;
}

proto::Topology Roster::Topology() const {
  proto::Topology topology;
  topology.epoch = epoch_;
  for (ConnId c : members_) {
    const Peer& p = peers_.at(c);
    topology.members.push_back(
        proto::Member{p.peer_id, p.host, p.port, p.peer_group, p.public_key,
                      ring_epoch_.at(p.peer_group), p.reachable});
  }
  return topology;
}

void Roster::Add(Peer peer, bool queue) {
  const ConnId conn = peer.conn;
  peers_[conn] = std::move(peer);
  if (queue) pending_.push_back(conn);
}

void Roster::ClearResuming(ConnId conn) {
  auto it = peers_.find(conn);
  if (it != peers_.end()) it->second.resuming = false;
}

void Roster::Touch(ConnId conn, TimePoint now) {
  auto it = peers_.find(conn);
  if (it != peers_.end()) it->second.last_seen = now;
}

void Roster::SetReachable(ConnId conn, bool reachable) {
  auto it = peers_.find(conn);
  if (it != peers_.end()) {
    it->second.reachable = reachable ? proto::kReachable : proto::kUnreachable;
  }
}

void Roster::Forgive(Duration gap) {
  for (auto& [conn, peer] : peers_) peer.last_seen += gap;
}

void Roster::SetHeartbeatRtt(ConnId conn, Duration rtt) {
  auto it = peers_.find(conn);
  if (it != peers_.end()) it->second.heartbeat_rtt = rtt;
}

void Roster::SetRto(ConnId conn, Duration rto) {
  auto it = peers_.find(conn);
  if (it != peers_.end()) it->second.rto = rto;
}

std::optional<Peer> Roster::Remove(ConnId conn) {
  auto it = peers_.find(conn);
  if (it == peers_.end()) return std::nullopt;
  Peer peer = std::move(it->second);
  peers_.erase(it);
  std::vector<ConnId>& list = peer.role == Role::kPending ? pending_ : members_;
  list.erase(std::remove(list.begin(), list.end(), conn), list.end());
  return peer;
}

void Roster::Advance(std::vector<ConnId> members, const std::set<uint32_t>& changed,
                     const std::string& cause) {
  epoch_cause_ = cause;
  auto new_rings = RingsOf(members);
  ++epoch_;
  for (uint32_t group : changed) {
    if (new_rings.count(group)) {
      ring_epoch_[group] = epoch_;
    } else {
      ring_epoch_.erase(group);
    }
  }
  group_rings_ = std::move(new_rings);
  for (ConnId c : members) {
    Peer& p = peers_.at(c);
    if (p.role == Role::kPending) {
      p.role = Role::kMember;
      pending_.erase(std::remove(pending_.begin(), pending_.end(), c), pending_.end());
    }
  }
  members_ = std::move(members);
}

}  // namespace pccl::master
