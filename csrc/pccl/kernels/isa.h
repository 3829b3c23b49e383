// Which instruction-set path the kernels run, chosen once at run time.
//
// Every kernels/*_isa.cc file is compiled three times (see csrc/CMakeLists.txt): into
// namespace pccl::kernels::generic (baseline x86-64 or aarch64), ::avx2 (x86-64-v3: AVX2,
// FMA, F16C, BMI2) and ::avx512 (x86-64-v4: AVX-512 F/BW/DQ/VL). Each copy exports one
// table of function pointers; the public kernel functions call through the table of the
// active ISA. The active ISA defaults to the best one the CPU runs; tests force each path
// in turn with ForceIsa() (or the environment variable PCCL_ISA=generic|avx2|avx512).
//
// Rules for *_isa.cc files, so that no AVX-512 code leaks into the generic path through
// the linker's choice among identical inline functions: put all code in an anonymous
// namespace inside namespace PCCL_ISA_NAME, use only static-inline helpers from headers
// (common/half.h), and call no out-of-line std:: templates.
//
// Thread-safety: ActiveIsa() may be called from any thread. ForceIsa() is for tests and
// benchmarks; call it while no kernel runs.
#pragma once

#include "pccl/common/status.h"

namespace pccl::kernels {

enum class Isa : int { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

const char* IsaName(Isa isa);
// True if this build contains the path and the CPU (and OS) can run it.
bool IsaSupported(Isa isa);
// The best supported ISA.
Isa BestIsa();
// The ISA kernels use now.
Isa ActiveIsa();
// Makes kernels use `isa`; InvalidArgument if it is not supported here.
Status ForceIsa(Isa isa);

// Declares the per-ISA getter of a kernel table, `const Table& Getter()`, in each ISA
// namespace. Use in the kernel family's .cc file, then PCCL_DISPATCH_TABLE below.
#define PCCL_DECLARE_ISA_TABLES(Table, Getter) \
  namespace generic {                          \
  const Table& Getter();                       \
  }                                            \
  namespace avx2 {                             \
  const Table& Getter();                       \
  }                                            \
  namespace avx512 {                           \
  const Table& Getter();                       \
  }

// The table of the active ISA.
#if defined(PCCL_HAVE_X86_ISAS)
#define PCCL_DISPATCH_TABLE(Getter)                                      \
  (::pccl::kernels::ActiveIsa() == ::pccl::kernels::Isa::kAvx512 ? avx512::Getter() \
   : ::pccl::kernels::ActiveIsa() == ::pccl::kernels::Isa::kAvx2 ? avx2::Getter()   \
                                                                  : generic::Getter())
#else
#define PCCL_DISPATCH_TABLE(Getter) (generic::Getter())
#endif

}  // namespace pccl::kernels
