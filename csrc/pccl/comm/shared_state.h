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
// Serving and fetching are link/state_transfer.h; this file holds the request and the
// hashing. Thread-safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <vector>

#include "pccl/common/status.h"
#include "pccl/link/state_transfer.h"
#include "pccl/proto/messages.h"

namespace pccl::comm {

using link::SharedStateEntry;

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

}  // namespace pccl::comm
