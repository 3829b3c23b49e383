#include "pccl/link/state_transfer.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <set>

#include "pccl/common/logging.h"
#include "pccl/common/params.h"
#include "pccl/kernels/hash.h"
#include "pccl/link/handshake.h"
#include "pccl/net/wire.h"

namespace pccl::link {
namespace {

using proto::Kind;

// Bytes per RecvAll while receiving a piece (deadline checks between calls).
constexpr uint64_t kRecvChunk = 4 << 20;
// How long a serving connection waits for the next request; the sync's own deadline and
// Withdraw() end it earlier.
constexpr auto kServeIdle = std::chrono::minutes(10);

}  // namespace

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
  threads_.Start(std::move(socket), [this](net::Socket& s) { ServeLoop(s); });
}

void StateServer::ServeLoop(net::Socket& socket) {
  while (true) {
    Deadline deadline = Deadline::In(kServeIdle);
    net::FrameHeader header;
    std::string payload;
    Status st = net::RecvFrame(socket, net::kMaxControlPayload, deadline, &header, &payload);
    if (!st.ok()) return;  // the fetcher is done (EOF), or Withdraw() cut the connection
    proto::StateRequest request;
    if (header.kind != static_cast<uint16_t>(Kind::kStateRequest)) {
      st = InvalidArgument(std::string("expected StateRequest, got ") +
                           proto::KindName(header.kind));
    } else {
      st = proto::Decode(payload, &request);
    }
    if (!st.ok()) {
      PCCL_LOG(kWarning, "shared state: dropping " + socket.peer() + ": " + st.ToString());
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
      } else if (request.offset > it->second.bytes ||
                 request.length > it->second.bytes - request.offset) {
        st = OutOfRange("shared-state key '" + request.key + "' has " +
                        std::to_string(it->second.bytes) + " bytes; bytes [" +
                        std::to_string(request.offset) + ", +" + std::to_string(request.length) +
                        ") were requested");
      } else {
        entry = it->second;
      }
    }
    if (!st.ok()) {
      proto::ErrorMessage error{static_cast<uint32_t>(st.code()), st.message()};
      if (!net::SendFrame(socket, static_cast<uint16_t>(Kind::kError), proto::Encode(error),
                          deadline)
               .ok()) {
        return;
      }
      continue;
    }
    // Straight from the entry's memory: the frame header and the range in one sendmsg.
    uint8_t frame[net::kFrameHeaderBytes];
    net::EncodeFrameHeader(static_cast<uint16_t>(Kind::kStateData), request.length, frame);
    struct iovec iov[2] = {
        {frame, sizeof(frame)},
        {const_cast<uint8_t*>(static_cast<const uint8_t*>(entry.data)) + request.offset,
         request.length}};
    if (!socket.SendAllV(iov, request.length > 0 ? 2 : 1, deadline).ok()) return;
    tx_bytes_ += request.length;
  }
}

uint64_t StateServer::Withdraw() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.clear();
  }
  threads_.CutAll();
  return tx_bytes_.exchange(0);
}

// --- fetching -------------------------------------------------------------------------------
//
// The fetch, step by step:
//   1. Group the plan's StateFetch entries by key: one fetched entry per key, with every
//      source the plan lists for it (all hold the same bytes, the elected hash).
//   2. Cut every entry into pieces of kPieceBytes and queue them in plan order.
//   3. Open connections: up to the pool size to every source (fewer when many sources),
//      each with a thread of its own. Pieces of an entry are dealt round-robin to its
//      sources; a thread takes its source's next piece, or once none is left, another
//      connected source's (the faster sources finish the tail). It sends StateRequest for
//      exactly that range and receives the StateData payload straight into the entry's
//      memory.
//   4. The thread that lands an entry's last piece hashes the whole entry once and compares
//      it to the elected hash (DataLoss on a mismatch).
//   5. A connection that fails (connect, refusal, short read, deadline) marks its source
//      dead and puts its piece back in the queue for the other sources of the entry; a
//      piece that no live source holds ends the fetch with Aborted naming the source, the
//      key and the bytes. The first failure cuts every connection, so the others stop.
//   6. Every thread is joined before FetchSharedState returns.

namespace {

// Bytes per piece: the unit of striping and of retry on another source. Large enough that
// a request's round trip is noise next to its transfer, small enough that a 1 GiB entry
// spreads over every connection of several sources.
constexpr uint64_t kPieceBytes = 8 << 20;
// At most this many connections in one fetch, all sources together.
constexpr size_t kMaxFetchConnections = 32;

struct Source {
  uint64_t peer_id = 0;
  std::string host;
  uint16_t port = 0;
  bool ready = false;       // a connection to it passed the handshake
  bool dead = false;        // a connection to it failed: take nothing more from it
  std::string why;          // the failure that killed it
  std::string Name() const {
    return "peer " + std::to_string(peer_id) + " (" + host + ":" + std::to_string(port) + ")";
  }
};

struct FetchedEntry {
  const SharedStateEntry* entry = nullptr;
  uint64_t hash = 0;               // the elected content
  std::vector<size_t> sources;     // indexes into Fetch::sources
  size_t pieces_left = 0;          // not yet landed
};

struct Piece {
  size_t entry = 0;  // index into Fetch::entries
  uint64_t offset = 0;
  uint64_t length = 0;
  size_t preferred = 0;  // the source meant to send it (index into Fetch::sources)
};

// The state every connection thread shares.
class Fetch {
 public:
  Fetch(uint64_t self, const Credentials& credentials, Routes& routes, Deadline deadline)
      : self_(self), credentials_(credentials), routes_(routes), deadline_(deadline) {}

  Status Plan(const proto::SyncPlan& plan, const std::vector<SharedStateEntry>& entries);
  // Opens the connections, runs them to the end and joins them.
  Status Run();
  uint64_t rx_bytes() const { return rx_bytes_.load(); }

 private:
  void ConnectionLoop(size_t source, const std::shared_ptr<net::Socket>& socket);
  Status Handshake(size_t source, net::Socket* socket);
  // Receives `piece` into the entry's memory; on error, *received says how many of its
  // bytes arrived.
  Status Receive(net::Socket& socket, const Piece& piece, uint64_t* received);
  // Hashes a fully landed entry against the elected hash.
  Status Verify(const FetchedEntry& e) const;
  // The first queued piece `source` holds; false if none.
  bool TakeLocked(size_t source, Piece* out);
  bool HoldsLocked(size_t source, const Piece& piece) const;
  // Records the first failure and cuts every connection.
  void FailLocked(Status st);
  std::string Describe(const Piece& piece) const;

  const uint64_t self_;
  const Credentials& credentials_;
  Routes& routes_;
  const Deadline deadline_;
  std::vector<FetchedEntry> entries_;  // fixed after Plan(), except pieces_left (mu_)
  std::vector<Source> sources_;        // fixed after Plan(), except dead/why (mu_)
  std::atomic<uint64_t> rx_bytes_{0};

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Piece> queue_ PCCL_GUARDED_BY(mu_);
  size_t pieces_left_ PCCL_GUARDED_BY(mu_) = 0;  // all entries together
  Status failure_ PCCL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<net::Socket>> sockets_ PCCL_GUARDED_BY(mu_);
};

Status Fetch::Plan(const proto::SyncPlan& plan, const std::vector<SharedStateEntry>& entries) {
  std::map<std::string, const SharedStateEntry*> by_key;
  for (const SharedStateEntry& e : entries) by_key[e.key] = &e;
  std::map<std::string, size_t> entry_of;   // key -> index into entries_
  std::map<uint64_t, size_t> source_of;     // peer id -> index into sources_
  for (const proto::StateFetch& f : plan.fetches) {
    auto key = by_key.find(f.key);
    if (key == by_key.end()) {
      return Internal("the master's plan names shared-state key '" + f.key +
                      "', which this peer did not register");
    }
    if (f.source_peer_id == self_) {
      return Internal("the master's plan has this peer fetch key '" + f.key + "' from itself");
    }
    auto [src, new_source] = source_of.emplace(f.source_peer_id, sources_.size());
    if (new_source) sources_.push_back(
          Source{f.source_peer_id, f.source_host, f.source_port, false, false, ""});
    auto [ent, new_entry] = entry_of.emplace(f.key, entries_.size());
    if (new_entry) entries_.push_back(FetchedEntry{key->second, f.hash, {}, 0});
    FetchedEntry& e = entries_[ent->second];
    if (e.hash != f.hash) {
      return Internal("the master's plan lists shared-state key '" + f.key +
                      "' with two hashes, " + HashText(e.hash) + " and " + HashText(f.hash));
    }
    if (std::find(e.sources.begin(), e.sources.end(), src->second) == e.sources.end()) {
      e.sources.push_back(src->second);
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < entries_.size(); ++i) {
    FetchedEntry& e = entries_[i];
    const uint64_t bytes = e.entry->bytes;
    if (bytes == 0) {  // nothing to move; the empty content still has to be the elected one
      PCCL_RETURN_IF_ERROR(Verify(e));
      continue;
    }
    for (uint64_t offset = 0; offset < bytes; offset += kPieceBytes) {
      const size_t preferred = e.sources[e.pieces_left % e.sources.size()];
      queue_.push_back(Piece{i, offset, std::min(kPieceBytes, bytes - offset), preferred});
      ++e.pieces_left;
    }
    pieces_left_ += e.pieces_left;
  }
  return Status::Ok();
}

Status Fetch::Run() {
  size_t pieces;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pieces = pieces_left_;
  }
  if (pieces == 0) return Status::Ok();
  // Connections per source: the pool size, fewer when many sources would exceed the cap,
  // never more than the pieces there are.
  const size_t pool = static_cast<size_t>(std::max<int64_t>(1, GetParams().default_pool_size));
  const size_t per_source =
      std::min({pool, std::max<size_t>(1, kMaxFetchConnections / sources_.size()),
                pieces});
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t s = 0; s < sources_.size(); ++s) {
      for (size_t c = 0; c < per_source; ++c) {
        auto socket = std::make_shared<net::Socket>();
        sockets_.push_back(socket);
        threads.emplace_back([this, s, socket] { ConnectionLoop(s, socket); });
      }
    }
  }
  for (std::thread& t : threads) t.join();
  std::lock_guard<std::mutex> lock(mu_);
  if (!failure_.ok()) return failure_;
  if (pieces_left_ != 0) {  // every thread ended without a failure: cannot happen
    return Internal("shared-state fetch ended with " + std::to_string(pieces_left_) +
                    " pieces missing");
  }
  return Status::Ok();
}

bool Fetch::HoldsLocked(size_t source, const Piece& piece) const {
  const std::vector<size_t>& holders = entries_[piece.entry].sources;
  return std::find(holders.begin(), holders.end(), source) != holders.end();
}

bool Fetch::TakeLocked(size_t source, Piece* out) {
  sources_[source].ready = true;
  // Its own pieces first; then help with another source's, once that source is connected
  // (or dead): a source that connects a moment later still gets its share.
  auto take = [&](auto matches) {
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (matches(*it)) {
        *out = *it;
        queue_.erase(it);
        return true;
      }
    }
    return false;
  };
  return take([&](const Piece& p) { return p.preferred == source; }) ||
         take([&](const Piece& p) {
           const Source& owner = sources_[p.preferred];
           return (owner.ready || owner.dead) && HoldsLocked(source, p);
         });
}

void Fetch::FailLocked(Status st) {
  if (failure_.ok()) failure_ = std::move(st);
  for (const auto& socket : sockets_) socket->Shutdown();
  cv_.notify_all();
}

std::string Fetch::Describe(const Piece& piece) const {
  const FetchedEntry& e = entries_[piece.entry];
  return "key '" + e.entry->key + "' bytes [" + std::to_string(piece.offset) + ", " +
         std::to_string(piece.offset + piece.length) + ") of " + std::to_string(e.entry->bytes);
}

Status Fetch::Handshake(size_t source, net::Socket* socket) {
  const Source& src = sources_[source];
  net::Socket connected;
  Status st = routes_.Connect(src.peer_id, {src.host, src.port}, deadline_, &connected);
  if (!st.ok()) return Status(StatusCode::kAborted, "connect: " + st.message());
  {
    // Publish the socket before blocking on it, so that a failure elsewhere can cut it.
    std::lock_guard<std::mutex> lock(mu_);
    if (!failure_.ok()) return failure_;
    *socket = std::move(connected);
  }
  // A source that accepts but does not answer (stopped) must not hold its pieces long.
  const Deadline handshake =
      deadline_.Min(Deadline::In(Milliseconds(GetParams().connect_timeout_ms)));
  st = SendHello(*socket, Hello{Purpose::kState, self_, src.peer_id, 0, 0}, credentials_,
                 handshake);
  if (st.ok() || st.code() == StatusCode::kUnauthenticated) return st;
  return Status(StatusCode::kAborted, "handshake: " + st.message());
}

Status Fetch::Receive(net::Socket& socket, const Piece& piece, uint64_t* received) {
  *received = 0;
  const FetchedEntry& e = entries_[piece.entry];
  Status st = net::SendFrame(
      socket, static_cast<uint16_t>(Kind::kStateRequest),
      proto::Encode(proto::StateRequest{e.entry->key, e.hash, piece.offset, piece.length}),
      deadline_);
  net::FrameHeader header;
  if (st.ok()) {
    st = net::RecvFrameHeader(socket, std::max<uint64_t>(piece.length, net::kMaxControlPayload),
                              deadline_, &header);
  }
  if (!st.ok()) return Status(StatusCode::kAborted, st.message());
  if (header.kind == static_cast<uint16_t>(Kind::kError) &&
      header.length <= net::kMaxControlPayload) {
    std::string text(header.length, '\0');
    proto::ErrorMessage error;
    if (socket.RecvAll(text.data(), text.size(), deadline_).ok() &&
        proto::Decode(text, &error).ok()) {
      return Status(StatusCode::kAborted, "refused: " + error.message);
    }
    return Status(StatusCode::kAborted, "unreadable refusal");
  }
  if (header.kind != static_cast<uint16_t>(Kind::kStateData) || header.length != piece.length) {
    return Status(StatusCode::kAborted, std::string("answered with ") +
                                            proto::KindName(header.kind) + " of " +
                                            std::to_string(header.length) +
                                            " bytes, expected StateData of " +
                                            std::to_string(piece.length));
  }
  // Straight into the entry's memory.
  auto* out = static_cast<uint8_t*>(e.entry->data) + piece.offset;
  while (*received < piece.length) {
    const uint64_t n = std::min<uint64_t>(kRecvChunk, piece.length - *received);
    st = socket.RecvAll(out + *received, n, deadline_);
    if (!st.ok()) return Status(StatusCode::kAborted, st.message());
    *received += n;
  }
  return Status::Ok();
}

Status Fetch::Verify(const FetchedEntry& e) const {
  const uint64_t got = kernels::Hash64(e.entry->data, e.entry->bytes);
  if (got == e.hash) return Status::Ok();
  std::string from;
  for (size_t s : e.sources) from += (from.empty() ? "" : ", ") + sources_[s].Name();
  return Status(StatusCode::kDataLoss,
                "shared-state key '" + e.entry->key + "' (" + std::to_string(e.entry->bytes) +
                    " bytes from " + from + ") has hash " + HashText(got) +
                    ", the elected content has " + HashText(e.hash));
}

void Fetch::ConnectionLoop(size_t source, const std::shared_ptr<net::Socket>& socket) {
  Status st = Handshake(source, socket.get());
  Piece piece;
  bool holding = false;  // `piece` was taken from the queue and has not landed
  uint64_t received = 0;
  while (st.ok()) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      const bool woke = WaitFor(cv_, lock, deadline_, [&] {
        return !failure_.ok() || pieces_left_ == 0 || sources_[source].dead ||
               TakeLocked(source, &piece);
      });
      if (!woke) {
        FailLocked(Status(StatusCode::kDeadlineExceeded,
                          "shared-state fetch: the sync's deadline passed with " +
                              std::to_string(pieces_left_) + " pieces missing"));
        return;
      }
      if (!failure_.ok() || pieces_left_ == 0 || sources_[source].dead) return;
      holding = true;
    }
    st = Receive(*socket, piece, &received);
    if (!st.ok()) break;
    holding = false;
    rx_bytes_ += piece.length;
    bool landed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      landed = --entries_[piece.entry].pieces_left == 0;
    }
    if (landed) {
      // The last piece of the entry: hash it once, outside the lock.
      Status verified = Verify(entries_[piece.entry]);
      std::lock_guard<std::mutex> lock(mu_);
      if (!verified.ok()) {
        FailLocked(verified);
        return;
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (--pieces_left_ == 0) cv_.notify_all();
  }
  // This connection failed: its source is done for this fetch; its piece goes back to the
  // queue if another live source holds it.
  std::lock_guard<std::mutex> lock(mu_);
  if (!failure_.ok()) return;  // cut because something else failed first
  if (deadline_.expired()) {
    FailLocked(Status(StatusCode::kDeadlineExceeded,
                      "shared-state fetch: the sync's deadline passed with " +
                          std::to_string(pieces_left_) + " pieces missing (" + st.message() +
                          ")"));
    return;
  }
  Source& src = sources_[source];
  if (!src.dead) {
    src.dead = true;
    src.why = st.message();
    PCCL_LOG(kWarning, "shared-state source " + src.Name() + " failed: " + st.message());
  }
  // The queued pieces (and ours) must each keep a live holder.
  auto orphan = [&](const Piece& p) {
    for (size_t s : entries_[p.entry].sources) {
      if (!sources_[s].dead) return false;
    }
    return true;
  };
  if (holding) {
    if (orphan(piece)) {
      FailLocked(Status(StatusCode::kAborted,
                        "shared-state source " + src.Name() + " lost " + Describe(piece) +
                            " (" + std::to_string(received) + " of " +
                            std::to_string(piece.length) + " bytes received) and no other "
                            "source holds it: " + st.message()));
      return;
    }
    queue_.push_front(piece);
  }
  for (const Piece& p : queue_) {
    if (orphan(p)) {
      FailLocked(Status(StatusCode::kAborted,
                        "shared-state source " + src.Name() + " failed before sending " +
                            Describe(p) + " and no other source holds it: " + src.why));
      return;
    }
  }
  cv_.notify_all();
}

}  // namespace

Status FetchSharedState(uint64_t self_peer_id, const proto::SyncPlan& plan,
                        const std::vector<SharedStateEntry>& entries,
                        const Credentials& credentials, Routes& routes, Deadline deadline,
                        uint64_t* rx_bytes) {
  Fetch fetch(self_peer_id, credentials, routes, deadline);
  Status st = fetch.Plan(plan, entries);
  if (st.ok()) st = fetch.Run();
  *rx_bytes += fetch.rx_bytes();
  return st;
}

}  // namespace pccl::link
