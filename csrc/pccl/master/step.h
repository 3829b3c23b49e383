// One call of Membership::Handle(): the time of the event and the actions it caused so far.
//
// Every state machine of the master (admission.h, verdicts.h, ring_optimizer.h,
// sync_rounds.h) appends what it sends to the same Step, so the actions come out in the
// order the machines decided them, whichever machine decided each.
//
// Thread-safety: none; the thread that owns the Membership owns its Steps.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "pccl/common/clock.h"
#include "pccl/common/status.h"
#include "pccl/master/events.h"
#include "pccl/proto/messages.h"

namespace pccl::master {

class Step {
 public:
  explicit Step(TimePoint now) : now_(now) {}

  // The time of the event (monotonic; never decreasing between steps).
  TimePoint now() const { return now_; }

  // Sends `payload` (an encoded message of `kind`) to `conn`.
  void SendTo(ConnId conn, proto::Kind kind, std::string payload) {
    actions_.push_back(Send{conn, kind, std::move(payload)});
  }
  // Sends Error{code, text} (text cut to proto::kMaxReasonLength).
  void SendError(ConnId conn, StatusCode code, const std::string& text) {
    proto::ErrorMessage error;
    error.code = static_cast<uint32_t>(code);
    error.message = text.substr(0, proto::kMaxReasonLength);
    SendTo(conn, proto::Kind::kError, proto::Encode(error));
  }
  // A well-formed message that is illegal now: Error{FailedPrecondition}; `conn` stays.
  void Refuse(ConnId conn, const std::string& text) {
    SendError(conn, StatusCode::kFailedPrecondition, text);
  }
  // Asks the server to flush and close `conn`; the caller forgets it.
  void DropConn(ConnId conn, const std::string& reason) {
    // emplace with in_place_type: GCC 12 warns falsely about push_back of a temporary here.
    actions_.emplace_back(std::in_place_type<Drop>, Drop{conn, reason});
  }

  const std::vector<Action>& actions() const { return actions_; }
  std::vector<Action> TakeActions() { return std::move(actions_); }

 private:
  TimePoint now_;
  std::vector<Action> actions_;
};

}  // namespace pccl::master
