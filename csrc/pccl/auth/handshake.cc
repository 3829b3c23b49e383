#include "pccl/auth/handshake.h"

#include "pccl/net/wire.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace pccl::auth {
namespace {

constexpr std::string_view kSecretInfo = "pccl run secret v2";
constexpr std::string_view kHandshakeInfo = "pccl handshake v2";
constexpr uint8_t kPlain = 0;
constexpr uint8_t kEncrypted = 1;

const char* TransportName(uint8_t transport) {
  return transport == kEncrypted ? "encrypted" : "plain";
}

void AppendPrefixed(std::string_view bytes, std::string* out) {
  const auto n = static_cast<uint32_t>(bytes.size());
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(n >> (8 * i)));
  out->append(bytes);
}

// What both ends derive from a handshake (see the story in handshake.h).
struct Derived {
  std::string acceptor_proof, dialer_proof, dialer_key, acceptor_key;
};

Status Derive(const RunAuth& auth, std::string_view pair_secret, std::string_view greeting,
              uint8_t cipher, std::string_view acceptor_nonce, Derived* out) {
  std::string transcript;
  AppendPrefixed(greeting, &transcript);
  std::string challenge_body(1, static_cast<char>(cipher));
  challenge_body.append(acceptor_nonce);
  AppendPrefixed(challenge_body, &transcript);
  std::string ikm = auth.auth_key;
  ikm.append(pair_secret);
  std::string okm;
  PCCL_RETURN_IF_ERROR(
      secure::HkdfSha256(ikm, secure::Sha256(transcript), kHandshakeInfo, 4 * 32, &okm));
  out->acceptor_proof = okm.substr(0, 32);
  out->dialer_proof = okm.substr(32, 32);
  out->dialer_key = okm.substr(64, 32);
  out->acceptor_key = okm.substr(96, 32);
  return Status::Ok();
}

Status MakeRecords(secure::Cipher cipher, std::string_view send_key, std::string_view recv_key,
                   Established* out) {
  out->cipher = cipher;
  if (cipher == secure::Cipher::kNone) return Status::Ok();
  PCCL_RETURN_IF_ERROR(secure::RecordSealer::Create(cipher, send_key, &out->sealer));
  return secure::RecordOpener::Create(cipher, recv_key, &out->opener);
}

}  // namespace

Status ResolveRunSecret(const std::string& secret, std::string* out) {
  *out = secret;
  if (out->empty()) {
    if (const char* env = std::getenv("PCCL_RUN_SECRET"); env != nullptr) *out = env;
  }
  if (out->empty()) {
    const char* path = std::getenv("PCCL_RUN_SECRET_FILE");
    if (path != nullptr && *path != '\0') {
      std::ifstream file(path, std::ios::binary);
      if (!file) {
        return InvalidArgument(std::string("cannot read the run secret file ") + path +
                               " (PCCL_RUN_SECRET_FILE)");
      }
      std::ostringstream contents;
      contents << file.rdbuf();
      *out = contents.str();
      if (!out->empty() && out->back() == '\n') out->pop_back();
      if (!out->empty() && out->back() == '\r') out->pop_back();
    }
  }
  if (!out->empty() && out->size() < kMinSecretBytes) {
    return InvalidArgument("the run secret is " + std::to_string(out->size()) +
                           " bytes; it must be at least " + std::to_string(kMinSecretBytes) +
                           " (e.g. python -c 'import secrets; print(secrets.token_hex(16))')");
  }
  return Status::Ok();
}

Status MakeRunAuth(const std::string& secret, const std::string& transport, RunAuth* out) {
  std::string resolved;
  PCCL_RETURN_IF_ERROR(ResolveRunSecret(secret, &resolved));
  std::string mode = transport;
  if (mode.empty()) {
    const char* env = std::getenv("PCCL_TRANSPORT");
    mode = env != nullptr && *env != '\0' ? env : "plain";
  }
  if (mode != "plain" && mode != "encrypted") {
    return InvalidArgument("transport must be 'plain' or 'encrypted', got '" + mode + "'");
  }
  *out = RunAuth{};
  out->encrypted = mode == "encrypted";
  if (out->encrypted && resolved.empty()) {
    return InvalidArgument(
        "the encrypted transport needs a run secret (secret=..., PCCL_RUN_SECRET or "
        "PCCL_RUN_SECRET_FILE): its keys come from the handshake that proves it");
  }
  if (!resolved.empty()) {
    PCCL_RETURN_IF_ERROR(secure::HkdfSha256(resolved, "", kSecretInfo, 32, &out->auth_key));
  }
  return Status::Ok();
}

// --- acceptor --------------------------------------------------------------------------

Status Acceptor::OnGreeting(const std::string& payload, proto::Greeting* greeting) {
  PCCL_RETURN_IF_ERROR(proto::Decode(payload, greeting));
  if (!auth_.enabled()) {
    return Status(StatusCode::kUnauthenticated,
                  "this run has no secret, the dialer has one: give both the same secret");
  }
  const uint8_t ours = auth_.encrypted ? kEncrypted : kPlain;
  if (greeting->transport != ours) {  // a security setting that differs: refused as such
    return Status(StatusCode::kUnauthenticated,
                  std::string("this run's transport is ") + TransportName(ours) +
                      ", the dialer asked for " + TransportName(greeting->transport));
  }
  greeting_ = payload;
  transport_ = greeting->transport;
  cipher_ = transport_ == kEncrypted
                ? secure::AgreeCipher(static_cast<secure::Cipher>(greeting->cipher),
                                      secure::PreferredCipher())
                : secure::Cipher::kNone;
  return Status::Ok();
}

Status Acceptor::MakeChallenge(std::string_view pair_secret, std::string* payload) {
  proto::Challenge challenge;
  challenge.cipher = static_cast<uint8_t>(cipher_);
  PCCL_RETURN_IF_ERROR(secure::RandomBytes(proto::kNonceLength, &challenge.nonce));
  Derived d;
  PCCL_RETURN_IF_ERROR(Derive(auth_, pair_secret, greeting_, challenge.cipher, challenge.nonce, &d));
  challenge.proof = d.acceptor_proof;
  dialer_proof_ = std::move(d.dialer_proof);
  dialer_key_ = std::move(d.dialer_key);
  acceptor_key_ = std::move(d.acceptor_key);
  *payload = proto::Encode(challenge);
  return Status::Ok();
}

Status Acceptor::OnProof(const std::string& payload, Established* out) {
  proto::Proof proof;
  PCCL_RETURN_IF_ERROR(proto::Decode(payload, &proof));
  if (dialer_proof_.empty() || !secure::ConstantTimeEqual(proof.proof, dialer_proof_)) {
    return Status(StatusCode::kUnauthenticated,
                  "the dialer's proof is wrong: it does not know the run secret (or, peer to "
                  "peer, is not the member it claims to be)");
  }
  return MakeRecords(cipher_, acceptor_key_, dialer_key_, out);
}

// --- dialer ----------------------------------------------------------------------------

Status Dialer::MakeGreeting(std::string* payload) {
  greeting_.transport = auth_.encrypted ? kEncrypted : kPlain;
  greeting_.cipher = static_cast<uint8_t>(auth_.encrypted ? secure::PreferredCipher()
                                                          : secure::Cipher::kNone);
  PCCL_RETURN_IF_ERROR(secure::RandomBytes(proto::kNonceLength, &greeting_.nonce));
  greeting_payload_ = proto::Encode(greeting_);
  *payload = greeting_payload_;
  return Status::Ok();
}

Status Dialer::OnChallenge(const std::string& payload, std::string_view pair_secret,
                           std::string* proof, Established* out) {
  proto::Challenge challenge;
  PCCL_RETURN_IF_ERROR(proto::Decode(payload, &challenge));
  const auto cipher = static_cast<secure::Cipher>(challenge.cipher);
  const bool cipher_fits = auth_.encrypted ? cipher != secure::Cipher::kNone
                                           : cipher == secure::Cipher::kNone;
  Derived d;
  PCCL_RETURN_IF_ERROR(
      Derive(auth_, pair_secret, greeting_payload_, challenge.cipher, challenge.nonce, &d));
  if (!secure::ConstantTimeEqual(challenge.proof, d.acceptor_proof)) {
    return Status(StatusCode::kUnauthenticated,
                  "it could not prove that it knows the run secret (a different secret, or not "
                  "a process of this run)");
  }
  if (!cipher_fits) {
    return InvalidArgument(std::string("it chose cipher ") + secure::CipherName(cipher) +
                           " for a " + TransportName(greeting_.transport) + " connection");
  }
  *proof = proto::Encode(proto::Proof{d.dialer_proof});
  return MakeRecords(cipher, d.dialer_key, d.acceptor_key, out);
}

// --- blocking halves ---------------------------------------------------------------------

namespace {

// The acceptor's Error frame: Unauthenticated stays what it is (the secrets differ);
// any other refusal means this connection cannot be had there (Unavailable).
Status Refusal(const std::string& payload, const std::string& who) {
  proto::ErrorMessage error;
  PCCL_RETURN_IF_ERROR(proto::Decode(payload, &error));
  const bool unauthenticated = error.code == static_cast<uint32_t>(StatusCode::kUnauthenticated);
  return Status(unauthenticated ? StatusCode::kUnauthenticated : StatusCode::kUnavailable,
                who + " refused the connection: " + error.message);
}

void Refuse(net::Socket& socket, const Status& why, Deadline deadline) {
  proto::ErrorMessage error{static_cast<uint32_t>(why.code()), why.message()};
  if (error.message.size() > proto::kMaxReasonLength) error.message.resize(proto::kMaxReasonLength);
  (void)net::SendFrame(socket, static_cast<uint16_t>(proto::Kind::kError), proto::Encode(error),
                       deadline);
}

}  // namespace

Status DialHandshake(net::Socket& socket, const RunAuth& auth, proto::Greeting greeting,
                     std::string_view pair_secret, Deadline deadline) {
  Dialer dialer(auth, std::move(greeting));
  std::string payload;
  PCCL_RETURN_IF_ERROR(dialer.MakeGreeting(&payload));
  PCCL_RETURN_IF_ERROR(
      net::SendFrame(socket, static_cast<uint16_t>(proto::Kind::kGreeting), payload, deadline));
  net::FrameHeader header;
  PCCL_RETURN_IF_ERROR(net::RecvFrame(socket, net::kMaxHelloPayload, deadline, &header, &payload));
  const std::string who = socket.peer();
  if (header.kind == static_cast<uint16_t>(proto::Kind::kError)) return Refusal(payload, who);
  if (header.kind != static_cast<uint16_t>(proto::Kind::kChallenge)) {
    return InvalidArgument(who + " answered the Greeting with " + proto::KindName(header.kind));
  }
  std::string proof;
  Established established;
  Status st = dialer.OnChallenge(payload, pair_secret, &proof, &established);
  if (!st.ok()) return Status(st.code(), who + ": " + st.message());
  PCCL_RETURN_IF_ERROR(
      net::SendFrame(socket, static_cast<uint16_t>(proto::Kind::kProof), proof, deadline));
  // The acceptor's verdict on the proof, in the clear (a refusal could not be sealed).
  PCCL_RETURN_IF_ERROR(net::RecvFrame(socket, net::kMaxHelloPayload, deadline, &header, &payload));
  if (header.kind == static_cast<uint16_t>(proto::Kind::kError)) return Refusal(payload, who);
  proto::P2PWelcome welcome;
  if (header.kind != static_cast<uint16_t>(proto::Kind::kP2PWelcome) ||
      !proto::Decode(payload, &welcome).ok() || !welcome.ok) {
    return InvalidArgument(who + " answered the Proof with " + proto::KindName(header.kind));
  }
  if (established.sealer) {
    socket.Secure(std::move(established.sealer), std::move(established.opener));
  }
  return Status::Ok();
}

Status AcceptHandshake(net::Socket& socket, const RunAuth& auth, const std::string& payload,
                       const PairSecretFn& pair_secret_of, Deadline deadline,
                       proto::Greeting* greeting) {
  Acceptor acceptor(auth);
  std::string pair_secret;
  std::string challenge;
  Status st = acceptor.OnGreeting(payload, greeting);
  if (st.ok() && pair_secret_of) st = pair_secret_of(*greeting, &pair_secret);
  if (st.ok()) st = acceptor.MakeChallenge(pair_secret, &challenge);
  if (!st.ok()) {
    Refuse(socket, st, deadline);
    return st;
  }
  PCCL_RETURN_IF_ERROR(net::SendFrame(socket, static_cast<uint16_t>(proto::Kind::kChallenge),
                                      challenge, deadline));
  net::FrameHeader header;
  std::string proof;
  PCCL_RETURN_IF_ERROR(net::RecvFrame(socket, net::kMaxHelloPayload, deadline, &header, &proof));
  if (header.kind != static_cast<uint16_t>(proto::Kind::kProof)) {
    st = InvalidArgument(std::string("expected Proof, got ") + proto::KindName(header.kind));
  } else {
    Established established;
    st = acceptor.OnProof(proof, &established);
    if (st.ok()) {
      st = net::SendFrame(socket, static_cast<uint16_t>(proto::Kind::kP2PWelcome),
                          proto::Encode(proto::P2PWelcome{1, ""}), deadline);
      if (!st.ok()) return st;
      if (established.sealer) {
        socket.Secure(std::move(established.sealer), std::move(established.opener));
      }
      return Status::Ok();
    }
  }
  Refuse(socket, st, deadline);
  return st;
}

}  // namespace pccl::auth
