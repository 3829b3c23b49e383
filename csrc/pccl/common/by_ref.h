// ByRef: a callable that calls another through a pointer, to hand a lambda that captures
// much to a std::function without an allocation.
//
// libstdc++'s std::function keeps a callable inline when it is trivially copyable and at
// most 16 bytes; a lambda capturing three references is 24 and goes to the heap, once per
// std::function made of it. ByRef(f) is one pointer. The std::function made of it must not
// outlive `f` (the hot paths use it for callbacks scoped to the call that made them).
#pragma once

#include <utility>

namespace pccl {

template <typename F>
auto ByRef(F& f) {
  return [p = &f](auto&&... args) -> decltype(auto) {
    return (*p)(std::forward<decltype(args)>(args)...);
  };
}
template <typename F>
auto ByRef(F&& f) = delete;  // a temporary would be gone before the call

}  // namespace pccl
