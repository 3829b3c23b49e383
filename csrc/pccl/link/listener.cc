#include "pccl/link/listener.h"

#include "pccl/common/logging.h"
#include "pccl/net/address.h"

namespace pccl::link {

Status Listener::Listen(const std::string& host) {
  if (host.empty()) {
    if (net::Listener::Listen({"::", 0}, &socket_).ok()) return Status::Ok();
    return net::Listener::Listen({"0.0.0.0", 0}, &socket_);
  }
  return net::Listener::Listen({host, 0}, &socket_);
}

void Listener::Handle(Purpose purpose, Handler handler) {
  handlers_[purpose] = std::move(handler);
}

void Listener::Start(const Credentials* credentials) {
  credentials_ = credentials;
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

void Listener::SetSelfId(uint64_t peer_id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    self_id_ = peer_id;
  }
  id_cv_.notify_all();
}

void Listener::AcceptLoop() {
  while (!closed_.load()) {
    net::Socket socket;
    Status st = socket_.Accept(Deadline::Never(), &socket);
    if (!st.ok()) {
      if (closed_.load() || st.code() == StatusCode::kAborted) return;
      // Out of descriptors, most likely: the connection stays in the backlog, so accepting
      // again at once would spin. Rest a moment (Close() waits for it at most that long).
      refusals_.Log("p2p accept: " + st.ToString());
      std::this_thread::sleep_for(kAcceptBackoff);
      continue;
    }
    const std::string host = net::HostOfPeer(socket.peer());
    StartHandshake(std::move(socket), host, Route::kDirect);
  }
}

void Listener::Adopt(net::Socket socket, Route route) {
  if (closed_.load()) return;
  StartHandshake(std::move(socket), "relay", route);
}

void Listener::StartHandshake(net::Socket socket, const std::string& host, Route route) {
  std::lock_guard<std::mutex> lock(mu_);
  ReapLocked();
  if (closed_.load()) return;
  size_t from_host = 0;
  for (const auto& h : handshakes_) from_host += h->host == host ? 1 : 0;
  if (handshakes_.size() >= kMaxHandshakes || from_host >= kMaxHandshakesPerHost) {
    PCCL_LOG(kDebug, "p2p connection from " + socket.peer() + " closed: " +
                         std::to_string(handshakes_.size()) + " handshakes in progress, " +
                         std::to_string(from_host) + " from " + host);
    return;  // `socket` closes here
  }
  auto handshake = std::make_unique<Handshake>();
  handshake->host = host;
  handshake->route = route;
  Handshake* raw = handshake.get();
  {
    std::lock_guard<std::mutex> hs_lock(raw->mu);
    raw->socket = std::move(socket);
  }
  raw->thread = std::thread([this, raw] { RunHandshake(raw); });
  handshakes_.push_back(std::move(handshake));
}

void Listener::RunHandshake(Handshake* handshake) {
  const Deadline deadline = Deadline::In(kHandshakeTimeout);
  net::Socket* socket = &handshake->socket;  // ours until handed over, under handshake->mu
  std::string peer = socket->peer();
  Hello hello;
  Status st = AcceptHello(
      *socket, *credentials_,
      [&](const Hello& h) -> Status {
        PCCL_RETURN_IF_ERROR(CheckAddressee(h, deadline));
        if (!handlers_.count(h.purpose)) {
          return FailedPrecondition(std::string(PurposeName(h.purpose)) + " is not served here");
        }
        if ((h.purpose == Purpose::kRing || h.purpose == Purpose::kPair) &&
            h.slot >= kMaxPoolSize) {
          return InvalidArgument("link slot " + std::to_string(h.slot) + ", at most " +
                                 std::to_string(kMaxPoolSize) + " connections per link");
        }
        return Status::Ok();
      },
      deadline, &hello);
  hello.route = handshake->route;
  if (!st.ok()) {
    // kUnavailable is the connection itself failing (closed, reset, a broken pipe): the
    // check passed or never ran.
    RateLimitedLog& log =
        st.code() == StatusCode::kUnavailable || closed_.load() ? hang_ups_ : refusals_;
    log.Log("p2p connection from " + peer + " dropped: " + st.ToString());
    std::lock_guard<std::mutex> lock(handshake->mu);
    handshake->socket.Close();  // now, not when the acceptor next reaps this handshake
  } else if (hello.purpose == Purpose::kDialBack) {
    PCCL_LOG(kDebug, "p2p connection from " + peer + ": the master's reachability check");
    std::lock_guard<std::mutex> lock(handshake->mu);
    handshake->socket.Close();
  } else {
    net::Socket owned;
    {
      std::lock_guard<std::mutex> lock(handshake->mu);
      owned = std::move(handshake->socket);
    }
    if (!closed_.load()) handlers_.at(hello.purpose)(hello, std::move(owned));
  }
  handshake->done.store(true);
}

Status Listener::CheckAddressee(const Hello& hello, Deadline deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  id_cv_.wait_until(lock, deadline.when(), [&] { return self_id_ != 0 || closed_.load(); });
  if (hello.to_peer_id != self_id_) {
    return InvalidArgument(std::string(PurposeName(hello.purpose)) + " addressed to peer " +
                           std::to_string(hello.to_peer_id) + ", this is peer " +
                           std::to_string(self_id_));
  }
  return Status::Ok();
}

void Listener::ReapLocked() {
  for (auto it = handshakes_.begin(); it != handshakes_.end();) {
    if ((*it)->done.load()) {
      (*it)->thread.join();
      it = handshakes_.erase(it);
    } else {
      ++it;
    }
  }
}

void Listener::Close() {
  if (closed_.exchange(true)) return;
  socket_.Shutdown();
  if (acceptor_.joinable()) acceptor_.join();
  std::list<std::unique_ptr<Handshake>> handshakes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    handshakes.swap(handshakes_);
  }
  id_cv_.notify_all();
  for (auto& handshake : handshakes) {
    {
      std::lock_guard<std::mutex> lock(handshake->mu);
      handshake->socket.Shutdown();  // a no-op once handed over (moved from)
    }
    if (handshake->thread.joinable()) handshake->thread.join();
  }
  socket_.Close();
}

}  // namespace pccl::link
