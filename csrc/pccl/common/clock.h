// Monotonic time and deadlines. Every blocking call in pccl takes a Deadline.
// Thread-safe: value types.
//
// A deadline may also end early, when a flag is set (Or): as Go's context joins a
// deadline and a cancellation. The socket waits (net::WaitReady) and WaitFor below look at
// the flag at least every kStopLook and end as at the deadline once it is set; so a dial
// (connect, handshake, through a relay too) can be called off by another thread. Waits
// that use when() alone honour only the time.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>

namespace pccl {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;

class Deadline {
 public:
  Deadline() : when_(TimePoint::max()) {}  // never
  static Deadline Never() { return Deadline(TimePoint::max()); }
  static Deadline In(Duration d) { return Deadline(Clock::now() + d); }
  static Deadline At(TimePoint t) { return Deadline(t); }

  // How often a wait looks at a deadline's stop flag.
  static constexpr auto kStopLook = std::chrono::milliseconds(50);

  // This deadline, ended early once `stop` is set. `stop` must outlive every copy.
  Deadline Or(const std::atomic<bool>& stop) const {
    Deadline d = *this;
    d.stop_ = &stop;
    return d;
  }

  TimePoint when() const { return when_; }
  bool never() const { return when_ == TimePoint::max(); }  // no time limit (a stop flag aside)
  bool has_stop() const { return stop_ != nullptr; }
  bool stopped() const { return stop_ != nullptr && stop_->load(std::memory_order_acquire); }
  bool expired() const {
    return stopped() || (when_ != TimePoint::max() && Clock::now() >= when_);
  }
  // Milliseconds for one poll(): -1 for never, 0 when expired; at most kStopLook with a
  // stop flag, so that the caller polls again (until expired()).
  int PollTimeoutMs() const;
  // The earlier of the two, with the stop flag of either (this one's if both have one).
  Deadline Min(Deadline other) const {
    Deadline d = other.when_ < when_ ? other : *this;
    d.stop_ = stop_ != nullptr ? stop_ : other.stop_;
    return d;
  }

 private:
  explicit Deadline(TimePoint t) : when_(t) {}
  TimePoint when_;
  const std::atomic<bool>* stop_ = nullptr;
};

inline int Deadline::PollTimeoutMs() const {
  if (stopped()) return 0;
  int64_t left = -1;  // never
  if (when_ != TimePoint::max()) {
    left = std::chrono::duration_cast<std::chrono::milliseconds>(when_ - Clock::now()).count();
    if (left <= 0) return 0;
    left = std::min<int64_t>(left + 1, 1'000'000'000);
  }
  if (stop_ != nullptr && (left < 0 || left > kStopLook.count())) left = kStopLook.count();
  return static_cast<int>(left);
}

inline std::chrono::milliseconds Milliseconds(int64_t ms) { return std::chrono::milliseconds(ms); }

// cv.wait(lock, done) bounded by `deadline` (and its stop flag); returns done(). (A
// never-deadline waits without a time limit: wait_until(TimePoint::max()) overflows in
// some standard libraries.)
template <class Lock, class Done>
bool WaitFor(std::condition_variable& cv, Lock& lock, Deadline deadline, Done done) {
  if (deadline.has_stop()) {
    while (!done()) {
      if (deadline.expired()) return false;
      cv.wait_until(lock, std::min(deadline.when(), Clock::now() + Deadline::kStopLook));
    }
    return true;
  }
  if (deadline.never()) {
    cv.wait(lock, done);
    return true;
  }
  return cv.wait_until(lock, deadline.when(), done);
}

}  // namespace pccl
