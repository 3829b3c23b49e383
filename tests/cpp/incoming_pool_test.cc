// IncomingPool (link/incoming_pool.h): one peer that parks connections for epochs far
// ahead fills at most its own share, and the pool still takes the connections of another
// peer, which Take() then hands out; a connection its dialer closed while it waited is
// not handed out, and Take() waits for the dialer's next one.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <utility>
#include <vector>

#include "pccl/link/incoming_pool.h"

namespace pccl::link {
namespace {

// One end of a fresh socket pair; the other end (the dialer's) stays open in `dialers`,
// or is closed at once without it.
net::Socket OneEnd(std::vector<net::Socket>* dialers = nullptr) {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  net::Socket other(fds[1]);
  if (dialers != nullptr) dialers->push_back(std::move(other));
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
  std::vector<net::Socket> dialers;
  for (uint32_t slot = 0; slot < 4; ++slot) {
    pool.Deposit(Hello{Purpose::kRing, honest, 1, 5, slot}, OneEnd(&dialers));
  }
  std::vector<net::Socket> taken;
  ASSERT_TRUE(pool.Take(5, honest, 4, Deadline::In(std::chrono::seconds(1)),
                        [] { return false; }, &taken)
                  .ok());
  EXPECT_EQ(taken.size(), 4u);
}

TEST(IncomingPoolTest, AConnectionItsDialerClosedIsReplacedByTheNextOne) {
  IncomingPool pool;
  std::vector<net::Socket> dialers;
  pool.Deposit(Hello{Purpose::kPair, 8, 1, 5, 0}, OneEnd(&dialers));
  pool.Deposit(Hello{Purpose::kPair, 8, 1, 5, 1}, OneEnd());  // its dialer gave up
  std::vector<net::Socket> taken;
  Status st = pool.Take(5, 8, 2, Deadline::In(std::chrono::milliseconds(200)),
                        [] { return false; }, &taken);
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st.ToString();
  pool.Deposit(Hello{Purpose::kPair, 8, 1, 5, 1}, OneEnd(&dialers));  // the dialer's retry
  ASSERT_TRUE(pool.Take(5, 8, 2, Deadline::In(std::chrono::seconds(1)), [] { return false; },
                        &taken)
                  .ok());
  ASSERT_EQ(taken.size(), 2u);
  for (const net::Socket& s : taken) EXPECT_FALSE(s.PeerClosed());
}

}  // namespace
}  // namespace pccl::link
