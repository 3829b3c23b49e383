// Logging, levelled by the PCCL_LOG_LEVEL knob (common/params.h): lines go to stderr, or,
// once pccl's Python layer captures them (CaptureLogLines), into a bounded queue that it
// drains into Python's logging (logger "pccl"; pccl/_logging.py).
// Thread-safe: each line is written with one fprintf call, or queued under a lock.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "pccl/common/clock.h"

namespace pccl {

// "0x" and 16 hex digits: how messages show hashes (content and descriptor hashes).
inline std::string HashText(uint64_t h) {
  static const char* kDigits = "0123456789abcdef";
  std::string s = "0x";
  for (int shift = 60; shift >= 0; shift -= 4) s.push_back(kDigits[(h >> shift) & 0xF]);
  return s;
}

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kOff = 4 };

bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, const std::string& message);

// A captured line: its level, when it was logged (seconds since the Unix epoch) and text.
struct LogRecord {
  LogLevel level = LogLevel::kInfo;
  double unix_time = 0;
  std::string message;
};
// Lines queued at most; beyond, lines are dropped and the next one taken says how many.
inline constexpr size_t kMaxQueuedLogLines = 10000;
// From now on, queue lines for TakeLogLines (on) or write them to stderr (off: the default;
// switching off writes what is still queued to stderr first).
void CaptureLogLines(bool on);
// Waits until lines are queued, capture is off or `deadline` passes, then moves every
// queued line into `out` (empty if none came). Any thread; meant for one drainer.
void TakeLogLines(Deadline deadline, std::vector<LogRecord>* out);

#define PCCL_LOG(level, message)                                              \
  do {                                                                        \
    if (::pccl::LogEnabled(::pccl::LogLevel::level)) {                        \
      ::pccl::LogLine(::pccl::LogLevel::level, (message));                    \
    }                                                                         \
  } while (0)

// A log line that strangers can make repeat without bound (a refused connection: one per
// connection of a flood). The first `burst` lines of each `interval` go out as they come;
// the rest are counted, and the next line written says how many were held back. So a flood
// costs a few lines every interval, not a line per connection. Thread-safe.
class RateLimitedLog {
 public:
  explicit RateLimitedLog(LogLevel level, Duration interval = std::chrono::seconds(10),
                          int burst = 5)
      : level_(level), interval_(interval), burst_(burst) {}
  void Log(const std::string& message);

 private:
  const LogLevel level_;
  const Duration interval_;
  const int burst_;
  std::mutex mu_;
  TimePoint window_start_{};
  int written_ = 0;           // lines written in the current window
  uint64_t held_back_ = 0;    // lines not written since the last one written
};

}  // namespace pccl
