// Bindings of kernels/quantize.h.
#include "bindings/common.h"

namespace pccl::bindings {

void BindQuantize(py::module_& m) { (void)m; }

}  // namespace pccl::bindings
