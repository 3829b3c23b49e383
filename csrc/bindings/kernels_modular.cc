// Bindings of kernels/modular.h.
#include "bindings/common.h"

namespace pccl::bindings {

void BindModular(py::module_& m) { (void)m; }

}  // namespace pccl::bindings
