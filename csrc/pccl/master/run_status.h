// What the master shows of the run (MasterNode.status(), its HTTP /status and /metrics):
// the peers, each group's ring with the bandwidths measured along it, the operations in
// flight, counters, and the latest events (joins, epochs and why they started, departures,
// failed verdicts with their reasons).
//
// The master's machines write events and counters into the RunLog that Membership owns;
// Membership::Snapshot() assembles a RunStatus from it and from the roster, and the server
// thread publishes a copy for other threads now and then (master/server.h).
//
// Thread-safety: RunLog, none (the thread that owns the Membership); a RunStatus is a value.
#pragma once

#include <cstdint>
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
  std::string kind;   // "join", "epoch", "leave", "failed"
  std::string text;
};

class RunLog {
 public:
  static constexpr size_t kMaxEvents = 200;  // the oldest go first
  void Add(TimePoint at, std::string kind, std::string text);
  void Count(const std::string& counter, uint64_t n = 1) { counters_[counter] += n; }
  const std::deque<RunEvent>& events() const { return events_; }
  const std::map<std::string, uint64_t>& counters() const { return counters_; }

 private:
  std::deque<RunEvent> events_;
  std::map<std::string, uint64_t> counters_;
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
};

}  // namespace pccl::master
