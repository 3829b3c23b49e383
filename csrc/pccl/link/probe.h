// Measuring the bandwidth from this peer to another (optimize_topology()).
//
// The master asks each member, one round at a time, to probe at most one other peer, so
// a peer never sends two probes at once. A probe opens as many connections as a ring link
// has (the pool size: that is what a collective will get), streams filler frames over all
// of them for the probe's duration, then sends an empty frame. The probed peer times the
// frames it receives, from the end of the first frame to the end of the last (the
// connection's start-up and the sender's socket buffer do not count), and answers with
// what it measured; the prober adds the connections' rates.
//
// Thread-safety: ProbeServer methods may be called from any thread (the listener's
// handshake threads call Serve); ProbeBandwidth runs on the caller's thread and one thread per connection.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "pccl/common/clock.h"
#include "pccl/common/status.h"
#include "pccl/common/thread_annotations.h"
#include "pccl/link/handshake.h"
#include "pccl/link/serving_threads.h"
#include "pccl/net/socket.h"
#include "pccl/proto/messages.h"

namespace pccl::link {

// Measures the bytes per second from peer `self_peer_id` to `target` over `streams`
// connections for about `duration`. Fails if the target cannot be reached or answers
// wrongly; the probe is abandoned at `deadline`.
Status ProbeBandwidth(uint64_t self_peer_id, const proto::Member& target, uint32_t streams,
                      Duration duration, const Credentials& credentials, Routes& routes,
                      Deadline deadline, uint64_t* bytes_per_second);

// Answers probes: each connection (handshake done) is drained and timed on a thread of
// its own.
class ProbeServer {
 public:
  ProbeServer() = default;
  ~ProbeServer() { Close(); }
  ProbeServer(const ProbeServer&) = delete;
  ProbeServer& operator=(const ProbeServer&) = delete;

  void Serve(net::Socket socket);
  // Cuts every connection and joins the threads.
  void Close();

 private:
  ServingThreads threads_{"probe", 4 * kMaxPoolSize};
};

}  // namespace pccl::link
