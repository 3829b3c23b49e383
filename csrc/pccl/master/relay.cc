#include "pccl/master/relay.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "pccl/net/address.h"
#include "pccl/net/wire.h"
#include "pccl/proto/messages.h"
#include "pccl/secure/crypto.h"

namespace pccl::master {

namespace {

using proto::Kind;

constexpr auto kWatchInterval = std::chrono::milliseconds(500);
constexpr int kForwardPollMs = 500;

}  // namespace

std::string RelayTicket(std::string_view key, uint64_t peer_id) {
  std::string message = "pccl relay ticket ";
  for (int i = 0; i < 8; ++i) message.push_back(static_cast<char>(peer_id >> (8 * i)));
  return secure::HmacSha256(key, message);
}

Status Relay::Start(RelayOptions options, std::unique_ptr<Relay>* out) {
  if (options.key.empty()) {
    PCCL_RETURN_IF_ERROR(secure::RandomBytes(secure::kKeyBytes, &options.key));
  }
  net::Endpoint endpoint;
  PCCL_RETURN_IF_ERROR(net::ParseEndpoint(options.listen_address, /*allow_port_zero=*/true,
                                          &endpoint));
  std::unique_ptr<Relay> relay(new Relay(std::move(options)));
  PCCL_RETURN_IF_ERROR(net::Listener::Listen(endpoint, &relay->listener_));
  Relay* self = relay.get();
  relay->acceptor_ = std::thread([self] { self->AcceptLoop(); });
  *out = std::move(relay);
  return Status::Ok();
}

void Relay::Close() {
  if (closed_.exchange(true)) return;
  listener_.Shutdown();
  if (acceptor_.joinable()) acceptor_.join();
  std::list<std::unique_ptr<Conn>> conns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& c : conns_) c->socket.Shutdown();
    conns.swap(conns_);
  }
  cv_.notify_all();
  for (auto& c : conns) {
    if (c->thread.joinable()) c->thread.join();
  }
  listener_.Close();
}

std::vector<Relay::LinkBytes> Relay::Links() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<LinkBytes> out;
  for (const auto& [pair, c] : links_) {
    out.push_back(LinkBytes{pair.first, pair.second, c.bytes.load(), c.open, c.connections});
  }
  return out;
}

void Relay::ReapLocked() {
  for (auto it = conns_.begin(); it != conns_.end();) {
    if ((*it)->done.load()) {
      (*it)->thread.join();
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

void Relay::AcceptLoop() {
  while (!closed_.load()) {
    net::Socket socket;
    Status st = listener_.Accept(Deadline::Never(), &socket);
    if (!st.ok()) {
      if (closed_.load() || st.code() == StatusCode::kAborted) return;
      refusals_.Log("relay accept: " + st.ToString());
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    ReapLocked();
    if (closed_.load()) return;
    if (conns_.size() >= options_.max_connections) {
      refusals_.Log("relay: closed " + socket.peer() + ": " +
                    std::to_string(conns_.size()) + " connections already");
      continue;
    }
    auto conn = std::make_unique<Conn>();
    conn->host = net::HostOfPeer(socket.peer());
    conn->socket = std::move(socket);
    Conn* raw = conn.get();
    conns_.push_back(std::move(conn));
    raw->thread = std::thread([this, raw] {
      Serve(raw);
      raw->socket.Close();
      raw->done.store(true);
    });
  }
}

bool Relay::TicketValid(uint64_t peer_id, const std::string& ticket) const {
  return secure::ConstantTimeEqual(ticket, TicketFor(peer_id));
}

void Relay::Serve(Conn* conn) {
  net::FrameHeader header;
  std::string payload;
  Status st = net::RecvFrame(conn->socket, net::kMaxHelloPayload,
                             Deadline::In(options_.setup_timeout), &header, &payload);
  if (!st.ok()) {
    // A peer closing a connection it parked a moment ago (it is leaving) is routine.
    const std::string what = "relay: " + conn->socket.peer() + " said nothing usable: " +
                             st.ToString();
    if (st.code() == StatusCode::kUnavailable) {
      PCCL_LOG(kDebug, what);
    } else {
      refusals_.Log(what);
    }
    return;
  }
  if (header.kind == static_cast<uint16_t>(Kind::kRelayPark)) {
    proto::RelayPark park;
    st = proto::Decode(payload, &park);
    if (st.ok() && !TicketValid(park.peer_id, park.ticket)) {
      st = Status(StatusCode::kUnauthenticated, "wrong ticket for peer " +
                                                    std::to_string(park.peer_id));
    }
    if (st.ok()) return Park(conn, park.peer_id);
  } else if (header.kind == static_cast<uint16_t>(Kind::kRelayDial)) {
    proto::RelayDial dial;
    st = proto::Decode(payload, &dial);
    if (st.ok() && !TicketValid(dial.from_peer_id, dial.ticket)) {
      st = Status(StatusCode::kUnauthenticated, "wrong ticket for peer " +
                                                    std::to_string(dial.from_peer_id));
    }
    if (st.ok()) return Dial(conn, dial.from_peer_id, dial.to_peer_id, dial.punch != 0);
  } else {
    st = InvalidArgument(std::string("a relay connection must start with RelayPark or "
                                     "RelayDial, not ") + proto::KindName(header.kind));
  }
  refusals_.Log("relay: refused " + conn->socket.peer() + ": " + st.ToString());
  (void)net::SendFrame(conn->socket, static_cast<uint16_t>(Kind::kRelayReady),
                       proto::Encode(proto::RelayReady{0, st.message(), "", 0}),
                       Deadline::In(options_.setup_timeout));
}

// A parked connection waits here, owned by this thread, until a dialer claims it (the
// dialer's thread then uses the socket; this one returns without touching it) or its peer
// closes it or sends something out of turn (it is dropped).
void Relay::Park(Conn* conn, uint64_t peer_id) {
  auto parked = std::make_shared<Parked>();
  parked->conn = conn;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& list = parked_[peer_id];
    if (list.size() >= options_.max_parked_per_peer) {
      refusals_.Log("relay: peer " + std::to_string(peer_id) + " parks " +
                    std::to_string(list.size()) + " connections already");
      return;
    }
    list.push_back(parked);
  }
  cv_.notify_all();
  const int fd = conn->socket.fd();
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait_for(lock, kWatchInterval, [&] { return parked->claimed || closed_.load(); });
    if (parked->claimed) {
      // The dialer's thread forwards on this socket now and marks this one done after it.
      while (parked->conn != nullptr) cv_.wait(lock);
      return;
    }
    if (closed_.load()) break;
    lock.unlock();
    struct pollfd p = {fd, POLLIN, 0};
    const bool spoke = ::poll(&p, 1, 0) > 0;
    lock.lock();
    if (spoke && !parked->claimed) break;  // closed by its peer, or a frame out of turn
  }
  auto& list = parked_[peer_id];
  list.remove(parked);
  if (list.empty()) parked_.erase(peer_id);
}

void Relay::Dial(Conn* conn, uint64_t from, uint64_t to, bool punch) {
  std::shared_ptr<Parked> parked;
  Status refusal;
  {
    std::unique_lock<std::mutex> lock(mu_);
    Counters& counters = links_[{from, to}];
    if (counters.open >= options_.max_pairs_per_link) {
      refusal = Status(StatusCode::kUnavailable,
                       std::to_string(counters.open) + " relayed connections from peer " +
                           std::to_string(from) + " to peer " + std::to_string(to) +
                           " are open already");
    } else {
      const bool found = WaitFor(cv_, lock, Deadline::In(options_.dial_wait), [&] {
        if (closed_.load()) return true;
        auto it = parked_.find(to);
        return it != parked_.end() && !it->second.empty();
      });
      if (closed_.load()) return;
      if (!found) {
        refusal = Status(StatusCode::kUnavailable,
                         "peer " + std::to_string(to) + " has no connection parked at the relay");
      } else {
        auto it = parked_.find(to);
        parked = it->second.front();
        it->second.pop_front();
        if (it->second.empty()) parked_.erase(it);
        parked->claimed = true;
        parked->dialer = from;
        ++links_[{from, to}].open;
        ++links_[{from, to}].connections;
      }
    }
  }
  if (!parked) {
    (void)net::SendFrame(conn->socket, static_cast<uint16_t>(Kind::kRelayReady),
                         proto::Encode(proto::RelayReady{0, refusal.message(), "", 0}),
                         Deadline::In(options_.setup_timeout));
    return;
  }
  cv_.notify_all();
  net::Socket& other = parked->conn->socket;
  const Deadline setup = Deadline::In(options_.setup_timeout);
  // With punch, each end learns where this relay sees the other's connection come from:
  // the public mapping its NAT gave the local port it will punch from (link/routes.h).
  net::Endpoint dialer_seen, parked_seen;
  if (punch) {
    (void)net::ParseEndpoint(conn->socket.peer(), /*allow_port_zero=*/true, &dialer_seen);
    (void)net::ParseEndpoint(other.peer(), /*allow_port_zero=*/true, &parked_seen);
  }
  Status st = net::SendFrame(
      other, static_cast<uint16_t>(Kind::kRelayIncoming),
      proto::Encode(proto::RelayIncoming{from, punch ? uint8_t{1} : uint8_t{0},
                                         dialer_seen.host, dialer_seen.port}),
      setup);
  if (st.ok()) {
    st = net::SendFrame(conn->socket, static_cast<uint16_t>(Kind::kRelayReady),
                        proto::Encode(proto::RelayReady{1, "", parked_seen.host,
                                                        parked_seen.port}),
                        setup);
  } else {
    (void)net::SendFrame(conn->socket, static_cast<uint16_t>(Kind::kRelayReady),
                         proto::Encode(proto::RelayReady{0, "the parked connection of peer " +
                                                                std::to_string(to) +
                                                                " failed: " + st.message(),
                                                         "", 0}),
                         setup);
  }
  if (st.ok()) Forward(conn->socket, other, from, to);
  other.Shutdown();
  {
    std::lock_guard<std::mutex> lock(mu_);
    --links_[{from, to}].open;
    parked->conn = nullptr;  // releases the parked connection's thread
  }
  cv_.notify_all();
}

// Both sockets are non-blocking (accepted so). Each direction has one buffer: read while it
// has room, write while it holds bytes; a direction whose sender closed passes the FIN on
// (shutdown(SHUT_WR)) once its buffer is empty. Done when both directions passed their FIN,
// on any error, or when the relay closes.
void Relay::Forward(net::Socket& dialer, net::Socket& parked, uint64_t from, uint64_t to) {
  struct Direction {
    int in = -1;
    int out = -1;
    std::vector<char> buffer;
    size_t begin = 0;
    size_t end = 0;
    bool eof = false;
    bool shut = false;
    std::atomic<uint64_t>* count = nullptr;  // this direction's counter in links_
  };
  Direction dirs[2];
  dirs[0].in = dialer.fd();
  dirs[0].out = parked.fd();
  dirs[1].in = parked.fd();
  dirs[1].out = dialer.fd();
  for (auto& d : dirs) d.buffer.resize(options_.buffer_bytes);
  {
    std::lock_guard<std::mutex> lock(mu_);
    dirs[0].count = &links_[{from, to}].bytes;
    dirs[1].count = &links_[{to, from}].bytes;
  }
  bool failed = false;
  while (!closed_.load() && !failed && !(dirs[0].shut && dirs[1].shut)) {
    // pollfd 0 is the dialer's socket, 1 the parked one; a socket nobody waits on is -1.
    struct pollfd fds[2] = {{-1, 0, 0}, {-1, 0, 0}};
    const int sockets[2] = {dialer.fd(), parked.fd()};
    for (auto& d : dirs) {
      const int in = d.in == sockets[0] ? 0 : 1;
      if (!d.eof && d.end < d.buffer.size()) fds[in].events |= POLLIN;
      if (d.end > d.begin) fds[1 - in].events |= POLLOUT;
    }
    for (int i = 0; i < 2; ++i) fds[i].fd = fds[i].events != 0 ? sockets[i] : -1;
    if (::poll(fds, 2, kForwardPollMs) < 0 && errno != EINTR) break;
    for (auto& d : dirs) {
      const int in = d.in == sockets[0] ? 0 : 1;
      if (!d.eof && d.end < d.buffer.size() && fds[in].revents != 0) {
        const ssize_t n = ::recv(d.in, d.buffer.data() + d.end, d.buffer.size() - d.end, 0);
        if (n > 0) {
          d.end += static_cast<size_t>(n);
          d.count->fetch_add(static_cast<uint64_t>(n));
          bytes_forwarded_.fetch_add(static_cast<uint64_t>(n));
        } else if (n == 0) {
          d.eof = true;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          failed = true;
        }
      }
      if (d.end > d.begin && fds[1 - in].revents != 0) {
        const ssize_t n = ::send(d.out, d.buffer.data() + d.begin, d.end - d.begin,
                                 MSG_NOSIGNAL);
        if (n > 0) {
          d.begin += static_cast<size_t>(n);
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          failed = true;
        }
      }
      if (d.begin == d.end) d.begin = d.end = 0;
      if (d.eof && d.end == 0 && !d.shut) {
        ::shutdown(d.out, SHUT_WR);
        d.shut = true;
      }
    }
  }
}

}  // namespace pccl::master
