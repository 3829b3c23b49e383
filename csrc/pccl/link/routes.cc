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
constexpr auto kPunchAttempt = std::chrono::milliseconds(500);  // one SYN's wait
constexpr auto kPunchPause = std::chrono::milliseconds(50);     // between SYNs
constexpr auto kPunchSettle = std::chrono::milliseconds(100);   // for the other way, too
constexpr auto kPunchAgreement = std::chrono::seconds(5);       // after the punch time
constexpr char kStayRelayed = 'R';

Deadline ConnectDeadline(Deadline deadline) {
  return deadline.Min(Deadline::In(Milliseconds(GetParams().connect_timeout_ms)));
}

// What one end's punch got: the connection it dialled (`out`) and the one its listener
// accepted (`in`); either, both or neither.
struct Punched {
  net::Socket out;
  net::Socket in;
  char Report() const {
    return static_cast<char>('0' + (out.valid() ? 1 : 0) + (in.valid() ? 2 : 0));
  }
};

// On `local` (the address and shared port of our relay connection: what the relay saw,
// through our NAT) listens, and dials `remote` again and again, until a connection opens
// either way, `until` or `stop`; then takes what else arrives within kPunchSettle. Our dial opens
// our NAT for the other end's; the other end's dial arrives at our listener, or at our
// dialling socket (simultaneous open). Connections from any other host are closed.
void Punch(const net::Endpoint& local, const net::Endpoint& remote, Deadline until,
           const std::atomic<bool>& stop, Punched* got) {
  if (local.port == 0 || remote.host.empty() || remote.port == 0) return;
  net::Listener listener;
  const bool listening = net::Listener::Listen(local, &listener, /*shared=*/true).ok();
  auto take_incoming = [&](Deadline wait) {
    net::Socket s;
    while (listening && !got->in.valid() && listener.Accept(wait, &s).ok()) {
      if (net::HostOfPeer(s.peer()) == remote.host) {
        s.SetBufferSizes(GetParams().socket_buffer_bytes);
        got->in = std::move(s);
      }
    }
  };
  Status last;
  while (!until.expired() && !stop.load() && !got->out.valid() && !got->in.valid()) {
    last = net::Socket::Connect(remote, until.Min(Deadline::In(kPunchAttempt)), &got->out,
                                {local.host, local.port, /*shared=*/true});
    if (last.ok()) {
      got->out.SetBufferSizes(GetParams().socket_buffer_bytes);
      break;
    }
    take_incoming(until.Min(Deadline::In(kPunchPause)));
  }
  take_incoming(Deadline::In(kPunchSettle));
  if (!got->out.valid() && !got->in.valid()) {
    PCCL_LOG(kDebug, "hole punching from " + local.ToString() + " to " + remote.ToString() +
                         " failed: " + last.ToString());
  }
}

// Which connection both ends use, from each end's Report(): the parked end's dial (the
// dialer accepted it), else the dialer's (the parked end accepted it), else the one
// simultaneous open made of both dials; else none (stay relayed).
char Decide(char dialer, char parked) {
  const int d = dialer - '0';
  const int p = parked - '0';
  if ((d & 2) && (p & 1)) return 'B';  // parked -> dialer
  if ((d & 1) && (p & 2)) return 'A';  // dialer -> parked
  if ((d & 1) && (p & 1)) return 'S';  // simultaneous open: one connection
  return kStayRelayed;
}

// The connection `decision` names, from this end's point of view.
net::Socket Chosen(char decision, bool dialer, Punched& got) {
  if (decision == 'S') return std::move(got.out);
  const bool ours = (decision == 'A') == dialer;  // this end dialled it
  return ours ? std::move(got.out) : std::move(got.in);
}

Status SendByte(net::Socket& socket, char byte, Deadline deadline) {
  return socket.SendAll(&byte, 1, deadline);
}

Status RecvByte(net::Socket& socket, Deadline deadline, char* byte) {
  return socket.RecvAll(byte, 1, deadline);
}

}  // namespace

const char* RouteName(Route route) {
  switch (route) {
    case Route::kDirect: return "direct";
    case Route::kRelayed: return "relayed";
    case Route::kPunched: return "punched";
    case Route::kUnknown: break;
  }
  return "unknown";
}

Status DialThroughRelay(const RelayAccess& access, uint64_t to_peer, bool punch,
                        Deadline deadline, net::Socket* out, Route* route) {
  punch = punch && GetParams().punch_ms > 0;
  net::Socket socket;
  PCCL_RETURN_IF_ERROR(net::Socket::Connect(access.relay, ConnectDeadline(deadline), &socket,
                                            {"", 0, /*shared=*/punch}));
  socket.SetBufferSizes(GetParams().socket_buffer_bytes);
  const Deadline setup = deadline.Min(Deadline::In(kRelaySetup));
  PCCL_RETURN_IF_ERROR(net::SendFrame(
      socket, static_cast<uint16_t>(Kind::kRelayDial),
      proto::Encode(proto::RelayDial{access.self_id, access.ticket, to_peer,
                                     punch ? uint8_t{1} : uint8_t{0}}),
      setup));
  net::FrameHeader header;
  std::string payload;
  PCCL_RETURN_IF_ERROR(
      net::RecvFrame(socket, net::kMaxControlPayload, setup, &header, &payload));
  proto::RelayReady ready;
  if (header.kind != static_cast<uint16_t>(Kind::kRelayReady) ||
      !proto::Decode(payload, &ready).ok()) {
    return InvalidArgument("the relay at " + access.relay.ToString() + " answered " +
                           proto::KindName(header.kind) + ", not RelayReady");
  }
  if (!ready.ok) {
    return Status(StatusCode::kUnavailable,
                  "the relay at " + access.relay.ToString() + " refused: " + ready.reason);
  }
  if (route != nullptr) *route = Route::kRelayed;
  if (punch) {
    Punched got;
    static const std::atomic<bool> kNever{false};
    Punch(socket.local_endpoint(), {ready.peer_host, ready.peer_port},
          deadline.Min(Deadline::In(Milliseconds(GetParams().punch_ms))), kNever, &got);
    const Deadline agree = deadline.Min(Deadline::In(kPunchAgreement));
    char decision = kStayRelayed;
    PCCL_RETURN_IF_ERROR(SendByte(socket, got.Report(), agree));
    PCCL_RETURN_IF_ERROR(RecvByte(socket, agree, &decision));
    net::Socket chosen = Chosen(decision, /*dialer=*/true, got);
    if (decision != kStayRelayed && chosen.valid()) {
      *out = std::move(chosen);
      if (route != nullptr) *route = Route::kPunched;
      return Status::Ok();
    }
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
  bool punch = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    relay = relay_;
    auto it = to_.find(peer_id);
    if (it != to_.end()) known = it->second;
    punch = !punch_failed_[peer_id];
    auto reach = reachable_.find(peer_id);
    if (reach != reachable_.end() && reach->second == proto::kReachable) relay.reset();
  }
  Status direct = Status::Ok();
  if ((known != Route::kRelayed && known != Route::kPunched) || !relay) {
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
  Route used = Route::kRelayed;
  Status st = DialThroughRelay(*relay, peer_id, punch, deadline, out, &used);
  if (!st.ok()) {
    if (direct.ok()) return st;
    return Status(st.code(), "direct: " + direct.message() + "; through the relay: " +
                                 st.message());
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (known != used) {
      PCCL_LOG(kInfo, "peer " + std::to_string(peer_id) + " at " + to.ToString() + " is " +
                          (used == Route::kPunched ? "reached by hole punching"
                                                   : "reached through the relay") +
                          (direct.ok() ? "" : " (direct: " + direct.message() + ")"));
    }
    // A punch that failed once (a symmetric NAT) fails again: later connections to this
    // peer go through the relay at once.
    if (punch && used == Route::kRelayed && GetParams().punch_ms > 0) {
      punch_failed_[peer_id] = true;
    }
    to_[peer_id] = used;
  }
  if (route != nullptr) *route = used;
  return Status::Ok();
}

void Routes::Learn(const std::vector<proto::Member>& members) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const proto::Member& m : members) reachable_[m.peer_id] = m.reachable;
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
  PCCL_RETURN_IF_ERROR(net::Socket::Connect(access_.relay, Deadline::In(Routes::kDirectAttempt),
                                            &socket, {"", 0, /*shared=*/true}));
  socket.SetBufferSizes(GetParams().socket_buffer_bytes);
  const int fd = socket.fd();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_.load()) return Status(StatusCode::kAborted, "stopped");
    parked_fds_.push_back(fd);
  }
  // Stop() may cut the connection until it is handed over (through the punch and the
  // agreement, which wait on it); not after: the descriptor is the listener's then.
  struct Published {
    Parker* parker;
    int fd;
    void Withdraw() {
      if (fd < 0) return;
      std::lock_guard<std::mutex> lock(parker->mu_);
      auto& fds = parker->parked_fds_;
      fds.erase(std::find(fds.begin(), fds.end(), fd));
      fd = -1;
    }
    ~Published() { Withdraw(); }
  } published{this, fd};
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
  if (stop_.load()) return Status(StatusCode::kAborted, "stopped");
  if (!st.ok()) return st;
  if (header.kind == static_cast<uint16_t>(Kind::kRelayReady)) {
    proto::RelayReady refusal;
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
  if (!incoming.punch) {
    published.Withdraw();
    incoming_(std::move(socket), Route::kRelayed);
    return Status::Ok();
  }
  // The dialer asked for hole punching: punch towards where the relay saw it, then take
  // its word and decide for both (see the file comment).
  Punched got;
  if (GetParams().punch_ms > 0) {
    Punch(socket.local_endpoint(), {incoming.peer_host, incoming.peer_port},
          Deadline::In(Milliseconds(GetParams().punch_ms)), stop_, &got);
  }
  const Deadline agree = Deadline::In(kPunchAgreement);
  char dialer = '0';
  PCCL_RETURN_IF_ERROR(RecvByte(socket, agree, &dialer));
  const char decision = Decide(dialer, got.Report());
  PCCL_RETURN_IF_ERROR(SendByte(socket, decision, agree));
  net::Socket chosen = Chosen(decision, /*dialer=*/false, got);
  published.Withdraw();
  if (decision != kStayRelayed && chosen.valid()) {
    incoming_(std::move(chosen), Route::kPunched);
  } else {
    incoming_(std::move(socket), Route::kRelayed);
  }
  return Status::Ok();
}

}  // namespace pccl::link
