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

}  // namespace pccl
