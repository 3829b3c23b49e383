// RAII TCP sockets with deadlines: the only owner of a file descriptor in pccl.
//
// Blocking I/O with poll()-based deadlines: SendAll/RecvAll return DeadlineExceeded when
// the deadline passes, Unavailable when the peer closed or reset the connection. Another
// thread may call Shutdown() to make a blocked SendAll/RecvAll return at once (abort).
// Errors name the syscall, errno text and the remote endpoint.
//
// An encrypted connection (Secure(), after its handshake) carries everything in sealed
// records (secure/records.h): SendAllV seals the bytes and sends the records, RecvAll opens
// records and hands out their plaintext; callers see the same byte stream either way.
//
// Thread-safety: one thread may send while another receives; Shutdown() from any thread.
// Close/move only when no other thread uses the socket.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "pccl/common/clock.h"
#include "pccl/common/status.h"
#include "pccl/net/address.h"
#include "pccl/secure/records.h"

namespace pccl::net {

class Socket {
 public:
  Socket();
  explicit Socket(int fd, std::string peer = "");
  ~Socket();
  Socket(Socket&& other) noexcept;
  Socket& operator=(Socket&& other) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  // Where a connection's local end is bound. `shared`: with SO_REUSEADDR and SO_REUSEPORT,
  // so that connections to different remotes can share the port (hole punching dials from
  // the address and port whose NAT mapping the relay saw, link/routes.h); `host` empty:
  // any address; `port` 0: any.
  struct LocalEnd {
    std::string host;
    uint16_t port = 0;
    bool shared = false;
  };
  // Resolves `endpoint` (hostname, IPv4 or IPv6) and connects to the first address that
  // answers before `deadline`. Sets TCP_NODELAY.
  static Status Connect(const Endpoint& endpoint, Deadline deadline, Socket* out);
  static Status Connect(const Endpoint& endpoint, Deadline deadline, Socket* out,
                        LocalEnd local);
  // The local end's address and port (empty and 0 if unknown).
  Endpoint local_endpoint() const;

  bool valid() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // The kernel's view of this TCP connection (TCP_INFO): smoothed round-trip time in
  // microseconds, and segments retransmitted over its life. False if it cannot tell.
  bool TcpInfo(uint32_t* rtt_us, uint64_t* retransmits) const;
  // The smallest round-trip time the kernel measured on this connection (TCP_INFO's
  // min_rtt: the path's delay without the queueing that bulk data adds), in microseconds.
  // False if it cannot tell (no sample yet, an old kernel).
  bool MinRtt(uint32_t* rtt_us) const;
  // The remote endpoint as text, for error messages.
  const std::string& peer() const { return peer_; }

  // Sends every byte of the iovecs (modified in place) or fails.
  Status SendAllV(struct iovec* iov, int iovcnt, Deadline deadline);
  Status SendAll(const void* data, size_t size, Deadline deadline);
  // Receives exactly `size` bytes or fails.
  Status RecvAll(void* data, size_t size, Deadline deadline);
  // Whether the kernel's send buffer has room for `bytes` more (sealed, if encrypted) with
  // a wide margin, so that sending them now returns without waiting for the other end to
  // read: bytes waiting unacknowledged (SIOCOUTQ) against SO_SNDBUF. False if unknown.
  bool HasSendRoom(size_t bytes) const;

  // From now on every byte sent is sealed by `sealer` and every byte received must open
  // with `opener` (DataLoss if one does not). Called once, by the handshake, before the
  // socket is shared between threads.
  void Secure(std::unique_ptr<secure::RecordSealer> sealer,
              std::unique_ptr<secure::RecordOpener> opener);
  bool encrypted() const { return secure_ != nullptr; }

  // Applies SO_SNDBUF/SO_RCVBUF when bytes > 0.
  void SetBufferSizes(int64_t bytes);
  // The kernel's retransmission timeout for this connection (TCP_INFO) without the backoff
  // of retransmissions in progress: it grows with the path's round-trip time and jitter,
  // not with an outage. Zero if unknown.
  Duration RetransmitTimeout() const;
  // Wakes any thread blocked on this socket; later I/O fails. Safe from any thread.
  void Shutdown();
  // Wakes a thread blocked receiving, and sends the other end nothing (no FIN): the
  // connection stays open for it until Close(). Safe from any thread.
  void ShutdownRead();
  void Close();
  // Whether the other end already closed (or reset) the connection and sent nothing this
  // end has not read; does not block.
  bool PeerClosed() const;

 private:
  struct Records;  // an encrypted connection's sealer and opener, with their buffers
  Status SendRawV(struct iovec* iov, int iovcnt, Deadline deadline);
  Status RecvRaw(void* data, size_t size, Deadline deadline);
  Status RecvRecords(char* data, size_t size, Deadline deadline);

  int fd_ = -1;
  std::string peer_;
  std::unique_ptr<Records> secure_;
};

// A listening socket on a local address (port 0 picks a free port).
class Listener {
 public:
  Listener() = default;
  ~Listener() = default;
  Listener(Listener&&) noexcept = default;
  Listener& operator=(Listener&&) noexcept = default;

  // Binds `endpoint` ("0.0.0.0", "::", a hostname or literal) and listens. `shared`: with
  // SO_REUSEPORT, beside connections bound to the same port (hole punching).
  static Status Listen(const Endpoint& endpoint, Listener* out, bool shared = false);
  // Waits for a connection until `deadline`; DeadlineExceeded if none came.
  Status Accept(Deadline deadline, Socket* out);
  uint16_t port() const { return port_; }
  int fd() const { return socket_.fd(); }
  void Shutdown() { socket_.Shutdown(); }
  void Close() { socket_.Close(); }

 private:
  Socket socket_;
  uint16_t port_ = 0;
};

}  // namespace pccl::net
