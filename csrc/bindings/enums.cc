// The enumerations the core defines, exported once as Python enum.IntEnum classes
// (pybind11's native_enum): pccl's public enums take their values from these, the status
// codes come from here, and every binding that takes one of them accepts only its members
// (the argument's type is checked by pybind11, so no binding compares integers).
#include <pybind11/native_enum.h>

#include "bindings/common.h"
#include "pccl/comm/session.h"
#include "pccl/kernels/quantize.h"
#include "pccl/kernels/reduce.h"
#include "pccl/proto/messages.h"

namespace pccl::bindings {

void BindEnums(py::module_& m) {
  py::native_enum<DType>(m, "DataType", "enum.IntEnum", "Element types of the core.")
      .value("UINT8", DType::kUint8)
      .value("INT8", DType::kInt8)
      .value("UINT16", DType::kUint16)
      .value("INT16", DType::kInt16)
      .value("UINT32", DType::kUint32)
      .value("INT32", DType::kInt32)
      .value("UINT64", DType::kUint64)
      .value("INT64", DType::kInt64)
      .value("FLOAT16", DType::kFloat16)
      .value("BFLOAT16", DType::kBFloat16)
      .value("FLOAT", DType::kFloat32)
      .value("DOUBLE", DType::kFloat64)
      .finalize();
  py::native_enum<kernels::ReduceOp>(m, "ReduceOp", "enum.IntEnum", "Reductions.")
      .value("SUM", kernels::ReduceOp::kSum)
      .value("AVG", kernels::ReduceOp::kAvg)
      .value("PROD", kernels::ReduceOp::kProd)
      .value("MAX", kernels::ReduceOp::kMax)
      .value("MIN", kernels::ReduceOp::kMin)
      .finalize();
  py::native_enum<kernels::QuantAlgorithm>(m, "QuantizationAlgorithm", "enum.IntEnum",
                                           "Wire quantization algorithms.")
      .value("NONE", kernels::QuantAlgorithm::kNone)
      .value("MIN_MAX", kernels::QuantAlgorithm::kMinMax)
      .value("ZERO_POINT_SCALE", kernels::QuantAlgorithm::kZeroPointScale)
      .finalize();
  py::native_enum<comm::Attribute>(m, "Attribute", "enum.IntEnum", "Communicator attributes.")
      .value("GLOBAL_WORLD_SIZE", comm::Attribute::kGlobalWorldSize)
      .value("LOCAL_WORLD_SIZE", comm::Attribute::kLocalWorldSize)
      .value("NUM_DISTINCT_PEER_GROUPS", comm::Attribute::kNumDistinctPeerGroups)
      .value("LARGEST_PEER_GROUP_WORLD_SIZE", comm::Attribute::kLargestPeerGroupWorldSize)
      .finalize();
  py::native_enum<proto::SyncStrategy>(m, "SharedStateSyncStrategy", "enum.IntEnum",
                                       "Who sends and receives in a shared-state sync.")
      .value("ENFORCE_POPULAR", proto::SyncStrategy::kEnforcePopular)
      .value("RECEIVE_ONLY", proto::SyncStrategy::kReceiveOnly)
      .value("SEND_ONLY", proto::SyncStrategy::kSendOnly)
      .finalize();
  py::native_enum<StatusCode>(m, "StatusCode", "enum.IntEnum",
                              "The core's status codes (common/status.h).")
      .value("OK", StatusCode::kOk)
      .value("INVALID_ARGUMENT", StatusCode::kInvalidArgument)
      .value("OUT_OF_RANGE", StatusCode::kOutOfRange)
      .value("FAILED_PRECONDITION", StatusCode::kFailedPrecondition)
      .value("ABORTED", StatusCode::kAborted)
      .value("UNAVAILABLE", StatusCode::kUnavailable)
      .value("DEADLINE_EXCEEDED", StatusCode::kDeadlineExceeded)
      .value("DATA_LOSS", StatusCode::kDataLoss)
      .value("INTERNAL", StatusCode::kInternal)
      .value("TOO_FEW_PEERS", StatusCode::kTooFewPeers)
      .value("KICKED", StatusCode::kKicked)
      .value("UNAUTHENTICATED", StatusCode::kUnauthenticated)
      .value("INTEGRITY", StatusCode::kIntegrity)
      .finalize();
}

}  // namespace pccl::bindings
