// Ring optimisation: optimize_topology() rounds, from every member's request through the
// bandwidth measurement rounds to the solved ring order. One of the master's state
// machines (membership.h routes the events to them).
//
// RingOptimizer holds the round in progress and the bandwidth table (by peer id pair,
// with the time each was measured); it reads the members and their ring order from the
// Roster (roster.h) and leaves the choice of order to ring_solver.h. It never starts an
// epoch: when the solved order differs it returns that order, and Membership starts the
// epoch (whose Topology answers the members). Membership ends a round whenever the epoch
// changes (Abandon) and forgets a departed member's measurements (ForgetPeer).
//
// Thread-safety: none; the thread that owns the Membership owns its RingOptimizer.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "pccl/common/clock.h"
#include "pccl/master/roster.h"
#include "pccl/master/step.h"
#include "pccl/proto/messages.h"

namespace pccl::master {

struct RingOptimizerOptions {
  // How long each probe streams, and how long a measured bandwidth is trusted before the
  // next optimize_topology() measures that pair again.
  Duration probe_duration = std::chrono::milliseconds(300);
  Duration bandwidth_max_age = std::chrono::minutes(10);
};

class RingOptimizer {
 public:
  explicit RingOptimizer(RingOptimizerOptions options = {}) : options_(options) {}

  // optimize_topology() from `peer` for `epoch`. Returns true when the request was
  // recorded: Membership then calls MaybeStart, outside a link phase.
  bool OnRequest(const Peer& peer, uint64_t epoch, const Roster& roster, Step& step);
  // Once every member asked: sends the first measurement round or, when nothing needs
  // measuring, solves the rings at once (see OnBandwidthReport for what that returns).
  std::optional<std::vector<ConnId>> MaybeStart(const Roster& roster, Step& step);
  // A member's probes of one round. When the last round is complete, solves each group's
  // ring: returns the new member order (ring order; Membership starts its epoch) if it is
  // better, or sends TopologyUnchanged to every member and returns nullopt.
  std::optional<std::vector<ConnId>> OnBandwidthReport(const Peer& peer,
                                                       const proto::BandwidthReport& report,
                                                       const Roster& roster, Step& step);
  // The epoch changed: the round in progress ends (its members got the new Topology as
  // their answer); later reports of it are ignored.
  void Abandon() { round_ = OptimizeRound{}; }
  // A measurement a resuming peer brought (admission.cc, "Resuming"), kept unless the
  // master measured that pair itself.
  void Remember(uint64_t from_peer_id, uint64_t to_peer_id, double bytes_per_second,
                TimePoint now);
  // A member left: its measurements are forgotten.
  void ForgetPeer(uint64_t peer_id);

  // The latest measured bandwidth from one peer to another (bytes/s), if any.
  std::optional<double> MeasuredBandwidth(uint64_t from_peer_id, uint64_t to_peer_id) const;
  // Every measurement (for the master's state file), at most `limit`.
  std::vector<proto::MeasuredLink> Measurements(size_t limit) const;
  bool measuring() const { return round_.measuring; }  // tests

 private:
  // optimize_topology(): the members that asked (in the current epoch), then the
  // measurement rounds: in each, a member probes at most one peer of its group.
  struct OptimizeRound {
    std::set<ConnId> requested;
    bool measuring = false;
    std::vector<std::map<ConnId, ConnId>> rounds;  // prober -> target
    size_t round = 0;
    std::set<ConnId> reported;
  };
  struct Measurement {
    double bytes_per_second = 0;
    TimePoint when;
  };

  void SendMeasureRound(const Roster& roster, Step& step);
  // Solves each group's ring from the measurements (see OnBandwidthReport).
  std::optional<std::vector<ConnId>> Finish(const Roster& roster, Step& step);

  RingOptimizerOptions options_;
  OptimizeRound round_;
  // What was measured, by (from peer id, to peer id).
  std::map<std::pair<uint64_t, uint64_t>, Measurement> bandwidth_;
};

}  // namespace pccl::master
