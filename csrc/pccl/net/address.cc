#include "pccl/net/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdlib>

namespace pccl::net {

std::string Endpoint::ToString() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Status ParseEndpoint(const std::string& text, bool allow_port_zero, Endpoint* out) {
  std::string host;
  std::string port_text;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return InvalidArgument("address '" + text + "' must look like [ipv6]:port");
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) {
      return InvalidArgument("address '" + text + "' must look like host:port");
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return InvalidArgument("address '" + text + "': put IPv6 literals in brackets, [::1]:port");
    }
  }
  if (host.empty()) return InvalidArgument("address '" + text + "' has an empty host");
  char* end = nullptr;
  long port = port_text.empty() ? -1 : std::strtol(port_text.c_str(), &end, 10);
  if (port_text.empty() || *end != '\0' || port < (allow_port_zero ? 0 : 1) || port > 65535) {
    return InvalidArgument("address '" + text + "' has an invalid port '" + port_text + "'");
  }
  out->host = host;
  out->port = static_cast<uint16_t>(port);
  return Status::Ok();
}

std::string HostOfPeer(const std::string& peer) {
  Endpoint endpoint;
  if (ParseEndpoint(peer, /*allow_port_zero=*/true, &endpoint).ok()) return endpoint.host;
  return peer;
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  struct in_addr v4;
  return ::inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

Status CheckDialableHost(const std::string& host) {
  struct in_addr v4;
  struct in6_addr v6;
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    const uint32_t a = ntohl(v4.s_addr);
    if (a == 0 || a == 0xFFFFFFFFu || (a >> 28) == 0xE) {
      return InvalidArgument("host '" + host + "' is an unspecified, broadcast or multicast address");
    }
    return Status::Ok();
  }
  if (::inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_UNSPECIFIED(&v6) || IN6_IS_ADDR_MULTICAST(&v6)) {
      return InvalidArgument("host '" + host + "' is an unspecified or multicast address");
    }
    return Status::Ok();
  }
  if (host.empty() || host.size() > 253) {
    return InvalidArgument("host name of " + std::to_string(host.size()) +
                           " characters (1 to 253 allowed)");
  }
  for (char ch : host) {
    const bool fits = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '-' || ch == '.';
    if (!fits) return InvalidArgument("host name '" + host + "' has a character DNS names do not");
  }
  return Status::Ok();
}

}  // namespace pccl::net
