#include "pccl/net/address.h"

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

}  // namespace pccl::net
