#include "pccl/link/handshake.h"

#include "pccl/common/params.h"
#include "pccl/net/wire.h"

namespace pccl::link {

using proto::Kind;

const char* PurposeName(Purpose purpose) {
  return proto::KindName(static_cast<uint16_t>(purpose));
}

// --- credentials ---------------------------------------------------------------------------

Status Credentials::Init(auth::RunAuth run) {
  run_ = std::move(run);
  // Made with or without a secret: the exact all-reduce's pairwise masks need pair
  // secrets in every run (comm/exact_allreduce.cc).
  return secure::GenerateX25519(&identity_);
}

void Credentials::Learn(const std::vector<proto::Member>& members) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const proto::Member& m : members) {
      if (!m.public_key.empty()) public_keys_[m.peer_id] = m.public_key;
    }
  }
  cv_.notify_all();
}

Status Credentials::PairSecret(uint64_t peer_id, Deadline deadline, std::string* out) const {
  std::string key;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!WaitFor(cv_, lock, deadline, [&] { return public_keys_.count(peer_id) > 0; })) {
      return Status(StatusCode::kUnauthenticated,
                    "peer " + std::to_string(peer_id) +
                        " is not a member of this run (the master announced no key for it)");
    }
    key = public_keys_.at(peer_id);
  }
  return secure::X25519(identity_.private_key, key, out);
}

Status Credentials::SharedWith(uint64_t peer_id, Deadline deadline, std::string* out) const {
  std::string pair_secret;
  PCCL_RETURN_IF_ERROR(PairSecret(peer_id, deadline, &pair_secret));
  *out = run_.auth_key + pair_secret;
  return Status::Ok();
}

// --- dialer --------------------------------------------------------------------------------

namespace {

Status SendPlainHello(net::Socket& socket, const Hello& hello, Deadline deadline) {
  std::string payload;
  if (hello.purpose == Purpose::kRing || hello.purpose == Purpose::kPair) {
    payload = proto::Encode(
        proto::P2PHello{hello.epoch, hello.from_peer_id, hello.to_peer_id, hello.slot});
  } else {
    payload = proto::Encode(proto::StateHello{hello.from_peer_id, hello.to_peer_id});
  }
  PCCL_RETURN_IF_ERROR(
      net::SendFrame(socket, static_cast<uint16_t>(hello.purpose), payload, deadline));
  net::FrameHeader header;
  PCCL_RETURN_IF_ERROR(
      net::RecvFrame(socket, net::kMaxControlPayload, deadline, &header, &payload));
  if (header.kind != static_cast<uint16_t>(Kind::kP2PWelcome)) {
    return InvalidArgument("peer " + socket.peer() + " answered " + PurposeName(hello.purpose) +
                           " with " + proto::KindName(header.kind));
  }
  proto::P2PWelcome welcome;
  PCCL_RETURN_IF_ERROR(proto::Decode(payload, &welcome));
  if (!welcome.ok) {
    return Status(StatusCode::kUnavailable, "peer " + socket.peer() + " refused the " +
                                                PurposeName(hello.purpose) + ": " +
                                                welcome.reason);
  }
  return Status::Ok();
}

proto::Greeting GreetingOf(const Hello& hello) {
  proto::Greeting g;
  g.purpose = static_cast<uint16_t>(hello.purpose);
  g.from_peer_id = hello.from_peer_id;
  g.to_peer_id = hello.to_peer_id;
  g.epoch = hello.epoch;
  g.slot = hello.slot;
  return g;
}

Hello HelloOf(const proto::Greeting& g) {
  return Hello{static_cast<Purpose>(g.purpose), g.from_peer_id, g.to_peer_id, g.epoch, g.slot};
}

}  // namespace

Status SendHello(net::Socket& socket, const Hello& hello, const Credentials& credentials,
                 Deadline deadline) {
  if (!credentials.enabled()) return SendPlainHello(socket, hello, deadline);
  std::string pair_secret;
  PCCL_RETURN_IF_ERROR(credentials.PairSecret(hello.to_peer_id, deadline, &pair_secret));
  Status st = auth::DialHandshake(socket, credentials.run(), GreetingOf(hello), pair_secret,
                                  deadline);
  if (!st.ok()) {
    return Status(st.code(), std::string(PurposeName(hello.purpose)) + " to peer " +
                                 std::to_string(hello.to_peer_id) + ": " + st.message());
  }
  return Status::Ok();
}

Status DialPeer(Routes& routes, const net::Endpoint& to, const Hello& hello,
                const Credentials& credentials, Deadline deadline, net::Socket* out) {
  net::Socket socket;
  PCCL_RETURN_IF_ERROR(routes.Connect(hello.to_peer_id, to, deadline, &socket));
  PCCL_RETURN_IF_ERROR(SendHello(socket, hello, credentials, deadline));
  *out = std::move(socket);
  return Status::Ok();
}

// --- acceptor ------------------------------------------------------------------------------

namespace {

Status DecodePlainHello(const net::FrameHeader& header, const std::string& payload, Hello* out) {
  switch (static_cast<Kind>(header.kind)) {
    case Kind::kP2PHello:
    case Kind::kPairHello: {  // the same fields
      proto::P2PHello hello;
      PCCL_RETURN_IF_ERROR(proto::Decode(payload, &hello));
      *out = Hello{static_cast<Purpose>(header.kind), hello.from_peer_id, hello.to_peer_id,
                   hello.epoch, hello.slot};
      return Status::Ok();
    }
    case Kind::kStateHello:
    case Kind::kProbeHello: {
      proto::StateHello hello;  // ProbeHello carries the same fields
      PCCL_RETURN_IF_ERROR(proto::Decode(payload, &hello));
      *out = Hello{static_cast<Purpose>(header.kind), hello.from_peer_id, hello.to_peer_id, 0, 0};
      return Status::Ok();
    }
    default:
      return InvalidArgument(std::string("expected a hello or a Greeting, got ") +
                             proto::KindName(header.kind));
  }
}

Status AnswerPlain(net::Socket& socket, const Status& verdict, Deadline deadline) {
  proto::P2PWelcome welcome{static_cast<uint8_t>(verdict.ok() ? 1 : 0),
                            verdict.ok() ? "" : verdict.message()};
  return net::SendFrame(socket, static_cast<uint16_t>(Kind::kP2PWelcome), proto::Encode(welcome),
                        deadline);
}

}  // namespace

Status AcceptHello(net::Socket& socket, const Credentials& credentials, const HelloCheck& check,
                   Deadline deadline, Hello* hello) {
  net::FrameHeader header;
  std::string payload;
  PCCL_RETURN_IF_ERROR(net::RecvFrame(socket, net::kMaxHelloPayload, deadline, &header, &payload));
  if (header.kind == static_cast<uint16_t>(Kind::kDialBack)) {
    *hello = Hello{Purpose::kDialBack, 0, 0, 0, 0};  // answered by closing: it connected
    return Status::Ok();
  }
  if (header.kind == static_cast<uint16_t>(Kind::kGreeting)) {
    // auth::Acceptor refuses a Greeting in a run without a secret.
    proto::Greeting greeting;
    return auth::AcceptHandshake(
        socket, credentials.run(), payload,
        [&](const proto::Greeting& g, std::string* pair_secret) -> Status {
          if (g.purpose == static_cast<uint16_t>(Kind::kHello)) {
            return InvalidArgument("this is a peer; a Hello goes to the master");
          }
          *hello = HelloOf(g);
          PCCL_RETURN_IF_ERROR(check(*hello));
          return credentials.PairSecret(g.from_peer_id, deadline, pair_secret);
        },
        deadline, &greeting);
  }
  Status st = DecodePlainHello(header, payload, hello);
  if (st.ok() && credentials.enabled()) {
    st = Status(StatusCode::kUnauthenticated,
                "this run has a secret: a connection must start with the handshake that "
                "proves it");
  }
  if (st.ok()) st = check(*hello);
  Status answered = AnswerPlain(socket, st, deadline);
  return st.ok() ? answered : st;
}

}  // namespace pccl::link
