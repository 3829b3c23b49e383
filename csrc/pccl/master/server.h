// The master's server: one thread that owns the listening socket, every peer connection
// and the Membership state machine (membership.h).
//
// The thread poll()s the listener, each connection and a wake-up eventfd. Sockets are
// non-blocking; each connection (connection.h) buffers what comes in and what goes out,
// checks every frame header before buffering its payload, answers the handshake of a run
// with a secret, and seals and opens the records of an encrypted run. Decoded messages
// become Membership events; time passing becomes Tick events (poll wakes at least every
// 100 ms while a deadline is pending). A bad frame or an undecodable message is logged with
// the remote address, answered with Error and that connection alone is dropped. A dropped
// connection is closed gracefully: its output is flushed, its write side shut, and it
// lingers (bounded) until the peer closes, so that the final Error is not lost to a reset.
//
// Strangers are bounded: a connection must say Hello (after the handshake, in a run with a
// secret) within hello_timeout; at most max_strangers connections may be waiting to, at
// most max_strangers_per_host from one address, and max_connections in all; the rest are
// closed on arrival. When accept() runs out of file descriptors the listener rests for
// accept_backoff instead of spinning.
//
// A peer's ReachabilityQuery is answered here, not by Membership: the same poll() watches
// the non-blocking dial-backs to peers' advertised endpoints (dial_back.h), and their
// outcome goes back to the peer as Reachability, with the address the server sees it at.
//
// Thread-safety: Start() and the destructor from one thread; port()/address() from any
// thread; Interrupt() from any thread (not from a signal handler); Join() from any thread
// but the server's own.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pccl/auth/handshake.h"
#include "pccl/common/clock.h"
#include "pccl/common/status.h"
#include "pccl/master/membership.h"
#include "pccl/master/relay.h"
#include "pccl/master/run_status.h"

namespace pccl::master {

struct MasterOptions {
  // "host:port", "[v6]:port"; port 0 binds any free port (see MasterServer::port()).
  std::string listen_address = "0.0.0.0:48148";
  // Passed to Membership: members not ready this long after a Topology are dropped.
  Duration link_timeout = std::chrono::seconds(30);
  // Passed to Membership: peers silent this long are kicked (hung or stopped).
  Duration heartbeat_timeout = std::chrono::seconds(3);
  // Passed to Membership: how long a restarted master waits for the peers a resuming
  // peer names before it rebuilds the run from those back (admission.cc, "Resuming").
  Duration resume_window = std::chrono::seconds(5);
  // A file where the master keeps what it knows of the run (members and ring order,
  // epochs, shared-state revisions, measured bandwidths, counters), rewritten after every
  // change (write and rename). A master started with an existing one waits resume_window
  // for those members to resume before it admits anyone else. Empty: none.
  std::string state_file;
  // Who may connect: the run secret's key and the transport (auth/handshake.h); without a
  // secret anyone who reaches the listener may join.
  auth::RunAuth auth;
  // Connections beyond this many are closed on accept.
  size_t max_connections = 4096;
  // A connection that has not said Hello this long after it was accepted is dropped.
  Duration hello_timeout = std::chrono::seconds(10);
  // Connections that have not said Hello yet, in all and from one address.
  size_t max_strangers = 1024;
  size_t max_strangers_per_host = 64;
  // How long the listener rests after accept() failed (out of file descriptors).
  Duration accept_backoff = std::chrono::milliseconds(100);
  // A connection whose unsent output exceeds this (it stopped reading) is dropped.
  size_t max_output_bytes = 64 << 20;
  // How long a dropped connection may take to drain its output and close.
  Duration drop_linger = std::chrono::seconds(1);
  // Peer-id generator for Membership; nullptr: random.
  PeerIdGenerator peer_ids;
  // The run's relay (relay.h), for peers that cannot be dialled: "" runs it on the
  // listen address's host on a port the system picks, "off" runs none, "host:port" binds
  // there. Welcome tells each peer its port and ticket.
  std::string relay_address;
  // A relay in another process (pccl_relay) instead: "host:port" as peers dial it, and the
  // key it was started with (tickets are made with it). relay_address is then ignored.
  std::string external_relay;
  std::string relay_key;
};

class MasterServer {
 public:
  // Binds options.listen_address and starts the server thread. InvalidArgument for a
  // malformed address; Unavailable when it cannot be bound.
  static Status Start(const MasterOptions& options, std::unique_ptr<MasterServer>* out);
  ~MasterServer();  // Interrupt() + Join()
  MasterServer(const MasterServer&) = delete;
  MasterServer& operator=(const MasterServer&) = delete;

  // The bound port (the real one when listen_address asked for port 0).
  uint16_t port() const { return port_; }
  // The bound address as "host:port".
  const std::string& address() const { return address_; }
  // The relay's port (0: none) and what it forwarded.
  uint16_t relay_port() const { return relay_ ? relay_->port() : 0; }
  std::vector<Relay::LinkBytes> relay_links() const {
    return relay_ ? relay_->Links() : std::vector<Relay::LinkBytes>{};
  }

  // Asks the thread to stop: it closes every connection and the listener, then exits.
  void Interrupt();
  // Waits for the thread to exit. Idempotent.
  void Join();
  // False once the thread has exited.
  bool running() const { return running_.load(); }
  // The run as the server thread last published it (master/run_status.h): after changes,
  // at most every 50 ms, and at least every second. Any thread.
  RunStatus run_status() const {
    std::lock_guard<std::mutex> lock(status_mu_);
    return status_;
  }

 private:
  class Loop;
  MasterServer() = default;

  std::unique_ptr<Relay> relay_;  // started before the loop, closed after it
  std::unique_ptr<Loop> loop_;
  int wake_fd_ = -1;
  uint16_t port_ = 0;
  std::string address_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> running_{false};
  mutable std::mutex status_mu_;
  RunStatus status_;  // guarded by status_mu_; written by the server thread
  std::mutex join_mu_;
  std::thread thread_;  // guarded by join_mu_ for joining
};

}  // namespace pccl::master
