// Bindings of kernels/hash.h.
#include "bindings/common.h"

namespace pccl::bindings {

void BindHash(py::module_& m) { (void)m; }

}  // namespace pccl::bindings
