// DialBacks (master/dial_back.h) on loopback: a listening endpoint is reachable and hears
// DialBack; a closed port is not, and says it was refused; a host name is not dialled; a
// second check of the same peer while one runs is refused; a forgotten check reports
// nothing.
#include <gtest/gtest.h>
#include <poll.h>

#include <optional>
#include <vector>

#include "pccl/master/dial_back.h"
#include "pccl/net/socket.h"
#include "pccl/net/wire.h"
#include "pccl/proto/messages.h"

namespace pccl::master {
namespace {

// Runs the poll loop the server runs until `conn`'s check ended (or 10 s passed).
std::optional<DialBacks::Done> RunUntilDone(DialBacks& checks, ConnId conn) {
  const TimePoint give_up = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < give_up) {
    std::vector<struct pollfd> fds;
    checks.AddPollFds(&fds);
    ::poll(fds.data(), fds.size(), 100);
    for (DialBacks::Done& done : checks.Collect(fds.data(), fds.size(), Clock::now())) {
      if (done.conn == conn) return done;
    }
  }
  return std::nullopt;
}

std::optional<DialBacks::Done> Check(DialBacks& checks, ConnId conn, const net::Endpoint& at) {
  if (auto at_once = checks.Start(conn, at, Clock::now())) return at_once;
  return RunUntilDone(checks, conn);
}

TEST(DialBacksTest, AListeningEndpointIsReachableAndHearsDialBack) {
  net::Listener listener;
  ASSERT_TRUE(net::Listener::Listen({"127.0.0.1", 0}, &listener).ok());
  DialBacks checks;
  auto done = Check(checks, 7, {"127.0.0.1", listener.port()});
  ASSERT_TRUE(done.has_value());
  EXPECT_TRUE(done->reachable) << done->detail;
  EXPECT_EQ(done->detail, "dialled 127.0.0.1:" + std::to_string(listener.port()));
  net::Socket dialled;
  ASSERT_TRUE(listener.Accept(Deadline::In(std::chrono::seconds(5)), &dialled).ok());
  net::FrameHeader header;
  ASSERT_TRUE(net::RecvFrameHeader(dialled, 0, Deadline::In(std::chrono::seconds(5)), &header).ok());
  EXPECT_EQ(header.kind, static_cast<uint16_t>(proto::Kind::kDialBack));
  EXPECT_EQ(checks.in_flight(), 0u);
}

TEST(DialBacksTest, AClosedPortIsNotReachable) {
  uint16_t port;
  {
    net::Listener listener;
    ASSERT_TRUE(net::Listener::Listen({"127.0.0.1", 0}, &listener).ok());
    port = listener.port();
  }  // closed: nothing listens there now
  DialBacks checks;
  auto done = Check(checks, 7, {"127.0.0.1", port});
  ASSERT_TRUE(done.has_value());
  EXPECT_FALSE(done->reachable);
  EXPECT_NE(done->detail.find("refused"), std::string::npos) << done->detail;
}

TEST(DialBacksTest, NamesBusyPeersAndForgottenChecks) {
  DialBacks checks;
  auto name = checks.Start(1, {"peer.example", 4000}, Clock::now());
  ASSERT_TRUE(name.has_value());
  EXPECT_FALSE(name->reachable);
  EXPECT_EQ(name->detail, "not checked: peer.example:4000 is not an IP address");

  net::Listener listener;
  ASSERT_TRUE(net::Listener::Listen({"127.0.0.1", 0}, &listener).ok());
  // A non-blocking connect is in progress until poll() says otherwise, even on loopback.
  ASSERT_FALSE(checks.Start(2, {"127.0.0.1", listener.port()}, Clock::now()).has_value());
  // A second check of the same peer is refused; a forgotten one ends without a report.
  auto again = checks.Start(2, {"127.0.0.1", listener.port()}, Clock::now());
  ASSERT_TRUE(again.has_value());
  EXPECT_NE(again->detail.find("in progress"), std::string::npos);
  checks.Forget(2);
  EXPECT_EQ(checks.in_flight(), 0u);
  EXPECT_EQ(checks.NextDeadline(), TimePoint::max());
}

}  // namespace
}  // namespace pccl::master
