#include "pccl/kernels/isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

namespace pccl::kernels {
namespace {

bool CpuRuns(Isa isa) {
  switch (isa) {
    case Isa::kGeneric:
      return true;
#if defined(PCCL_HAVE_X86_ISAS)
    case Isa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
    case Isa::kAvx512:
      return CpuRuns(Isa::kAvx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl");
#endif
    default:
      return false;
  }
}

Isa InitialIsa() {
  Isa best = BestIsa();
  const char* env = std::getenv("PCCL_ISA");
  if (env == nullptr || *env == '\0') return best;
  for (Isa isa : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512}) {
    if (std::strcmp(env, IsaName(isa)) == 0 && IsaSupported(isa)) return isa;
  }
  return best;  // unknown or unsupported request: the safe choice is the best real path
}

std::atomic<int>& ActiveSlot() {
  static std::atomic<int> slot{static_cast<int>(InitialIsa())};
  return slot;
}

}  // namespace

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kGeneric: return "generic";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "unknown";
}

bool IsaSupported(Isa isa) { return CpuRuns(isa); }

Isa BestIsa() {
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2}) {
    if (IsaSupported(isa)) return isa;
  }
  return Isa::kGeneric;
}

Isa ActiveIsa() { return static_cast<Isa>(ActiveSlot().load(std::memory_order_relaxed)); }

Status ForceIsa(Isa isa) {
  if (!IsaSupported(isa)) {
    return InvalidArgument(std::string("ISA '") + IsaName(isa) +
                           "' is not supported by this CPU or build");
  }
  ActiveSlot().store(static_cast<int>(isa), std::memory_order_relaxed);
  return Status::Ok();
}

}  // namespace pccl::kernels
