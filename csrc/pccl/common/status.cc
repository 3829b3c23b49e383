#include "pccl/common/status.h"

#include <cstdio>
#include <cstdlib>

namespace pccl {

const char* StatusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "OK";
    case StatusCode::kInvalidArgument: return "InvalidArgument";
    case StatusCode::kOutOfRange: return "OutOfRange";
    case StatusCode::kFailedPrecondition: return "FailedPrecondition";
    case StatusCode::kAborted: return "Aborted";
    case StatusCode::kUnavailable: return "Unavailable";
    case StatusCode::kDeadlineExceeded: return "DeadlineExceeded";
    case StatusCode::kDataLoss: return "DataLoss";
    case StatusCode::kInternal: return "Internal";
    case StatusCode::kTooFewPeers: return "TooFewPeers";
    case StatusCode::kKicked: return "Kicked";
    case StatusCode::kUnauthenticated: return "Unauthenticated";
    case StatusCode::kIntegrity: return "Integrity";
  }
  return "Unknown";
}

StatusCode StatusCodeFromWire(uint32_t code, StatusCode fallback) {
  if (code == 0 || code > static_cast<uint32_t>(StatusCode::kIntegrity)) return fallback;
  return static_cast<StatusCode>(code);
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(StatusCodeName(code_)) + ": " + message_;
}

void CheckFailed(const char* file, int line, const char* expr) {
  std::fprintf(stderr, "pccl: check failed at %s:%d: %s\n", file, line, expr);
  std::abort();
}

}  // namespace pccl
