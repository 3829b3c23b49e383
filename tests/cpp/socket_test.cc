// Socket::HasSendRoom (net/socket.h): what a receiver thread asks before it writes a frame
// itself (link/ring_links.cc): true while the kernel's send buffer has ample room, false
// once the other end stopped reading and the buffer filled, true again once it read.
// And a deadline's stop flag (common/clock.h): a socket wait ends once another thread sets it.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "pccl/net/socket.h"

namespace pccl::net {
namespace {

// Both ends of a TCP connection over loopback.
struct Connection {
  Socket client;
  Socket server;
};

Connection Connect() {
  Connection c;
  Listener listener;
  EXPECT_TRUE(Listener::Listen(Endpoint{"127.0.0.1", 0}, &listener).ok());
  const Deadline deadline = Deadline::In(std::chrono::seconds(10));
  EXPECT_TRUE(Socket::Connect(Endpoint{"127.0.0.1", listener.port()}, deadline, &c.client).ok());
  EXPECT_TRUE(listener.Accept(deadline, &c.server).ok());
  return c;
}

// Writes without blocking until the kernel takes no more; returns the bytes it took.
size_t FillSendBuffer(Socket& socket) {
  std::vector<char> chunk(64 << 10, 'x');
  size_t total = 0;
  while (true) {
    ssize_t n = ::send(socket.fd(), chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << errno;
      return total;
    }
    total += static_cast<size_t>(n);
  }
}

TEST(SocketSendRoom, AFreshConnectionHasRoomForASmallFrame) {
  Connection c = Connect();
  EXPECT_TRUE(c.client.HasSendRoom(1024));
  EXPECT_FALSE(c.client.HasSendRoom(size_t{1} << 40));  // more than any send buffer
}

TEST(SocketSendRoom, AFullSendBufferHasNoRoomUntilTheOtherEndReads) {
  Connection c = Connect();
  const size_t queued = FillSendBuffer(c.client);
  ASSERT_GT(queued, 0u);
  EXPECT_FALSE(c.client.HasSendRoom(1));
  std::vector<char> sink(queued);  // the other end reads everything: the buffer drains
  ASSERT_TRUE(c.server.RecvAll(sink.data(), sink.size(),
                               Deadline::In(std::chrono::seconds(10))).ok());
  bool room = false;
  for (int i = 0; i < 1000 && !room; ++i) {  // the acknowledgements free it: loopback, soon
    room = c.client.HasSendRoom(1024);
    if (!room) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(room);
}

TEST(SocketSendRoom, AClosedSocketHasNone) {
  Socket closed;
  EXPECT_FALSE(closed.HasSendRoom(1));
}

// Sets `flag` after `after` on a thread of its own (joined on destruction).
struct SetLater {
  SetLater(std::atomic<bool>& flag, std::chrono::milliseconds after)
      : thread([&flag, after] {
          std::this_thread::sleep_for(after);
          flag.store(true);
        }) {}
  ~SetLater() { thread.join(); }
  std::thread thread;
};

TEST(DeadlineStop, ARecvOnAQuietConnectionEndsOnceTheStopFlagIsSet) {
  Connection c = Connect();
  std::atomic<bool> stop{false};
  SetLater set(stop, std::chrono::milliseconds(200));
  const auto start = std::chrono::steady_clock::now();
  char byte;
  Status st = c.client.RecvAll(&byte, 1, Deadline::In(std::chrono::seconds(20)).Or(stop));
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(st.code(), StatusCode::kAborted) << st.ToString();
  EXPECT_NE(st.message().find("called off"), std::string::npos) << st.ToString();
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST(DeadlineStop, WithoutItsFlagSetADeadlineEndsAtItsTime) {
  Connection c = Connect();
  std::atomic<bool> stop{false};
  char byte;
  Status st = c.client.RecvAll(&byte, 1,
                               Deadline::In(std::chrono::milliseconds(120)).Or(stop));
  EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st.ToString();
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_FALSE(WaitFor(cv, lock, Deadline::In(std::chrono::milliseconds(120)).Or(stop),
                       [] { return false; }));
}

TEST(DeadlineStop, WaitForEndsOnceTheStopFlagIsSetEvenWithoutATimeLimit) {
  std::atomic<bool> stop{false};
  SetLater set(stop, std::chrono::milliseconds(200));
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock<std::mutex> lock(mu);
  EXPECT_FALSE(WaitFor(cv, lock, Deadline::Never().Or(stop), [] { return false; }));
  EXPECT_TRUE(stop.load());
}

TEST(DeadlineStop, MinKeepsTheStopFlagOfEither) {
  std::atomic<bool> stop{true};
  const Deadline far = Deadline::In(std::chrono::hours(1));
  const Deadline near = Deadline::In(std::chrono::minutes(1));
  EXPECT_TRUE(far.Or(stop).Min(near).stopped());  // the earlier time, this one's flag
  EXPECT_TRUE(near.Min(far.Or(stop)).stopped());
  EXPECT_EQ(far.Or(stop).Min(near).when(), near.when());
  EXPECT_FALSE(far.Min(near).has_stop());
  EXPECT_TRUE(Deadline::Never().Or(stop).expired());
  EXPECT_TRUE(Deadline::Never().Or(stop).never());  // no time limit, but stopped
  EXPECT_EQ(Deadline::Never().Or(stop).PollTimeoutMs(), 0);
  std::atomic<bool> unset{false};
  EXPECT_EQ(Deadline::Never().Or(unset).PollTimeoutMs(),
            static_cast<int>(Deadline::kStopLook.count()));
  EXPECT_EQ(Deadline::Never().PollTimeoutMs(), -1);
}

}  // namespace
}  // namespace pccl::net
