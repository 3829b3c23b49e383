#include "pccl/comm/shared_state.h"

#include <algorithm>
#include <set>

#include "pccl/common/logging.h"
#include "pccl/common/params.h"
#include "pccl/kernels/hash.h"
#include "pccl/net/wire.h"

namespace pccl::comm {
namespace {

using proto::Kind;

// Bytes received (and hashed) per RecvAll while fetching an entry: large enough to
// amortise syscalls, small enough that hashing reads cache-warm bytes.
constexpr size_t kFetchChunk = 4 << 20;
// How long a serving connection waits for the next request; the sync's own deadline and
// Withdraw() end it earlier.
constexpr auto kServeIdle = std::chrono::minutes(10);

std::string HashText(uint64_t h) {
  static const char* kDigits = "0123456789abcdef";
  std::string s = "0x";
  for (int shift = 60; shift >= 0; shift -= 4) s.push_back(kDigits[(h >> shift) & 0xF]);
  return s;
}

}  // namespace

Status ValidateEntries(const std::vector<SharedStateEntry>& entries) {
  if (entries.size() > proto::kMaxStateEntries) {
    return InvalidArgument("shared state has " + std::to_string(entries.size()) +
                           " entries, the limit is " + std::to_string(proto::kMaxStateEntries));
  }
  std::set<std::string> keys;
  for (const SharedStateEntry& e : entries) {
    if (e.key.empty() || e.key.size() > proto::kMaxStateKeyLength) {
      return InvalidArgument("shared-state key '" + e.key + "' must have 1 to " +
                             std::to_string(proto::kMaxStateKeyLength) + " bytes");
    }
    if (!keys.insert(e.key).second) {
      return InvalidArgument("shared-state key '" + e.key + "' is registered twice");
    }
    if (e.bytes > 0 && e.data == nullptr) {
      return InvalidArgument("shared-state key '" + e.key + "' has a null data pointer");
    }
    if (e.bytes % DTypeSize(e.dtype) != 0) {
      return InvalidArgument("shared-state key '" + e.key + "': " + std::to_string(e.bytes) +
                             " bytes is not a whole number of " + DTypeName(e.dtype));
    }
  }
  return Status::Ok();
}

proto::SyncState DescribeSharedState(const SharedStateSyncRequest& request) {
  proto::SyncState state;
  state.revision = request.revision;
  state.strategy = static_cast<uint8_t>(request.strategy);
  for (const SharedStateEntry& e : request.entries) {
    state.entries.push_back(proto::StateEntry{e.key, e.bytes, static_cast<uint8_t>(e.dtype),
                                              kernels::Hash64(e.data, e.bytes),
                                              static_cast<uint8_t>(e.allow_content_inequality)});
  }
  return state;
}

// --- StateServer ----------------------------------------------------------------------------

void StateServer::Publish(const std::vector<SharedStateEntry>& entries,
                          const std::vector<uint64_t>& hashes) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.clear();
  for (size_t i = 0; i < entries.size(); ++i) {
    entries_[entries[i].key] = Published{entries[i].data, entries[i].bytes, hashes[i]};
  }
  tx_bytes_ = 0;
}

void StateServer::Serve(net::Socket socket) {
  auto shared = std::make_shared<net::Socket>(std::move(socket));
  std::lock_guard<std::mutex> lock(mu_);
  connections_.push_back(Connection{shared, std::thread([this, shared] { ServeLoop(shared); })});
}

void StateServer::ServeLoop(const std::shared_ptr<net::Socket>& socket) {
  while (true) {
    Deadline deadline = Deadline::In(kServeIdle);
    net::FrameHeader header;
    std::string payload;
    Status st = net::RecvFrame(*socket, net::kMaxControlPayload, deadline, &header, &payload);
    if (!st.ok()) return;  // the fetcher is done (EOF), or Withdraw() cut the connection
    proto::StateRequest request;
    if (header.kind != static_cast<uint16_t>(Kind::kStateRequest)) {
      st = InvalidArgument(std::string("expected StateRequest, got ") +
                           proto::KindName(header.kind));
    } else {
      st = proto::Decode(payload, &request);
    }
    if (!st.ok()) {
      PCCL_LOG(kWarning, "shared state: dropping " + socket->peer() + ": " + st.ToString());
      return;
    }
    Published entry{nullptr, 0, 0};
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = entries_.find(request.key);
      if (it == entries_.end()) {
        st = FailedPrecondition("this peer does not serve shared-state key '" + request.key +
                                "' now");
      } else if (it->second.hash != request.hash) {
        st = FailedPrecondition("this peer's shared-state key '" + request.key + "' has hash " +
                                HashText(it->second.hash) + ", not the requested " +
                                HashText(request.hash));
      } else {
        entry = it->second;
      }
    }
    if (!st.ok()) {
      proto::ErrorMessage error{static_cast<uint32_t>(st.code()), st.message()};
      if (!net::SendFrame(*socket, static_cast<uint16_t>(Kind::kError), proto::Encode(error),
                          deadline)
               .ok()) {
        return;
      }
      continue;
    }
    uint8_t frame[net::kFrameHeaderBytes];
    net::EncodeFrameHeader(static_cast<uint16_t>(Kind::kStateData), entry.bytes, frame);
    struct iovec iov[2] = {{frame, sizeof(frame)},
                           {const_cast<void*>(entry.data), entry.bytes}};
    if (!socket->SendAllV(iov, entry.bytes > 0 ? 2 : 1, deadline).ok()) return;
    tx_bytes_ += entry.bytes;
  }
}

uint64_t StateServer::Withdraw() {
  std::vector<Connection> connections;
  {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.clear();
    connections.swap(connections_);
  }
  for (Connection& c : connections) c.socket->Shutdown();
  for (Connection& c : connections) {
    if (c.thread.joinable()) c.thread.join();
  }
  return tx_bytes_.exchange(0);
}

// --- fetching -------------------------------------------------------------------------------

namespace {

// Fetches `fetches` (all from one source) over one connection.
Status FetchFromSource(uint64_t self, const std::vector<const proto::StateFetch*>& fetches,
                       const std::map<std::string, const SharedStateEntry*>& by_key,
                       Deadline deadline, uint64_t* rx_bytes) {
  const proto::StateFetch& first = *fetches.front();
  const std::string source = "peer " + std::to_string(first.source_peer_id) + " (" +
                             first.source_host + ":" + std::to_string(first.source_port) + ")";
  auto lost = [&](const Status& st, const std::string& what) {
    return Status(StatusCode::kAborted,
                  "shared-state source " + source + " lost " + what + ": " + st.message());
  };
  net::Socket socket;
  Status st = net::Socket::Connect({first.source_host, first.source_port},
                                   deadline.Min(Deadline::In(
                                       Milliseconds(GetParams().connect_timeout_ms))),
                                   &socket);
  if (!st.ok()) return lost(st, "before the transfer (connect)");
  socket.SetBufferSizes(GetParams().socket_buffer_bytes);
  st = net::SendFrame(socket, static_cast<uint16_t>(Kind::kStateHello),
                      proto::Encode(proto::StateHello{self, first.source_peer_id}), deadline);
  net::FrameHeader header;
  std::string payload;
  if (st.ok()) st = net::RecvFrame(socket, net::kMaxControlPayload, deadline, &header, &payload);
  if (!st.ok()) return lost(st, "during the handshake");
  proto::P2PWelcome welcome;
  if (header.kind != static_cast<uint16_t>(Kind::kP2PWelcome) ||
      !proto::Decode(payload, &welcome).ok() || !welcome.ok) {
    return Status(StatusCode::kAborted, "shared-state source " + source + " refused: " +
                                            (welcome.reason.empty() ? "bad handshake"
                                                                    : welcome.reason));
  }
  for (const proto::StateFetch* fetch : fetches) {
    const SharedStateEntry& entry = *by_key.at(fetch->key);
    const std::string what = "key '" + fetch->key + "'";
    st = net::SendFrame(socket, static_cast<uint16_t>(Kind::kStateRequest),
                        proto::Encode(proto::StateRequest{fetch->key, fetch->hash}), deadline);
    if (st.ok()) {
      st = net::RecvFrameHeader(socket, std::max<uint64_t>(entry.bytes, net::kMaxControlPayload),
                                deadline, &header);
    }
    if (!st.ok()) return lost(st, "while sending " + what);
    if (header.kind == static_cast<uint16_t>(Kind::kError) &&
        header.length <= net::kMaxControlPayload) {
      std::string text(header.length, '\0');
      proto::ErrorMessage error;
      if (socket.RecvAll(text.data(), text.size(), deadline).ok() &&
          proto::Decode(text, &error).ok()) {
        return Status(StatusCode::kAborted,
                      "shared-state source " + source + " refused " + what + ": " + error.message);
      }
      return lost(Status(StatusCode::kAborted, "unreadable refusal"), "while sending " + what);
    }
    if (header.kind != static_cast<uint16_t>(Kind::kStateData) || header.length != entry.bytes) {
      return Status(StatusCode::kAborted,
                    "shared-state source " + source + " answered " + what + " with " +
                        proto::KindName(header.kind) + " of " + std::to_string(header.length) +
                        " bytes, expected StateData of " + std::to_string(entry.bytes));
    }
    // Straight into the entry's memory, hashed chunk by chunk while the bytes are warm.
    kernels::Hasher hasher;
    auto* out = static_cast<uint8_t*>(entry.data);
    for (size_t done = 0; done < entry.bytes;) {
      size_t n = std::min(kFetchChunk, entry.bytes - done);
      st = socket.RecvAll(out + done, n, deadline);
      if (!st.ok()) {
        return lost(st, "while sending " + what + " (" + std::to_string(done) + " of " +
                            std::to_string(entry.bytes) + " bytes received)");
      }
      hasher.Update(out + done, n);
      done += n;
    }
    *rx_bytes += entry.bytes;
    if (hasher.Digest() != fetch->hash) {
      return Status(StatusCode::kDataLoss,
                    "shared-state " + what + " from " + source + " has hash " +
                        HashText(hasher.Digest()) + ", the elected content has " +
                        HashText(fetch->hash));
    }
  }
  return Status::Ok();
}

}  // namespace

Status FetchSharedState(uint64_t self_peer_id, const proto::SyncPlan& plan,
                        const std::vector<SharedStateEntry>& entries, Deadline deadline,
                        uint64_t* rx_bytes) {
  std::map<std::string, const SharedStateEntry*> by_key;
  for (const SharedStateEntry& e : entries) by_key[e.key] = &e;
  // Group by source, in order of first appearance.
  std::vector<uint64_t> order;
  std::map<uint64_t, std::vector<const proto::StateFetch*>> by_source;
  for (const proto::StateFetch& f : plan.fetches) {
    if (!by_key.count(f.key)) {
      return Internal("the master's plan names shared-state key '" + f.key +
                      "', which this peer did not register");
    }
    if (f.source_peer_id == self_peer_id) {
      return Internal("the master's plan has this peer fetch key '" + f.key + "' from itself");
    }
    auto& list = by_source[f.source_peer_id];
    if (list.empty()) order.push_back(f.source_peer_id);
    list.push_back(&f);
  }
  for (uint64_t source : order) {
    PCCL_RETURN_IF_ERROR(
        FetchFromSource(self_peer_id, by_source[source], by_key, deadline, rx_bytes));
  }
  return Status::Ok();
}

}  // namespace pccl::comm
