#include "pccl/link/serving_threads.h"

#include "pccl/common/logging.h"

namespace pccl::link {

bool ServingThreads::Start(net::Socket socket, Serve serve) {
  std::lock_guard<std::mutex> lock(mu_);
  ReapLocked();
  if (threads_.size() >= limit_) {
    refusals_.Log(what_ + " connection from " + socket.peer() + " closed: " +
                  std::to_string(limit_) + " connections served already");
    return false;  // `socket` closes here
  }
  auto shared = std::make_shared<net::Socket>(std::move(socket));
  auto done = std::make_shared<std::atomic<bool>>(false);
  threads_.push_back(Thread{shared, done, std::thread([shared, done, serve = std::move(serve)] {
                              serve(*shared);
                              done->store(true);
                            })});
  return true;
}

void ServingThreads::CutAll() {
  std::vector<Thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    threads.swap(threads_);
  }
  for (Thread& t : threads) t.socket->Shutdown();
  for (Thread& t : threads) {
    if (t.thread.joinable()) t.thread.join();
  }
}

size_t ServingThreads::serving() {
  std::lock_guard<std::mutex> lock(mu_);
  ReapLocked();
  return threads_.size();
}

void ServingThreads::ReapLocked() {
  for (auto it = threads_.begin(); it != threads_.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = threads_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace pccl::link
