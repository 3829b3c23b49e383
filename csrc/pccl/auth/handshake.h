// The run secret, and the handshake that proves it on every connection of a run.
//
// A run secret is a string every process of a run is given (MasterNode / Communicator
// `secret=`, PCCL_RUN_SECRET, or a file named by PCCL_RUN_SECRET_FILE). It never crosses
// the wire. Each connection starts with three messages (proto/messages.h):
//
//   dialer   -> Greeting  {purpose, from, to, epoch, slot, transport, cipher, nonce_d}
//   acceptor -> Challenge {cipher, nonce_a, proof_a}      (or Error: refused, and why)
//   dialer   -> Proof     {proof_d}
//   acceptor -> P2PWelcome {ok}                           (or Error: refused, and why)
//
// all in the clear; after them an encrypted connection carries only records, and the
// plane's conversation begins (Hello to the master; data on a ring link, ...).
//
// and both ends derive, from what they saw,
//
//   T    = SHA-256(u32 length | Greeting payload | u32 length | Challenge payload sans proof)
//   ikm  = auth_key | pair_secret
//   HKDF-SHA256(ikm, salt = T, info = "pccl handshake v2") = proof_a | proof_d | key_d | key_a
//
// where auth_key = HKDF-SHA256(secret, info = "pccl run secret v2"), and pair_secret is,
// peer to peer, the X25519 agreement of the two peers' static keys (each peer registers its
// public key with the master, which hands the members' keys out with every Topology), empty
// on the master link. An encrypted connection then seals dialer -> acceptor records with
// key_d and the other direction with key_a (secure/records.h).
//
// Why this holds against a stranger, a replay, a reflection, a redirection and a member:
// - without the secret no proof can be computed; the acceptor proves first, but its proof
//   covers the dialer's fresh nonce and is worth nothing for any other connection;
// - a recorded Proof fails against a fresh nonce_a, a recorded Challenge against a fresh
//   nonce_d; the two roles' proofs are different HKDF outputs, so neither reflects;
// - the Greeting names the purpose, both peer ids, the epoch and slot, and the acceptor
//   checks they are addressed to it; any other connection derives other proofs;
// - peer to peer, the proofs also need the named peer's private key: a member cannot pose
//   as another member;
// - transport and cipher are in T: neither can be downgraded on the way.
// Without a secret a process sends no Greeting (the plane's plain first frame instead) and
// accepts none; either end with a secret refuses an end without one (Unauthenticated).
//
// Thread-safety: a handshake object belongs to one connection and one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "pccl/common/clock.h"
#include "pccl/common/status.h"
#include "pccl/net/socket.h"
#include "pccl/proto/messages.h"
#include "pccl/secure/crypto.h"
#include "pccl/secure/records.h"

namespace pccl::auth {

// Secrets shorter than this are refused: the handshake is open to offline guessing by an
// eavesdropper, so the secret must carry real entropy (e.g. secrets.token_hex(16)).
inline constexpr size_t kMinSecretBytes = 16;

// How this process authenticates its connections.
struct RunAuth {
  std::string auth_key;    // HKDF of the run secret; empty: the run has no secret
  bool encrypted = false;  // every connection seals its bytes (needs a secret)
  bool enabled() const { return !auth_key.empty(); }
};

// The run secret: `secret` if not empty, else $PCCL_RUN_SECRET, else the contents of the
// file $PCCL_RUN_SECRET_FILE (one trailing newline removed); empty if none is set.
// InvalidArgument if the file cannot be read or the secret is too short.
Status ResolveRunSecret(const std::string& secret, std::string* out);
// `transport`: "plain" or "encrypted"; empty reads $PCCL_TRANSPORT (default plain).
// InvalidArgument for another word, or "encrypted" without a secret.
Status MakeRunAuth(const std::string& secret, const std::string& transport, RunAuth* out);

// The outcome of a successful handshake: the records of an encrypted connection (both null
// on a plain one).
struct Established {
  secure::Cipher cipher = secure::Cipher::kNone;
  std::unique_ptr<secure::RecordSealer> sealer;
  std::unique_ptr<secure::RecordOpener> opener;
};

class Acceptor {
 public:
  explicit Acceptor(const RunAuth& auth) : auth_(auth) {}
  // Decodes and checks the dialer's Greeting (its transport must be this end's).
  Status OnGreeting(const std::string& payload, proto::Greeting* greeting);
  // The Challenge to send; `pair_secret` as in the story above (empty on the master link).
  Status MakeChallenge(std::string_view pair_secret, std::string* payload);
  // Checks the dialer's Proof (Unauthenticated if it does not prove the secret).
  Status OnProof(const std::string& payload, Established* out);

 private:
  const RunAuth& auth_;
  std::string greeting_;  // the payload as received
  uint8_t transport_ = 0;
  secure::Cipher cipher_ = secure::Cipher::kNone;
  std::string dialer_proof_, dialer_key_, acceptor_key_;
};

class Dialer {
 public:
  // `greeting`: purpose, ids, epoch and slot; the rest is filled in here.
  Dialer(const RunAuth& auth, proto::Greeting greeting) : auth_(auth), greeting_(std::move(greeting)) {}
  Status MakeGreeting(std::string* payload);
  // Checks the acceptor's Challenge (Unauthenticated if it does not prove the secret) and
  // gives the Proof to send.
  Status OnChallenge(const std::string& payload, std::string_view pair_secret,
                     std::string* proof, Established* out);

 private:
  const RunAuth& auth_;
  proto::Greeting greeting_;
  std::string greeting_payload_;
};

// --- both halves on a blocking socket ------------------------------------------------------

// The dialer's half: sends the Greeting, checks the Challenge (an Error frame instead is
// the acceptor's refusal, returned with its code), sends the Proof, waits for the
// acceptor's P2PWelcome, and makes the socket encrypted if the run is.
Status DialHandshake(net::Socket& socket, const RunAuth& auth, proto::Greeting greeting,
                     std::string_view pair_secret, Deadline deadline);

// The acceptor's half, for a socket whose first frame was a Greeting (`payload`):
// `pair_secret_of` gives the pair secret for the decoded greeting (peer to peer; it may
// refuse, e.g. an unknown peer). A refusal is answered with an Error frame before it is
// returned; success with P2PWelcome, after which the socket is encrypted if the run is.
// *greeting says who dialed.
using PairSecretFn = std::function<Status(const proto::Greeting&, std::string*)>;
Status AcceptHandshake(net::Socket& socket, const RunAuth& auth, const std::string& payload,
                       const PairSecretFn& pair_secret_of, Deadline deadline,
                       proto::Greeting* greeting);

}  // namespace pccl::auth
