#include "pccl/link/handshake.h"

#include "pccl/common/params.h"
#include "pccl/net/wire.h"

namespace pccl::link {

using proto::Kind;

const char* PurposeName(Purpose purpose) {
  return proto::KindName(static_cast<uint16_t>(purpose));
}

Status Connect(const net::Endpoint& to, Deadline deadline, net::Socket* out) {
  PCCL_RETURN_IF_ERROR(net::Socket::Connect(
      to, deadline.Min(Deadline::In(Milliseconds(GetParams().connect_timeout_ms))), out));
  out->SetBufferSizes(GetParams().socket_buffer_bytes);
  return Status::Ok();
}

Status SendHello(net::Socket& socket, const Hello& hello, Deadline deadline) {
  std::string payload;
  if (hello.purpose == Purpose::kRing) {
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

Status DialPeer(const net::Endpoint& to, const Hello& hello, Deadline deadline,
                net::Socket* out) {
  net::Socket socket;
  PCCL_RETURN_IF_ERROR(Connect(to, deadline, &socket));
  PCCL_RETURN_IF_ERROR(SendHello(socket, hello, deadline));
  *out = std::move(socket);
  return Status::Ok();
}

Status ReadHello(net::Socket& socket, Deadline deadline, Hello* out) {
  net::FrameHeader header;
  std::string payload;
  PCCL_RETURN_IF_ERROR(net::RecvFrame(socket, net::kMaxHelloPayload, deadline, &header, &payload));
  switch (static_cast<Kind>(header.kind)) {
    case Kind::kP2PHello: {
      proto::P2PHello hello;
      PCCL_RETURN_IF_ERROR(proto::Decode(payload, &hello));
      *out = Hello{Purpose::kRing, hello.from_peer_id, hello.to_peer_id, hello.epoch, hello.slot};
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
      return InvalidArgument(std::string("expected P2PHello, StateHello or ProbeHello, got ") +
                             proto::KindName(header.kind));
  }
}

Status AnswerHello(net::Socket& socket, const Status& verdict, Deadline deadline) {
  proto::P2PWelcome welcome{static_cast<uint8_t>(verdict.ok() ? 1 : 0),
                            verdict.ok() ? "" : verdict.message()};
  return net::SendFrame(socket, static_cast<uint16_t>(Kind::kP2PWelcome), proto::Encode(welcome),
                        deadline);
}

}  // namespace pccl::link
