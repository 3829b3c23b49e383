#include "pccl/kernels/reduce.h"

#include <string>

#include "pccl/kernels/isa.h"

namespace pccl::kernels {

PCCL_DECLARE_ISA_TABLES(internal::ReduceTable, GetReduceTable)

namespace internal {
int CombinerIndex(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg: return 0;
    case ReduceOp::kProd: return 1;
    case ReduceOp::kMin: return 2;
    case ReduceOp::kMax: return 3;
  }
  return 0;
}
}  // namespace internal

namespace {

const internal::ReduceTable& Table() { return PCCL_DISPATCH_TABLE(GetReduceTable); }

Status CheckDType(DType dtype) {
  if (!IsValidDType(static_cast<int>(dtype))) {
    return InvalidArgument("invalid dtype " + std::to_string(static_cast<int>(dtype)));
  }
  return Status::Ok();
}

Status CheckOp(ReduceOp op) {
  if (!IsValidReduceOp(static_cast<int>(op))) {
    return InvalidArgument("invalid reduce op " + std::to_string(static_cast<int>(op)));
  }
  return Status::Ok();
}

Status CheckHalf(DType dtype) {
  PCCL_RETURN_IF_ERROR(CheckDType(dtype));
  if (!IsHalfPrecision(dtype)) {
    return InvalidArgument(std::string("expected float16 or bfloat16, got ") + DTypeName(dtype));
  }
  return Status::Ok();
}

Status CheckPointers(const void* a, const void* b, size_t count) {
  if (count > 0 && (a == nullptr || b == nullptr)) {
    return InvalidArgument("null buffer with count " + std::to_string(count));
  }
  return Status::Ok();
}

int HalfIndex(DType dtype) { return dtype == DType::kFloat16 ? 0 : 1; }

}  // namespace

const char* ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "SUM";
    case ReduceOp::kAvg: return "AVG";
    case ReduceOp::kProd: return "PROD";
    case ReduceOp::kMax: return "MAX";
    case ReduceOp::kMin: return "MIN";
  }
  return "invalid";
}

bool IsValidReduceOp(int value) { return value >= 0 && value < kNumReduceOps; }

Status Reduce(DType dtype, ReduceOp op, void* dst, const void* src, size_t count) {
  PCCL_RETURN_IF_ERROR(CheckDType(dtype));
  PCCL_RETURN_IF_ERROR(CheckOp(op));
  PCCL_RETURN_IF_ERROR(CheckPointers(dst, src, count));
  if (count == 0) return Status::Ok();
  Table().reduce[static_cast<int>(dtype)][internal::CombinerIndex(op)](dst, src, count);
  return Status::Ok();
}

Status ReduceSaving(DType dtype, ReduceOp op, void* dst, const void* src, void* save,
                    size_t count) {
  PCCL_RETURN_IF_ERROR(CheckDType(dtype));
  PCCL_RETURN_IF_ERROR(CheckOp(op));
  PCCL_RETURN_IF_ERROR(CheckPointers(dst, src, count));
  PCCL_RETURN_IF_ERROR(CheckPointers(dst, save, count));
  if (count == 0) return Status::Ok();
  Table().reduce_saving[static_cast<int>(dtype)][internal::CombinerIndex(op)](dst, src, save,
                                                                             count);
  return Status::Ok();
}

Status DivideBy(DType dtype, void* data, size_t count, uint64_t divisor) {
  PCCL_RETURN_IF_ERROR(CheckDType(dtype));
  PCCL_RETURN_IF_ERROR(CheckPointers(data, data, count));
  if (divisor == 0) return InvalidArgument("divisor must be positive");
  if (count == 0 || divisor == 1) return Status::Ok();
  Table().divide[static_cast<int>(dtype)](data, count, divisor);
  return Status::Ok();
}

Status WidenHalf(DType dtype, float* acc, const void* src, size_t count) {
  PCCL_RETURN_IF_ERROR(CheckHalf(dtype));
  PCCL_RETURN_IF_ERROR(CheckPointers(acc, src, count));
  if (count > 0) Table().widen_half[HalfIndex(dtype)](acc, src, count);
  return Status::Ok();
}

Status AccumulateHalf(DType dtype, ReduceOp op, float* acc, const void* src, size_t count) {
  PCCL_RETURN_IF_ERROR(CheckHalf(dtype));
  PCCL_RETURN_IF_ERROR(CheckOp(op));
  PCCL_RETURN_IF_ERROR(CheckPointers(acc, src, count));
  if (count > 0) {
    Table().accumulate_half[HalfIndex(dtype)][internal::CombinerIndex(op)](acc, src, count);
  }
  return Status::Ok();
}

Status CombineHalf(DType dtype, ReduceOp op, float* acc, const void* a, const void* b,
                   size_t count) {
  PCCL_RETURN_IF_ERROR(CheckHalf(dtype));
  PCCL_RETURN_IF_ERROR(CheckOp(op));
  PCCL_RETURN_IF_ERROR(CheckPointers(acc, a, count));
  PCCL_RETURN_IF_ERROR(CheckPointers(acc, b, count));
  if (count > 0) {
    Table().combine_half[HalfIndex(dtype)][internal::CombinerIndex(op)](acc, a, b, count);
  }
  return Status::Ok();
}

Status FoldHalf(DType dtype, ReduceOp op, void* dst, const void* partial, const void* input,
                void* save, size_t count, uint64_t divisor) {
  PCCL_RETURN_IF_ERROR(CheckHalf(dtype));
  PCCL_RETURN_IF_ERROR(CheckOp(op));
  PCCL_RETURN_IF_ERROR(CheckPointers(dst, partial, count));
  PCCL_RETURN_IF_ERROR(CheckPointers(dst, input, count));
  if (divisor == 0) return InvalidArgument("divisor must be positive");
  if (count > 0) {
    Table().fold_half[HalfIndex(dtype)][internal::CombinerIndex(op)](
        dst, partial, input, save, count, static_cast<float>(divisor));
  }
  return Status::Ok();
}

Status NarrowHalf(DType dtype, void* dst, const float* acc, size_t count, uint64_t divisor) {
  PCCL_RETURN_IF_ERROR(CheckHalf(dtype));
  PCCL_RETURN_IF_ERROR(CheckPointers(dst, acc, count));
  if (divisor == 0) return InvalidArgument("divisor must be positive");
  if (count > 0) {
    Table().narrow_half[HalfIndex(dtype)](dst, acc, count, static_cast<float>(divisor));
  }
  return Status::Ok();
}

}  // namespace pccl::kernels
