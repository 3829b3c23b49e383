// FUZZ_CHECK: the fuzz targets' assertion. A broken property is a finding, so it prints what
// broke and aborts, and libFuzzer saves the input that did it (like a crash). Unlike
// assert() it stays on whatever the build type.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace pccl::fuzz {

[[noreturn]] inline void CheckFailed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "fuzz property broken at %s:%d: %s\n", file, line, expr);
  std::abort();
}

}  // namespace pccl::fuzz

#define FUZZ_CHECK(cond) \
  ((cond) ? static_cast<void>(0) : ::pccl::fuzz::CheckFailed(#cond, __FILE__, __LINE__))
