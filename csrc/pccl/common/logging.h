// Minimal logging to stderr, levelled by the PCCL_LOG_LEVEL knob (common/params.h).
// Thread-safe: each line is written with one fprintf call.
#pragma once

#include <cstdint>
#include <string>

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

#define PCCL_LOG(level, message)                                              \
  do {                                                                        \
    if (::pccl::LogEnabled(::pccl::LogLevel::level)) {                        \
      ::pccl::LogLine(::pccl::LogLevel::level, (message));                    \
    }                                                                         \
  } while (0)

}  // namespace pccl
