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

// The host of a connection's peer as Socket::peer() names it ("1.2.3.4:5" gives
// "1.2.3.4"), for counting connections per address; the text itself if it does not parse.
std::string HostOfPeer(const std::string& peer);

// Whether `host` is this machine's loopback: "localhost", 127.0.0.0/8 or ::1.
bool IsLoopbackHost(const std::string& host);
// Checks a host that one process asks others to dial (a peer's advertised address): an
// IPv4 or IPv6 literal, or a DNS name (letters, digits, '-' and '.', at most 253
// characters); never an unspecified, multicast or broadcast address. InvalidArgument
// saying why otherwise.
Status CheckDialableHost(const std::string& host);

}  // namespace pccl::net
