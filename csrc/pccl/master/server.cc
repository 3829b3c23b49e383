#include "pccl/master/server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <utility>
#include <vector>

#include "pccl/common/logging.h"
#include "pccl/common/params.h"
#include "pccl/net/address.h"
#include "pccl/net/socket.h"
#include "pccl/net/wire.h"

namespace pccl::master {

// One pass of the server loop:
//   1. poll() the wake-up eventfd, the listener and every connection (POLLIN always,
//      POLLOUT while its output buffer holds bytes), at most until the next deadline.
//   2. Accept every waiting connection.
//   3. For each readable connection, read what is there into its input buffer and cut it
//      into frames: validate each 16-byte header the moment it is complete, then wait for
//      its payload; decode the payload into a Membership event and dispatch it.
//   4. Dispatching runs Membership::Handle and carries out its actions: Send appends a
//      frame to the connection's output buffer, Drop moves the connection to closing.
//   5. Flush output buffers (non-blocking), Tick the membership when a deadline passed,
//      and close connections that finished closing or failed.
// A connection moves only forward: open -> closing (flush, shut write, linger for the
// peer's FIN or the linger deadline) -> closed.

namespace {

constexpr size_t kReadChunk = 64 << 10;
constexpr int kMaxTickMs = 100;
// A poll() that returns this much later than asked means the process itself was paused.
constexpr Duration kStallGap = std::chrono::seconds(1);

// Kinds a peer may send to the master; anything else is a protocol error.
bool IsPeerToMasterKind(uint16_t kind) {
  switch (static_cast<proto::Kind>(kind)) {
    case proto::Kind::kHello:
    case proto::Kind::kVoteTopology:
    case proto::Kind::kLinksReady:
    case proto::Kind::kQueryPending:
    case proto::Kind::kOpDone:
    case proto::Kind::kGoodbye:
    case proto::Kind::kHeartbeat:
    case proto::Kind::kSyncState:
    case proto::Kind::kSyncDone:
    case proto::Kind::kOptimizeTopology:
    case proto::Kind::kBandwidthReport:
    case proto::Kind::kLinkBroken:
      return true;
    default:
      return false;
  }
}

std::string HostOf(const std::string& peer) {
  net::Endpoint endpoint;
  if (net::ParseEndpoint(peer, /*allow_port_zero=*/true, &endpoint).ok()) return endpoint.host;
  return peer;
}

MembershipOptions MembershipFor(const MasterOptions& options) {
  MembershipOptions m;
  m.link_timeout = options.link_timeout;
  m.heartbeat_timeout = options.heartbeat_timeout;
  m.probe_duration = std::chrono::milliseconds(GetParams().probe_ms);
  m.bandwidth_max_age = std::chrono::seconds(GetParams().bandwidth_max_age_s);
  return m;
}

}  // namespace

class MasterServer::Loop {
 public:
  Loop(const MasterOptions& options, net::Listener listener, int wake_fd)
      : options_(options),
        listener_(std::move(listener)),
        wake_fd_(wake_fd),
        membership_(MembershipFor(options), options.peer_ids) {}

  void Run(const std::atomic<bool>& stop);

 private:
  enum class State { kOpen, kClosing };
  struct Connection {
    ConnId id = 0;
    net::Socket socket;
    State state = State::kOpen;
    std::string in;
    std::string out;
    size_t out_offset = 0;  // bytes of `out` already sent
    bool have_header = false;
    net::FrameHeader header;
    bool write_shut = false;
    TimePoint close_deadline = TimePoint::max();
    bool failed = false;  // closed by error or EOF: close now, no linger
    bool said_hello = false;  // a Hello decoded: larger frames are allowed from now on
  };

  void AcceptAll();
  void ReadFrom(Connection& c);
  // Cuts complete frames out of c.in; returns false once the connection stopped being open.
  void ParseFrames(Connection& c);
  void OnFrame(Connection& c, uint16_t kind, const std::string& payload);
  void FailProtocol(Connection& c, const std::string& reason);
  void Dispatch(Event event);
  void Apply(std::vector<Action> actions);
  void Flush(Connection& c);
  void BeginClose(Connection& c);
  void Reap(TimePoint now);
  void ShutdownAll();
  int PollTimeoutMs(TimePoint now) const;

  MasterOptions options_;
  net::Listener listener_;
  int wake_fd_;
  Membership membership_;
  std::map<ConnId, Connection> conns_;
  ConnId next_id_ = 1;
  std::deque<Event> queue_;
  bool dispatching_ = false;
};

void MasterServer::Loop::Run(const std::atomic<bool>& stop) {
  std::vector<struct pollfd> fds;
  std::vector<ConnId> ids;
  while (!stop.load()) {
    fds.clear();
    ids.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    fds.push_back({listener_.fd(), POLLIN, 0});
    for (auto& [id, c] : conns_) {
      short events = POLLIN;
      if (c.out_offset < c.out.size()) events |= POLLOUT;
      fds.push_back({c.socket.fd(), events, 0});
      ids.push_back(id);
    }
    const TimePoint before = Clock::now();
    const int timeout_ms = PollTimeoutMs(before);
    int rc = ::poll(fds.data(), fds.size(), timeout_ms);
    if (rc < 0 && errno != EINTR) {
      PCCL_LOG(kError, std::string("master: poll failed: ") + std::strerror(errno));
      break;
    }
    // poll() returned far later than it was asked to: this process was stopped (SIGSTOP)
    // or starved. The peers' beats of that time wait unread; tell Membership before it
    // reads the clock, so that it does not kick them for the master's own silence.
    const Duration late = Clock::now() - before - Milliseconds(std::max(timeout_ms, 0));
    if (timeout_ms >= 0 && late > kStallGap) {
      PCCL_LOG(kWarning, "master: the server loop was paused for " +
                             std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                late).count()) +
                             " ms; peers' silence during it is forgiven");
      Dispatch(event::Resumed{late});
    }
    if (rc > 0) {
      if (fds[0].revents & POLLIN) {
        uint64_t count;
        while (::read(wake_fd_, &count, sizeof(count)) > 0) {
        }
      }
      if (stop.load()) break;
      if (fds[1].revents & POLLIN) AcceptAll();
      for (size_t i = 0; i < ids.size(); ++i) {
        short revents = fds[i + 2].revents;
        if (revents == 0) continue;
        auto it = conns_.find(ids[i]);
        if (it == conns_.end()) continue;
        Connection& c = it->second;
        if (revents & (POLLIN | POLLHUP | POLLERR)) ReadFrom(c);
        if ((revents & POLLOUT) && !c.failed) Flush(c);
      }
    }
    TimePoint now = Clock::now();
    if (now >= membership_.NextDeadline()) Dispatch(event::Tick{});
    for (auto& [id, c] : conns_) {
      bool unsent = c.out_offset < c.out.size();
      bool unshut = c.state == State::kClosing && !c.write_shut;
      if (!c.failed && (unsent || unshut)) Flush(c);
    }
    Reap(Clock::now());
  }
  ShutdownAll();
}

int MasterServer::Loop::PollTimeoutMs(TimePoint now) const {
  TimePoint next = membership_.NextDeadline();
  for (const auto& [id, c] : conns_) {
    if (c.close_deadline < next) next = c.close_deadline;
  }
  if (next == TimePoint::max()) return -1;
  if (next <= now) return 0;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1;
  return ms > kMaxTickMs ? kMaxTickMs : static_cast<int>(ms);
}

void MasterServer::Loop::AcceptAll() {
  while (true) {
    net::Socket socket;
    Status s = listener_.Accept(Deadline::At(Clock::now()), &socket);
    if (s.code() == StatusCode::kDeadlineExceeded) return;  // nobody else waiting
    if (!s.ok()) {
      PCCL_LOG(kWarning, "master: accept failed: " + s.ToString());
      return;
    }
    if (conns_.size() >= options_.max_connections) {
      PCCL_LOG(kWarning, "master: refusing " + socket.peer() + ": already " +
                             std::to_string(conns_.size()) + " connections");
      continue;  // the socket closes here
    }
    ConnId id = next_id_++;
    Connection& c = conns_[id];
    c.id = id;
    c.socket = std::move(socket);
    PCCL_LOG(kDebug, "master: connection " + std::to_string(id) + " from " + c.socket.peer());
  }
}

void MasterServer::Loop::ReadFrom(Connection& c) {
  char buffer[kReadChunk];
  // A bounded number of reads per pass keeps one busy peer from starving the others.
  for (int round = 0; round < 4; ++round) {
    ssize_t n = ::recv(c.socket.fd(), buffer, sizeof(buffer), 0);
    if (n > 0) {
      if (c.state != State::kOpen) continue;  // closing: discard until the peer's FIN
      c.in.append(buffer, static_cast<size_t>(n));
      ParseFrames(c);
      if (c.state != State::kOpen) continue;
      if (static_cast<size_t>(n) < sizeof(buffer)) return;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno == EINTR) continue;
    // EOF or a socket error.
    std::string why = n == 0 ? "closed the connection" : std::strerror(errno);
    c.failed = true;
    if (c.state == State::kOpen) {
      PCCL_LOG(kInfo, "master: " + c.socket.peer() + " " + why);
      Dispatch(event::Disconnected{c.id});
    }
    return;
  }
}

void MasterServer::Loop::ParseFrames(Connection& c) {
  size_t pos = 0;
  while (c.state == State::kOpen) {
    if (!c.have_header) {
      if (c.in.size() - pos < net::kFrameHeaderBytes) break;
      // A stranger gets room for its Hello only; a peer, for its largest honest message.
      const uint64_t cap = c.said_hello ? net::kMaxPeerMessage : net::kMaxHelloPayload;
      Status s = net::DecodeFrameHeader(reinterpret_cast<const uint8_t*>(c.in.data() + pos),
                                        cap, c.socket.peer(), &c.header);
      if (s.ok() && !IsPeerToMasterKind(c.header.kind)) {
        s = InvalidArgument(std::string("unexpected message kind ") +
                            std::to_string(c.header.kind) + " (" +
                            proto::KindName(c.header.kind) + ") from " + c.socket.peer());
      }
      if (!s.ok()) {
        FailProtocol(c, s.message());
        return;
      }
      pos += net::kFrameHeaderBytes;
      c.have_header = true;
    }
    if (c.in.size() - pos < c.header.length) break;
    std::string payload = c.in.substr(pos, c.header.length);
    pos += c.header.length;
    c.have_header = false;
    OnFrame(c, c.header.kind, payload);
  }
  if (c.state == State::kOpen) c.in.erase(0, pos);
}

void MasterServer::Loop::OnFrame(Connection& c, uint16_t kind, const std::string& payload) {
  Status s;
  switch (static_cast<proto::Kind>(kind)) {
    case proto::Kind::kHello: {
      event::Hello e;
      e.conn = c.id;
      e.observed_host = HostOf(c.socket.peer());
      s = proto::Decode(payload, &e.hello);
      if (s.ok()) {
        c.said_hello = true;
        Dispatch(std::move(e));
      }
      break;
    }
    case proto::Kind::kVoteTopology: {
      event::VoteTopology e;
      e.conn = c.id;
      s = proto::Decode(payload, &e.vote);
      if (s.ok()) Dispatch(std::move(e));
      break;
    }
    case proto::Kind::kLinksReady: {
      proto::EpochMessage m;
      s = proto::Decode(payload, &m);
      if (s.ok()) Dispatch(event::LinksReady{c.id, m.epoch});
      break;
    }
    case proto::Kind::kQueryPending: {
      proto::PendingQuery m;
      s = proto::Decode(payload, &m);
      if (s.ok()) Dispatch(event::QueryPending{c.id, m.seq, m.joint != 0});
      break;
    }
    case proto::Kind::kHeartbeat:
      s = proto::DecodeEmpty(payload, "Heartbeat");
      if (s.ok()) Dispatch(event::Heartbeat{c.id, c.socket.RetransmitTimeout()});
      break;
    case proto::Kind::kOpDone: {
      event::OpDone e;
      e.conn = c.id;
      s = proto::Decode(payload, &e.op);
      if (s.ok()) Dispatch(std::move(e));
      break;
    }
    case proto::Kind::kSyncState: {
      event::SyncState e;
      e.conn = c.id;
      s = proto::Decode(payload, &e.state);
      if (s.ok()) Dispatch(std::move(e));
      break;
    }
    case proto::Kind::kSyncDone: {
      event::SyncDone e;
      e.conn = c.id;
      s = proto::Decode(payload, &e.result);
      if (s.ok()) Dispatch(std::move(e));
      break;
    }
    case proto::Kind::kOptimizeTopology: {
      proto::EpochMessage m;
      s = proto::Decode(payload, &m);
      if (s.ok()) Dispatch(event::OptimizeTopology{c.id, m.epoch});
      break;
    }
    case proto::Kind::kBandwidthReport: {
      event::BandwidthReport e;
      e.conn = c.id;
      s = proto::Decode(payload, &e.report);
      if (s.ok()) Dispatch(std::move(e));
      break;
    }
    case proto::Kind::kLinkBroken: {
      event::LinkBroken e;
      e.conn = c.id;
      s = proto::Decode(payload, &e.report);
      if (s.ok()) Dispatch(std::move(e));
      break;
    }
    case proto::Kind::kGoodbye:
      s = proto::DecodeEmpty(payload, "Goodbye");
      if (s.ok()) {
        Dispatch(event::Goodbye{c.id});
        BeginClose(c);
      }
      break;
    default:
      s = InvalidArgument("unexpected message kind " + std::to_string(kind));
  }
  if (!s.ok()) FailProtocol(c, s.message() + " from " + c.socket.peer());
}

void MasterServer::Loop::FailProtocol(Connection& c, const std::string& reason) {
  PCCL_LOG(kWarning, "master: dropping " + c.socket.peer() + ": " + reason);
  Dispatch(event::ProtocolError{c.id, reason});
  BeginClose(c);  // Membership asked for it already; this covers a peer it never knew
}

void MasterServer::Loop::Dispatch(Event event) {
  queue_.push_back(std::move(event));
  if (dispatching_) return;  // the outer call drains the queue
  dispatching_ = true;
  while (!queue_.empty()) {
    Event next = std::move(queue_.front());
    queue_.pop_front();
    Apply(membership_.Handle(next, Clock::now()));
  }
  dispatching_ = false;
}

void MasterServer::Loop::Apply(std::vector<Action> actions) {
  for (Action& action : actions) {
    if (Send* send = std::get_if<Send>(&action)) {
      auto it = conns_.find(send->conn);
      if (it == conns_.end() || it->second.failed) continue;
      Connection& c = it->second;
      if (c.write_shut) continue;
      uint8_t header[net::kFrameHeaderBytes];
      net::EncodeFrameHeader(static_cast<uint16_t>(send->kind), send->payload.size(), header);
      c.out.append(reinterpret_cast<const char*>(header), sizeof(header));
      c.out.append(send->payload);
      if (c.out.size() - c.out_offset > options_.max_output_bytes && c.state == State::kOpen) {
        PCCL_LOG(kWarning, "master: dropping " + c.socket.peer() + ": " +
                               std::to_string(c.out.size() - c.out_offset) +
                               " bytes unsent (the peer stopped reading)");
        c.failed = true;
        queue_.push_back(event::Disconnected{c.id});
      }
    } else {
      const Drop& drop = std::get<Drop>(action);
      auto it = conns_.find(drop.conn);
      if (it == conns_.end()) continue;
      PCCL_LOG(kInfo, "master: dropping " + it->second.socket.peer() + ": " + drop.reason);
      BeginClose(it->second);
    }
  }
}

void MasterServer::Loop::Flush(Connection& c) {
  while (c.out_offset < c.out.size()) {
    ssize_t n = ::send(c.socket.fd(), c.out.data() + c.out_offset, c.out.size() - c.out_offset,
                       MSG_NOSIGNAL);
    if (n > 0) {
      c.out_offset += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    c.failed = true;
    if (c.state == State::kOpen) {
      PCCL_LOG(kInfo, "master: send to " + c.socket.peer() + " failed: " + std::strerror(errno));
      Dispatch(event::Disconnected{c.id});
    }
    return;
  }
  if (c.out_offset == c.out.size()) {
    c.out.clear();
    c.out_offset = 0;
    if (c.state == State::kClosing && !c.write_shut) {
      ::shutdown(c.socket.fd(), SHUT_WR);  // FIN after the last byte; linger for the peer's
      c.write_shut = true;
    }
  } else if (c.out_offset > (1 << 20)) {
    c.out.erase(0, c.out_offset);
    c.out_offset = 0;
  }
}

void MasterServer::Loop::BeginClose(Connection& c) {
  if (c.state == State::kClosing) return;
  c.state = State::kClosing;
  c.in.clear();
  c.close_deadline = Clock::now() + options_.drop_linger;
}

void MasterServer::Loop::Reap(TimePoint now) {
  for (auto it = conns_.begin(); it != conns_.end();) {
    Connection& c = it->second;
    if (c.failed || (c.state == State::kClosing && now >= c.close_deadline)) {
      it = conns_.erase(it);  // the Socket closes the fd
    } else {
      ++it;
    }
  }
}

void MasterServer::Loop::ShutdownAll() {
  proto::ErrorMessage bye{static_cast<uint32_t>(StatusCode::kUnavailable),
                          "the master is shutting down"};
  std::string payload = proto::Encode(bye);
  for (auto& [id, c] : conns_) {
    if (c.failed || c.state != State::kOpen) continue;
    uint8_t header[net::kFrameHeaderBytes];
    net::EncodeFrameHeader(static_cast<uint16_t>(proto::Kind::kError), payload.size(), header);
    c.out.append(reinterpret_cast<const char*>(header), sizeof(header));
    c.out.append(payload);
    c.state = State::kClosing;
    Flush(c);  // best effort, never blocks
  }
  conns_.clear();
  listener_.Close();
}

// --- MasterServer ---------------------------------------------------------------------------

Status MasterServer::Start(const MasterOptions& options, std::unique_ptr<MasterServer>* out) {
  net::Endpoint endpoint;
  PCCL_RETURN_IF_ERROR(net::ParseEndpoint(options.listen_address, /*allow_port_zero=*/true,
                                          &endpoint));
  net::Listener listener;
  PCCL_RETURN_IF_ERROR(net::Listener::Listen(endpoint, &listener));
  int wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd < 0) {
    return Status(StatusCode::kUnavailable,
                  std::string("eventfd failed: ") + std::strerror(errno));
  }
  std::unique_ptr<MasterServer> server(new MasterServer());
  server->wake_fd_ = wake_fd;
  server->port_ = listener.port();
  server->address_ = net::Endpoint{endpoint.host, listener.port()}.ToString();
  server->loop_ = std::make_unique<Loop>(options, std::move(listener), wake_fd);
  server->running_ = true;
  MasterServer* self = server.get();
  server->thread_ = std::thread([self] {
    self->loop_->Run(self->stop_);
    self->running_ = false;
  });
  PCCL_LOG(kInfo, "master: listening on " + server->address_);
  *out = std::move(server);
  return Status::Ok();
}

MasterServer::~MasterServer() {
  Interrupt();
  Join();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void MasterServer::Interrupt() {
  stop_ = true;
  uint64_t one = 1;
  if (wake_fd_ >= 0) {
    ssize_t n = ::write(wake_fd_, &one, sizeof(one));
    (void)n;  // a full counter already means "wake up"
  }
}

void MasterServer::Join() {
  std::lock_guard<std::mutex> lock(join_mu_);
  if (thread_.joinable()) thread_.join();
}

}  // namespace pccl::master
