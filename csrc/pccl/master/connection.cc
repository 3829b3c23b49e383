#include "pccl/master/connection.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "pccl/proto/messages.h"

namespace pccl::master {
namespace {

constexpr size_t kReadChunk = 64 << 10;
constexpr int kReadRounds = 4;

// Kinds a peer may send to the master once it is past the handshake.
bool IsPeerToMasterKind(uint16_t kind) {
  switch (static_cast<proto::Kind>(kind)) {
    case proto::Kind::kHello:
    case proto::Kind::kVoteTopology:
    case proto::Kind::kLinksReady:
    case proto::Kind::kQueryPending:
    case proto::Kind::kOpDone:
    case proto::Kind::kGoodbye:
    case proto::Kind::kHeartbeat:
    case proto::Kind::kSyncState:
    case proto::Kind::kSyncDone:
    case proto::Kind::kOptimizeTopology:
    case proto::Kind::kBandwidthReport:
    case proto::Kind::kLinkBroken:
    case proto::Kind::kReachabilityQuery:
      return true;
    default:
      return false;
  }
}

}  // namespace

Connection::Connection(ConnId id, net::Socket socket, const auth::RunAuth& auth, TimePoint now)
    : id_(id),
      socket_(std::move(socket)),
      auth_(auth),
      accepted_at_(now),
      handshake_(auth.enabled() ? Handshake::kGreeting : Handshake::kDone),
      acceptor_(auth) {}

Connection::Outcome Connection::Read(std::vector<Frame>* frames) {
  char buffer[kReadChunk];
  for (int round = 0; round < kReadRounds; ++round) {
    ssize_t n = ::recv(socket_.fd(), buffer, sizeof(buffer), 0);
    if (n > 0) {
      if (!reading_) continue;  // closing: discard until the peer's FIN
      if (opener_) {
        Status opened = opener_->Feed(std::string_view(buffer, static_cast<size_t>(n)), &in_);
        if (!opened.ok()) {
          why_ = opened.message();
          return Outcome::kInvalid;
        }
      } else {
        in_.append(buffer, static_cast<size_t>(n));
      }
      Outcome outcome = ParseFrames(frames);
      if (outcome != Outcome::kOk) return outcome;
      if (static_cast<size_t>(n) < sizeof(buffer)) return Outcome::kOk;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Outcome::kOk;
    if (n < 0 && errno == EINTR) continue;
    why_ = n == 0 ? "closed the connection" : std::strerror(errno);
    return Outcome::kClosed;
  }
  return Outcome::kOk;
}

Connection::Outcome Connection::ParseFrames(std::vector<Frame>* frames) {
  size_t pos = 0;
  while (reading_) {
    if (!have_header_) {
      if (in_.size() - pos < net::kFrameHeaderBytes) break;
      // A stranger gets room for the handshake and its Hello only; a peer, for its largest
      // honest message.
      const uint64_t cap = said_hello_ ? net::kMaxPeerMessage : net::kMaxHelloPayload;
      Status s = net::DecodeFrameHeader(reinterpret_cast<const uint8_t*>(in_.data() + pos), cap,
                                        socket_.peer(), &header_);
      const bool handshake_kind = header_.kind == static_cast<uint16_t>(proto::Kind::kGreeting) ||
                                  header_.kind == static_cast<uint16_t>(proto::Kind::kProof);
      if (s.ok() && !IsPeerToMasterKind(header_.kind) && !handshake_kind) {
        s = InvalidArgument(std::string("unexpected message kind ") +
                            std::to_string(header_.kind) + " (" +
                            proto::KindName(header_.kind) + ") from " + socket_.peer());
      }
      if (!s.ok()) {
        why_ = s.message();
        return Outcome::kInvalid;
      }
      pos += net::kFrameHeaderBytes;
      have_header_ = true;
    }
    if (in_.size() - pos < header_.length) break;
    Frame frame{header_.kind, in_.substr(pos, header_.length)};
    pos += header_.length;
    have_header_ = false;
    const bool handshake_frame =
        handshake_ != Handshake::kDone ||
        frame.kind == static_cast<uint16_t>(proto::Kind::kGreeting) ||
        frame.kind == static_cast<uint16_t>(proto::Kind::kProof);
    if (!handshake_frame) {
      frames->push_back(std::move(frame));
      continue;
    }
    Outcome outcome = OnHandshakeFrame(frame.kind, frame.payload);
    if (outcome != Outcome::kOk) return outcome;
    if (opener_ && pos < in_.size()) {
      // What followed the Proof is the first records: open them from here on.
      std::string sealed = in_.substr(pos);
      in_.clear();
      pos = 0;
      Status opened = opener_->Feed(sealed, &in_);
      if (!opened.ok()) {
        why_ = opened.message();
        return Outcome::kInvalid;
      }
    }
  }
  if (reading_) in_.erase(0, pos);
  return Outcome::kOk;
}

Connection::Outcome Connection::OnHandshakeFrame(uint16_t kind, const std::string& payload) {
  const auto k = static_cast<proto::Kind>(kind);
  if (handshake_ == Handshake::kGreeting && k == proto::Kind::kGreeting) {
    proto::Greeting greeting;
    Status st = acceptor_.OnGreeting(payload, &greeting);
    if (st.ok() && greeting.purpose != static_cast<uint16_t>(proto::Kind::kHello)) {
      st = InvalidArgument(std::string("this is the master; a ") +
                           proto::KindName(greeting.purpose) + " goes to a peer");
    }
    std::string challenge;
    if (st.ok()) st = acceptor_.MakeChallenge("", &challenge);
    if (!st.ok()) return Refuse(st);
    Queue(static_cast<uint16_t>(proto::Kind::kChallenge), challenge);
    handshake_ = Handshake::kProof;
    return Outcome::kOk;
  }
  if (handshake_ == Handshake::kProof && k == proto::Kind::kProof) {
    auth::Established established;
    Status st = acceptor_.OnProof(payload, &established);
    if (!st.ok()) return Refuse(st);
    Queue(static_cast<uint16_t>(proto::Kind::kP2PWelcome), proto::Encode(proto::P2PWelcome{1, ""}));
    sealer_ = std::move(established.sealer);
    opener_ = std::move(established.opener);
    handshake_ = Handshake::kDone;
    return Outcome::kOk;
  }
  if (handshake_ == Handshake::kDone) {  // a Greeting where none belongs
    return Refuse(auth_.enabled()
                      ? InvalidArgument(std::string("unexpected ") + proto::KindName(kind) +
                                        " after the handshake")
                      : Status(StatusCode::kUnauthenticated,
                               "this run has no secret, the peer has one: give both the "
                               "same secret"));
  }
  return Refuse(Status(StatusCode::kUnauthenticated,
                       std::string("this run has a secret: a connection must start with the "
                                   "handshake that proves it (got ") +
                           proto::KindName(kind) + ")"));
}

Connection::Outcome Connection::Refuse(const Status& why) {
  why_ = why.message();
  proto::ErrorMessage error{static_cast<uint32_t>(why.code()), why.message()};
  if (error.message.size() > proto::kMaxReasonLength) error.message.resize(proto::kMaxReasonLength);
  Queue(static_cast<uint16_t>(proto::Kind::kError), proto::Encode(error));
  StopReading();
  return Outcome::kRefused;
}

void Connection::Queue(uint16_t kind, const std::string& payload) {
  uint8_t header[net::kFrameHeaderBytes];
  net::EncodeFrameHeader(kind, payload.size(), header);
  if (sealer_) {
    struct iovec iov[2] = {{header, sizeof(header)},
                           {const_cast<char*>(payload.data()), payload.size()}};
    // Sealing cannot fail with a working libcrypto; if it did, the peer would see a
    // record that does not open and drop the connection.
    (void)sealer_->Seal(iov, 2, &out_);
    return;
  }
  out_.append(reinterpret_cast<const char*>(header), sizeof(header));
  out_.append(payload);
}

bool Connection::Flush() {
  while (out_offset_ < out_.size()) {
    ssize_t n = ::send(socket_.fd(), out_.data() + out_offset_, out_.size() - out_offset_,
                       MSG_NOSIGNAL);
    if (n > 0) {
      out_offset_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    why_ = std::string("send failed: ") + std::strerror(errno);
    return false;
  }
  if (out_offset_ == out_.size()) {
    out_.clear();
    out_offset_ = 0;
  } else if (out_offset_ > (1 << 20)) {
    out_.erase(0, out_offset_);
    out_offset_ = 0;
  }
  return true;
}

void Connection::ShutWrite() { ::shutdown(socket_.fd(), SHUT_WR); }

}  // namespace pccl::master
