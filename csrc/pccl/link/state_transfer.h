// Moving shared state between peers: serving this peer's entries to peers that fetch
// (StateServer) and fetching what the master's plan says (FetchSharedState), over
// connections that open with a StateHello (link/handshake.h).
//
// A source publishes its entries (with their hashes) for the duration of a sync and serves
// each StateRequest (key, hash, byte range) with exactly those bytes, straight from the
// entry's memory; Withdraw() cuts every serving connection and joins its thread, so no
// thread touches the caller's memory once the sync returns. A fetcher stripes each entry's
// pieces over several connections to every source that holds the elected content, lands
// them straight in the entry's memory and verifies the hash (see FetchSharedState).
//
// Thread-safety: StateServer methods may be called from any thread (the listener's
// handshake threads call Serve; the sync calls Publish/Withdraw). FetchSharedState runs on
// the caller's thread and threads of its own.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pccl/common/clock.h"
#include "pccl/common/dtype.h"
#include "pccl/common/status.h"
#include "pccl/common/thread_annotations.h"
#include "pccl/link/serving_threads.h"
#include "pccl/link/handshake.h"
#include "pccl/net/socket.h"
#include "pccl/proto/messages.h"

namespace pccl::link {

// One registered tensor: raw memory the sync reads (serving) or overwrites (fetching).
struct SharedStateEntry {
  std::string key;
  void* data = nullptr;
  size_t bytes = 0;
  DType dtype = DType::kUint8;
  bool allow_content_inequality = false;
};

// Serves published entries to peers that connect with StateHello.
class StateServer {
 public:
  StateServer() = default;
  ~StateServer() { Withdraw(); }
  StateServer(const StateServer&) = delete;
  StateServer& operator=(const StateServer&) = delete;

  // Makes `entries` (with their `hashes`) fetchable and resets the sent-bytes counter.
  void Publish(const std::vector<SharedStateEntry>& entries, const std::vector<uint64_t>& hashes);
  // Serves requests on `socket` (handshake done) from a thread of its own until the peer
  // closes it or Withdraw() runs.
  void Serve(net::Socket socket);
  // Forgets the entries, cuts every serving connection and joins their threads. Returns the
  // bytes sent since Publish().
  uint64_t Withdraw();

 private:
  struct Published {
    const void* data;
    size_t bytes;
    uint64_t hash;
  };
  void ServeLoop(net::Socket& socket);

  std::mutex mu_;
  std::map<std::string, Published> entries_ PCCL_GUARDED_BY(mu_);
  std::atomic<uint64_t> tx_bytes_{0};
  // A full pool from each of a few fetchers at once.
  ServingThreads threads_{"shared state", 4 * kMaxPoolSize};
};

// Fetches `plan`'s entries into `entries`' memory: one connection per source peer, entries
// in plan order; each is verified against the plan's hash (DataLoss if it differs). A
// source that fails mid-transfer gives Aborted naming it (retry: the master fails the round
// on every peer and the next round picks other sources).
Status FetchSharedState(uint64_t self_peer_id, const proto::SyncPlan& plan,
                        const std::vector<SharedStateEntry>& entries,
                        const Credentials& credentials, Routes& routes, Deadline deadline,
                        uint64_t* rx_bytes);

}  // namespace pccl::link
