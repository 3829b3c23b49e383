// Modular kernels: argument validation and dispatch to the active ISA's table
// (modular_isa.cc), the Modulus factory, and the scalar ChaCha20 block for tests.
#include "pccl/kernels/modular.h"

#include <cmath>
#include <string>

#include "pccl/kernels/chacha20.h"
#include "pccl/kernels/isa.h"

namespace pccl::kernels {

PCCL_DECLARE_ISA_TABLES(internal::ModularTable, GetModularTable)

namespace {

const internal::ModularTable& Table() { return PCCL_DISPATCH_TABLE(GetModularTable); }

internal::Barrett Constants(const Modulus& m) { return {m.p(), m.mu(), m.half()}; }

Status CheckPointers(const void* a, const void* b, size_t count) {
  if (count > 0 && (a == nullptr || b == nullptr)) {
    return InvalidArgument("null buffer with count " + std::to_string(count));
  }
  return Status::Ok();
}

Status CheckFracBits(int frac_bits) {
  if (frac_bits < 0 || frac_bits > kMaxFracBits) {
    return InvalidArgument("frac_bits must be in [0, " + std::to_string(kMaxFracBits) +
                           "], got " + std::to_string(frac_bits));
  }
  return Status::Ok();
}

// 0 for float32, 1 for float64, -1 otherwise.
int FloatIndex(DType dtype) {
  if (dtype == DType::kFloat32) return 0;
  if (dtype == DType::kFloat64) return 1;
  return -1;
}

Status CheckFloatDType(DType dtype, const char* what) {
  if (FloatIndex(dtype) < 0) {
    std::string name = IsValidDType(static_cast<int>(dtype)) ? DTypeName(dtype) : "invalid";
    return InvalidArgument(std::string(what) + " must be float32 or float64, got " + name);
  }
  return Status::Ok();
}

void KeyWords(const MaskKey& key, uint32_t words[8]) {
  for (int i = 0; i < 8; ++i) words[i] = chacha20::LoadLe32(key.data() + 4 * i);
}

// The finite-ness test of FixedEncode's failure report, in double.
template <class T>
double LoadDouble(const void* src, size_t i) {
  T v;
  __builtin_memcpy(&v, static_cast<const char*>(src) + i * sizeof(T), sizeof(T));
  return static_cast<double>(v);
}

}  // namespace

Status Modulus::Make(uint64_t p, Modulus* out) {
  if (p < kMinP || p > kMaxP) {
    return InvalidArgument("modulus p must be in [2, 2^32 - 1], got " + std::to_string(p));
  }
  if (out == nullptr) return InvalidArgument("null Modulus output");
  const uint64_t kAllOnes = ~uint64_t{0};
  // floor(2^64 / p) = floor((2^64 - 1) / p), plus one when p divides 2^64 (a power of two).
  const uint64_t rem = kAllOnes % p;  // (2^64 - 1) mod p
  Modulus m;
  m.p_ = static_cast<uint32_t>(p);
  m.half_ = static_cast<uint32_t>((p - 1) / 2);
  m.mu_ = kAllOnes / p + (rem == p - 1 ? 1 : 0);
  // 2^64 mod p = (rem + 1) mod p; max_accept = 2^64 - 1 - (2^64 mod p).
  m.max_accept_ = kAllOnes - (rem + 1 == p ? 0 : rem + 1);
  *out = m;
  return Status::Ok();
}

uint32_t Modulus::Reduce(uint64_t x) const { return BarrettReduce(x, mu_, p_); }

Status ModReduce(const Modulus& m, void* dst, const void* src, size_t count) {
  PCCL_RETURN_IF_ERROR(CheckPointers(dst, src, count));
  if (count > 0) Table().reduce(Constants(m), dst, src, count);
  return Status::Ok();
}

Status ModAdd(const Modulus& m, void* dst, const void* src, size_t count) {
  PCCL_RETURN_IF_ERROR(CheckPointers(dst, src, count));
  if (count > 0) Table().add(Constants(m), dst, src, count);
  return Status::Ok();
}

Status ModSub(const Modulus& m, void* dst, const void* src, size_t count) {
  PCCL_RETURN_IF_ERROR(CheckPointers(dst, src, count));
  if (count > 0) Table().sub(Constants(m), dst, src, count);
  return Status::Ok();
}

Status ModMul(const Modulus& m, void* dst, const void* src, size_t count) {
  PCCL_RETURN_IF_ERROR(CheckPointers(dst, src, count));
  if (count > 0) Table().mul(Constants(m), dst, src, count);
  return Status::Ok();
}

Status ModMulAcc(const Modulus& m, void* acc, const void* a, const void* b, size_t count) {
  PCCL_RETURN_IF_ERROR(CheckPointers(acc, a, count));
  PCCL_RETURN_IF_ERROR(CheckPointers(acc, b, count));
  if (count > 0) Table().mul_acc(Constants(m), acc, a, b, count);
  return Status::Ok();
}

Status FixedEncode(const Modulus& m, DType src_dtype, void* dst, const void* src, size_t count,
                   const FixedPointOptions& options) {
  PCCL_RETURN_IF_ERROR(CheckFloatDType(src_dtype, "source dtype"));
  PCCL_RETURN_IF_ERROR(CheckFracBits(options.frac_bits));
  if (options.overflow != FixedOverflow::kError && options.overflow != FixedOverflow::kSaturate) {
    return InvalidArgument("invalid fixed-point overflow option " +
                           std::to_string(static_cast<int>(options.overflow)));
  }
  PCCL_RETURN_IF_ERROR(CheckPointers(dst, src, count));
  if (count == 0) return Status::Ok();
  const int f = FloatIndex(src_dtype);
  const bool error_on_overflow = options.overflow == FixedOverflow::kError;
  const size_t bad = Table().encode[f](Constants(m), dst, src, count,
                                       std::ldexp(1.0, options.frac_bits), error_on_overflow);
  if (bad == count) return Status::Ok();
  const double x = f == 0 ? LoadDouble<float>(src, bad) : LoadDouble<double>(src, bad);
  if (!std::isfinite(x)) {
    return InvalidArgument("cannot encode a non-finite value (" + std::to_string(x) +
                           ") at index " + std::to_string(bad));
  }
  return OutOfRange("value " + std::to_string(x) + " at index " + std::to_string(bad) +
                    " does not fit modulus " + std::to_string(m.p()) + " with frac_bits " +
                    std::to_string(options.frac_bits) +
                    " (|x * 2^frac_bits| must round to at most " + std::to_string(m.half()) +
                    "; pass saturate to clamp instead)");
}

Status FixedDecode(const Modulus& m, DType dst_dtype, void* dst, const void* src, size_t count,
                   int frac_bits) {
  PCCL_RETURN_IF_ERROR(CheckFloatDType(dst_dtype, "destination dtype"));
  PCCL_RETURN_IF_ERROR(CheckFracBits(frac_bits));
  PCCL_RETURN_IF_ERROR(CheckPointers(dst, src, count));
  if (count > 0) {
    Table().decode[FloatIndex(dst_dtype)](Constants(m), dst, src, count,
                                          std::ldexp(1.0, -frac_bits));
  }
  return Status::Ok();
}

namespace internal {
Status MaskGenerateWithBound(const Modulus& m, const MaskKey& key, uint64_t stream_id,
                             uint64_t offset, void* dst, size_t count, uint64_t max_accept) {
  PCCL_RETURN_IF_ERROR(CheckPointers(dst, dst, count));
  if (offset > kMaxMaskIndex || count > kMaxMaskIndex - offset) {
    return InvalidArgument("mask range [offset, offset + count) = [" + std::to_string(offset) +
                           ", " + std::to_string(offset) + " + " + std::to_string(count) +
                           ") exceeds 2^56 elements");
  }
  // Uniform only if [0, max_accept] holds every residue equally often: k * p - 1.
  if (max_accept > m.max_accept() ||
      (max_accept != m.max_accept() && (max_accept + 1) % m.p() != 0)) {
    return InvalidArgument("mask acceptance bound " + std::to_string(max_accept) +
                           " is not k * p - 1 within 64 bits");
  }
  if (count == 0) return Status::Ok();
  MaskParams params{};
  KeyWords(key, params.key_words);
  params.stream_id = stream_id;
  params.offset = offset;
  params.max_accept = max_accept;
  Table().mask(Constants(m), params, dst, count);
  return Status::Ok();
}
}  // namespace internal

Status MaskGenerate(const Modulus& m, const MaskKey& key, uint64_t stream_id, uint64_t offset,
                    void* dst, size_t count) {
  return internal::MaskGenerateWithBound(m, key, stream_id, offset, dst, count, m.max_accept());
}

void ChaCha20Block(const MaskKey& key, uint32_t counter, const std::array<uint8_t, 12>& nonce,
                   uint8_t out[64]) {
  uint32_t key_words[8];
  KeyWords(key, key_words);
  uint32_t state[16];
  chacha20::InitState(state, key_words, counter, chacha20::LoadLe32(nonce.data()),
                      chacha20::LoadLe32(nonce.data() + 4), chacha20::LoadLe32(nonce.data() + 8));
  uint32_t words[16];
  chacha20::BlockWords(state, words);
  for (int i = 0; i < 16; ++i) {
    for (int b = 0; b < 4; ++b) out[4 * i + b] = static_cast<uint8_t>(words[i] >> (8 * b));
  }
}

}  // namespace pccl::kernels
