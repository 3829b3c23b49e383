// IncomingPool: accepted ring connections waiting for the RingLinks of their epoch.
//
// The listener (link/listener.h) hands every ring connection whose P2PHello it accepted to
// Deposit(); RingLinks::Establish takes the pool of its previous peer out with Take().
// Connections for epochs this peer has not reached yet wait here; at most kMaxWaiting
// of them (a full pool from each of a few epochs ahead), and kMaxWaitingPerPeer from any
// one peer, so that nobody can park connections without bound or crowd the others out:
// one beyond that is closed.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <vector>

#include "pccl/common/clock.h"
#include "pccl/common/logging.h"
#include "pccl/common/status.h"
#include "pccl/common/thread_annotations.h"
#include "pccl/link/handshake.h"
#include "pccl/net/socket.h"
#include "pccl/proto/messages.h"

namespace pccl::link {

class IncomingPool {
 public:
  static constexpr size_t kMaxWaiting = 4 * kMaxPoolSize;
  // From one peer: so that one member (a buggy or hostile one, parking connections for
  // epochs far ahead) cannot fill the pool and keep every other neighbour out.
  static constexpr size_t kMaxWaitingPerPeer = 2 * kMaxPoolSize;

  void Deposit(const Hello& hello, net::Socket socket);  // a ring link's hello
  // Takes `count` connections (slots 0 .. count-1) from `from_peer` for `epoch`, waiting
  // until all are there. Connections of older epochs, and those the dialer closed
  // meanwhile, are dropped. Gives up with Aborted
  // as soon as `give_up()` (polled a few times a second) returns true.
  Status Take(uint64_t epoch, uint64_t from_peer, uint32_t count, Deadline deadline,
              const std::function<bool()>& give_up, std::vector<net::Socket>* out);
  // Whether a live connection from `from_peer` for `epoch` waits here (its dialer wants
  // links).
  bool Has(uint64_t epoch, uint64_t from_peer);
  void Close();

 private:
  struct Key {
    uint64_t epoch;
    uint64_t from;
    uint32_t slot;
    bool operator<(const Key& o) const;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<Key, net::Socket> sockets_ PCCL_GUARDED_BY(mu_);
  bool closed_ PCCL_GUARDED_BY(mu_) = false;
  RateLimitedLog refusals_{LogLevel::kWarning};
};

}  // namespace pccl::link
