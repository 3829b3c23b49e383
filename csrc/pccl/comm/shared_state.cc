#include "pccl/comm/shared_state.h"

#include <set>
#include <string>

#include "pccl/kernels/hash.h"

namespace pccl::comm {

Status ValidateEntries(const std::vector<SharedStateEntry>& entries) {
  if (entries.size() > proto::kMaxStateEntries) {
    return InvalidArgument("shared state has " + std::to_string(entries.size()) +
                           " entries, the limit is " + std::to_string(proto::kMaxStateEntries));
  }
  std::set<std::string> keys;
  for (const SharedStateEntry& e : entries) {
    if (e.key.empty() || e.key.size() > proto::kMaxStateKeyLength) {
      return InvalidArgument("shared-state key '" + e.key + "' must have 1 to " +
                             std::to_string(proto::kMaxStateKeyLength) + " bytes");
    }
    if (!keys.insert(e.key).second) {
      return InvalidArgument("shared-state key '" + e.key + "' is registered twice");
    }
    if (e.bytes > 0 && e.data == nullptr) {
      return InvalidArgument("shared-state key '" + e.key + "' has a null data pointer");
    }
    if (e.bytes % DTypeSize(e.dtype) != 0) {
      return InvalidArgument("shared-state key '" + e.key + "': " + std::to_string(e.bytes) +
                             " bytes is not a whole number of " + DTypeName(e.dtype));
    }
  }
  return Status::Ok();
}

proto::SyncState DescribeSharedState(const SharedStateSyncRequest& request) {
  proto::SyncState state;
  state.revision = request.revision;
  state.strategy = static_cast<uint8_t>(request.strategy);
  for (const SharedStateEntry& e : request.entries) {
    state.entries.push_back(proto::StateEntry{e.key, e.bytes, static_cast<uint8_t>(e.dtype),
                                              kernels::Hash64(e.data, e.bytes),
                                              static_cast<uint8_t>(e.allow_content_inequality)});
  }
  return state;
}

}  // namespace pccl::comm
