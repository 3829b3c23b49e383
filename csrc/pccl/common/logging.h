// Minimal logging to stderr, levelled by the PCCL_LOG_LEVEL knob (common/params.h).
// Thread-safe: each line is written with one fprintf call.
#pragma once

#include <string>

namespace pccl {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3, kOff = 4 };

bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, const std::string& message);

#define PCCL_LOG(level, message)                                              \
  do {                                                                        \
    if (::pccl::LogEnabled(::pccl::LogLevel::level)) {                        \
      ::pccl::LogLine(::pccl::LogLevel::level, (message));                    \
    }                                                                         \
  } while (0)

}  // namespace pccl
