// IncomingPool (link/incoming_pool.h): one peer that parks connections for epochs far
// ahead fills at most its own share, and the pool still takes the connections of another
// peer, which Take() then hands out.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <vector>

#include "pccl/link/incoming_pool.h"

namespace pccl::link {
namespace {

// One end of a fresh socket pair (the other end is closed: only the descriptor matters).
net::Socket OneEnd() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  net::Socket other(fds[1]);
  return net::Socket(fds[0]);
}

TEST(IncomingPoolTest, OnePeerCannotCrowdTheOthersOut) {
  IncomingPool pool;
  const uint64_t hog = 7;
  const uint64_t honest = 8;
  // The hog tries to park more than the whole pool holds, for epochs nobody has reached.
  for (uint32_t i = 0; i < IncomingPool::kMaxWaiting + 10; ++i) {
    pool.Deposit(Hello{Purpose::kRing, hog, 1, 1000 + i, 0}, OneEnd());
  }
  // The honest neighbour's pool for epoch 5 still finds room.
  for (uint32_t slot = 0; slot < 4; ++slot) {
    pool.Deposit(Hello{Purpose::kRing, honest, 1, 5, slot}, OneEnd());
  }
  std::vector<net::Socket> taken;
  ASSERT_TRUE(pool.Take(5, honest, 4, Deadline::In(std::chrono::seconds(1)),
                        [] { return false; }, &taken)
                  .ok());
  EXPECT_EQ(taken.size(), 4u);
}

}  // namespace
}  // namespace pccl::link
