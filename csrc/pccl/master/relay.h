// The relay: forwards the bytes of peer-to-peer connections between members that cannot
// dial each other (a peer behind a NAT or a firewall that takes no inbound connection).
//
// A peer that learns it cannot be dialled (the master's dial-back failed, dial_back.h)
// keeps a few connections parked here: each says RelayPark (its peer id and ticket) and
// waits. A member that cannot reach that peer directly connects here too and says
// RelayDial (its own id and ticket, and the peer it wants). The relay takes one of that
// peer's parked connections, tells it RelayIncoming (who is coming), answers the dialer
// RelayReady, and from then on copies bytes between the two sockets until both ends have
// closed. What the two ends say next is the ordinary peer-to-peer handshake
// (link/handshake.h), end to end: in a run with a secret both ends prove it and their
// identities through the relay, and an encrypted run's records are sealed end to end, so
// the relay can neither read nor forge what it forwards (it can delay or cut it, as any
// router on the path can).
//
// Tickets are HMAC-SHA256(relay key, peer id) (RelayTicket): the master hands each peer
// its own in Welcome, so only admitted peers use the relay, each under its own id. A ticket
// stays valid after its peer left (the relay keeps no membership); what it then gives is
// one more parked or forwarded connection within the bounds below.
//
// Bounds: connections in all (max_connections), parked per peer (max_parked_per_peer),
// forwarded connections per pair of peers at once (max_pairs_per_link: a ring link's pool
// plus shared-state and probe connections); a first frame must come within setup_timeout,
// and a dialer waits at most dial_wait for a parked connection. Each forwarded connection
// has a fixed buffer per direction, so a slow reader slows its sender instead of growing
// memory. Bytes forwarded are counted per ordered pair of peers (Links()).
//
// Threads: one accepts; every accepted connection gets a thread of its own that reads its
// first frame. A parked connection's thread then watches it until a dialer claims it or
// its peer closes it; a dialer's thread, once paired, forwards both directions with
// poll() until the pair is done.
//
// Thread-safety: Start and the destructor from one thread; everything else from any.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "pccl/common/clock.h"
#include "pccl/common/logging.h"
#include "pccl/common/status.h"
#include "pccl/common/thread_annotations.h"
#include "pccl/net/socket.h"

namespace pccl::master {

struct RelayOptions {
  // "host:port"; port 0 binds any free port (Relay::port()).
  std::string listen_address = "0.0.0.0:0";
  // The key tickets are made with; empty: 32 random bytes.
  std::string key;
  size_t max_connections = 4096;
  size_t max_parked_per_peer = 16;
  size_t max_pairs_per_link = 96;
  Duration setup_timeout = std::chrono::seconds(5);
  Duration dial_wait = std::chrono::seconds(10);
  size_t buffer_bytes = 256 << 10;
};

// A peer's ticket for the relay whose key is `key`.
std::string RelayTicket(std::string_view key, uint64_t peer_id);

class Relay {
 public:
  // Bytes forwarded from one peer to another (dialer to parked peer is one direction).
  struct LinkBytes {
    uint64_t from_peer = 0;
    uint64_t to_peer = 0;
    uint64_t bytes = 0;
    uint32_t open = 0;         // forwarded connections open now (dialed from `from_peer`)
    uint64_t connections = 0;  // forwarded connections dialed from `from_peer` so far
  };

  // Binds options.listen_address and starts accepting. InvalidArgument for a malformed
  // address; Unavailable when it cannot be bound.
  static Status Start(RelayOptions options, std::unique_ptr<Relay>* out);
  ~Relay() { Close(); }
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  uint16_t port() const { return listener_.port(); }
  const std::string& key() const { return options_.key; }
  std::string TicketFor(uint64_t peer_id) const { return RelayTicket(options_.key, peer_id); }
  std::vector<LinkBytes> Links() const;
  uint64_t bytes_forwarded() const { return bytes_forwarded_.load(); }
  // Stops accepting, cuts every connection and joins every thread. Idempotent.
  void Close();

 private:
  struct Conn {
    net::Socket socket;
    std::string host;
    std::atomic<bool> done{false};
    std::thread thread;
  };
  struct Parked {
    Conn* conn = nullptr;
    bool claimed = false;
    uint64_t dialer = 0;
  };
  struct Counters {  // map nodes stay put: forwarding threads add to `bytes` unlocked
    std::atomic<uint64_t> bytes{0};
    uint32_t open = 0;
    uint64_t connections = 0;
  };

  explicit Relay(RelayOptions options) : options_(std::move(options)) {}
  void AcceptLoop();
  void Serve(Conn* conn);
  void Park(Conn* conn, uint64_t peer_id);
  void Dial(Conn* conn, uint64_t from, uint64_t to, bool punch);
  // Copies bytes between the two sockets until both directions are done.
  void Forward(net::Socket& dialer, net::Socket& parked, uint64_t from, uint64_t to);
  bool TicketValid(uint64_t peer_id, const std::string& ticket) const;
  void ReapLocked();  // joins finished threads; needs mu_

  RelayOptions options_;
  net::Listener listener_;
  std::thread acceptor_;
  std::atomic<bool> closed_{false};
  std::atomic<uint64_t> bytes_forwarded_{0};
  RateLimitedLog refusals_{LogLevel::kWarning};

  mutable std::mutex mu_;
  std::condition_variable cv_;  // parked connections claimed, or new ones parked
  std::list<std::unique_ptr<Conn>> conns_ PCCL_GUARDED_BY(mu_);
  std::map<uint64_t, std::list<std::shared_ptr<Parked>>> parked_ PCCL_GUARDED_BY(mu_);
  std::map<std::pair<uint64_t, uint64_t>, Counters> links_ PCCL_GUARDED_BY(mu_);
};

}  // namespace pccl::master
