#include "pccl/link/ring_links.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include "pccl/common/logging.h"
#include "pccl/link/routes.h"
#include "pccl/net/socket.h"

namespace pccl::link {
namespace {

// INFO lines too, before anything reads the parameters (once per process).
const int kLogInfo = setenv("PCCL_LOG_LEVEL", "info", 1);

TEST(RingLinksStripes, ANearLinkStripesOverTwoConnections) {
  EXPECT_EQ(RingLinks::StripesFor(8, true, 5), 2u);  // loopback: a few microseconds
  EXPECT_EQ(RingLinks::StripesFor(8, true, RingLinks::kNearRttUs - 1), 2u);
  EXPECT_EQ(RingLinks::StripesFor(2, true, 5), 2u);
  EXPECT_EQ(RingLinks::StripesFor(1, true, 5), 1u);  // never more than the pool
}

TEST(RingLinksStripes, ALongLinkStripesOverTheWholePool) {
  EXPECT_EQ(RingLinks::StripesFor(8, true, RingLinks::kNearRttUs), 8u);
  EXPECT_EQ(RingLinks::StripesFor(8, true, 40000), 8u);  // the WAN lab's 40 ms
  EXPECT_EQ(RingLinks::StripesFor(16, true, 40000), 16u);
}

TEST(RingLinksStripes, AnUnknownRttKeepsTheWholePool) {
  EXPECT_EQ(RingLinks::StripesFor(8, false, 0), 8u);
  EXPECT_EQ(RingLinks::StripesFor(8, false, 5), 8u);
}

// Links breaking with no operation open (a neighbour that left between calls, at the end
// of a run, say) lose nothing: the master rebuilds the ring, and no call fails. That is
// logged at INFO; with an operation open, whose call then fails, it is a warning.
TEST(RingLinksBreak, IsAWarningOnlyWhileAnOperationIsOpen) {
  ASSERT_EQ(kLogInfo, 0);
  CaptureLogLines(true);
  for (bool open : {false, true}) {
    SCOPED_TRACE(open ? "an operation open" : "none open");
    RingLinks links(1, 7, LinkPeer{8, {}}, LinkPeer{9, {}}, 2);
    std::shared_ptr<RingOp> op;
    proto::OpKey key;
    key.epoch = 1;
    key.tag = 3;
    if (open) {
      ASSERT_TRUE(links.OpenOp(key, 0, Deadline::In(std::chrono::seconds(5)), &op).ok());
    }
    links.Break(Status(StatusCode::kUnavailable, "connect(127.0.0.1:9) failed"));
    std::vector<LogRecord> lines;
    TakeLogLines(Deadline::In(std::chrono::seconds(5)), &lines);
    std::vector<LogRecord> broken;
    for (const LogRecord& line : lines) {
      if (line.message.find("ring links broken") != std::string::npos) broken.push_back(line);
    }
    ASSERT_EQ(broken.size(), 1u);
    EXPECT_EQ(broken[0].level, open ? LogLevel::kWarning : LogLevel::kInfo) << broken[0].message;
    if (open) links.CloseOp(op, std::chrono::milliseconds(100));
  }
  CaptureLogLines(false);
}

// A listening socket on 127.0.0.1 that nobody accepts from: a neighbour whose process is
// stopped (its kernel completes handshakes, nobody answers a hello). With `backlog` 0 and
// one connection queued (`filler`), the kernel drops further SYNs: a neighbour whose
// machine is gone, as a connect sees it.
struct SilentNeighbour {
  explicit SilentNeighbour(int backlog) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(fd, backlog) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "cannot listen on loopback";
    }
    endpoint = {"127.0.0.1", ntohs(a.sin_port)};
  }
  ~SilentNeighbour() { ::close(fd); }
  int fd = -1;
  net::Endpoint endpoint;
  net::Socket filler;
};

// Establish a ring's links to `next`, giving up once `give_up_after` has passed, with a
// deadline far beyond it; returns how it ended and how long it took.
Status EstablishTo(const net::Endpoint& next, std::chrono::milliseconds give_up_after,
                   std::chrono::milliseconds* took, int* faults) {
  std::atomic<int> faulted{0};
  RingLinks links(1, 7, LinkPeer{8, next}, LinkPeer{9, {}}, 2,
                  [&](uint64_t, const Status&) { ++faulted; });
  IncomingPool incoming;
  Credentials credentials;
  Routes routes;
  const auto start = std::chrono::steady_clock::now();
  auto since_start = [&] { return std::chrono::steady_clock::now() - start; };
  Status st = links.Establish(incoming, credentials, routes,
                              Deadline::In(std::chrono::seconds(20)),
                              [&] { return since_start() >= give_up_after; });
  *took = std::chrono::duration_cast<std::chrono::milliseconds>(since_start());
  *faults = faulted.load();
  return st;
}

// A ring the master has replaced (give_up) stops dialling its next peer at once, whatever
// the dial waits for: before, a dial waited for the hello's answer until the deadline
// (20 s here) and for unanswered SYNs until the connect timeout (10 s). Giving up is not
// the neighbour's fault: nothing is reported.
TEST(RingLinksEstablish, StopsDiallingANeighbourThatNeverAnswersItsHelloOnceToldToGiveUp) {
  SilentNeighbour next(8);
  std::chrono::milliseconds took;
  int faults = 0;
  Status st = EstablishTo(next.endpoint, std::chrono::milliseconds(300), &took, &faults);
  EXPECT_EQ(st.code(), StatusCode::kAborted) << st.ToString();
  EXPECT_NE(st.message().find("gave up dialling peer 8"), std::string::npos) << st.ToString();
  EXPECT_GE(took.count(), 300);
  EXPECT_LT(took.count(), 5000);
  EXPECT_EQ(faults, 0);
}

TEST(RingLinksEstablish, StopsDiallingANeighbourWhoseSynsGoUnansweredOnceToldToGiveUp) {
  SilentNeighbour next(0);
  ASSERT_TRUE(net::Socket::Connect(next.endpoint, Deadline::In(std::chrono::seconds(5)),
                                   &next.filler).ok());
  // The precondition: this kernel now drops SYNs to it (a connect waits, unanswered).
  net::Socket probe;
  ASSERT_EQ(net::Socket::Connect(next.endpoint, Deadline::In(std::chrono::milliseconds(300)),
                                 &probe).code(),
            StatusCode::kDeadlineExceeded);
  std::chrono::milliseconds took;
  int faults = 0;
  Status st = EstablishTo(next.endpoint, std::chrono::milliseconds(300), &took, &faults);
  EXPECT_EQ(st.code(), StatusCode::kAborted) << st.ToString();
  EXPECT_GE(took.count(), 300);
  EXPECT_LT(took.count(), 5000);
  EXPECT_EQ(faults, 0);
}

// Without give_up the dial still ends at its deadline, as a fault of the neighbour.
TEST(RingLinksEstablish, ANeighbourThatNeverAnswersFailsTheDialAtItsDeadline) {
  SilentNeighbour next(8);
  std::atomic<int> faulted{0};
  RingLinks links(1, 7, LinkPeer{8, next.endpoint}, LinkPeer{9, {}}, 2,
                  [&](uint64_t, const Status&) { ++faulted; });
  IncomingPool incoming;
  Credentials credentials;
  Routes routes;
  Status st = links.Establish(incoming, credentials, routes,
                              Deadline::In(std::chrono::milliseconds(300)), nullptr);
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st.ToString();
  EXPECT_EQ(faulted.load(), 1);
}

}  // namespace
}  // namespace pccl::link
