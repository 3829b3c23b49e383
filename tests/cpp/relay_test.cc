// The relay (master/relay.h) with the peer side of it (link/routes.h: DialThroughRelay,
// Parker, Routes) on loopback: a parked connection and a dialer are paired and carry bytes
// both ways, counted per direction; a dialer for a peer with nothing parked is refused
// after dial_wait; pairs per link are bounded; wrong tickets are refused; Routes falls back
// to the relay when the direct dial is refused and remembers it; Close() cuts open pairs.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pccl/link/routes.h"
#include "pccl/master/relay.h"
#include "pccl/net/socket.h"

namespace pccl::master {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kParkedPeer = 11;
constexpr uint64_t kDialer = 22;

std::unique_ptr<Relay> StartRelay(RelayOptions options = {}) {
  options.listen_address = "127.0.0.1:0";
  std::unique_ptr<Relay> relay;
  EXPECT_TRUE(Relay::Start(options, &relay).ok());
  return relay;
}

link::RelayAccess Access(const Relay& relay, uint64_t self) {
  return {{"127.0.0.1", relay.port()}, self, relay.TicketFor(self)};
}

// Collects the sockets a Parker hands over.
struct Handed {
  std::mutex mu;
  std::vector<net::Socket> sockets;
  std::vector<link::Route> routes;
  link::Parker::Incoming Sink() {
    return [this](net::Socket s, link::Route route) {
      std::lock_guard<std::mutex> lock(mu);
      sockets.push_back(std::move(s));
      routes.push_back(route);
    };
  }
  size_t count() {
    std::lock_guard<std::mutex> lock(mu);
    return sockets.size();
  }
  net::Socket Take() {
    std::lock_guard<std::mutex> lock(mu);
    net::Socket s = std::move(sockets.front());
    sockets.erase(sockets.begin());
    return s;
  }
};

// A relay on loopback with peer kParkedPeer parking at it (unless `park` is false), and
// dials through it.
struct Rig {
  explicit Rig(RelayOptions options = {}, bool park = true) : relay(StartRelay(options)) {
    if (park) parker.Start(Access(*relay, kParkedPeer), handed.Sink());
  }
  ~Rig() { parker.Stop(); }
  Status Dial(uint64_t from, net::Socket* out, bool punch = false,
              link::Route* route = nullptr) {
    return link::DialThroughRelay(Access(*relay, from), kParkedPeer, punch, Deadline::In(10s),
                                  out, route);
  }
  std::unique_ptr<Relay> relay;
  Handed handed;
  link::Parker parker;
};

bool WaitUntil(const std::function<bool()>& done, Duration limit = 10s) {
  const auto give_up = Clock::now() + limit;
  while (!done()) {
    if (Clock::now() > give_up) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

TEST(RelayTest, PairsAParkedConnectionWithADialerAndCountsTheBytes) {
  Rig rig;
  net::Socket dialer;
  ASSERT_TRUE(rig.Dial(kDialer, &dialer).ok());
  ASSERT_TRUE(WaitUntil([&] { return rig.handed.count() == 1; }));
  net::Socket parked = rig.handed.Take();
  const std::string there(300000, 'a');
  const std::string back(1000, 'b');
  std::thread writer([&] {
    ASSERT_TRUE(dialer.SendAll(there.data(), there.size(), Deadline::In(10s)).ok());
  });
  std::string got(there.size(), 0);
  ASSERT_TRUE(parked.RecvAll(got.data(), got.size(), Deadline::In(10s)).ok());
  writer.join();
  EXPECT_EQ(got, there);
  ASSERT_TRUE(parked.SendAll(back.data(), back.size(), Deadline::In(10s)).ok());
  std::string got_back(back.size(), 0);
  ASSERT_TRUE(dialer.RecvAll(got_back.data(), got_back.size(), Deadline::In(10s)).ok());
  EXPECT_EQ(got_back, back);
  uint64_t forward = 0, backward = 0, open = 0;
  for (const auto& l : rig.relay->Links()) {
    if (l.from_peer == kDialer && l.to_peer == kParkedPeer) {
      forward = l.bytes;
      open = l.open;
    }
    if (l.from_peer == kParkedPeer && l.to_peer == kDialer) backward = l.bytes;
  }
  EXPECT_EQ(forward, there.size());
  EXPECT_EQ(backward, back.size());
  EXPECT_EQ(open, 1u);
  // The parker parked a fresh connection in place of the claimed one.
  net::Socket second;
  EXPECT_TRUE(rig.Dial(kDialer, &second).ok());
  // A close passes through: the other end reads EOF.
  dialer.Close();
  char byte;
  EXPECT_FALSE(parked.RecvAll(&byte, 1, Deadline::In(10s)).ok());
}

TEST(RelayTest, ADialerForAPeerWithNothingParkedIsRefusedAfterTheWait) {
  RelayOptions options;
  options.dial_wait = 200ms;
  Rig rig(options, /*park=*/false);
  net::Socket dialer;
  const auto start = Clock::now();
  Status st = rig.Dial(kDialer, &dialer);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_NE(st.message().find("has no connection parked at the relay"), std::string::npos)
      << st.ToString();
  EXPECT_GE(Clock::now() - start, 200ms);
}

TEST(RelayTest, WrongTicketsAreRefused) {
  Rig rig({}, /*park=*/false);
  link::RelayAccess forged = Access(*rig.relay, kDialer);
  forged.ticket = rig.relay->TicketFor(kDialer + 1);  // another peer's ticket
  net::Socket dialer;
  Status st = link::DialThroughRelay(forged, kParkedPeer, false, Deadline::In(10s), &dialer);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_NE(st.message().find("wrong ticket for peer 22"), std::string::npos) << st.ToString();
}

TEST(RelayTest, PairsPerLinkAreBounded) {
  RelayOptions options;
  options.max_pairs_per_link = 2;
  options.dial_wait = 2s;
  Rig rig(options);
  std::vector<net::Socket> open(2);
  for (auto& s : open) {
    ASSERT_TRUE(rig.Dial(kDialer, &s).ok());
  }
  net::Socket third;
  Status st = rig.Dial(kDialer, &third);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_NE(st.message().find("are open already"), std::string::npos) << st.ToString();
  // Another dialer is not held back by this pair's bound.
  net::Socket other;
  EXPECT_TRUE(rig.Dial(kDialer + 1, &other).ok());
}

TEST(RelayTest, RoutesFallBackToTheRelayAndRememberIt) {
  Rig rig;
  // The advertised endpoint refuses: a port nothing listens on any more.
  uint16_t closed_port;
  {
    net::Listener gone;
    ASSERT_TRUE(net::Listener::Listen({"127.0.0.1", 0}, &gone).ok());
    closed_port = gone.port();
  }
  link::Routes routes;
  routes.SetRelay(Access(*rig.relay, kDialer));
  EXPECT_EQ(routes.RouteTo(kParkedPeer), link::Route::kUnknown);
  net::Socket s;
  link::Route route = link::Route::kUnknown;
  ASSERT_TRUE(routes.Connect(kParkedPeer, {"127.0.0.1", closed_port}, Deadline::In(10s), &s,
                             &route).ok());
  // Arranged through the relay either way: relayed, or punched when the two ends'
  // simultaneous connects met (on loopback they usually do; the punch test pins that).
  EXPECT_TRUE(route == link::Route::kRelayed || route == link::Route::kPunched)
      << link::RouteName(route);
  EXPECT_EQ(routes.RouteTo(kParkedPeer), route);
  ASSERT_TRUE(WaitUntil([&] { return rig.handed.count() == 1; }));
  // Without a relay the direct error comes back as it was.
  link::Routes alone;
  Status st = alone.Connect(kParkedPeer, {"127.0.0.1", closed_port}, Deadline::In(10s), &s);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("refused"), std::string::npos) << st.ToString();
}

// On loopback each end's "mapping" is its own port, as behind an endpoint-independent NAT:
// the two ends' dials meet (or one reaches the other's listener), and the relay forwards
// nothing but the two bytes of the agreement.
TEST(RelayTest, HolePunchingReplacesTheRelayedConnectionWhereTheMappingHolds) {
  Rig rig;
  net::Socket dialer;
  link::Route route = link::Route::kUnknown;
  ASSERT_TRUE(rig.Dial(kDialer, &dialer, /*punch=*/true, &route).ok());
  EXPECT_EQ(route, link::Route::kPunched);
  ASSERT_TRUE(WaitUntil([&] { return rig.handed.count() == 1; }));
  EXPECT_EQ(rig.handed.routes.front(), link::Route::kPunched);
  net::Socket parked = rig.handed.Take();
  const std::string hello = "straight through";
  ASSERT_TRUE(dialer.SendAll(hello.data(), hello.size(), Deadline::In(10s)).ok());
  std::string got(hello.size(), 0);
  ASSERT_TRUE(parked.RecvAll(got.data(), got.size(), Deadline::In(10s)).ok());
  EXPECT_EQ(got, hello);
  ASSERT_TRUE(WaitUntil([&] {
    for (const auto& l : rig.relay->Links()) {
      if (l.from_peer == kDialer && l.open == 0) return true;
    }
    return false;
  }));
  // The dialer's report one way, the decision back.
  for (const auto& l : rig.relay->Links()) EXPECT_EQ(l.bytes, 1u);
}

TEST(RelayTest, CloseCutsOpenPairsAndJoins) {
  Rig rig;
  net::Socket dialer;
  ASSERT_TRUE(rig.Dial(kDialer, &dialer).ok());
  rig.parker.Stop();
  rig.relay->Close();  // returns: every thread joined
  char byte;
  EXPECT_FALSE(dialer.RecvAll(&byte, 1, Deadline::In(10s)).ok());
}

}  // namespace
}  // namespace pccl::master
