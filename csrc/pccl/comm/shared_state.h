// The peer side of shared-state sync: hashing the registered entries, serving them to peers
// that fetch (StateServer) and fetching what the master's plan says (FetchSharedState).
//
// A sync, as one peer sees it (Communicator::SyncSharedState runs it):
//   1. hash every entry (kernels::Hash64 of its raw bytes);
//   2. publish the entries on this peer's StateServer, so that peers can fetch them as soon
//      as the master answers anyone;
//   3. send SyncState to the master, wait for SyncPlan (or a failed SyncComplete);
//   4. FetchSharedState: one connection per source peer; for each entry, StateRequest then
//      the raw bytes straight into the entry's memory, hashed while they arrive and checked
//      against the elected hash; report SyncDone;
//   5. wait for SyncComplete (sources keep serving until every peer is done), then
//      withdraw the entries: Withdraw() cuts every serving connection and joins its thread,
//      so no thread touches the caller's memory once the sync returns.
// A failed transfer leaves the entries being fetched partially written; their hash then
// differs, so the retry fetches them again.
//
// Thread-safety: StateServer methods may be called from any thread (the acceptor thread
// calls Serve; the sync calls Publish/Withdraw). FetchSharedState runs on the caller's.
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
#include "pccl/net/socket.h"
#include "pccl/proto/messages.h"

namespace pccl::comm {

// One registered tensor: raw memory the sync reads (serving) or overwrites (fetching).
struct SharedStateEntry {
  std::string key;
  void* data = nullptr;
  size_t bytes = 0;
  DType dtype = DType::kUint8;
  bool allow_content_inequality = false;
};

struct SharedStateSyncRequest {
  uint64_t revision = 0;
  proto::SyncStrategy strategy = proto::SyncStrategy::kEnforcePopular;
  std::vector<SharedStateEntry> entries;
};

struct SharedStateSyncInfo {
  uint64_t revision = 0;  // the elected revision this peer's state now has
  uint64_t tx_bytes = 0;
  uint64_t rx_bytes = 0;
};

// Checks keys (non-empty, unique, bounded), pointers and dtypes: InvalidArgument naming the key.
Status ValidateEntries(const std::vector<SharedStateEntry>& entries);
// The SyncState message of `request`: the hash of every entry.
proto::SyncState DescribeSharedState(const SharedStateSyncRequest& request);

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
  struct Connection {
    std::shared_ptr<net::Socket> socket;
    std::thread thread;
  };
  void ServeLoop(const std::shared_ptr<net::Socket>& socket);

  std::mutex mu_;
  std::map<std::string, Published> entries_ PCCL_GUARDED_BY(mu_);
  std::vector<Connection> connections_ PCCL_GUARDED_BY(mu_);
  std::atomic<uint64_t> tx_bytes_{0};
};

// Fetches `plan`'s entries into `entries`' memory: one connection per source peer, entries
// in plan order; each is verified against the plan's hash (DataLoss if it differs). A
// source that fails mid-transfer gives Aborted naming it (retry: the master fails the round
// on every peer and the next round picks other sources).
Status FetchSharedState(uint64_t self_peer_id, const proto::SyncPlan& plan,
                        const std::vector<SharedStateEntry>& entries, Deadline deadline,
                        uint64_t* rx_bytes);

}  // namespace pccl::comm
