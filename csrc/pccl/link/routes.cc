#include "pccl/link/routes.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>

#include "pccl/common/logging.h"
#include "pccl/common/params.h"
#include "pccl/net/wire.h"
#include "pccl/proto/messages.h"

namespace pccl::link {

namespace {

using proto::Kind;

constexpr auto kRelaySetup = std::chrono::seconds(15);  // the relay may wait 10 s for a parked one
constexpr auto kParkRetry = std::chrono::seconds(1);
constexpr auto kParkRetryMax = std::chrono::seconds(5);
constexpr int kParkPollMs = 250;

Deadline ConnectDeadline(Deadline deadline) {
  return deadline.Min(Deadline::In(Milliseconds(GetParams().connect_timeout_ms)));
}

}  // namespace

const char* RouteName(Route route) {
  switch (route) {
    case Route::kDirect: return "direct";
    case Route::kRelayed: return "relayed";
    case Route::kUnknown: break;
  }
  return "unknown";
}

Status DialThroughRelay(const RelayAccess& access, uint64_t to_peer, Deadline deadline,
                        net::Socket* out) {
  net::Socket socket;
  PCCL_RETURN_IF_ERROR(net::Socket::Connect(access.relay, ConnectDeadline(deadline), &socket));
  socket.SetBufferSizes(GetParams().socket_buffer_bytes);
  const Deadline setup = deadline.Min(Deadline::In(kRelaySetup));
  PCCL_RETURN_IF_ERROR(net::SendFrame(
      socket, static_cast<uint16_t>(Kind::kRelayDial),
      proto::Encode(proto::RelayDial{access.self_id, access.ticket, to_peer}), setup));
  net::FrameHeader header;
  std::string payload;
  PCCL_RETURN_IF_ERROR(
      net::RecvFrame(socket, net::kMaxControlPayload, setup, &header, &payload));
  proto::P2PWelcome ready;
  if (header.kind != static_cast<uint16_t>(Kind::kRelayReady) ||
      !proto::Decode(payload, &ready).ok()) {
    return InvalidArgument("the relay at " + access.relay.ToString() + " answered " +
                           proto::KindName(header.kind) + ", not RelayReady");
  }
  if (!ready.ok) {
    return Status(StatusCode::kUnavailable,
                  "the relay at " + access.relay.ToString() + " refused: " + ready.reason);
  }
  *out = std::move(socket);
  return Status::Ok();
}

// --- Routes --------------------------------------------------------------------------------

void Routes::SetRelay(RelayAccess access) {
  std::lock_guard<std::mutex> lock(mu_);
  relay_ = std::move(access);
}

std::optional<RelayAccess> Routes::relay() const {
  std::lock_guard<std::mutex> lock(mu_);
  return relay_;
}

Status Routes::Connect(uint64_t peer_id, const net::Endpoint& to, Deadline deadline,
                       net::Socket* out, Route* route) {
  std::optional<RelayAccess> relay;
  Route known = Route::kUnknown;
  {
    std::lock_guard<std::mutex> lock(mu_);
    relay = relay_;
    auto it = to_.find(peer_id);
    if (it != to_.end()) known = it->second;
  }
  Status direct = Status::Ok();
  if (known != Route::kRelayed || !relay) {
    // With a relay to fall back on, an endpoint that never answers must not cost the whole
    // connect timeout (a private address of a peer behind a NAT is often blackholed).
    const Deadline attempt = relay && known == Route::kUnknown
                                 ? ConnectDeadline(deadline).Min(Deadline::In(kDirectAttempt))
                                 : ConnectDeadline(deadline);
    direct = net::Socket::Connect(to, attempt, out);
    if (direct.ok()) {
      out->SetBufferSizes(GetParams().socket_buffer_bytes);
      std::lock_guard<std::mutex> lock(mu_);
      to_[peer_id] = Route::kDirect;
      if (route != nullptr) *route = Route::kDirect;
      return Status::Ok();
    }
    if (!relay) return direct;
  }
  Status st = DialThroughRelay(*relay, peer_id, deadline, out);
  if (!st.ok()) {
    if (direct.ok()) return st;
    return Status(st.code(), "direct: " + direct.message() + "; through the relay: " +
                                 st.message());
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (known != Route::kRelayed) {
      PCCL_LOG(kInfo, "peer " + std::to_string(peer_id) + " at " + to.ToString() +
                          " is reached through the relay (direct: " + direct.message() + ")");
    }
    to_[peer_id] = Route::kRelayed;
  }
  if (route != nullptr) *route = Route::kRelayed;
  return Status::Ok();
}

Route Routes::RouteTo(uint64_t peer_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = to_.find(peer_id);
  return it == to_.end() ? Route::kUnknown : it->second;
}

Route Routes::RouteFrom(uint64_t peer_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = from_.find(peer_id);
  return it == from_.end() ? Route::kUnknown : it->second;
}

void Routes::NoteIncoming(uint64_t peer_id, Route route) {
  std::lock_guard<std::mutex> lock(mu_);
  from_[peer_id] = route;
}

// --- Parker --------------------------------------------------------------------------------

void Parker::Start(RelayAccess access, Incoming incoming) {
  // Under mu_, so that a Stop() on another thread either comes first (nothing starts) or
  // finds every thread started.
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_.load() || started_.exchange(true)) return;
  access_ = std::move(access);
  incoming_ = std::move(incoming);
  PCCL_LOG(kInfo, "this peer cannot be dialled: parking " + std::to_string(kParked) +
                      " connections at the relay " + access_.relay.ToString());
  for (size_t i = 0; i < kParked; ++i) threads_.emplace_back([this] { Run(); });
}

void Parker::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_.exchange(true)) return;
    for (int fd : parked_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void Parker::Run() {
  Duration backoff = kParkRetry;
  RateLimitedLog failures(LogLevel::kWarning);
  while (!stop_.load()) {
    Status st = ParkOnce();
    if (st.ok()) {
      backoff = kParkRetry;
      continue;
    }
    if (stop_.load()) return;
    failures.Log("parking a connection at the relay " + access_.relay.ToString() + ": " +
                 st.ToString());
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, backoff, [&] { return stop_.load(); });
    backoff = std::min<Duration>(backoff * 2, kParkRetryMax);
  }
}

Status Parker::ParkOnce() {
  net::Socket socket;
  PCCL_RETURN_IF_ERROR(
      net::Socket::Connect(access_.relay, Deadline::In(Routes::kDirectAttempt), &socket));
  socket.SetBufferSizes(GetParams().socket_buffer_bytes);
  const int fd = socket.fd();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_.load()) return Status(StatusCode::kAborted, "stopped");
    parked_fds_.push_back(fd);
  }
  auto unpublish = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    parked_fds_.erase(std::find(parked_fds_.begin(), parked_fds_.end(), fd));
  };
  Status st = net::SendFrame(socket, static_cast<uint16_t>(Kind::kRelayPark),
                             proto::Encode(proto::RelayPark{access_.self_id, access_.ticket}),
                             Deadline::In(kRelaySetup));
  // Parked: nothing comes until a dialer claims the connection (or the relay refuses it).
  while (st.ok() && !stop_.load()) {
    struct pollfd p = {fd, POLLIN, 0};
    if (::poll(&p, 1, kParkPollMs) > 0) break;
  }
  net::FrameHeader header;
  std::string payload;
  if (st.ok() && !stop_.load()) {
    st = net::RecvFrame(socket, net::kMaxControlPayload, Deadline::In(kRelaySetup), &header,
                        &payload);
  }
  unpublish();
  if (stop_.load()) return Status(StatusCode::kAborted, "stopped");
  if (!st.ok()) return st;
  if (header.kind == static_cast<uint16_t>(Kind::kRelayReady)) {
    proto::P2PWelcome refusal;
    (void)proto::Decode(payload, &refusal);
    return Status(StatusCode::kUnavailable, "the relay refused: " + refusal.reason);
  }
  proto::RelayIncoming incoming;
  if (header.kind != static_cast<uint16_t>(Kind::kRelayIncoming) ||
      !proto::Decode(payload, &incoming).ok()) {
    return InvalidArgument(std::string("the relay sent ") + proto::KindName(header.kind) +
                           " to a parked connection");
  }
  PCCL_LOG(kDebug, "relay: a connection from peer " + std::to_string(incoming.from_peer_id));
  incoming_(std::move(socket));
  return Status::Ok();
}

}  // namespace pccl::link
