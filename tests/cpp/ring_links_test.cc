#include "pccl/link/ring_links.h"

#include <gtest/gtest.h>

namespace pccl::link {
namespace {

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

}  // namespace
}  // namespace pccl::link
