#include "pccl/master/ring_optimizer.h"

#include <algorithm>
#include <string>

#include "pccl/common/logging.h"
#include "pccl/master/ring_solver.h"

namespace pccl::master {

// The story of a run, as the master sees it: ring order.
// (Joining, voting, epochs and leaving: admission.cc.)
//
// Ring order. Every member calls optimize_topology(), which sends OptimizeTopology. Once
// all have (and no link phase runs), the master measures the pairs of each group whose
// bandwidth it does not know or measured too long ago: in round k, the i-th member of a
// group probes the (i+k)-th, so each member sends one probe and receives one at a time,
// and every member reports each round before the next starts. Then each group's ring is
// solved (ring_solver.h) and, if the order changes, a new epoch starts in that order
// (Topology ... TopologyComplete answers the members); otherwise every member gets
// TopologyUnchanged. Any epoch change (a peer left) ends the round: its Topology answers
// the members, whose later reports are ignored. A member that leaves takes its
// measurements with it.

bool RingOptimizer::OnRequest(const Peer& peer, uint64_t epoch, const Roster& roster,
                              Step& step) {
  if (peer.role != Role::kMember) {
    step.Refuse(peer.conn, Describe(peer) + " is pending: only members optimize the topology");
    return false;
  }
  // Sent before the peer saw the newer epoch's Topology, which answered it.
  if (epoch < roster.epoch()) return false;
  if (epoch > roster.epoch() || round_.requested.count(peer.conn) || round_.measuring) {
    step.Refuse(peer.conn,
                Describe(peer) + " asked to optimize the topology of epoch " +
                    std::to_string(epoch) +
                    (round_.measuring ? " while a measurement round is in progress"
                                      : ", but the current epoch is " +
                                            std::to_string(roster.epoch()) +
                                            " (or it asked twice)"));
    return false;
  }
  round_.requested.insert(peer.conn);
  return true;
}

std::optional<std::vector<ConnId>> RingOptimizer::MaybeStart(const Roster& roster,
                                                             Step& step) {
  if (round_.measuring || round_.requested.empty()) return std::nullopt;
  for (ConnId m : roster.members()) {
    if (!round_.requested.count(m)) return std::nullopt;
  }
  // The pairs to measure: within each group (rings are per group), those never measured
  // or measured too long ago, scheduled as shifts of the group's ring order.
  std::map<uint32_t, std::vector<ConnId>> groups;
  for (ConnId m : roster.members()) groups[roster.at(m).peer_group].push_back(m);
  size_t largest = 0;
  for (const auto& [group, conns] : groups) largest = std::max(largest, conns.size());
  std::vector<std::map<ConnId, ConnId>> rounds;
  for (size_t shift = 1; shift < largest; ++shift) {
    std::map<ConnId, ConnId> round;
    for (const auto& [group, conns] : groups) {
      if (shift >= conns.size()) continue;
      for (size_t i = 0; i < conns.size(); ++i) {
        ConnId from = conns[i];
        ConnId to = conns[(i + shift) % conns.size()];
        auto it = bandwidth_.find({roster.at(from).peer_id, roster.at(to).peer_id});
        if (it == bandwidth_.end() || step.now() - it->second.when >= options_.bandwidth_max_age) {
          round[from] = to;
        }
      }
    }
    if (!round.empty()) rounds.push_back(std::move(round));
  }
  round_.measuring = true;
  round_.rounds = std::move(rounds);
  round_.round = 0;
  if (round_.rounds.empty()) return Finish(roster, step);
  SendMeasureRound(roster, step);
  return std::nullopt;
}

void RingOptimizer::SendMeasureRound(const Roster& roster, Step& step) {
  round_.reported.clear();
  const auto& round = round_.rounds[round_.round];
  for (ConnId m : roster.members()) {
    proto::MeasureBandwidth measure;
    measure.round = static_cast<uint32_t>(round_.round);
    measure.duration_ms = static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(options_.probe_duration).count());
    if (auto it = round.find(m); it != round.end()) {
      const Peer& t = roster.at(it->second);
      measure.targets.push_back(proto::Member{t.peer_id, t.host, t.port, t.peer_group, t.public_key});
    }
    step.SendTo(m, proto::Kind::kMeasureBandwidth, proto::Encode(measure));
  }
}

std::optional<std::vector<ConnId>> RingOptimizer::OnBandwidthReport(
    const Peer& peer, const proto::BandwidthReport& report, const Roster& roster, Step& step) {
  // A report of a round that an epoch change ended.
  if (!round_.measuring || report.round != round_.round) return std::nullopt;
  const auto& round = round_.rounds[round_.round];
  auto assigned = round.find(peer.conn);
  for (const proto::BandwidthSample& sample : report.samples) {
    if (assigned == round.end() || roster.at(assigned->second).peer_id != sample.to_peer_id ||
        report.samples.size() != 1) {
      step.Refuse(peer.conn,
                  Describe(peer) + " reported bandwidth to peers it was not asked to probe");
      return std::nullopt;
    }
    bandwidth_[{peer.peer_id, sample.to_peer_id}] =
        Measurement{static_cast<double>(sample.bytes_per_second), step.now()};
    PCCL_LOG(kInfo, "master: bandwidth " + Describe(peer) + " -> peer " +
                        std::to_string(sample.to_peer_id) + ": " +
                        std::to_string(sample.bytes_per_second / 1000000) + " MB/s");
  }
  round_.reported.insert(peer.conn);
  for (ConnId m : roster.members()) {
    if (!round_.reported.count(m)) return std::nullopt;
  }
  if (++round_.round < round_.rounds.size()) {
    SendMeasureRound(roster, step);
    return std::nullopt;
  }
  return Finish(roster, step);
}

std::optional<std::vector<ConnId>> RingOptimizer::Finish(const Roster& roster, Step& step) {
  round_ = OptimizeRound{};
  const std::vector<ConnId>& members = roster.members();
  // Each group's members keep their slots in the ring; only their order among those
  // slots changes, so the groups stay interleaved as before.
  std::map<uint32_t, std::vector<size_t>> slots;
  for (size_t i = 0; i < members.size(); ++i) {
    slots[roster.at(members[i]).peer_group].push_back(i);
  }
  std::vector<ConnId> next = members;
  for (const auto& [group, positions] : slots) {
    const size_t n = positions.size();
    BandwidthMatrix matrix(n, std::vector<double>(n, 0));
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < n; ++j) {
        if (i == j) continue;
        auto it = bandwidth_.find({roster.at(members[positions[i]]).peer_id,
                                   roster.at(members[positions[j]]).peer_id});
        if (it != bandwidth_.end()) matrix[i][j] = it->second.bytes_per_second;
      }
    }
    std::vector<int> current(n);
    for (size_t i = 0; i < n; ++i) current[i] = static_cast<int>(i);
    std::vector<int> order = SolveRing(matrix, current);
    for (size_t i = 0; i < n; ++i) next[positions[i]] = members[positions[order[i]]];
  }
  if (next == members) {
    for (ConnId m : members) step.SendTo(m, proto::Kind::kTopologyUnchanged, "");
    return std::nullopt;
  }
  PCCL_LOG(kInfo, "master: optimize_topology() found a better ring order");
  return next;
}

void RingOptimizer::Remember(uint64_t from_peer_id, uint64_t to_peer_id, double bytes_per_second,
                             TimePoint now) {
  bandwidth_.try_emplace({from_peer_id, to_peer_id}, Measurement{bytes_per_second, now});
}

std::vector<proto::MeasuredLink> RingOptimizer::Measurements(size_t limit) const {
  std::vector<proto::MeasuredLink> out;
  for (const auto& [pair, m] : bandwidth_) {
    if (out.size() >= limit) break;
    out.push_back(proto::MeasuredLink{pair.first, pair.second,
                                      static_cast<uint64_t>(m.bytes_per_second)});
  }
  return out;
}

void RingOptimizer::ForgetPeer(uint64_t peer_id) {
  std::erase_if(bandwidth_, [&](const auto& kv) {
    return kv.first.first == peer_id || kv.first.second == peer_id;
  });
}

std::optional<double> RingOptimizer::MeasuredBandwidth(uint64_t from_peer_id,
                                                       uint64_t to_peer_id) const {
  auto it = bandwidth_.find({from_peer_id, to_peer_id});
  if (it == bandwidth_.end()) return std::nullopt;
  return it->second.bytes_per_second;
}

}  // namespace pccl::master
