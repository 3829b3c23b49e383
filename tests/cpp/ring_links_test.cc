#include "pccl/link/ring_links.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <string>
#include <vector>

#include "pccl/common/logging.h"

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

}  // namespace
}  // namespace pccl::link
