// DialBacks: the master's answer to "can the others dial me?" (ReachabilityQuery), the
// first step of NAT traversal.
//
// A peer behind a NAT or a firewall reaches the master but may accept no connection, and
// then every ring link to it fails. When a peer asks, the master dials the endpoint the
// peer advertised (the one the others will dial) without blocking its poll loop: a
// non-blocking connect that poll() watches, cut after kTimeout. If it connects, the master
// sends DialBack (an empty frame the peer's listener closes quietly) and hangs up. Either
// way the peer is told (Reachability) whether the dial connected, and the address and port
// the master sees the peer's own connection come from: its NAT's public mapping, if any.
// One check per peer at a time and kMaxInFlight in all; only IP literals are dialled
// (resolving a name would block the loop). A query that cannot be checked is answered at
// once, saying why.
//
// Thread-safety: none; the server thread owns it.
#pragma once

#include <poll.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "pccl/common/clock.h"
#include "pccl/master/events.h"
#include "pccl/net/address.h"

namespace pccl::master {

class DialBacks {
 public:
  static constexpr size_t kMaxInFlight = 64;
  static constexpr auto kTimeout = std::chrono::seconds(3);

  struct Done {
    ConnId conn = 0;
    bool reachable = false;
    std::string detail;  // the endpoint dialled, and why it failed if it did
  };

  DialBacks() = default;
  ~DialBacks();
  DialBacks(const DialBacks&) = delete;
  DialBacks& operator=(const DialBacks&) = delete;

  // Starts the check of `conn`'s advertised endpoint `target`; returns its result at once
  // when it cannot start or ends at once (busy, a host name, a local error, a refusal).
  std::optional<Done> Start(ConnId conn, const net::Endpoint& target, TimePoint now);
  // Appends the descriptors to poll (POLLOUT), one per check in progress.
  void AddPollFds(std::vector<struct pollfd>* fds) const;
  // After poll(): `fds` points at the `count` entries AddPollFds appended (checks may have
  // started or been forgotten since: entries are matched by descriptor). Returns the
  // checks that ended (connected, failed or timed out) and forgets them.
  std::vector<Done> Collect(const struct pollfd* fds, size_t count, TimePoint now);
  // When the oldest check in progress times out (TimePoint::max() if none).
  TimePoint NextDeadline() const;
  // `conn` is gone: its check ends unreported.
  void Forget(ConnId conn);
  size_t in_flight() const { return checks_.size(); }

 private:
  struct Check {
    ConnId conn = 0;
    int fd = -1;
    std::string target;
    TimePoint deadline;
  };
  std::vector<Check> checks_;
};

}  // namespace pccl::master
