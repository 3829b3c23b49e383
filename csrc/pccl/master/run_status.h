// What the master shows of the run (MasterNode.status(), its HTTP /status and /metrics):
// the peers, each group's ring with the bandwidths measured along it, the operations in
// flight, counters, latency histograms (heartbeat round trips, each member's time per
// collective), and the latest events (joins, resumes, epochs and why they started,
// departures, failed verdicts with their reasons).
//
// The master's machines write events and counters into the RunLog that Membership owns;
// Membership::Snapshot() assembles a RunStatus from it and from the roster, and the server
// thread publishes a copy for other threads now and then (master/server.h).
//
// Thread-safety: RunLog, none (the thread that owns the Membership); a RunStatus is a value.
#pragma once

#include <cstdint>
#include <iterator>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pccl/common/clock.h"

namespace pccl::master {

struct RunEvent {
  TimePoint at;       // when it happened (the master's monotonic clock)
  double unix_time;   // the same, in seconds since the Unix epoch (set by Snapshot())
  std::string kind;   // "join", "resume", "epoch", "leave", "failed", "restart"
  std::string text;
};

// Observations of a duration in fixed buckets (seconds), as Prometheus histograms have.
struct Histogram {
  static constexpr double kBounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                       0.1,    0.25,  0.5,    1,     2.5,  5,     10, 30};
  static constexpr size_t kBuckets = std::size(kBounds);
  uint64_t counts[kBuckets + 1] = {};  // counts[i]: <= kBounds[i], not cumulative; last: more
  double sum = 0;
  uint64_t count = 0;
  void Observe(double seconds);
};

class RunLog {
 public:
  static constexpr size_t kMaxEvents = 200;  // the oldest go first
  // The histograms exist from the start (empty), so that /metrics always has them:
  // heartbeat round trips, and each member's time per collective.
  RunLog() : histograms_{{"heartbeat_rtt", {}}, {"member_op", {}}} {}
  void Add(TimePoint at, std::string kind, std::string text);
  void Count(const std::string& counter, uint64_t n = 1) { counters_[counter] += n; }
  void Observe(const std::string& histogram, Duration d) {
    histograms_[histogram].Observe(std::chrono::duration<double>(d).count());
  }
  const std::map<std::string, Histogram>& histograms() const { return histograms_; }
  const std::deque<RunEvent>& events() const { return events_; }
  const std::map<std::string, uint64_t>& counters() const { return counters_; }

 private:
  std::deque<RunEvent> events_;
  std::map<std::string, uint64_t> counters_;
  std::map<std::string, Histogram> histograms_;
};

struct RunStatus {
  uint64_t epoch = 0;
  std::string epoch_cause;
  struct PeerStatus {
    uint64_t peer_id = 0;
    std::string host;  // where other peers dial it
    uint16_t port = 0;
    uint32_t peer_group = 0;
    bool member = false;  // false: pending admission
    int reachable = 0;    // proto::kReachability*: 0 unknown, 1 yes, 2 no
    double rto_s = 0;     // its master connection's retransmission timeout, last heartbeat
    double idle_s = 0;    // since its last message
    double heartbeat_rtt_s = 0;  // its latest heartbeat's round trip, as it measured (0: none)
  };
  std::vector<PeerStatus> peers;  // members in ring order, then pending in arrival order
  struct GroupStatus {
    uint32_t peer_group = 0;
    uint64_t ring_epoch = 0;
    std::vector<uint64_t> ring;             // peer ids in ring order
    std::vector<double> bytes_per_second;   // ring[i] -> ring[i + 1]; 0: not measured
    size_t operations_in_flight = 0;        // collectives reported by some, not decided
    std::optional<uint64_t> state_revision;  // of its last shared-state sync, if any
  };
  std::vector<GroupStatus> groups;
  std::vector<RunEvent> events;  // oldest first
  // "ops_succeeded", "ops_failed", "ops_failed_<Code>", "joins", "departures", "epochs".
  std::map<std::string, uint64_t> counters;
  std::map<std::string, Histogram> histograms;
};

}  // namespace pccl::master
