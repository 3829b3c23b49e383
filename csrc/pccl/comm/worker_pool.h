// Threads for the asynchronous collectives (all_reduce_async; the torch backend and DDP
// start one per bucket per step): a task runs on an idle worker if there is one, else on a
// new thread, so a started thread is reused instead of made and joined per operation.
//
// The pool never makes a task wait for another: a collective holds its worker until every
// peer ran it, and peers may start concurrent collectives in different orders, so a pool
// with a fixed number of workers could leave each peer's running collectives waiting for
// ones another peer has queued. Workers idle for `idle_exit` (10 s) beyond the first
// kKeptIdle exit, so a burst of concurrent collectives does not leave its threads behind.
//
// Thread-safety: Submit from any thread; the destructor (after every Submit) runs the
// queued tasks to their end and joins every worker.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <list>
#include <memory_resource>
#include <mutex>
#include <thread>

#include "pccl/common/call_memory.h"
#include "pccl/common/clock.h"
#include "pccl/common/thread_annotations.h"

namespace pccl::comm {

class WorkerPool {
 public:
  static constexpr size_t kKeptIdle = 4;

  explicit WorkerPool(Duration idle_exit = std::chrono::seconds(10)) : idle_exit_(idle_exit) {}
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void Submit(std::function<void()> task);
  // Threads started so far, alive now, and waiting for a task (tests).
  size_t threads_started();
  size_t threads_alive();
  size_t threads_idle();

 private:
  using Worker = std::list<std::thread>::iterator;
  void Run(Worker self);
  void ReapLocked();  // joins the workers that exited

  const Duration idle_exit_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::pmr::deque<std::function<void()>> tasks_ PCCL_GUARDED_BY(mu_){CallMemory()};
  std::list<std::thread> workers_ PCCL_GUARDED_BY(mu_);
  std::list<std::thread> exited_ PCCL_GUARDED_BY(mu_);  // returned or returning: join
  size_t idle_ PCCL_GUARDED_BY(mu_) = 0;
  size_t started_ PCCL_GUARDED_BY(mu_) = 0;
  bool stopping_ PCCL_GUARDED_BY(mu_) = false;
};

}  // namespace pccl::comm
