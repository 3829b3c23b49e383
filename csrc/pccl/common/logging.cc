#include "pccl/common/logging.h"

#include <unistd.h>

#include <cstdio>

#include "pccl/common/params.h"

namespace pccl {

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= GetParams().log_level; }

void LogLine(LogLevel level, const std::string& message) {
  static const char* kNames[] = {"DEBUG", "INFO", "WARNING", "ERROR", "OFF"};
  std::fprintf(stderr, "[pccl %s pid %d] %s\n", kNames[static_cast<int>(level)],
               static_cast<int>(getpid()), message.c_str());
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
