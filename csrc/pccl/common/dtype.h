// Element types pccl reduces, quantizes and hashes, and the one place that switches on them.
//
// The numbering is the wire and Python numbering (pccl.DataType): never reorder.
// float16 and bfloat16 have no C++ arithmetic type here; they are 16-bit storage types
// (Half, BFloat16) that kernels widen to float (common/half.h).
// Thread-safe: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace pccl {

enum class DType : uint8_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kUint64 = 6,
  kInt64 = 7,
  kFloat16 = 8,
  kBFloat16 = 9,
  kFloat32 = 10,
  kFloat64 = 11,
};
inline constexpr int kNumDTypes = 12;

// IEEE binary16 and bfloat16 bit patterns.
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

size_t DTypeSize(DType dtype);
// "float32", "bfloat16", ... as numpy/torch spell them.
const char* DTypeName(DType dtype);
bool IsValidDType(int value);
bool IsFloatingPoint(DType dtype);
// Float16 and BFloat16: stored in 16 bits, computed in float.
inline bool IsHalfPrecision(DType d) { return d == DType::kFloat16 || d == DType::kBFloat16; }

template <class T>
struct DTypeTag {
  using type = T;
};

// The one dtype switch: calls fn(DTypeTag<T>{}) with T the storage type of `dtype`
// (uint8_t ... int64_t, Half, BFloat16, float, double) and returns its result.
// `dtype` must be valid (checked by callers at the API edge).
template <class Fn>
decltype(auto) VisitDType(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::kUint8: return fn(DTypeTag<uint8_t>{});
    case DType::kInt8: return fn(DTypeTag<int8_t>{});
    case DType::kUint16: return fn(DTypeTag<uint16_t>{});
    case DType::kInt16: return fn(DTypeTag<int16_t>{});
    case DType::kUint32: return fn(DTypeTag<uint32_t>{});
    case DType::kInt32: return fn(DTypeTag<int32_t>{});
    case DType::kUint64: return fn(DTypeTag<uint64_t>{});
    case DType::kInt64: return fn(DTypeTag<int64_t>{});
    case DType::kFloat16: return fn(DTypeTag<Half>{});
    case DType::kBFloat16: return fn(DTypeTag<BFloat16>{});
    case DType::kFloat32: return fn(DTypeTag<float>{});
    case DType::kFloat64: return fn(DTypeTag<double>{});
  }
  return fn(DTypeTag<uint8_t>{});  // unreachable for valid dtypes
}

}  // namespace pccl
