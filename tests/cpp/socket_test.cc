// Socket::HasSendRoom (net/socket.h): what a receiver thread asks before it writes a frame
// itself (link/ring_links.cc): true while the kernel's send buffer has ample room, false
// once the other end stopped reading and the buffer filled, true again once it read.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
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

}  // namespace
}  // namespace pccl::net
