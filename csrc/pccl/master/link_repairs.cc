#include "pccl/master/link_repairs.h"

#include <algorithm>

namespace pccl::master {

bool LinkRepairs::OnLinkBroken(const Peer& reporter, const proto::LinkBroken& report,
                               const Roster& roster, TimePoint now) {
  if (reporter.role != Role::kMember) return false;
  const uint32_t group = reporter.peer_group;
  if (report.ring_epoch != roster.RingEpoch(group)) return false;  // about a ring already replaced
  const Peer* other = nullptr;
  for (ConnId c : roster.GroupMembers(group)) {
    if (roster.at(c).peer_id == report.peer_id) other = &roster.at(c);
  }
  if (other == nullptr || other->conn == reporter.conn) return false;
  due_.try_emplace(group, now + options_.grace);  // a repair already due keeps its time
  Pair pair = std::minmax(reporter.peer_id, other->peer_id);
  History& history = history_[pair];
  // Both ends usually report one break: count each ring epoch once.
  if (history.breaks.empty() || history.breaks.back().first != report.ring_epoch) {
    history.breaks.emplace_back(report.ring_epoch, now);
  }
  while (!history.breaks.empty() && now - history.breaks.front().second > options_.window) {
    history.breaks.pop_front();
  }
  history.last_reason = report.reason;
  return true;
}

std::set<uint32_t> LinkRepairs::TakeDue(TimePoint now) {
  std::set<uint32_t> groups;
  for (auto it = due_.begin(); it != due_.end();) {
    if (it->second <= now) {
      groups.insert(it->first);
      it = due_.erase(it);
    } else {
      ++it;
    }
  }
  return groups;
}

std::optional<std::pair<ConnId, std::string>> LinkRepairs::TakeUnreachable(
    const Roster& roster) {
  for (auto it = history_.begin(); it != history_.end(); ++it) {
    if (static_cast<int>(it->second.breaks.size()) < options_.max_attempts) continue;
    const Peer* a = nullptr;
    const Peer* b = nullptr;
    for (const auto& [conn, peer] : roster.peers()) {
      if (peer.peer_id == it->first.first) a = &peer;
      if (peer.peer_id == it->first.second) b = &peer;
    }
    std::string reason = it->second.last_reason;
    history_.erase(it);
    if (a == nullptr || b == nullptr) return std::nullopt;
    const Peer& removed = a->conn > b->conn ? *a : *b;
    const Peer& kept = a->conn > b->conn ? *b : *a;
    return std::make_pair(removed.conn,
                          "its ring link with " + Describe(kept) + " broke " +
                              std::to_string(options_.max_attempts) + " times (last: " + reason +
                              "); removed as unreachable from its neighbour, connect again "
                              "once the path heals");
  }
  return std::nullopt;
}

void LinkRepairs::OnRingsChanged(const std::set<uint32_t>& groups) {
  for (uint32_t g : groups) due_.erase(g);
}

void LinkRepairs::ForgetPeer(uint64_t peer_id) {
  std::erase_if(history_,
                [&](const auto& kv) { return kv.first.first == peer_id || kv.first.second == peer_id; });
}

TimePoint LinkRepairs::NextDeadline() const {
  TimePoint next = TimePoint::max();
  for (const auto& [group, when] : due_) next = std::min(next, when);
  return next;
}

}  // namespace pccl::master
