// The handshake: the first exchange on every peer-to-peer connection.
//
// The dialer says what the connection is for and whom it is for: a ring link (epoch,
// from, to, pool slot), a shared-state fetch (from, to) or a bandwidth probe (the same).
// The acceptor checks that it is addressed to this peer and answers P2PWelcome (ok, or the
// reason it refuses); only then does the connection carry data.
//
// In a run without a secret that is one frame each way: P2PHello, StateHello or ProbeHello,
// then P2PWelcome. In a run with a secret the dialer sends a Greeting with the same fields
// instead, and both ends prove the run secret and their own identity (auth/handshake.h:
// Greeting, Challenge, Proof, P2PWelcome); the proofs include the X25519 agreement of the two
// peers' keys, which the master announced with the topology (Credentials below), so each
// end knows the other is the member it claims to be. An encrypted run's connection carries
// only sealed records after that. Either end with a secret refuses an end without one.
//
// Thread-safety: plain functions, each on the calling thread with the socket it owns;
// Credentials is thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "pccl/auth/handshake.h"
#include "pccl/common/clock.h"
#include "pccl/common/status.h"
#include "pccl/common/thread_annotations.h"
#include "pccl/link/routes.h"
#include "pccl/net/address.h"
#include "pccl/net/socket.h"
#include "pccl/proto/messages.h"
#include "pccl/secure/crypto.h"

namespace pccl::link {

// What a connection is for. `epoch` and `slot` only mean something for ring and pair links.
enum class Purpose : uint16_t {
  kRing = static_cast<uint16_t>(proto::Kind::kP2PHello),
  kState = static_cast<uint16_t>(proto::Kind::kStateHello),
  kProbe = static_cast<uint16_t>(proto::Kind::kProbeHello),
  // A pair link for send/recv (comm/point_to_point.cc): a ring link of two, with its own
  // pool of incoming connections.
  kPair = static_cast<uint16_t>(proto::Kind::kPairHello),
  // The master checking that this peer accepts connections (master/dial_back.h): nothing
  // follows, and the listener closes the connection quietly.
  kDialBack = static_cast<uint16_t>(proto::Kind::kDialBack),
};
const char* PurposeName(Purpose purpose);

// Connections per ring link at most (Communicator's p2p_connection_pool_size); a ring
// hello for a slot beyond it is refused.
inline constexpr uint32_t kMaxPoolSize = 64;

struct Hello {
  Purpose purpose = Purpose::kRing;
  uint64_t from_peer_id = 0;
  uint64_t to_peer_id = 0;
  uint64_t epoch = 0;
  uint32_t slot = 0;
  // Set by the listener, never sent: how the connection came (direct, or by way of the
  // run's relay: relayed or punched).
  Route route = Route::kDirect;
};

// How this peer proves itself on its peer-to-peer connections: the run's secret and
// transport, its own X25519 key pair, and the other members' public keys as the master
// announced them.
class Credentials {
 public:
  Credentials() = default;  // a run without a secret, until Init
  Credentials(const Credentials&) = delete;
  Credentials& operator=(const Credentials&) = delete;
  // Takes the run's secret and transport and makes this peer's key pair (Internal if the
  // system has no randomness). Once, before any connection.
  Status Init(auth::RunAuth run);

  const auth::RunAuth& run() const { return run_; }
  bool enabled() const { return run_.enabled(); }
  // This peer's public key, for its Hello to the master.
  const std::string& public_key() const { return identity_.public_key; }
  // Records the public keys of a topology's members (the Session does, as topologies come).
  void Learn(const std::vector<proto::Member>& members);
  // The pair secret with `peer_id` (X25519 of our private key and its public key). A peer
  // may dial before this one has read the topology that announces it: waits for its key
  // until `deadline`; Unauthenticated if it never comes (not a member of this run).
  Status PairSecret(uint64_t peer_id, Deadline deadline, std::string* out) const;
  // Key material this peer shares with `peer_id` alone: the run's auth key (empty without
  // a secret) followed by the pair secret. With a run secret, the handshake of every link
  // between the two proves that each holds the private key of the public key the master
  // announced; without one, a dishonest master could announce keys of its own. For the
  // exact all-reduce's pairwise masks.
  Status SharedWith(uint64_t peer_id, Deadline deadline, std::string* out) const;

 private:
  auth::RunAuth run_;
  secure::KeyPair identity_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::map<uint64_t, std::string> public_keys_ PCCL_GUARDED_BY(mu_);
};

// Dialer: connects to peer hello.to_peer_id advertised at `to` (routes.h: directly, or
// through the run's relay; TCP connect bounded by PCCL_CONNECT_TIMEOUT_MS and `deadline`),
// sets the socket buffers and runs the handshake. Unavailable if the peer refuses (with
// its reason), Unauthenticated if either end cannot prove itself; the socket's error
// otherwise.
Status DialPeer(Routes& routes, const net::Endpoint& to, const Hello& hello,
                const Credentials& credentials, Deadline deadline, net::Socket* out);
// DialPeer's second half, for a caller that must publish the socket (so that another
// thread can cut it) before it blocks on the handshake; the first is Routes::Connect.
Status SendHello(net::Socket& socket, const Hello& hello, const Credentials& credentials,
                 Deadline deadline);

// Acceptor: reads the first frame of a freshly accepted connection and runs the plain or
// the authenticated handshake; `check` says whether this peer takes the connection (is it
// addressed here, is the purpose served). A refusal is answered before it is returned. On
// success *hello says what the connection is for.
using HelloCheck = std::function<Status(const Hello& hello)>;
Status AcceptHello(net::Socket& socket, const Credentials& credentials, const HelloCheck& check,
                   Deadline deadline, Hello* hello);

}  // namespace pccl::link
