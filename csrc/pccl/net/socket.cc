#include "pccl/net/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "pccl/common/params.h"

namespace pccl::net {
namespace {

std::string ErrnoText(int err) { return std::string(std::strerror(err)); }

Status SysError(const char* syscall, int err, const std::string& peer) {
  StatusCode code = StatusCode::kUnavailable;
  return Status(code, std::string(syscall) + "(" + peer + ") failed: " + ErrnoText(err));
}

// Waits until `fd` is ready for `events` or the deadline passes (Aborted once its stop
// flag is set).
Status WaitReady(int fd, short events, Deadline deadline, const char* what,
                 const std::string& peer) {
  while (true) {
    struct pollfd p = {fd, events, 0};
    int rc = ::poll(&p, 1, deadline.PollTimeoutMs());
    if (rc > 0) {
      if (p.revents & POLLNVAL) return Status(StatusCode::kAborted, std::string(what) + "(" + peer + "): socket closed");
      return Status::Ok();
    }
    if (rc == 0) {
      if (deadline.stopped()) {
        return Status(StatusCode::kAborted, std::string(what) + "(" + peer + ") called off");
      }
      if (!deadline.expired()) continue;  // one look at a stop flag (clock.h)
      return Status(StatusCode::kDeadlineExceeded,
                    std::string(what) + "(" + peer + ") timed out");
    }
    if (errno != EINTR) return SysError("poll", errno, peer);
  }
}

std::string AddressText(const sockaddr* addr) {
  char host[NI_MAXHOST];
  char port[NI_MAXSERV];
  socklen_t len = addr->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (getnameinfo(addr, len, host, sizeof(host), port, sizeof(port),
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  Endpoint e{host, static_cast<uint16_t>(std::atoi(port))};
  return e.ToString();
}

// getaddrinfo's result list, freed on scope exit. getaddrinfo itself cannot be given a
// deadline (a DNS server that does not answer holds it for its own timeouts, easily half
// a minute), so a resolution runs on a thread of its own and the caller waits for it no
// longer than its deadline; a resolution given up finishes in the background and frees
// its own result.
class Resolved {
 public:
  // `passive`: addresses to bind (AI_PASSIVE) rather than to connect to.
  Status Resolve(const Endpoint& endpoint, bool passive, Deadline deadline) {
    struct Job {
      std::mutex mu;
      std::condition_variable cv;
      bool done = false;
      bool abandoned = false;
      int rc = 0;
      struct addrinfo* list = nullptr;
    };
    auto job = std::make_shared<Job>();
    std::string host = endpoint.host;
    std::string port = std::to_string(endpoint.port);
    std::thread([job, host, port, passive] {
      struct addrinfo hints;
      std::memset(&hints, 0, sizeof(hints));
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      hints.ai_flags = passive ? AI_PASSIVE : 0;
      struct addrinfo* list = nullptr;
      int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &list);
      std::lock_guard<std::mutex> lock(job->mu);
      if (job->abandoned) {
        if (list != nullptr) ::freeaddrinfo(list);
        return;
      }
      job->rc = rc;
      job->list = list;
      job->done = true;
      job->cv.notify_all();
    }).detach();
    std::unique_lock<std::mutex> lock(job->mu);
    if (!WaitFor(job->cv, lock, deadline, [&] { return job->done; })) {
      job->abandoned = true;
      return Status(StatusCode::kDeadlineExceeded,
                    "resolving '" + endpoint.host + "' did not finish in time");
    }
    list_ = job->list;
    if (job->rc != 0) {
      return Status(passive ? StatusCode::kInvalidArgument : StatusCode::kUnavailable,
                    "cannot resolve '" + endpoint.host + "': " + gai_strerror(job->rc));
    }
    return Status::Ok();
  }
  ~Resolved() {
    if (list_ != nullptr) ::freeaddrinfo(list_);
  }
  struct addrinfo* begin() const { return list_; }

 private:
  struct addrinfo* list_ = nullptr;
};

void SetNoDelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// Every connection fails, rather than hangs, when its path dies without a FIN or RST (a
// partition, a machine gone): unacknowledged data for PCCL_TCP_USER_TIMEOUT_MS, or no
// answer to keepalive probes when idle; the probes also keep idle NAT mappings alive.
void SetLiveness(int fd) {
  const Params& params = GetParams();
  if (params.keepalive_s > 0) {
    // Probes every idle/3 seconds (at least one a second) once the connection has been
    // idle `keepalive_s`. With TCP_USER_TIMEOUT set, Linux fails the connection only when
    // nothing came back for the user timeout, whatever the probe count: frequent probes
    // mean that losing one or two on a lossy path costs nothing.
    int on = 1;
    int idle = static_cast<int>(params.keepalive_s);
    int interval = std::max(1, idle / 3);
    int count = 3;
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
  }
  if (params.tcp_user_timeout_ms > 0) {
    unsigned int ms = static_cast<unsigned int>(params.tcp_user_timeout_ms);
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
  }
}

}  // namespace

struct Socket::Records {
  std::unique_ptr<secure::RecordSealer> sealer;  // the sender's
  std::string sealed;                            // records waiting to be sent (reused)
  std::unique_ptr<secure::RecordOpener> opener;  // the receiver's
  std::string opened;                            // plaintext of a record not yet handed out
  size_t opened_pos = 0;
  Status broken;  // a record that did not open: the stream is unusable from there on
};

Socket::Socket() = default;
Socket::Socket(int fd, std::string peer) : fd_(fd), peer_(std::move(peer)) {}
Socket::~Socket() { Close(); }

Socket::Socket(Socket&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      peer_(std::move(other.peer_)),
      secure_(std::move(other.secure_)) {}

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = std::exchange(other.fd_, -1);
    peer_ = std::move(other.peer_);
    secure_ = std::move(other.secure_);
  }
  return *this;
}

void Socket::Secure(std::unique_ptr<secure::RecordSealer> sealer,
                    std::unique_ptr<secure::RecordOpener> opener) {
  secure_ = std::make_unique<Records>();
  secure_->sealer = std::move(sealer);
  secure_->opener = std::move(opener);
}

void Socket::Close() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

Duration Socket::RetransmitTimeout() const {
  struct tcp_info info;
  socklen_t len = sizeof(info);
  if (fd_ < 0 || ::getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return Duration(0);
  // The RTO without the exponential backoff of retransmissions in progress: the path's
  // round trip and jitter, not how long the current outage has lasted.
  return std::chrono::duration_cast<Duration>(
      std::chrono::microseconds(info.tcpi_rto >> std::min<int>(info.tcpi_backoff, 16)));
}

void Socket::Shutdown() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

void Socket::ShutdownRead() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RD);
}

bool Socket::PeerClosed() const {
  if (fd_ < 0) return true;
  struct pollfd p = {fd_, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLERR | POLLHUP)) return true;
  if (!(p.revents & (POLLIN | POLLRDHUP))) return false;
  char byte;
  // Data waiting is data to read, even if a FIN follows it; 0: the FIN alone.
  return ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

bool Socket::HasSendRoom(size_t bytes) const {
  int queued = 0;
  int capacity = 0;
  socklen_t length = sizeof(capacity);
  if (fd_ < 0 || ::ioctl(fd_, SIOCOUTQ, &queued) != 0 ||
      ::getsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &capacity, &length) != 0) {
    return false;
  }
  const size_t wire = secure_ ? secure::RecordSealer::SealedSize(bytes) : bytes;
  // The kernel takes a write while what it holds (with each buffer's bookkeeping, up to
  // about as much again for small segments) is under SO_SNDBUF: half of it is a margin.
  return 2 * (static_cast<size_t>(queued) + wire) <= static_cast<size_t>(capacity);
}

void Socket::SetBufferSizes(int64_t bytes) {
  if (bytes <= 0 || fd_ < 0) return;
  int value = static_cast<int>(bytes);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &value, sizeof(value));
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &value, sizeof(value));
}

Endpoint Socket::local_endpoint() const {
  struct sockaddr_storage addr;
  socklen_t len = sizeof(addr);
  if (fd_ < 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return {};
  Endpoint e;
  if (!ParseEndpoint(AddressText(reinterpret_cast<sockaddr*>(&addr)), true, &e).ok()) return {};
  return e;
}

namespace {

// Binds `fd` (of `family`) to `local` (its host an IP literal of that family, or empty for
// any address), shared if asked. -1 with errno set on failure.
int BindLocal(int fd, int family, const Socket::LocalEnd& local) {
  if (local.shared) {
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  }
  if (family == AF_INET6) {
    struct sockaddr_in6 a = {};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(local.port);
    if (!local.host.empty() && ::inet_pton(AF_INET6, local.host.c_str(), &a.sin6_addr) != 1) {
      errno = EINVAL;
      return -1;
    }
    return ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  }
  struct sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = htons(local.port);
  if (!local.host.empty() && ::inet_pton(AF_INET, local.host.c_str(), &a.sin_addr) != 1) {
    errno = EINVAL;
    return -1;
  }
  return ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
}

}  // namespace

Status Socket::Connect(const Endpoint& endpoint, Deadline deadline, Socket* out) {
  return Connect(endpoint, deadline, out, LocalEnd{"", 0, false});
}

Status Socket::Connect(const Endpoint& endpoint, Deadline deadline, Socket* out,
                       LocalEnd local) {
  Resolved resolved;
  PCCL_RETURN_IF_ERROR(resolved.Resolve(endpoint, /*passive=*/false, deadline));
  Status last = Status(StatusCode::kUnavailable, "no address for " + endpoint.ToString());
  for (struct addrinfo* ai = resolved.begin(); ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                      ai->ai_protocol);
    if (fd < 0) {
      last = SysError("socket", errno, endpoint.ToString());
      continue;
    }
    Socket s(fd, endpoint.ToString());
    if ((local.shared || local.port != 0 || !local.host.empty()) &&
        BindLocal(fd, ai->ai_family, local) != 0) {
      last = SysError("bind", errno, endpoint.ToString());
      continue;
    }
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = SysError("connect", errno, endpoint.ToString());
      continue;
    }
    last = WaitReady(fd, POLLOUT, deadline, "connect", endpoint.ToString());
    if (!last.ok()) continue;
    int err = 0;
    socklen_t len = sizeof(err);
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      last = SysError("connect", err, endpoint.ToString());
      continue;
    }
    SetNoDelay(fd);
    SetLiveness(fd);
    *out = std::move(s);
    return Status::Ok();
  }
  return last;
}

Status Socket::SendAllV(struct iovec* iov, int iovcnt, Deadline deadline) {
  if (!secure_) return SendRawV(iov, iovcnt, deadline);
  size_t total = 0;
  for (int i = 0; i < iovcnt; ++i) total += iov[i].iov_len;
  const size_t size = secure::RecordSealer::SealedSize(total);
  // The buffer only grows (a resize zero-fills what it adds: not on every send).
  if (secure_->sealed.size() < size) secure_->sealed.resize(size);
  auto* out = reinterpret_cast<uint8_t*>(secure_->sealed.data());
  PCCL_RETURN_IF_ERROR(secure_->sealer->SealTo(iov, iovcnt, out));
  struct iovec sealed = {out, size};
  return SendRawV(&sealed, 1, deadline);
}

Status Socket::SendRawV(struct iovec* iov, int iovcnt, Deadline deadline) {
  while (iovcnt > 0) {
    if (iov->iov_len == 0) {
      ++iov;
      --iovcnt;
      continue;
    }
    struct msghdr msg;
    std::memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(iovcnt);
    ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        PCCL_RETURN_IF_ERROR(WaitReady(fd_, POLLOUT, deadline, "send", peer_));
        continue;
      }
      if (errno == EINTR) continue;
      return SysError("send", errno, peer_);
    }
    size_t sent = static_cast<size_t>(n);
    while (iovcnt > 0 && sent >= iov->iov_len) {
      sent -= iov->iov_len;
      ++iov;
      --iovcnt;
    }
    if (iovcnt > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + sent;
      iov->iov_len -= sent;
    }
  }
  return Status::Ok();
}

bool Socket::TcpInfo(uint32_t* rtt_us, uint64_t* retransmits) const {
  struct tcp_info info;
  socklen_t length = sizeof(info);
  std::memset(&info, 0, sizeof(info));
  if (fd_ < 0 || getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return false;
  *rtt_us = info.tcpi_rtt;
  *retransmits = info.tcpi_total_retrans;
  return true;
}

Status Socket::SendAll(const void* data, size_t size, Deadline deadline) {
  struct iovec iov = {const_cast<void*>(data), size};
  return SendAllV(&iov, 1, deadline);
}

Status Socket::RecvAll(void* data, size_t size, Deadline deadline) {
  if (secure_) return RecvRecords(static_cast<char*>(data), size, deadline);
  return RecvRaw(data, size, deadline);
}

Status Socket::RecvRecords(char* data, size_t size, Deadline deadline) {
  Records& r = *secure_;
  if (!r.broken.ok()) return r.broken;
  while (size > 0) {
    if (r.opened_pos < r.opened.size()) {  // what is left of the last record first
      const size_t n = std::min(size, r.opened.size() - r.opened_pos);
      std::memcpy(data, r.opened.data() + r.opened_pos, n);
      r.opened_pos += n;
      data += n;
      size -= n;
      continue;
    }
    uint8_t header[secure::kRecordHeaderBytes];
    PCCL_RETURN_IF_ERROR(RecvRaw(header, sizeof(header), deadline));
    size_t length = 0;
    if (Status st = secure::RecordOpener::PayloadLength(header, &length); !st.ok()) {
      return r.broken = Status(st.code(), st.message() + " from " + peer_);
    }
    uint8_t tag[secure::kTagBytes];
    if (length <= size) {  // the whole record fits: open it where the caller wants it
      auto* p = reinterpret_cast<uint8_t*>(data);
      PCCL_RETURN_IF_ERROR(RecvRaw(p, length, deadline));
      PCCL_RETURN_IF_ERROR(RecvRaw(tag, sizeof(tag), deadline));
      Status opened = r.opener->Open(header, p, length, tag);
      if (!opened.ok()) return r.broken = Status(opened.code(), opened.message() + " from " + peer_);
      data += length;
      size -= length;
      continue;
    }
    r.opened.resize(length + secure::kTagBytes);
    auto* p = reinterpret_cast<uint8_t*>(r.opened.data());
    PCCL_RETURN_IF_ERROR(RecvRaw(p, length + secure::kTagBytes, deadline));
    Status opened = r.opener->Open(header, p, length, p + length);
    if (!opened.ok()) return r.broken = Status(opened.code(), opened.message() + " from " + peer_);
    r.opened.resize(length);
    r.opened_pos = 0;
  }
  return Status::Ok();
}

Status Socket::RecvRaw(void* data, size_t size, Deadline deadline) {
  char* p = static_cast<char*>(data);
  size_t got = 0;
  while (got < size) {
    ssize_t n = ::recv(fd_, p + got, size - got, 0);
    if (n > 0) {
      got += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      return Status(StatusCode::kUnavailable, "connection to " + peer_ + " closed after " +
                                                  std::to_string(got) + " of " +
                                                  std::to_string(size) + " bytes");
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      PCCL_RETURN_IF_ERROR(WaitReady(fd_, POLLIN, deadline, "recv", peer_));
      continue;
    }
    if (errno == EINTR) continue;
    return SysError("recv", errno, peer_);
  }
  return Status::Ok();
}

Status Listener::Listen(const Endpoint& endpoint, Listener* out, bool shared) {
  Resolved resolved;
  PCCL_RETURN_IF_ERROR(resolved.Resolve(
      endpoint, /*passive=*/true,
      Deadline::In(Milliseconds(GetParams().connect_timeout_ms))));
  Status last = InvalidArgument("no address to listen on for " + endpoint.ToString());
  for (struct addrinfo* ai = resolved.begin(); ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                      ai->ai_protocol);
    if (fd < 0) {
      last = SysError("socket", errno, endpoint.ToString());
      continue;
    }
    Socket s(fd, endpoint.ToString());
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (shared) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (ai->ai_family == AF_INET6) {
      int zero = 0;  // "::" also accepts IPv4 (dual stack)
      ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    }
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      last = SysError("bind", errno, endpoint.ToString());
      continue;
    }
    if (::listen(fd, 128) != 0) {
      last = SysError("listen", errno, endpoint.ToString());
      continue;
    }
    struct sockaddr_storage bound;
    socklen_t len = sizeof(bound);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    out->port_ = ntohs(bound.ss_family == AF_INET6
                           ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                           : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    out->socket_ = std::move(s);
    return Status::Ok();
  }
  return last;
}

Status Listener::Accept(Deadline deadline, Socket* out) {
  while (true) {
    PCCL_RETURN_IF_ERROR(WaitReady(socket_.fd(), POLLIN, deadline, "accept", "listener"));
    struct sockaddr_storage addr;
    socklen_t len = sizeof(addr);
    int fd = ::accept4(socket_.fd(), reinterpret_cast<sockaddr*>(&addr), &len,
                       SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      SetNoDelay(fd);
      SetLiveness(fd);
      *out = Socket(fd, AddressText(reinterpret_cast<sockaddr*>(&addr)));
      return Status::Ok();
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) {
      continue;
    }
    if (errno == EINVAL) return Status(StatusCode::kAborted, "listener shut down");
    return SysError("accept", errno, "listener");
  }
}

}  // namespace pccl::net
