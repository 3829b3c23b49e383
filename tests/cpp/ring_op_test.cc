// RingOp (link/ring_op.h) without sockets: the test plays the links' receiver thread
// (RingOpTestPeer) and looks at whom a finished segment wakes. An algorithm that waits for
// its arrivals sleeps once for all of them, not once per segment, and a failure still
// wakes it at once.
#include "pccl/link/ring_op.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace pccl::link {

constexpr uint64_t kHash = 42;

class RingOpTestPeer {
 public:
  static void Open(RingOp& op) { op.Open(kHash, Deadline::Never()); }

  // What a receiver thread does with one payload of `bytes` bytes of `value`.
  static void Arrive(RingOp& op, uint32_t step, uint32_t segment, size_t bytes, char value) {
    proto::DataHeader header;
    header.tag = op.key().tag;
    header.seq = op.key().seq;
    header.descriptor_hash = kHash;
    header.step = step;
    header.segment = segment;
    header.payload_bytes = bytes;
    void* into = op.ClaimForReceive(header, "the test");
    ASSERT_NE(into, nullptr) << "segment " << segment;
    std::memset(into, value, bytes);
    op.FinishReceive(header, Status::Ok());
  }
};

namespace {

std::shared_ptr<RingOp> OpenOp() {
  auto op = std::make_shared<RingOp>(nullptr, proto::OpKey{1, 0, 7, 1},
                                     std::make_shared<EarlyBudget>(1 << 20));
  RingOpTestPeer::Open(*op);
  return op;
}

// The calling thread's voluntary context switches: each time it went to sleep.
long SleepsOfThisThread() {
  struct rusage usage;
  EXPECT_EQ(getrusage(RUSAGE_THREAD, &usage), 0);
  return usage.ru_nvcsw;
}

// Waits (up to 10 s) until thread `tid` of this process sleeps.
bool AwaitAsleep(pid_t tid) {
  const Deadline deadline = Deadline::In(std::chrono::seconds(10));
  const std::string path = "/proc/self/task/" + std::to_string(tid) + "/stat";
  while (!deadline.expired()) {
    std::ifstream stat(path);
    std::string line;
    std::getline(stat, line);
    // "tid (comm) S ...": the state follows the command's closing parenthesis.
    const size_t paren = line.rfind(')');
    if (paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'S') {
      return true;
    }
    std::this_thread::yield();
  }
  return false;
}

// The algorithm waits for 64 segments. Before each one arrives it is asleep again (the
// test waits for that), so a wake-up per segment would cost it 64 sleeps; woken only when
// all are there, it sleeps once (a second time at most, for the lock).
TEST(RingOpWakeUps, AnAlgorithmWaitingForItsArrivalsSleepsOnceNotPerSegment) {
  constexpr uint32_t kSegments = 64;
  constexpr size_t kBytes = 256;
  auto op = OpenOp();
  std::vector<char> buffer(kSegments * kBytes, 0);
  for (uint32_t s = 0; s < kSegments; ++s) op->Expect(0, s, buffer.data() + s * kBytes, kBytes);

  std::atomic<pid_t> tid{0};
  Status waited;
  long sleeps = -1;
  std::thread algorithm([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    const long before = SleepsOfThisThread();
    waited = op->WaitArrivals(kSegments, Deadline::In(std::chrono::seconds(30)));
    sleeps = SleepsOfThisThread() - before;
  });
  while (tid.load() == 0) std::this_thread::yield();
  for (uint32_t s = 0; s < kSegments; ++s) {
    ASSERT_TRUE(AwaitAsleep(tid.load())) << "before segment " << s;
    RingOpTestPeer::Arrive(*op, 0, s, kBytes, static_cast<char>(s + 1));
  }
  algorithm.join();
  ASSERT_TRUE(waited.ok()) << waited.message();
  EXPECT_LE(sleeps, 3) << "woken per arrival";
  for (uint32_t s = 0; s < kSegments; ++s) {
    ASSERT_EQ(buffer[s * kBytes], static_cast<char>(s + 1)) << "segment " << s;
  }
}

// Only the count wakes it early: a failure does too, with the failure's status (were it
// not woken, it would wait for its deadline and report that instead).
TEST(RingOpWakeUps, AFailureWakesTheWaitingAlgorithmAtOnce) {
  auto op = OpenOp();
  std::vector<char> buffer(64, 0);
  for (uint32_t s = 0; s < 64; ++s) op->Expect(0, s, buffer.data() + s, 1);
  std::atomic<pid_t> tid{0};
  Status waited;
  std::thread algorithm([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    waited = op->WaitArrivals(64, Deadline::In(std::chrono::seconds(60)));
  });
  while (tid.load() == 0) std::this_thread::yield();
  for (uint32_t s = 0; s < 10; ++s) RingOpTestPeer::Arrive(*op, 0, s, 1, 1);
  ASSERT_TRUE(AwaitAsleep(tid.load()));
  op->Fail(Status(StatusCode::kUnavailable, "the previous peer left"));
  algorithm.join();
  EXPECT_EQ(waited.code(), StatusCode::kUnavailable) << waited.message();
  EXPECT_EQ(waited.message(), "the previous peer left");
}

// Arrivals counted by one wait are not counted again by the next.
TEST(RingOpWakeUps, EachWaitCountsItsOwnArrivals) {
  auto op = OpenOp();
  std::vector<char> buffer(8, 0);
  for (uint32_t s = 0; s < 8; ++s) op->Expect(0, s, buffer.data() + s, 1);
  for (uint32_t s = 0; s < 5; ++s) RingOpTestPeer::Arrive(*op, 0, s, 1, 1);
  EXPECT_TRUE(op->WaitArrivals(3, Deadline::In(std::chrono::seconds(5))).ok());
  EXPECT_TRUE(op->WaitArrivals(2, Deadline::In(std::chrono::seconds(5))).ok());
  const Status none = op->WaitArrivals(1, Deadline::In(std::chrono::milliseconds(50)));
  EXPECT_EQ(none.code(), StatusCode::kDeadlineExceeded) << none.message();
}

}  // namespace
}  // namespace pccl::link
