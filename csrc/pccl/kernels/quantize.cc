#include "pccl/kernels/quantize.h"

#include <cstring>
#include <initializer_list>
#include <limits>
#include <string>

#include "pccl/kernels/isa.h"

namespace pccl::kernels {

PCCL_DECLARE_ISA_TABLES(internal::QuantizeTable, GetQuantizeTable)

namespace {

const internal::QuantizeTable& Table() { return PCCL_DISPATCH_TABLE(GetQuantizeTable); }

// Table index of a float dtype (see internal::), or -1.
int FloatKind(DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return 0;
    case DType::kBFloat16: return 1;
    case DType::kFloat32: return 2;
    case DType::kFloat64: return 3;
    default: return -1;
  }
}

int QuantizedIndex(DType dtype) { return dtype == DType::kUint8 ? 0 : 1; }
int AlgorithmIndex(QuantAlgorithm algorithm) {
  return algorithm == QuantAlgorithm::kMinMax ? 0 : 1;
}
bool ParamsAreDouble(DType source_dtype) { return source_dtype == DType::kFloat64; }
size_t ParamSize(DType source_dtype) { return ParamsAreDouble(source_dtype) ? 8 : 4; }
size_t ParamsPerBlock(QuantAlgorithm algorithm) {
  return algorithm == QuantAlgorithm::kMinMax ? 2 : 1;
}
size_t NumBlocks(size_t count, size_t block_size) {
  return count / block_size + (count % block_size != 0 ? 1 : 0);
}

std::string DTypeString(DType dtype) {
  if (!IsValidDType(static_cast<int>(dtype))) return std::to_string(static_cast<int>(dtype));
  return DTypeName(dtype);
}

Status CheckFloatDType(DType dtype, const char* what) {
  if (FloatKind(dtype) < 0) {
    return InvalidArgument(std::string(what) +
                           " must be float16, bfloat16, float32 or float64, got " +
                           DTypeString(dtype));
  }
  return Status::Ok();
}

Status CheckOptions(const QuantizeOptions& options) {
  const int algorithm = static_cast<int>(options.algorithm);
  if (!IsValidQuantAlgorithm(algorithm) || options.algorithm == QuantAlgorithm::kNone) {
    return InvalidArgument("quantization algorithm must be MIN_MAX or ZERO_POINT_SCALE, got " +
                           std::string(QuantAlgorithmName(options.algorithm)) + " (" +
                           std::to_string(algorithm) + ")");
  }
  if (options.quantized_dtype != DType::kUint8 && options.quantized_dtype != DType::kUint16) {
    return InvalidArgument("quantized dtype must be uint8 or uint16, got " +
                           DTypeString(options.quantized_dtype));
  }
  if (options.block_size < 1 || options.block_size > kMaxQuantBlockSize) {
    return InvalidArgument("quantization block size must be in [1, " +
                           std::to_string(kMaxQuantBlockSize) + "], got " +
                           std::to_string(options.block_size));
  }
  return Status::Ok();
}

// Sizes of one quantized buffer, after the options are known to be valid.
Status Sizes(DType source_dtype, size_t count, const QuantizeOptions& options,
             size_t* values_bytes, size_t* params_bytes) {
  // 16 bytes per element bounds both sizes (values <= 2, params <= 16 per element).
  if (count > std::numeric_limits<size_t>::max() / 16) {
    return InvalidArgument("count " + std::to_string(count) + " is too large");
  }
  *values_bytes = count * DTypeSize(options.quantized_dtype);
  *params_bytes = NumBlocks(count, options.block_size) * ParamsPerBlock(options.algorithm) *
                  ParamSize(source_dtype);
  return Status::Ok();
}

Status CheckPointers(size_t count, std::initializer_list<const void*> pointers) {
  if (count == 0) return Status::Ok();
  for (const void* p : pointers) {
    if (p == nullptr) return InvalidArgument("null buffer with count " + std::to_string(count));
  }
  return Status::Ok();
}

Status CheckParamsBytes(size_t given, size_t expected, size_t count) {
  if (given != expected) {
    return InvalidArgument("params has " + std::to_string(given) + " bytes, expected " +
                           std::to_string(expected) + " for " + std::to_string(count) +
                           " elements");
  }
  return Status::Ok();
}

template <class P>
Status CheckParamsOf(const void* params, size_t num_blocks, QuantAlgorithm algorithm) {
  const size_t per_block = ParamsPerBlock(algorithm);
  for (size_t b = 0; b < num_blocks; ++b) {
    P v[2] = {0, 0};
    std::memcpy(v, static_cast<const char*>(params) + b * per_block * sizeof(P),
                per_block * sizeof(P));
    const P scale = v[per_block - 1];
    const P lo = v[0];
    // Written so that NaN fails every test.
    const bool scale_ok = scale >= P{0} && scale <= std::numeric_limits<P>::max();
    const bool lo_ok = lo >= -std::numeric_limits<P>::max() && lo <= std::numeric_limits<P>::max();
    if (!scale_ok || !lo_ok) {
      std::string what = per_block == 2 ? "lo " + std::to_string(lo) + ", scale " : "scale ";
      return InvalidArgument("params of block " + std::to_string(b) + " are invalid (" + what +
                             std::to_string(scale) +
                             "): expected finite values and scale >= 0");
    }
  }
  return Status::Ok();
}

// What Quantize leaves on error: q all 0, params all quiet NaN.
void PoisonOutput(DType source_dtype, size_t values_bytes, size_t params_bytes, void* q,
                  void* params) {
  if (values_bytes > 0) std::memset(q, 0, values_bytes);
  char* p = static_cast<char*>(params);
  if (ParamsAreDouble(source_dtype)) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (size_t off = 0; off < params_bytes; off += sizeof(nan)) std::memcpy(p + off, &nan, 8);
  } else {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (size_t off = 0; off < params_bytes; off += sizeof(nan)) std::memcpy(p + off, &nan, 4);
  }
}

Status Dequantize(int mode, DType dst_dtype, void* dst, DType source_dtype, const void* q,
                  const void* params, size_t params_bytes, size_t count,
                  const QuantizeOptions& options) {
  PCCL_RETURN_IF_ERROR(CheckFloatDType(dst_dtype, "destination dtype"));
  PCCL_RETURN_IF_ERROR(CheckQuantizeOptions(source_dtype, options));
  size_t values_bytes = 0;
  size_t expected_params = 0;
  PCCL_RETURN_IF_ERROR(Sizes(source_dtype, count, options, &values_bytes, &expected_params));
  PCCL_RETURN_IF_ERROR(CheckParamsBytes(params_bytes, expected_params, count));
  PCCL_RETURN_IF_ERROR(CheckPointers(count, {dst, q, params}));
  if (count == 0) return Status::Ok();
  const size_t num_blocks = NumBlocks(count, options.block_size);
  if (ParamsAreDouble(source_dtype)) {
    PCCL_RETURN_IF_ERROR(CheckParamsOf<double>(params, num_blocks, options.algorithm));
  } else {
    PCCL_RETURN_IF_ERROR(CheckParamsOf<float>(params, num_blocks, options.algorithm));
  }
  Table().dequantize[FloatKind(dst_dtype)][ParamsAreDouble(source_dtype) ? 1 : 0]
                    [QuantizedIndex(options.quantized_dtype)][AlgorithmIndex(options.algorithm)]
                    [mode](dst, q, params, count, options.block_size);
  return Status::Ok();
}

}  // namespace

const char* QuantAlgorithmName(QuantAlgorithm algorithm) {
  switch (algorithm) {
    case QuantAlgorithm::kNone: return "NONE";
    case QuantAlgorithm::kMinMax: return "MIN_MAX";
    case QuantAlgorithm::kZeroPointScale: return "ZERO_POINT_SCALE";
  }
  return "invalid";
}

bool IsValidQuantAlgorithm(int value) { return value >= 0 && value < kNumQuantAlgorithms; }

Status CheckQuantizeOptions(DType source_dtype, const QuantizeOptions& options) {
  PCCL_RETURN_IF_ERROR(CheckFloatDType(source_dtype, "source dtype"));
  return CheckOptions(options);
}

Status QuantizedParamsBytes(DType source_dtype, size_t count, const QuantizeOptions& options,
                            size_t* bytes) {
  PCCL_RETURN_IF_ERROR(CheckQuantizeOptions(source_dtype, options));
  size_t values_bytes = 0;
  return Sizes(source_dtype, count, options, &values_bytes, bytes);
}

Status QuantizedValuesBytes(size_t count, const QuantizeOptions& options, size_t* bytes) {
  PCCL_RETURN_IF_ERROR(CheckOptions(options));
  size_t params_bytes = 0;
  return Sizes(DType::kFloat32, count, options, bytes, &params_bytes);
}

Status Quantize(DType source_dtype, const void* src, size_t count, const QuantizeOptions& options,
                void* q, void* params, size_t params_bytes) {
  PCCL_RETURN_IF_ERROR(CheckQuantizeOptions(source_dtype, options));
  size_t values_bytes = 0;
  size_t expected_params = 0;
  PCCL_RETURN_IF_ERROR(Sizes(source_dtype, count, options, &values_bytes, &expected_params));
  PCCL_RETURN_IF_ERROR(CheckParamsBytes(params_bytes, expected_params, count));
  PCCL_RETURN_IF_ERROR(CheckPointers(count, {src, q, params}));
  if (count == 0) return Status::Ok();
  const internal::QuantizeResult result =
      Table().quantize[FloatKind(source_dtype)][QuantizedIndex(options.quantized_dtype)]
                      [AlgorithmIndex(options.algorithm)](src, count, options.block_size, q,
                                                          params);
  switch (result.code) {
    case internal::QuantizeResult::kOk:
      return Status::Ok();
    case internal::QuantizeResult::kNonFinite:
      PoisonOutput(source_dtype, values_bytes, params_bytes, q, params);
      return InvalidArgument("cannot quantize: element " + std::to_string(result.index) +
                             " (block " + std::to_string(result.index / options.block_size) +
                             ") is NaN or Inf");
    case internal::QuantizeResult::kRangeOverflow:
      PoisonOutput(source_dtype, values_bytes, params_bytes, q, params);
      return OutOfRange(std::string("cannot quantize: the range of block ") +
                        std::to_string(result.index) + " overflows " +
                        (ParamsAreDouble(source_dtype) ? "float64" : "float32") +
                        " (max - min or its dequantized maximum is not finite)");
  }
  return Internal("unknown quantize result");
}

Status DequantizeSet(DType dst_dtype, void* dst, DType source_dtype, const void* q,
                     const void* params, size_t params_bytes, size_t count,
                     const QuantizeOptions& options) {
  return Dequantize(0, dst_dtype, dst, source_dtype, q, params, params_bytes, count, options);
}

Status DequantizeAccumulate(DType dst_dtype, void* dst, DType source_dtype, const void* q,
                            const void* params, size_t params_bytes, size_t count,
                            const QuantizeOptions& options) {
  return Dequantize(1, dst_dtype, dst, source_dtype, q, params, params_bytes, count, options);
}

}  // namespace pccl::kernels
