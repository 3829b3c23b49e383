#include "pccl/master/dial_back.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "pccl/net/wire.h"
#include "pccl/proto/messages.h"

namespace pccl::master {
namespace {

// `host`:`port` as a socket address, if `host` is an IPv4 or IPv6 literal.
bool LiteralAddress(const std::string& host, uint16_t port, sockaddr_storage* out,
                    socklen_t* len) {
  std::memset(out, 0, sizeof(*out));
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

// The check connected: say DialBack so that the listener knows what this was, and hang up.
void SayDialBackAndClose(int fd) {
  uint8_t header[net::kFrameHeaderBytes];
  net::EncodeFrameHeader(static_cast<uint16_t>(proto::Kind::kDialBack), 0, header);
  (void)::send(fd, header, sizeof(header), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::close(fd);
}

}  // namespace

DialBacks::~DialBacks() {
  for (const Check& c : checks_) ::close(c.fd);
}

std::optional<DialBacks::Done> DialBacks::Start(ConnId conn, const net::Endpoint& target,
                                                TimePoint now) {
  const std::string text = target.ToString();
  for (const Check& c : checks_) {
    if (c.conn == conn) return Done{conn, false, "a check of " + text + " is in progress"};
  }
  if (checks_.size() >= kMaxInFlight) {
    return Done{conn, false, "not checked: the master is busy with other checks"};
  }
  sockaddr_storage addr;
  socklen_t len = 0;
  if (!LiteralAddress(target.host, target.port, &addr, &len)) {
    return Done{conn, false, "not checked: " + text + " is not an IP address"};
  }
  const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return Done{conn, false, "not checked: socket() failed: " + std::string(std::strerror(errno))};
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0) {
    SayDialBackAndClose(fd);
    return Done{conn, true, "dialled " + text};
  }
  if (errno != EINPROGRESS) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    return Done{conn, false, "dialling " + text + " failed: " + why};
  }
  checks_.push_back(Check{conn, fd, text, now + kTimeout});
  return std::nullopt;
}

void DialBacks::AddPollFds(std::vector<struct pollfd>* fds) const {
  for (const Check& c : checks_) fds->push_back({c.fd, POLLOUT, 0});
}

std::vector<DialBacks::Done> DialBacks::Collect(const struct pollfd* fds, size_t count,
                                                TimePoint now) {
  std::vector<Done> done;
  std::vector<Check> left;
  for (const Check& c : checks_) {
    short revents = 0;
    for (size_t i = 0; i < count; ++i) {
      if (fds[i].fd == c.fd) revents = fds[i].revents;
    }
    int error = 0;
    if (revents != 0) {
      socklen_t len = sizeof(error);
      if (::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
    }
    sockaddr_storage peer;
    socklen_t peer_len = sizeof(peer);
    const bool connected =
        revents != 0 && error == 0 &&
        ::getpeername(c.fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) == 0;
    if (connected) {
      SayDialBackAndClose(c.fd);
      done.push_back(Done{c.conn, true, "dialled " + c.target});
    } else if (error != 0) {
      ::close(c.fd);
      done.push_back(Done{c.conn, false,
                          "dialling " + c.target + " failed: " + std::strerror(error)});
    } else if (now >= c.deadline) {
      ::close(c.fd);
      done.push_back(Done{c.conn, false,
                          "dialling " + c.target + " timed out after " +
                              std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                                 kTimeout).count()) +
                              " s (a NAT or a firewall drops connections to it)"});
    } else {
      left.push_back(c);
    }
  }
  checks_ = std::move(left);
  return done;
}

TimePoint DialBacks::NextDeadline() const {
  TimePoint next = TimePoint::max();
  for (const Check& c : checks_) next = std::min(next, c.deadline);
  return next;
}

void DialBacks::Forget(ConnId conn) {
  for (auto it = checks_.begin(); it != checks_.end();) {
    if (it->conn == conn) {
      ::close(it->fd);
      it = checks_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace pccl::master
