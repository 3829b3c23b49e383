#include "pccl/common/params.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "pccl/common/logging.h"

namespace pccl {
namespace {

int64_t EnvInt(const char* name, int64_t fallback, int64_t min_value, int64_t max_value) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  long long value = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || value < min_value || value > max_value) {
    LogLine(LogLevel::kWarning, std::string("ignoring ") + name + "=" + text + " (expected an integer in [" +
                                    std::to_string(min_value) + ", " + std::to_string(max_value) + "])");
    return fallback;
  }
  return value;
}

int LogLevelFromEnv() {
  const char* text = std::getenv("PCCL_LOG_LEVEL");
  if (text == nullptr) return static_cast<int>(LogLevel::kWarning);
  const char* names[] = {"debug", "info", "warning", "error", "off"};
  for (int i = 0; i < 5; ++i) {
    if (std::strcmp(text, names[i]) == 0) return i;
  }
  return static_cast<int>(LogLevel::kWarning);
}

}  // namespace

const Params& GetParams() {
  static const Params params = [] {
    Params p;
    p.log_level = LogLevelFromEnv();
    p.socket_buffer_bytes = EnvInt("PCCL_SOCKET_BUFFER_BYTES", 0, 0, int64_t{1} << 30);
    p.segment_bytes = EnvInt("PCCL_SEGMENT_BYTES", int64_t{1} << 20, 4096, int64_t{64} << 20);
    p.early_budget_bytes =
        EnvInt("PCCL_EARLY_BUDGET_BYTES", int64_t{256} << 20, 0, int64_t{1} << 40);
    p.default_pool_size = EnvInt("PCCL_DEFAULT_POOL_SIZE", 8, 1, 64);
    p.timeout_ms = EnvInt("PCCL_TIMEOUT_MS", 60000, 0, int64_t{1} << 40);
    p.connect_timeout_ms = EnvInt("PCCL_CONNECT_TIMEOUT_MS", 10000, 10, int64_t{1} << 40);
    p.pool_keep_bytes = EnvInt("PCCL_POOL_KEEP_BYTES", int64_t{512} << 20, 0, int64_t{1} << 50);
    p.master_resume_s = EnvInt("PCCL_MASTER_RESUME_S", 60, 0, int64_t{1} << 30);
    p.tcp_user_timeout_ms = EnvInt("PCCL_TCP_USER_TIMEOUT_MS", 20000, 0, int64_t{1} << 31);
    p.keepalive_s = EnvInt("PCCL_KEEPALIVE_S", 5, 0, 3600);
    p.punch_ms = EnvInt("PCCL_PUNCH_MS", 2000, 0, 60000);
    p.probe_ms = EnvInt("PCCL_PROBE_MS", 300, 10, 600000);
    p.bandwidth_max_age_s = EnvInt("PCCL_BANDWIDTH_MAX_AGE_S", 600, 0, int64_t{1} << 30);
    p.test_corrupt_step = EnvInt("PCCL_TEST_CORRUPT_STEP", -1, -1, 1 << 20);
    p.test_silent_receives = EnvInt("PCCL_TEST_SILENT_RECEIVES", 0, 0, 1 << 20);
    if (const char* dump = std::getenv("PCCL_TEST_DUMP_RECEIVED")) p.test_dump_received = dump;
    return p;
  }();
  return params;
}

Deadline DefaultCallDeadline() {
  const int64_t ms = GetParams().timeout_ms;
  return ms == 0 ? Deadline::Never() : Deadline::In(Milliseconds(ms));
}

}  // namespace pccl
