#include "pccl/link/incoming_pool.h"

#include <algorithm>
#include <tuple>

#include "pccl/common/logging.h"

namespace pccl::link {

bool IncomingPool::Key::operator<(const Key& o) const {
  return std::tie(epoch, from, slot) < std::tie(o.epoch, o.from, o.slot);
}

void IncomingPool::Deposit(const Hello& hello, net::Socket socket) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return;
  const Key key{hello.epoch, hello.from_peer_id, hello.slot};
  size_t from_peer = 0;
  for (const auto& [k, s] : sockets_) from_peer += k.from == hello.from_peer_id ? 1 : 0;
  if (!sockets_.count(key) && (sockets_.size() >= kMaxWaiting || from_peer >= kMaxWaitingPerPeer)) {
    refusals_.Log("ring connection from peer " + std::to_string(hello.from_peer_id) +
                  " for epoch " + std::to_string(hello.epoch) + " closed: " +
                  std::to_string(sockets_.size()) + " connections already wait here, " +
                  std::to_string(from_peer) + " of them from that peer");
    return;  // `socket` closes here
  }
  sockets_[key] = std::move(socket);
  cv_.notify_all();
}

Status IncomingPool::Take(uint64_t epoch, uint64_t from_peer, uint32_t count, Deadline deadline,
                          const std::function<bool()>& give_up, std::vector<net::Socket>* out) {
  std::unique_lock<std::mutex> lock(mu_);
  for (auto it = sockets_.begin(); it != sockets_.end();) {
    it = it->first.epoch < epoch ? sockets_.erase(it) : std::next(it);
  }
  // A connection whose dialer gave up (its links failed to build, e.g. a pair link whose
  // other end came too late) is closed by now: drop it and wait for the dialer's next.
  auto have = [&] {
    uint32_t n = 0;
    for (uint32_t slot = 0; slot < count; ++slot) {
      auto it = sockets_.find(Key{epoch, from_peer, slot});
      if (it == sockets_.end()) continue;
      if (it->second.PeerClosed()) {
        sockets_.erase(it);
        continue;
      }
      ++n;
    }
    return n;
  };
  while (!closed_ && have() < count) {
    if (deadline.expired()) {
      return Status(StatusCode::kDeadlineExceeded,
                    "previous peer " + std::to_string(from_peer) + " opened " +
                        std::to_string(have()) + " of " + std::to_string(count) +
                        " ring connections for epoch " + std::to_string(epoch) + " in time");
    }
    lock.unlock();
    bool stop = give_up();
    lock.lock();
    if (stop) return Status(StatusCode::kAborted, "topology superseded");
    cv_.wait_until(lock, std::min(deadline.when(), Clock::now() + std::chrono::milliseconds(50)));
  }
  if (closed_) return Status(StatusCode::kAborted, "communicator closed");
  out->clear();
  for (uint32_t slot = 0; slot < count; ++slot) {
    auto it = sockets_.find(Key{epoch, from_peer, slot});
    out->push_back(std::move(it->second));
    sockets_.erase(it);
  }
  return Status::Ok();
}

bool IncomingPool::Has(uint64_t epoch, uint64_t from_peer) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = sockets_.lower_bound(Key{epoch, from_peer, 0});
       it != sockets_.end() && it->first.epoch == epoch && it->first.from == from_peer; ++it) {
    if (!it->second.PeerClosed()) return true;
  }
  return false;
}

void IncomingPool::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  sockets_.clear();
  cv_.notify_all();
}

}  // namespace pccl::link
