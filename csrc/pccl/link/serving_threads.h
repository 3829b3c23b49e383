// ServingThreads: the threads that serve accepted p2p connections (shared-state fetches,
// bandwidth probes), one per connection, bounded.
//
// A server hands each connection whose handshake succeeded to Start(), which runs the
// serving function on a thread of its own. Threads that ended are joined at the next
// Start(), so a long run keeps no dead threads; at most `limit` serve at once, and a
// connection beyond that is closed with a warning, so that nobody (a stranger in a run
// without a secret, a member gone wrong) can grow threads without bound. CutAll() shuts
// every connection down and joins every thread: after it, no serving function touches
// the server's memory.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pccl/common/logging.h"
#include "pccl/common/thread_annotations.h"
#include "pccl/net/socket.h"

namespace pccl::link {

class ServingThreads {
 public:
  using Serve = std::function<void(net::Socket& socket)>;

  // `what` names the service in warnings ("shared state", "probe").
  ServingThreads(std::string what, size_t limit) : what_(std::move(what)), limit_(limit) {}
  ~ServingThreads() { CutAll(); }
  ServingThreads(const ServingThreads&) = delete;
  ServingThreads& operator=(const ServingThreads&) = delete;

  // Runs `serve(socket)` on a thread of its own, or closes `socket` if `limit` threads
  // serve already. Returns whether it started.
  bool Start(net::Socket socket, Serve serve);
  // Shuts every connection down and joins every thread.
  void CutAll();
  size_t serving();

 private:
  struct Thread {
    std::shared_ptr<net::Socket> socket;
    std::shared_ptr<std::atomic<bool>> done;
    std::thread thread;
  };
  void ReapLocked();  // needs mu_

  const std::string what_;
  const size_t limit_;
  RateLimitedLog refusals_{LogLevel::kWarning};
  std::mutex mu_;
  std::vector<Thread> threads_ PCCL_GUARDED_BY(mu_);
};

}  // namespace pccl::link
