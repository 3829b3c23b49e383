// The worker pool of asynchronous collectives (comm/worker_pool.h): threads are reused,
// and no task ever waits for another to finish before it starts.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "pccl/comm/worker_pool.h"

namespace pccl::comm {
namespace {

// Waits until `ready()` or 10 s passed; returns ready().
template <typename Pred>
bool WaitUntil(Pred ready) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!ready() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return ready();
}

TEST(WorkerPoolTest, OneTaskAfterAnotherReusesOneThread) {
  WorkerPool pool;
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; ++i) {
    pool.Submit([&] { ran.fetch_add(1); });
    ASSERT_TRUE(WaitUntil([&] { return ran.load() == i + 1 && pool.threads_idle() == 1; }));
  }
  EXPECT_EQ(pool.threads_started(), 1u);
}

TEST(WorkerPoolTest, TasksThatWaitForEachOtherAllRunAtOnce) {
  // As collectives do: each blocks until all of them started. A pool that queued one
  // behind another would leave them all waiting.
  constexpr int kTasks = 16;
  WorkerPool pool;
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  std::atomic<int> met{0};
  for (int i = 0; i < kTasks; ++i) {
    pool.Submit([&] {
      std::unique_lock<std::mutex> lock(mu);
      ++arrived;
      cv.notify_all();
      if (cv.wait_for(lock, std::chrono::seconds(10), [&] { return arrived == kTasks; })) {
        met.fetch_add(1);
      }
    });
  }
  ASSERT_TRUE(WaitUntil([&] { return met.load() == kTasks; }));
  EXPECT_EQ(pool.threads_started(), static_cast<size_t>(kTasks));
  // Then they are idle, and reused: another burst starts no thread.
  ASSERT_TRUE(WaitUntil([&] { return pool.threads_idle() == kTasks; }));
  for (int i = 0; i < kTasks; ++i) pool.Submit([&] { met.fetch_add(1); });
  ASSERT_TRUE(WaitUntil([&] { return met.load() == 2 * kTasks; }));
  EXPECT_EQ(pool.threads_started(), static_cast<size_t>(kTasks));
}

TEST(WorkerPoolTest, IdleWorkersBeyondAFewExit) {
  WorkerPool pool(std::chrono::milliseconds(50));
  std::atomic<int> ran{0};
  std::atomic<bool> go{false};
  for (int i = 0; i < 10; ++i) {
    pool.Submit([&] {
      while (!go.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      ran.fetch_add(1);
    });
  }
  go = true;
  ASSERT_TRUE(WaitUntil([&] { return ran.load() == 10; }));
  EXPECT_TRUE(WaitUntil([&] { return pool.threads_alive() == WorkerPool::kKeptIdle; }));
  pool.Submit([&] { ran.fetch_add(1); });  // joins the exited ones, runs on a kept one
  ASSERT_TRUE(WaitUntil([&] { return ran.load() == 11; }));
  EXPECT_EQ(pool.threads_started(), 10u);
}

TEST(WorkerPoolTest, DestroyingThePoolFinishesWhatWasSubmitted) {
  std::atomic<int> ran{0};
  {
    WorkerPool pool;
    for (int i = 0; i < 8; ++i) {
      pool.Submit([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        ran.fetch_add(1);
      });
    }
  }
  EXPECT_EQ(ran.load(), 8);
}

}  // namespace
}  // namespace pccl::comm
