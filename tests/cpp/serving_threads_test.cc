// ServingThreads (link/serving_threads.h): at most `limit` connections are served at
// once, a connection beyond that is closed, finished threads free their place, and
// CutAll() ends every serving function by shutting its connection down.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>
#include <vector>

#include "pccl/link/serving_threads.h"

namespace pccl::link {
namespace {

// Both ends of a connected socket pair.
struct Pair {
  net::Socket ours;
  net::Socket theirs;
};

Pair MakePair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  return Pair{net::Socket(fds[0], "ours"), net::Socket(fds[1], "theirs")};
}

// Serves until the other end closes or the connection is shut down.
void WaitForEnd(net::Socket& socket) {
  char byte;
  (void)socket.RecvAll(&byte, 1, Deadline::In(std::chrono::seconds(30)));
}

bool Eventually(const std::function<bool()>& condition) {
  for (int i = 0; i < 2000 && !condition(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return condition();
}

TEST(ServingThreadsTest, ServesAtMostTheLimitAndClosesTheRest) {
  ServingThreads threads("test", 2);
  std::vector<Pair> pairs;
  for (int i = 0; i < 3; ++i) pairs.push_back(MakePair());
  EXPECT_TRUE(threads.Start(std::move(pairs[0].theirs), WaitForEnd));
  EXPECT_TRUE(threads.Start(std::move(pairs[1].theirs), WaitForEnd));
  EXPECT_FALSE(threads.Start(std::move(pairs[2].theirs), WaitForEnd));
  char byte;
  // The refused connection was closed: its dialer reads end of stream at once.
  EXPECT_FALSE(pairs[2].ours.RecvAll(&byte, 1, Deadline::In(std::chrono::seconds(5))).ok());
  EXPECT_EQ(threads.serving(), 2u);

  pairs[0].ours.Close();  // that serving function returns: its place is free again
  EXPECT_TRUE(Eventually([&] { return threads.serving() == 1; }));
  Pair next = MakePair();
  EXPECT_TRUE(threads.Start(std::move(next.theirs), WaitForEnd));
}

TEST(ServingThreadsTest, CutAllEndsEveryServingFunction) {
  ServingThreads threads("test", 8);
  std::atomic<int> ended{0};
  std::vector<Pair> pairs;
  for (int i = 0; i < 4; ++i) {
    pairs.push_back(MakePair());
    threads.Start(std::move(pairs.back().theirs), [&](net::Socket& s) {
      WaitForEnd(s);
      ++ended;
    });
  }
  const auto start = std::chrono::steady_clock::now();
  threads.CutAll();  // the dialers keep their ends open: only the shutdown ends the reads
  EXPECT_EQ(ended.load(), 4);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(threads.serving(), 0u);
}

}  // namespace
}  // namespace pccl::link
