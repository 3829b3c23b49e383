// One connection of the master's server: its non-blocking socket, the bytes in and out,
// the handshake of a run with a secret (auth/handshake.h) and the records of an encrypted
// run (secure/records.h).
//
// Bytes read are opened (encrypted runs) and cut into frames. Each frame header is checked
// the moment its 16 bytes are in, before any payload is buffered: a stranger may send the
// handshake's frames and a Hello of at most net::kMaxHelloPayload bytes; a peer that said
// Hello may send up to net::kMaxPeerMessage. In a run with a secret the first frames must
// be Greeting and Proof, answered here; a refusal is queued as an Error frame. Every other
// frame is handed to the server as it came. Frames queued for sending are sealed in an
// encrypted run and sent as fast as the socket takes them, never blocking.
//
// Thread-safety: none; the server thread owns every Connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pccl/auth/handshake.h"
#include "pccl/common/clock.h"
#include "pccl/common/status.h"
#include "pccl/master/events.h"
#include "pccl/net/socket.h"
#include "pccl/net/wire.h"

namespace pccl::master {

class Connection {
 public:
  struct Frame {
    uint16_t kind = 0;
    std::string payload;
  };
  enum class Outcome {
    kOk,       // frames (maybe none) were read
    kClosed,   // the peer closed or reset the connection (why(): how)
    kRefused,  // a handshake failed; its Error answer is queued (why(): the reason)
    kInvalid,  // a frame broke the protocol (why(): the reason); the server answers it
  };

  Connection(ConnId id, net::Socket socket, const auth::RunAuth& auth, TimePoint now);
  Connection(Connection&&) = default;

  ConnId id() const { return id_; }
  int fd() const { return socket_.fd(); }
  const std::string& peer() const { return socket_.peer(); }
  TimePoint accepted_at() const { return accepted_at_; }
  // The Hello decoded (the server says so): larger frames are allowed from now on.
  void SaidHello() { said_hello_ = true; }
  bool said_hello() const { return said_hello_; }
  Duration RetransmitTimeout() const { return socket_.RetransmitTimeout(); }

  // Reads what the socket has (a few chunks at most, so that one busy peer does not starve
  // the others) and appends the complete frames to *frames.
  Outcome Read(std::vector<Frame>* frames);
  const std::string& why() const { return why_; }
  // Stops reading frames (the connection is closing): later bytes are discarded.
  void StopReading() { in_.clear(); reading_ = false; }

  void Queue(uint16_t kind, const std::string& payload);
  size_t unsent() const { return out_.size() - out_offset_; }
  // Sends what the socket takes now; false once the connection failed (why() says how).
  bool Flush();
  // Half-closes: the FIN follows the last byte queued.
  void ShutWrite();

 private:
  // Cuts complete frames out of in_; handshake frames are handled here.
  Outcome ParseFrames(std::vector<Frame>* frames);
  // A Greeting or Proof (or a frame that should have been one, before authentication).
  Outcome OnHandshakeFrame(uint16_t kind, const std::string& payload);
  Outcome Refuse(const Status& why);

  const ConnId id_;
  net::Socket socket_;
  const auth::RunAuth& auth_;
  const TimePoint accepted_at_;
  std::string raw_;  // encrypted runs: bytes read, not yet opened
  std::string in_;   // plaintext not yet cut into frames
  bool reading_ = true;
  bool have_header_ = false;
  net::FrameHeader header_;
  std::string out_;
  size_t out_offset_ = 0;  // bytes of out_ already sent
  bool said_hello_ = false;
  std::string why_;

  enum class Handshake { kGreeting, kProof, kDone };
  Handshake handshake_;
  auth::Acceptor acceptor_;
  std::unique_ptr<secure::RecordSealer> sealer_;
  std::unique_ptr<secure::RecordOpener> opener_;
};

}  // namespace pccl::master
