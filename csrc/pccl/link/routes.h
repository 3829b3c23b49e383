// Routes: how this peer opens a connection to another member, and how it reached each.
//
// Every peer-to-peer connection (ring links, shared-state fetches, bandwidth probes) is
// opened here. The first try goes to the member's advertised endpoint. Where that fails (a
// member behind a NAT or a firewall that takes no inbound connection; its advertised
// address may be a private one) and the run has a relay (master/relay.h), the connection
// goes through the relay instead: RelayDial names the member, the relay pairs it with a
// connection that member parked there, and the two ends then run their usual handshake
// end to end. A member once reached only through the relay is dialled through it at once
// from then on; while a relay could take over, a direct try is cut after kDirectAttempt.
//
// The other half, for a peer that cannot be dialled: Parker keeps kParked connections
// parked at the relay and hands each one a dialer claims to the listener (Adopt), which
// runs the handshake on it as on an accepted connection.
//
// Hole punching. Both ends' connections to the relay come from ports bound shared
// (SO_REUSEPORT), and with `punch` the relay tells each end where it sees the other's
// connection come from: the public mapping of that port on the other's NAT. For up to
// PCCL_PUNCH_MS each end then listens on its own relay connection's address and port and
// dials the other's mapping from there, again and again: each end's outgoing SYN opens its
// own NAT for the other's, so a connection opens when one end's SYN reaches the other's
// listener, or when the two SYNs cross (TCP simultaneous open), with no relay in it. Then,
// over the relayed connection, the dialer reports what it got (its dial connected, its
// listener accepted, both, neither) and the parked end decides for both which connection
// to keep (Decide in the .cc), or to stay relayed. The kept connection carries the
// handshake; the others are closed. This works where the NATed end's mapping does not
// depend on the destination (endpoint-independent mapping), and also from a public peer to
// one behind a NAT that maps each connection anew (symmetric): that end's dial reaches the
// public end's listener. Between two NATs of which one is symmetric the mapping the relay
// saw is not the one the other end meets, the punch fails, and the connection stays
// relayed; the dialer then stops punching towards that peer.
//
// Thread-safety: all of Routes and Parker is thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "pccl/common/clock.h"
#include "pccl/common/status.h"
#include "pccl/common/thread_annotations.h"
#include "pccl/net/address.h"
#include "pccl/net/socket.h"
#include "pccl/proto/messages.h"

namespace pccl::link {

enum class Route : uint8_t { kUnknown = 0, kDirect = 1, kRelayed = 2, kPunched = 3 };
const char* RouteName(Route route);  // "unknown", "direct", "relayed", "punched"

// What this peer needs to use the run's relay (the master's Welcome says it).
struct RelayAccess {
  net::Endpoint relay;
  uint64_t self_id = 0;
  std::string ticket;
};

// Connects to the relay and asks it for a connection to `to_peer` (RelayDial); with
// `punch` (and PCCL_PUNCH_MS > 0) tries hole punching as above. The socket then carries
// bytes to and from that peer; *route (optional) says kRelayed or kPunched. Unavailable
// with the relay's reason if it cannot pair us.
Status DialThroughRelay(const RelayAccess& access, uint64_t to_peer, bool punch,
                        Deadline deadline, net::Socket* out, Route* route = nullptr);

class Routes {
 public:
  static constexpr auto kDirectAttempt = std::chrono::seconds(3);

  void SetRelay(RelayAccess access);
  std::optional<RelayAccess> relay() const;
  // A TCP connection towards member `peer_id` advertised at `to` (buffers set); *route says
  // how (optional). Direct, then through the relay (see above).
  Status Connect(uint64_t peer_id, const net::Endpoint& to, Deadline deadline,
                 net::Socket* out, Route* route = nullptr);
  // How the last connection to / from `peer_id` went (kUnknown: none yet).
  Route RouteTo(uint64_t peer_id) const;
  Route RouteFrom(uint64_t peer_id) const;
  void NoteIncoming(uint64_t peer_id, Route route);
  // What the master's latest topology says of each member's reachability: a member the
  // master dialled back is not tried through the relay (it parks nothing there; a failed
  // direct dial to it is a fault to report at once, not to wait out at the relay).
  void Learn(const std::vector<proto::Member>& members);

 private:
  mutable std::mutex mu_;
  std::optional<RelayAccess> relay_ PCCL_GUARDED_BY(mu_);
  std::map<uint64_t, Route> to_ PCCL_GUARDED_BY(mu_);
  std::map<uint64_t, Route> from_ PCCL_GUARDED_BY(mu_);
  std::map<uint64_t, bool> punch_failed_ PCCL_GUARDED_BY(mu_);
  std::map<uint64_t, uint8_t> reachable_ PCCL_GUARDED_BY(mu_);
};

class Parker {
 public:
  static constexpr size_t kParked = 8;
  using Incoming = std::function<void(net::Socket socket, Route route)>;

  Parker() = default;
  ~Parker() { Stop(); }
  Parker(const Parker&) = delete;
  Parker& operator=(const Parker&) = delete;

  // Keeps kParked connections parked at the relay; `incoming` gets each one a dialer
  // claimed (on this parker's thread; it must return promptly). Once; later calls, and
  // calls after Stop(), are no-ops. Start and Stop may race (from any threads).
  void Start(RelayAccess access, Incoming incoming);
  bool started() const { return started_.load(); }
  // Cuts the parked connections and joins the threads. Idempotent.
  void Stop();

 private:
  void Run();
  // Parks one connection and waits for a dialer; Ok once a claimed one was handed over.
  Status ParkOnce();

  RelayAccess access_;
  Incoming incoming_;
  std::atomic<bool> started_{false};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> parked_fds_ PCCL_GUARDED_BY(mu_);  // for Stop to cut
  std::vector<std::thread> threads_;
};

}  // namespace pccl::link
