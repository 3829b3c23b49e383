// The peer's listener: accepts peer-to-peer connections and hands each to the handler of
// its purpose (ring link, shared-state fetch, bandwidth probe; later relays).
//
// One accept thread takes connections; each one's handshake (link/handshake.h: read the
// hello or Greeting, check that it is addressed to this peer, prove and check the run
// secret in a run that has one, answer P2PWelcome) runs on a short-lived
// thread of its own, so a slow or silent dialer holds up nobody else. At most
// kMaxHandshakes run at once, and at most kMaxHandshakesPerHost from one address; a
// connection beyond either is closed at once, so a flood of connections that never say
// hello (or say it wrong) can neither keep the peers of other addresses out nor grow
// threads without bound. A handshake that does not finish within kHandshakeTimeout is cut.
// When accept() fails for want of descriptors (EMFILE, ENFILE) the acceptor rests for
// kAcceptBackoff instead of spinning on the connection that stays in the backlog.
// After a successful handshake the connection belongs to the handler, which runs on the
// handshake's thread and must return promptly (hand the socket to a thread of its own).
//
// Thread-safety: Listen, Handle and Start from one thread before any connection arrives;
// SetSelfId, port() and Close() from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "pccl/common/clock.h"
#include "pccl/common/logging.h"
#include "pccl/common/status.h"
#include "pccl/common/thread_annotations.h"
#include "pccl/link/handshake.h"
#include "pccl/net/socket.h"

namespace pccl::link {

class Listener {
 public:
  // Handshakes in progress at once; more connections are closed on arrival.
  // Per host: a neighbour dials its whole pool at once.
  static constexpr size_t kMaxHandshakesPerHost = kMaxPoolSize;
  static constexpr size_t kMaxHandshakes = 4 * kMaxHandshakesPerHost;
  static constexpr auto kHandshakeTimeout = std::chrono::seconds(5);
  static constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);

  using Handler = std::function<void(const Hello& hello, net::Socket socket)>;

  Listener() = default;
  ~Listener() { Close(); }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Binds `host` on a port the system picks; empty `host`: every interface, IPv6 and IPv4
  // ("::"), or IPv4 only where IPv6 is off.
  Status Listen(const std::string& host);
  // Registers the handler of connections for `purpose` (before Start).
  void Handle(Purpose purpose, Handler handler);
  // Starts the accept thread; `credentials` (outliving the listener) authenticate the
  // connections of a run with a secret.
  void Start(const Credentials* credentials);
  // This peer's id, which hellos must name. Ring neighbours may dial as soon as the master
  // announces this peer, a moment before it has read its own id: handshakes wait for it.
  void SetSelfId(uint64_t peer_id);
  uint16_t port() const { return socket_.port(); }
  bool listening() const { return socket_.fd() >= 0; }
  // Runs the handshake on a connection that came by way of the run's relay (a parked
  // connection the relay paired with a dialer, or the punched connection that replaced it;
  // link/routes.h), as if accepted here; its Hello says `route`. The same limits apply (all
  // adopted ones count as one host).
  void Adopt(net::Socket socket, Route route);
  // Stops accepting, cuts the handshakes in progress and joins every thread. Idempotent.
  void Close();

 private:
  struct Handshake {
    std::string host;  // the dialer's address ("relay" for adopted connections)
    Route route = Route::kDirect;
    std::mutex mu;
    net::Socket socket PCCL_GUARDED_BY(mu);  // until handed to a handler
    std::atomic<bool> done{false};
    std::thread thread;
  };
  void AcceptLoop();
  void StartHandshake(net::Socket socket, const std::string& host, Route route);
  void RunHandshake(Handshake* handshake);
  Status CheckAddressee(const Hello& hello, Deadline deadline);
  void ReapLocked();  // joins finished handshakes; needs mu_

  net::Listener socket_;
  // Strangers may cause either without bound. A refusal (a wrong secret, addressee or
  // purpose) is a warning; a dialer that hung up before the handshake ended (a peer that
  // gave up on the ring it dialled for, or that is leaving) is not.
  RateLimitedLog refusals_{LogLevel::kWarning};
  RateLimitedLog hang_ups_{LogLevel::kInfo};
  std::map<Purpose, Handler> handlers_;  // written before Start, read-only after
  const Credentials* credentials_ = nullptr;  // set by Start
  std::thread acceptor_;
  std::atomic<bool> closed_{false};

  std::mutex mu_;
  std::condition_variable id_cv_;
  uint64_t self_id_ PCCL_GUARDED_BY(mu_) = 0;
  std::list<std::unique_ptr<Handshake>> handshakes_ PCCL_GUARDED_BY(mu_);
};

}  // namespace pccl::link
