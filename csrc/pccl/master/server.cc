#include "pccl/master/server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iterator>
#include <map>
#include <utility>
#include <vector>

#include "pccl/common/logging.h"
#include "pccl/common/params.h"
#include "pccl/common/thread_name.h"
#include "pccl/net/address.h"
#include "pccl/net/socket.h"
#include "pccl/net/wire.h"
#include "pccl/master/connection.h"
#include "pccl/master/dial_back.h"

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

constexpr int kMaxTickMs = 100;
// A poll() that returns this much later than asked means the process itself was paused.
constexpr Duration kStallGap = std::chrono::seconds(1);

MembershipOptions MembershipFor(const MasterOptions& options) {
  MembershipOptions m;
  m.link_timeout = options.link_timeout;
  m.heartbeat_timeout = options.heartbeat_timeout;
  m.resume_window = options.resume_window;
  m.probe_duration = std::chrono::milliseconds(GetParams().probe_ms);
  m.bandwidth_max_age = std::chrono::seconds(GetParams().bandwidth_max_age_s);
  return m;
}

}  // namespace

class MasterServer::Loop {
 public:
  Loop(const MasterOptions& options, MembershipOptions membership, net::Listener listener,
       int wake_fd, MasterServer* server)
      : options_(options),
        listener_(std::move(listener)),
        wake_fd_(wake_fd),
        server_(server),
        membership_(std::move(membership), options.peer_ids) {
    LoadState();
  }

  void Run(const std::atomic<bool>& stop);

 private:
  enum class State { kOpen, kClosing };
  // A connection (master/connection.h) and where it is in its life.
  struct Entry {
    Entry(ConnId id, net::Socket socket, const auth::RunAuth& auth, TimePoint now)
        : link(id, std::move(socket), auth, now) {}
    Connection link;
    std::string host;  // the remote address, for the per-address limits
    State state = State::kOpen;
    bool write_shut = false;
    TimePoint close_deadline = TimePoint::max();
    bool failed = false;  // closed by error or EOF: close now, no linger
    bool stranger = true;  // counted in strangers_ (no Hello yet)
  };

  void AcceptAll();
  // Whether a new connection from `host` may stay (the limits on strangers, see .h).
  Status Admissible(const std::string& host) const;
  void ReadFrom(Entry& c);
  void OnFrame(Entry& c, uint16_t kind, const std::string& payload);
  void FailProtocol(Entry& c, const std::string& reason);
  // ReachabilityQuery from a peer that said Hello: dial back its advertised endpoint.
  void CheckReachability(Entry& c);
  void AnswerReachability(const DialBacks::Done& done);
  // Takes a connection out of the strangers' counts (it said Hello, or it is gone).
  void ForgetStranger(Entry& c);
  void Dispatch(Event event);
  void Apply(std::vector<Action> actions);
  void Flush(Entry& c);
  void BeginClose(Entry& c);
  // Drops connections that did not say Hello within options_.hello_timeout.
  void DropSilentStrangers(TimePoint now);
  void Reap(TimePoint now);
  void ShutdownAll();
  int PollTimeoutMs(TimePoint now) const;
  // Publishes membership_.Snapshot() to server_ (MasterServer::run_status), after changes at
  // most every 50 ms and otherwise every second (idle times move).
  void MaybePublishStatus(TimePoint now);
  // options_.state_file: read once at start (a warm start), rewritten when it changes.
  void LoadState();
  void SaveState();
  std::string saved_state_;  // the bytes last written

  MasterOptions options_;
  net::Listener listener_;
  int wake_fd_;
  MasterServer* server_;
  bool status_dirty_ = true;
  TimePoint status_published_{};  // the clock's epoch: long ago
  Membership membership_;
  std::map<ConnId, Entry> conns_;
  ConnId next_id_ = 1;
  // Connections that have not said Hello yet, in all and per remote address.
  size_t strangers_ = 0;
  std::map<std::string, size_t> strangers_by_host_;
  // accept() ran out of file descriptors: the listener rests until then.
  TimePoint accept_resumes_ = TimePoint::min();
  RateLimitedLog refusals_{LogLevel::kWarning};  // strangers may cause them without bound
  DialBacks dial_backs_;  // reachability checks in progress (dial_back.h)
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
    // The listener rests (fd -1: poll ignores it) while accept() is out of descriptors.
    fds.push_back({Clock::now() >= accept_resumes_ ? listener_.fd() : -1, POLLIN, 0});
    for (auto& [id, c] : conns_) {
      short events = POLLIN;
      if (c.link.unsent() > 0) events |= POLLOUT;
      fds.push_back({c.link.fd(), events, 0});
      ids.push_back(id);
    }
    const size_t dial_base = fds.size();
    dial_backs_.AddPollFds(&fds);
    const size_t dial_count = fds.size() - dial_base;
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
        Entry& c = it->second;
        if (revents & (POLLIN | POLLHUP | POLLERR)) ReadFrom(c);
        if ((revents & POLLOUT) && !c.failed) Flush(c);
      }
    }
    TimePoint now = Clock::now();
    for (const DialBacks::Done& done :
         dial_backs_.Collect(fds.data() + dial_base, dial_count, now)) {
      AnswerReachability(done);
    }
    if (now >= membership_.NextDeadline()) Dispatch(event::Tick{});
    DropSilentStrangers(now);
    for (auto& [id, c] : conns_) {
      bool unsent = c.link.unsent() > 0;
      bool unshut = c.state == State::kClosing && !c.write_shut;
      if (!c.failed && (unsent || unshut)) Flush(c);
    }
    Reap(Clock::now());
    MaybePublishStatus(Clock::now());
  }
  ShutdownAll();
}

void MasterServer::Loop::MaybePublishStatus(TimePoint now) {
  const Duration since = now - status_published_;
  if (since < (status_dirty_ ? Milliseconds(50) : Milliseconds(1000))) return;
  RunStatus status = membership_.Snapshot(now);
  {
    std::lock_guard<std::mutex> lock(server_->status_mu_);
    server_->status_ = std::move(status);
  }
  status_dirty_ = false;
  status_published_ = now;
  SaveState();
}

void MasterServer::Loop::LoadState() {
  if (options_.state_file.empty()) return;
  std::ifstream in(options_.state_file, std::ios::binary);
  if (!in) {
    PCCL_LOG(kInfo, "master: no state file at " + options_.state_file + " yet: a new run");
    return;
  }
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  proto::MasterState state;
  if (Status st = proto::Decode(bytes, &state); !st.ok()) {
    PCCL_LOG(kError, "master: ignoring the state file " + options_.state_file + ": " +
                         st.ToString());
    return;
  }
  membership_.WarmStart(state, Clock::now());
  saved_state_ = std::move(bytes);
  PCCL_LOG(kInfo, "master: warm start from " + options_.state_file + " (epoch " +
                      std::to_string(state.epoch) + ", " + std::to_string(state.members.size()) +
                      " members expected back)");
}

void MasterServer::Loop::SaveState() {
  if (options_.state_file.empty()) return;
  std::string bytes = proto::Encode(membership_.Persist());
  if (bytes == saved_state_) return;
  // Written beside the file and renamed over it: a crash leaves the old or the new one.
  const std::string tmp = options_.state_file + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.flush()) {
      PCCL_LOG(kError, "master: cannot write the state file " + tmp);
      return;
    }
  }
  if (std::rename(tmp.c_str(), options_.state_file.c_str()) != 0) {
    PCCL_LOG(kError, "master: cannot replace the state file " + options_.state_file + ": " +
                         std::strerror(errno));
    return;
  }
  saved_state_ = std::move(bytes);
}

int MasterServer::Loop::PollTimeoutMs(TimePoint now) const {
  TimePoint next = membership_.NextDeadline();
  if (accept_resumes_ > now) next = std::min(next, accept_resumes_);
  next = std::min(next, dial_backs_.NextDeadline());
  for (const auto& [id, c] : conns_) {
    if (c.close_deadline < next) next = c.close_deadline;
    if (c.state == State::kOpen && !c.link.said_hello()) {
      next = std::min(next, c.link.accepted_at() + options_.hello_timeout);
    }
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
      // Out of descriptors (EMFILE, ENFILE) or another failure: the waiting connection stays
      // in the backlog, so polling the listener again at once would spin. Rest a moment.
      accept_resumes_ = Clock::now() + options_.accept_backoff;
      refusals_.Log("master: accept failed: " + s.ToString() + "; accepting again in " +
                             std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                options_.accept_backoff).count()) + " ms");
      return;
    }
    const std::string host = net::HostOfPeer(socket.peer());
    if (Status why = Admissible(host); !why.ok()) {
      PCCL_LOG(kDebug, "master: refusing " + socket.peer() + ": " + why.message());
      continue;  // the socket closes here
    }
    ConnId id = next_id_++;
    auto [it, inserted] =
        conns_.try_emplace(id, id, std::move(socket), options_.auth, Clock::now());
    it->second.host = host;
    ++strangers_;
    ++strangers_by_host_[host];
    PCCL_LOG(kDebug, "master: connection " + std::to_string(id) + " from " + it->second.link.peer());
  }
}

Status MasterServer::Loop::Admissible(const std::string& host) const {
  if (conns_.size() >= options_.max_connections) {
    return Status(StatusCode::kUnavailable,
                  "already " + std::to_string(conns_.size()) + " connections");
  }
  if (strangers_ >= options_.max_strangers) {
    return Status(StatusCode::kUnavailable, "already " + std::to_string(strangers_) +
                                                " connections that have not said Hello");
  }
  auto it = strangers_by_host_.find(host);
  if (it != strangers_by_host_.end() && it->second >= options_.max_strangers_per_host) {
    return Status(StatusCode::kUnavailable,
                  "already " + std::to_string(it->second) + " connections from " + host +
                      " that have not said Hello");
  }
  return Status::Ok();
}

void MasterServer::Loop::ReadFrom(Entry& c) {
  std::vector<Connection::Frame> frames;
  const Connection::Outcome outcome = c.link.Read(&frames);
  for (Connection::Frame& frame : frames) {
    if (c.state != State::kOpen) break;
    OnFrame(c, frame.kind, frame.payload);
  }
  switch (outcome) {
    case Connection::Outcome::kOk:
      return;
    case Connection::Outcome::kClosed:
      c.failed = true;
      if (c.state == State::kOpen) {
        PCCL_LOG(kInfo, "master: " + c.link.peer() + " " + c.link.why());
        Dispatch(event::Disconnected{c.link.id()});
      }
      return;
    case Connection::Outcome::kRefused:
      refusals_.Log("master: refused " + c.link.peer() + ": " + c.link.why());
      BeginClose(c);  // its Error answer is queued: flush it, then close
      return;
    case Connection::Outcome::kInvalid:
      if (c.state == State::kOpen) FailProtocol(c, c.link.why());
      return;
  }
}

void MasterServer::Loop::DropSilentStrangers(TimePoint now) {
  for (auto& [id, c] : conns_) {
    if (c.state != State::kOpen || c.link.said_hello() ||
        now - c.link.accepted_at() < options_.hello_timeout) {
      continue;
    }
    PCCL_LOG(kInfo, "master: dropping " + c.link.peer() + ": no Hello within " +
                        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           options_.hello_timeout).count()) + " ms");
    c.failed = true;  // a stranger: no goodbye owed
  }
}

void MasterServer::Loop::OnFrame(Entry& c, uint16_t kind, const std::string& payload) {
  Status s;
  switch (static_cast<proto::Kind>(kind)) {
    case proto::Kind::kHello: {
      event::Hello e;
      e.conn = c.link.id();
      e.observed_host = net::HostOfPeer(c.link.peer());
      s = proto::Decode(payload, &e.hello);
      if (s.ok() && options_.auth.enabled() && e.hello.public_key.empty()) {
        s = InvalidArgument("a Hello in a run with a secret must carry the peer's public key");
      }
      if (s.ok()) {
        c.link.SaidHello();
        ForgetStranger(c);
        Dispatch(std::move(e));
      }
      break;
    }
    case proto::Kind::kVoteTopology: {
      event::VoteTopology e;
      e.conn = c.link.id();
      s = proto::Decode(payload, &e.vote);
      if (s.ok()) Dispatch(std::move(e));
      break;
    }
    case proto::Kind::kLinksReady: {
      proto::EpochMessage m;
      s = proto::Decode(payload, &m);
      if (s.ok()) Dispatch(event::LinksReady{c.link.id(), m.epoch});
      break;
    }
    case proto::Kind::kQueryPending: {
      proto::PendingQuery m;
      s = proto::Decode(payload, &m);
      if (s.ok()) Dispatch(event::QueryPending{c.link.id(), m.seq, m.joint != 0, m.wait != 0});
      break;
    }
    case proto::Kind::kHeartbeat: {
      proto::Heartbeat m;
      s = proto::Decode(payload, &m);
      if (s.ok()) {
        Dispatch(event::Heartbeat{c.link.id(), c.link.RetransmitTimeout(),
                                  std::chrono::microseconds(m.rtt_us)});
      }
      break;
    }
    case proto::Kind::kOpDone: {
      event::OpDone e;
      e.conn = c.link.id();
      s = proto::Decode(payload, &e.op);
      if (s.ok()) Dispatch(std::move(e));
      break;
    }
    case proto::Kind::kSyncState: {
      event::SyncState e;
      e.conn = c.link.id();
      s = proto::Decode(payload, &e.state);
      if (s.ok()) Dispatch(std::move(e));
      break;
    }
    case proto::Kind::kSyncDone: {
      event::SyncDone e;
      e.conn = c.link.id();
      s = proto::Decode(payload, &e.result);
      if (s.ok()) Dispatch(std::move(e));
      break;
    }
    case proto::Kind::kOptimizeTopology: {
      proto::EpochMessage m;
      s = proto::Decode(payload, &m);
      if (s.ok()) Dispatch(event::OptimizeTopology{c.link.id(), m.epoch});
      break;
    }
    case proto::Kind::kBandwidthReport: {
      event::BandwidthReport e;
      e.conn = c.link.id();
      s = proto::Decode(payload, &e.report);
      if (s.ok()) Dispatch(std::move(e));
      break;
    }
    case proto::Kind::kReachabilityQuery:
      s = proto::DecodeEmpty(payload, "ReachabilityQuery");
      if (s.ok()) CheckReachability(c);
      break;
    case proto::Kind::kLinkBroken: {
      event::LinkBroken e;
      e.conn = c.link.id();
      s = proto::Decode(payload, &e.report);
      if (s.ok()) Dispatch(std::move(e));
      break;
    }
    case proto::Kind::kGoodbye:
      s = proto::DecodeEmpty(payload, "Goodbye");
      if (s.ok()) {
        Dispatch(event::Goodbye{c.link.id()});
        BeginClose(c);
      }
      break;
    default:
      s = InvalidArgument("unexpected message kind " + std::to_string(kind));
  }
  if (!s.ok()) FailProtocol(c, s.message() + " from " + c.link.peer());
}

void MasterServer::Loop::CheckReachability(Entry& c) {
  std::optional<net::Endpoint> advertised = membership_.AdvertisedEndpoint(c.link.id());
  if (!advertised) {
    FailProtocol(c, "ReachabilityQuery before Hello from " + c.link.peer());
    return;
  }
  if (auto done = dial_backs_.Start(c.link.id(), *advertised, Clock::now())) {
    AnswerReachability(*done);
  }
}

void MasterServer::Loop::AnswerReachability(const DialBacks::Done& done) {
  auto it = conns_.find(done.conn);
  if (it == conns_.end() || it->second.state != State::kOpen || it->second.failed) return;
  Entry& c = it->second;
  proto::Reachability answer;
  net::Endpoint observed;
  if (net::ParseEndpoint(c.link.peer(), /*allow_port_zero=*/true, &observed).ok()) {
    answer.observed_host = observed.host;
    answer.observed_port = observed.port;
  }
  answer.reachable = done.reachable ? 1 : 0;
  membership_.SetReachable(done.conn, done.reachable);
  answer.detail = done.detail.substr(0, proto::kMaxReasonLength);
  PCCL_LOG(kInfo, "master: " + c.link.peer() + " " +
                      (done.reachable ? "accepts connections: " : "cannot be dialled: ") +
                      done.detail);
  c.link.Queue(static_cast<uint16_t>(proto::Kind::kReachability), proto::Encode(answer));
}

void MasterServer::Loop::FailProtocol(Entry& c, const std::string& reason) {
  refusals_.Log("master: dropping " + c.link.peer() + ": " + reason);
  Dispatch(event::ProtocolError{c.link.id(), reason});
  BeginClose(c);  // Membership asked for it already; this covers a peer it never knew
}

void MasterServer::Loop::ForgetStranger(Entry& c) {
  if (!c.stranger) return;
  c.stranger = false;
  --strangers_;
  auto it = strangers_by_host_.find(c.host);
  if (it != strangers_by_host_.end() && --it->second == 0) strangers_by_host_.erase(it);
}

void MasterServer::Loop::Dispatch(Event event) {
  queue_.push_back(std::move(event));
  if (dispatching_) return;  // the outer call drains the queue
  dispatching_ = true;
  while (!queue_.empty()) {
    Event next = std::move(queue_.front());
    queue_.pop_front();
    Apply(membership_.Handle(next, Clock::now()));
    status_dirty_ = true;
  }
  dispatching_ = false;
}

void MasterServer::Loop::Apply(std::vector<Action> actions) {
  for (Action& action : actions) {
    if (Send* send = std::get_if<Send>(&action)) {
      auto it = conns_.find(send->conn);
      if (it == conns_.end() || it->second.failed) continue;
      Entry& c = it->second;
      if (c.write_shut) continue;
      c.link.Queue(static_cast<uint16_t>(send->kind), send->payload);
      if (c.link.unsent() > options_.max_output_bytes && c.state == State::kOpen) {
        PCCL_LOG(kWarning, "master: dropping " + c.link.peer() + ": " +
                               std::to_string(c.link.unsent()) +
                               " bytes unsent (the peer stopped reading)");
        c.failed = true;
        queue_.push_back(event::Disconnected{c.link.id()});
      }
    } else {
      const Drop& drop = std::get<Drop>(action);
      auto it = conns_.find(drop.conn);
      if (it == conns_.end()) continue;
      PCCL_LOG(kInfo, "master: dropping " + it->second.link.peer() + ": " + drop.reason);
      BeginClose(it->second);
    }
  }
}

void MasterServer::Loop::Flush(Entry& c) {
  if (!c.link.Flush()) {
    c.failed = true;
    if (c.state == State::kOpen) {
      PCCL_LOG(kInfo, "master: " + c.link.peer() + ": " + c.link.why());
      Dispatch(event::Disconnected{c.link.id()});
    }
    return;
  }
  if (c.link.unsent() == 0 && c.state == State::kClosing && !c.write_shut) {
    c.link.ShutWrite();  // FIN after the last byte; linger for the peer's
    c.write_shut = true;
  }
}

void MasterServer::Loop::BeginClose(Entry& c) {
  if (c.state == State::kClosing) return;
  c.state = State::kClosing;
  c.link.StopReading();
  c.close_deadline = Clock::now() + options_.drop_linger;
}

void MasterServer::Loop::Reap(TimePoint now) {
  for (auto it = conns_.begin(); it != conns_.end();) {
    Entry& c = it->second;
    if (c.failed || (c.state == State::kClosing && now >= c.close_deadline)) {
      ForgetStranger(c);
      dial_backs_.Forget(it->first);
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
    c.link.Queue(static_cast<uint16_t>(proto::Kind::kError), payload);
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
  net::Endpoint external_relay;
  if (!options.external_relay.empty()) {
    PCCL_RETURN_IF_ERROR(net::ParseEndpoint(options.external_relay, false, &external_relay));
    if (options.relay_key.size() < 16) {
      return InvalidArgument("an external relay needs the key it was started with (at least "
                             "16 bytes)");
    }
  }
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
  MembershipOptions membership = MembershipFor(options);
  if (!options.external_relay.empty()) {
    membership.relay_host = external_relay.host;
    membership.relay_port = external_relay.port;
    membership.relay_key = options.relay_key;
  } else if (options.relay_address != "off") {
    RelayOptions relay;
    relay.listen_address = options.relay_address.empty()
                               ? net::Endpoint{endpoint.host, 0}.ToString()
                               : options.relay_address;
    Status st = Relay::Start(relay, &server->relay_);
    // (On failure `server` goes out of scope: its destructor closes the eventfd.)
    if (!st.ok()) return Status(st.code(), "relay: " + st.message());
    membership.relay_port = server->relay_->port();
    membership.relay_key = server->relay_->key();
  }
  server->loop_ =
      std::make_unique<Loop>(options, membership, std::move(listener), wake_fd, server.get());
  server->running_ = true;
  MasterServer* self = server.get();
  server->thread_ = std::thread([self] {
    NameThisThread("pccl-master");
    self->loop_->Run(self->stop_);
    self->running_ = false;
  });
  PCCL_LOG(kInfo, "master: listening on " + server->address_ +
                     (options.auth.enabled()
                          ? std::string(options.auth.encrypted ? ", encrypted" : "") +
                                ", peers must prove the run secret"
                          : ""));
  if (!options.auth.enabled() && !net::IsLoopbackHost(endpoint.host)) {
    PCCL_LOG(kWarning, "master: listening on " + server->address_ +
                           " without a run secret: anyone who can reach it can join the run, "
                           "read the shared state and send gradients (give every process the "
                           "same secret: PCCL_RUN_SECRET or secret=...)");
  }
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
