// The handshake: the first exchange on every peer-to-peer connection.
//
// The dialer sends one hello frame that says what the connection is for and whom it is
// for: a ring link (P2PHello: epoch, from, to, pool slot), a shared-state fetch
// (StateHello: from, to) or a bandwidth probe (ProbeHello, the same fields). The acceptor
// reads it within a short deadline, checks that it is addressed to this peer, and answers
// P2PWelcome (ok, or the reason it refuses); only then does the connection carry data.
// This is the step where the run secret will authenticate both ends.
//
// Thread-safety: plain functions; each runs on the calling thread with the socket it owns.
#pragma once

#include <cstdint>
#include <string>

#include "pccl/common/clock.h"
#include "pccl/common/status.h"
#include "pccl/net/address.h"
#include "pccl/net/socket.h"
#include "pccl/proto/messages.h"

namespace pccl::link {

// What a connection is for. `epoch` and `slot` only mean something for ring links.
enum class Purpose : uint16_t {
  kRing = static_cast<uint16_t>(proto::Kind::kP2PHello),
  kState = static_cast<uint16_t>(proto::Kind::kStateHello),
  kProbe = static_cast<uint16_t>(proto::Kind::kProbeHello),
};
const char* PurposeName(Purpose purpose);

struct Hello {
  Purpose purpose = Purpose::kRing;
  uint64_t from_peer_id = 0;
  uint64_t to_peer_id = 0;
  uint64_t epoch = 0;
  uint32_t slot = 0;
};

// Dialer: connects to `to` (TCP connect bounded by PCCL_CONNECT_TIMEOUT_MS and
// `deadline`), sets the socket buffers, sends `hello` and waits for the P2PWelcome.
// Unavailable if the peer refuses (with its reason); the socket's error otherwise.
Status DialPeer(const net::Endpoint& to, const Hello& hello, Deadline deadline,
                net::Socket* out);
// DialPeer in two halves, for a caller that must publish the socket (so that another
// thread can cut it) before it blocks on the handshake.
Status Connect(const net::Endpoint& to, Deadline deadline, net::Socket* out);
Status SendHello(net::Socket& socket, const Hello& hello, Deadline deadline);

// Acceptor: reads the hello of a freshly accepted connection (InvalidArgument naming what
// arrived if it is not a hello or does not decode).
Status ReadHello(net::Socket& socket, Deadline deadline, Hello* out);
// Acceptor: answers the hello; `verdict` not ok refuses it with its message.
Status AnswerHello(net::Socket& socket, const Status& verdict, Deadline deadline);

}  // namespace pccl::link
