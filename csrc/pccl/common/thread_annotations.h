// Lock annotations (checked by clang's -Wthread-safety, documentation elsewhere).
// Functions that need the lock held end in ...Locked.
#pragma once

#if defined(__clang__)
#define PCCL_GUARDED_BY(x) __attribute__((guarded_by(x)))
#else
#define PCCL_GUARDED_BY(x)
#endif
