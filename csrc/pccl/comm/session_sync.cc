// Session: shared-state sync (SyncSharedState and its protocol with the master).
#include "pccl/comm/session.h"

#include <optional>

namespace pccl::comm {
namespace {

using proto::Kind;

// Deadline for telling the master that this peer gives up a sync.
constexpr auto kGiveUpTimeout = std::chrono::seconds(5);

}  // namespace

Status Session::SyncSharedState(const SharedStateSyncRequest& request, Deadline deadline,
                                SharedStateSyncInfo* info) {
  return AcrossResume(deadline, "sync_shared_state()",
                      [&] { return SyncSharedStateOnce(request, deadline, info); });
}

Status Session::SyncSharedStateOnce(const SharedStateSyncRequest& request, Deadline deadline,
                                    SharedStateSyncInfo* info) {
  if (closed_.load()) return FailedPrecondition("communicator is closed");
  PCCL_RETURN_IF_ERROR(ValidateEntries(request.entries));
  std::unique_lock<std::timed_mutex> control;
  PCCL_RETURN_IF_ERROR(LockControl(deadline, "sync_shared_state()", &control));
  RefreshViewOnReturn refresh{this};
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!connected_) return FailedPrecondition("call connect() first");
    if (in_flight_ > 0) {
      return FailedPrecondition("sync_shared_state() called while " +
                                std::to_string(in_flight_) +
                                " collectives of this peer are in flight; wait for them first");
    }
  }
  PCCL_RETURN_IF_ERROR(master_.lost());
  PCCL_RETURN_IF_ERROR(ApplyPushedTopologiesLocked(deadline));
  *info = SharedStateSyncInfo{};
  Status st = RunSyncLocked(request, deadline, info);
  // Sources serve until the master's SyncComplete; after it nobody fetches from us.
  info->tx_bytes = state_server_.Withdraw();
  return st;
}

Status Session::RunSyncLocked(const SharedStateSyncRequest& request, Deadline deadline,
                                   SharedStateSyncInfo* info) {
  proto::SyncState state = DescribeSharedState(request);
  state.call = ++sync_call_;
  std::vector<uint64_t> hashes;
  for (const proto::StateEntry& e : state.entries) hashes.push_back(e.hash);
  state_server_.Publish(request.entries, hashes);
  PCCL_RETURN_IF_ERROR(master_.Send(Kind::kSyncState, proto::Encode(state), deadline));

  // The next SyncPlan or SyncComplete of this call; answers to earlier calls that gave up
  // are skipped. Exactly one of `plan` and `result` is filled.
  auto next = [&](std::optional<proto::SyncPlan>* plan, proto::SyncResult* result) -> Status {
    while (true) {
      Kind kind;
      std::string payload;
      PCCL_RETURN_IF_ERROR(WaitApplyingTopologiesLocked({Kind::kSyncPlan, Kind::kSyncComplete},
                                                        deadline, &kind, &payload));
      if (kind == Kind::kError) return ErrorFromMaster(payload);
      if (kind == Kind::kSyncPlan) {
        proto::SyncPlan p;
        PCCL_RETURN_IF_ERROR(proto::Decode(payload, &p));
        if (p.call != state.call) continue;
        *plan = std::move(p);
        return Status::Ok();
      }
      PCCL_RETURN_IF_ERROR(proto::Decode(payload, result));
      if (result->call == state.call) return Status::Ok();
    }
  };
  // Giving up (deadline, lost link) tells the master, so that the group's round fails for
  // everyone at once instead of waiting for this peer forever.
  auto give_up = [&](const Status& why) {
    proto::SyncResult abandon{state.call, 0, static_cast<uint32_t>(why.code()),
                              "gave up: " + why.message()};
    (void)master_.Send(Kind::kSyncDone, proto::Encode(abandon), Deadline::In(kGiveUpTimeout));
    return why;
  };
  auto failure = [](const proto::SyncResult& result) -> Status {
    if (result.ok) return Status::Ok();
    return Status(StatusCodeFromWire(result.code, StatusCode::kAborted), result.reason);
  };
  std::optional<proto::SyncPlan> plan;
  proto::SyncResult result;
  if (Status st = next(&plan, &result); !st.ok()) return give_up(st);
  if (!plan) {  // failed before any transfer (or a lone, empty sync)
    Status st = failure(result);
    return st.ok() ? Internal("the master completed a shared-state sync without a plan") : st;
  }
  Status local = FetchSharedState(peer_id_.load(), *plan, request.entries, credentials_, routes_, deadline,
                                  &info->rx_bytes);
  proto::SyncResult done{state.call, static_cast<uint8_t>(local.ok() ? 1 : 0),
                         static_cast<uint32_t>(local.code()), local.message()};
  PCCL_RETURN_IF_ERROR(master_.Send(Kind::kSyncDone, proto::Encode(done), deadline));
  std::optional<proto::SyncPlan> second;
  if (Status st = next(&second, &result); !st.ok()) return give_up(st);
  if (second) return Internal("the master sent a second SyncPlan");
  Status verdict = failure(result);
  if (!local.ok()) return verdict.ok() ? local : (local.code() == StatusCode::kAborted ||
                                                   local.code() == StatusCode::kDataLoss
                                                      ? local
                                                      : verdict);
  PCCL_RETURN_IF_ERROR(verdict);
  info->revision = plan->revision;
  std::lock_guard<std::mutex> lock(mu_);
  state_revision_plus_one_ = plan->revision + 1;
  return Status::Ok();
}

}  // namespace pccl::comm
