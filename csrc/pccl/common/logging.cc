#include "pccl/common/logging.h"

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>

#include "pccl/common/params.h"

namespace pccl {
namespace {

void WriteToStderr(LogLevel level, const std::string& message) {
  static const char* kNames[] = {"DEBUG", "INFO", "WARNING", "ERROR", "OFF"};
  std::fprintf(stderr, "[pccl %s pid %d] %s\n", kNames[static_cast<int>(level)],
               static_cast<int>(getpid()), message.c_str());
}

// The capture queue (CaptureLogLines). Never destroyed: threads may log during exit.
struct Capture {
  std::mutex mu;
  std::condition_variable cv;
  bool on = false;
  std::deque<LogRecord> lines;
  uint64_t dropped = 0;  // lines lost to a full queue since the last TakeLogLines
};
Capture& TheCapture() {
  static Capture* capture = new Capture;
  return *capture;
}

}  // namespace

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= GetParams().log_level; }

void LogLine(LogLevel level, const std::string& message) {
  Capture& c = TheCapture();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.on) {
      if (c.lines.size() >= kMaxQueuedLogLines) {
        ++c.dropped;
        return;
      }
      const double now = std::chrono::duration<double>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
      c.lines.push_back(LogRecord{level, now, message});
      c.cv.notify_one();
      return;
    }
  }
  WriteToStderr(level, message);
}

void CaptureLogLines(bool on) {
  Capture& c = TheCapture();
  std::deque<LogRecord> left;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.on = on;
    if (!on) left.swap(c.lines);
  }
  c.cv.notify_all();  // a TakeLogLines waiting returns (with nothing) once capture is off
  for (const LogRecord& r : left) WriteToStderr(r.level, r.message);
}

void TakeLogLines(Deadline deadline, std::vector<LogRecord>* out) {
  out->clear();
  Capture& c = TheCapture();
  std::unique_lock<std::mutex> lock(c.mu);
  WaitFor(c.cv, lock, deadline, [&] { return !c.on || !c.lines.empty() || c.dropped > 0; });
  if (c.dropped > 0) {
    const double now = std::chrono::duration<double>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    out->push_back(LogRecord{LogLevel::kWarning, now,
                             std::to_string(c.dropped) +
                                 " pccl log lines were dropped (nobody drained the queue)"});
    c.dropped = 0;
  }
  out->insert(out->end(), c.lines.begin(), c.lines.end());
  c.lines.clear();
}

void RateLimitedLog::Log(const std::string& message) {
  if (!LogEnabled(level_)) return;
  uint64_t held_back = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const TimePoint now = Clock::now();
    if (now - window_start_ >= interval_) {
      window_start_ = now;
      written_ = 0;
    }
    if (written_ >= burst_) {
      ++held_back_;
      return;
    }
    ++written_;
    held_back = held_back_;
    held_back_ = 0;
  }
  LogLine(level_, held_back == 0 ? message
                                 : message + " (" + std::to_string(held_back) +
                                       " similar lines not shown before this one)");
}

}  // namespace pccl
