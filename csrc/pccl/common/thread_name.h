// Names the calling thread, so that `top -H`, `perf report --sort comm` and a debugger
// tell pccl's threads apart (a link's sender, its receiver, a worker...). At most 15
// characters are kept; where the platform cannot name threads this does nothing.
#pragma once

#if defined(__linux__)
#include <pthread.h>
#endif

namespace pccl {

inline void NameThisThread(const char* name) {
#if defined(__linux__)
  (void)pthread_setname_np(pthread_self(), name);
#else
  (void)name;
#endif
}

}  // namespace pccl
