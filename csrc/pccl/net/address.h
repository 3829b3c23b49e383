// "host:port" endpoints: hostnames, IPv4 and bracketed IPv6 literals ("[::1]:8000").
// Thread-safe: value types and pure functions (name resolution is done by socket.cc).
#pragma once

#include <cstdint>
#include <string>

#include "pccl/common/status.h"

namespace pccl::net {

struct Endpoint {
  std::string host;  // hostname or literal, without brackets
  uint16_t port = 0;

  // "host:port", with brackets around IPv6 literals.
  std::string ToString() const;
};

// Parses "host:port", "[v6]:port" or "v6::literal" is refused (ambiguous: use brackets).
// `allow_port_zero` accepts port 0 (bind to any free port).
Status ParseEndpoint(const std::string& text, bool allow_port_zero, Endpoint* out);

}  // namespace pccl::net
