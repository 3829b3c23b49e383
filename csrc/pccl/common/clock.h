// Monotonic time and deadlines. Every blocking call in pccl takes a Deadline.
// Thread-safe: value types.
#pragma once

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

  TimePoint when() const { return when_; }
  bool never() const { return when_ == TimePoint::max(); }
  bool expired() const { return !never() && Clock::now() >= when_; }
  // Milliseconds left for poll(): -1 for never, 0 when expired.
  int PollTimeoutMs() const;
  // The earlier of the two.
  Deadline Min(Deadline other) const { return other.when_ < when_ ? other : *this; }

 private:
  explicit Deadline(TimePoint t) : when_(t) {}
  TimePoint when_;
};

inline int Deadline::PollTimeoutMs() const {
  if (never()) return -1;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(when_ - Clock::now()).count();
  if (left <= 0) return 0;
  return left > 1'000'000'000 ? 1'000'000'000 : static_cast<int>(left) + 1;
}

inline std::chrono::milliseconds Milliseconds(int64_t ms) { return std::chrono::milliseconds(ms); }

// cv.wait(lock, done) bounded by `deadline`; returns done(). (A never-deadline waits
// without a time limit: wait_until(TimePoint::max()) overflows in some standard libraries.)
template <class Lock, class Done>
bool WaitFor(std::condition_variable& cv, Lock& lock, Deadline deadline, Done done) {
  if (deadline.never()) {
    cv.wait(lock, done);
    return true;
  }
  return cv.wait_until(lock, deadline.when(), done);
}

}  // namespace pccl
