// Status: the value every fallible pccl call returns.
//
// Expected failures (a peer died, bad arguments, a deadline passed) are values, never
// exceptions; the code tells the caller what to do next. Broken invariants are PCCL_CHECK
// failures, not Statuses. Exceptions appear only at the Python edge (csrc/bindings).
// Thread-safe: a Status is an immutable value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace pccl {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,     // the call is wrong: fix the arguments
  kOutOfRange = 2,          // a value does not fit (e.g. fixed-point overflow)
  kFailedPrecondition = 3,  // the call is wrong for the current state
  kAborted = 4,             // an operation was torn down (peer lost): retry
  kUnavailable = 5,         // cannot reach a party right now: back off and retry
  kDeadlineExceeded = 6,    // the operation's deadline passed
  kDataLoss = 7,            // bytes arrived but do not verify (hash mismatch)
  kInternal = 8,            // a bug in pccl
  kTooFewPeers = 9,         // fewer than two peers: drop the step and wait for joiners
  kKicked = 10,             // the master removed this peer: reconnect as a new peer
  kUnauthenticated = 11,    // the other end does not know the run secret (or we do not)
  kIntegrity = 12,          // a verified sum does not add up: a member falsified it
};

const char* StatusCodeName(StatusCode code);
// A status code that came over the wire: the code if it is a failure pccl knows, else
// `fallback`.
StatusCode StatusCodeFromWire(uint32_t code, StatusCode fallback);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "InvalidArgument: <message>", or "OK".
  std::string ToString() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string msg) {
  return Status(StatusCode::kInvalidArgument, std::move(msg));
}
inline Status OutOfRange(std::string msg) {
  return Status(StatusCode::kOutOfRange, std::move(msg));
}
inline Status FailedPrecondition(std::string msg) {
  return Status(StatusCode::kFailedPrecondition, std::move(msg));
}
inline Status Internal(std::string msg) { return Status(StatusCode::kInternal, std::move(msg)); }

// Returns early from the enclosing function if `expr` is not OK.
#define PCCL_RETURN_IF_ERROR(expr)       \
  do {                                   \
    ::pccl::Status pccl_status_ = (expr); \
    if (!pccl_status_.ok()) return pccl_status_; \
  } while (0)

// Aborts the process on a broken invariant (a pccl bug), naming the file and line.
[[noreturn]] void CheckFailed(const char* file, int line, const char* expr);
#define PCCL_CHECK(cond) \
  do {                   \
    if (!(cond)) ::pccl::CheckFailed(__FILE__, __LINE__, #cond); \
  } while (0)

}  // namespace pccl
