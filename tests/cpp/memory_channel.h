// An in-memory ring for the algorithm tests: MemoryChannel, one peer's RingChannel whose
// Send hands the payload straight to the next peer's channel, and OnEveryRank, which runs
// every peer of a test on its own thread.
#pragma once

#include <gtest/gtest.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "pccl/link/channel.h"

namespace pccl::algo::memory_ring {

using Key = std::pair<uint32_t, uint32_t>;  // (step, segment)

// One peer's channel: Send copies the payload into the next peer's channel at once (so
// WaitSends has nothing to wait for); a payload that arrives before its Expect waits in a
// side buffer. The arrival handler runs on whichever thread completes the arrival. A
// segment expected in a slot is handed to the handler where the delivered copy lies
// (never in the algorithm's memory), and counted.
class MemoryChannel : public link::RingChannel {
 public:
  MemoryChannel* next = nullptr;

  // Segments of this step and later are dropped (a peer that stopped sending).
  uint32_t drop_from_step = UINT32_MAX;

  void Send(uint32_t step, uint32_t segment, const void* data, size_t bytes) override {
    if (step >= drop_from_step) return;
    const auto* p = static_cast<const char*>(data);
    next->Deliver({step, segment}, std::vector<char>(p, p + bytes));
  }

  void Expect(uint32_t step, uint32_t segment, void* data, size_t bytes) override {
    Declare({step, segment}, data, bytes, /*keep=*/false);
  }

  // As the links do: a payload that came early is handed to the handler where it waited.
  void ExpectOrKeepEarly(uint32_t step, uint32_t segment, void* data, size_t bytes) override {
    Declare({step, segment}, data, bytes, /*keep=*/true);
  }

  size_t kept_early() {
    std::lock_guard<std::mutex> lock(mu_);
    return kept_early_;
  }

  // Waits until `count` payloads wait here for their Expect.
  bool AwaitEarly(size_t count, Deadline deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_until(lock, deadline.when(), [&] { return early_.size() >= count; });
  }

  void ExpectInSlot(uint32_t step, uint32_t segment, size_t bytes) override {
    EXPECT_LE(bytes, slot_bytes_) << "segment " << step << "/" << segment;
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_slot_.insert({step, segment});
    }
    Expect(step, segment, nullptr, bytes);
  }

  void SetReceiveSlots(void*, size_t slot_bytes, size_t) override { slot_bytes_ = slot_bytes; }

  size_t in_slot_arrivals() {
    std::lock_guard<std::mutex> lock(mu_);
    return in_slot_arrivals_;
  }

  Status WaitArrivals(size_t count, Deadline deadline) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_until(lock, deadline.when(), [&] { return arrivals_.size() >= count; })) {
      return Status(StatusCode::kDeadlineExceeded, "no arrival");
    }
    arrivals_.erase(arrivals_.begin(), arrivals_.begin() + static_cast<ptrdiff_t>(count));
    return Status::Ok();
  }

  void SetArrivalHandler(ArrivalHandler handler) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (!handler) cv_.wait(lock, [&] { return running_ == 0; });
    handler_ = std::move(handler);
  }

  Status WaitSends(Deadline) override { return Status::Ok(); }

 private:
  void Declare(Key key, void* data, size_t bytes, bool keep) {
    std::vector<char> early;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // As in a RingOp, a (step, segment) names one segment for the whole operation.
      EXPECT_TRUE(declared_.insert(key).second)
          << "segment " << key.first << "/" << key.second << " declared twice";
      auto it = early_.find(key);
      if (it == early_.end()) {
        expected_[key] = {data, bytes};
        return;
      }
      early = std::move(it->second);
      early_.erase(it);
      if (keep) ++kept_early_;
    }
    Land(key, data, bytes, early, keep);
  }

  void Deliver(Key key, std::vector<char> payload) {
    std::pair<void*, size_t> into;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = expected_.find(key);
      if (it == expected_.end()) {
        early_[key] = std::move(payload);
        cv_.notify_all();
        return;
      }
      into = it->second;
      expected_.erase(it);
    }
    Land(key, into.first, into.second, payload);
  }

  void Land(Key key, void* into, size_t bytes, const std::vector<char>& payload,
            bool keep = false) {
    EXPECT_EQ(bytes, payload.size()) << "segment " << key.first << "/" << key.second;
    bool in_slot;
    ArrivalHandler handler;
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_slot = in_slot_.count(key) > 0;
      handler = handler_;
      ++running_;
      if (in_slot) ++in_slot_arrivals_;
    }
    const void* landed = payload.data();  // in a slot or kept: read where it was delivered
    if (!in_slot && !keep) {
      if (bytes > 0) std::memcpy(into, payload.data(), std::min(bytes, payload.size()));
      landed = into;
    }
    EXPECT_TRUE(handler || !in_slot) << "a segment in a slot needs a handler";
    if (handler) {
      EXPECT_TRUE(handler(key.first, key.second, landed).ok());
    }
    std::lock_guard<std::mutex> lock(mu_);
    --running_;
    arrivals_.push_back(key);
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<Key, std::pair<void*, size_t>> expected_;
  std::map<Key, std::vector<char>> early_;
  std::deque<Key> arrivals_;
  ArrivalHandler handler_;
  int running_ = 0;
  size_t slot_bytes_ = 0;
  std::set<Key> in_slot_;
  std::set<Key> declared_;
  size_t in_slot_arrivals_ = 0;
  size_t kept_early_ = 0;
};

// Runs `body(rank)` for ranks 0 .. ranks-1 at once, each on its own thread, and waits for all.
inline void OnEveryRank(int ranks, const std::function<void(int)>& body) {
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) threads.emplace_back(body, r);
  for (auto& t : threads) t.join();
}

}  // namespace pccl::algo::memory_ring
