#include "pccl/comm/worker_pool.h"

#include <iterator>
#include <utility>

#include "pccl/common/thread_name.h"

namespace pccl::comm {

WorkerPool::~WorkerPool() {
  std::list<std::thread> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cv_.notify_all();
    all.splice(all.end(), workers_);
    all.splice(all.end(), exited_);
  }
  // No worker moves itself to exited_ once stopping_ is set: each sees it when it wakes.
  for (std::thread& t : all) {
    if (t.joinable()) t.join();
  }
}

void WorkerPool::Submit(std::function<void()> task) {
  std::unique_lock<std::mutex> lock(mu_);
  ReapLocked();
  tasks_.push_back(std::move(task));
  // Every queued task needs a worker of its own: wake an idle one, or start one. The
  // idle one is woken after mu_ is released, so that it does not wake only to wait for
  // mu_ (the pool outlives every Submit: its destructor joins the workers).
  if (idle_ >= tasks_.size()) {
    lock.unlock();
    cv_.notify_one();
    return;
  }
  ++started_;
  workers_.emplace_back();
  Worker self = std::prev(workers_.end());
  *self = std::thread([this, self] { Run(self); });
}

void WorkerPool::Run(Worker self) {
  NameThisThread("pccl-worker");
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (!tasks_.empty()) {
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      task = nullptr;  // what it captured goes before the next wait
      lock.lock();
      continue;
    }
    if (stopping_) return;  // the destructor joins it
    ++idle_;
    const bool woken =
        cv_.wait_for(lock, idle_exit_, [this] { return stopping_ || !tasks_.empty(); });
    --idle_;
    if (!woken && idle_ >= kKeptIdle) {
      // Idle long enough, with enough others idle: leave, and be joined by a later call.
      exited_.splice(exited_.end(), workers_, self);
      return;
    }
  }
}

void WorkerPool::ReapLocked() {
  // Each exited worker released mu_ as its last act, so joining it cannot wait for us.
  for (std::thread& t : exited_) {
    if (t.joinable()) t.join();
  }
  exited_.clear();
}

size_t WorkerPool::threads_started() {
  std::lock_guard<std::mutex> lock(mu_);
  return started_;
}

size_t WorkerPool::threads_idle() {
  std::lock_guard<std::mutex> lock(mu_);
  return idle_;
}

size_t WorkerPool::threads_alive() {
  std::lock_guard<std::mutex> lock(mu_);
  return workers_.size();
}

}  // namespace pccl::comm
