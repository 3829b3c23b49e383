#include "bindings/common.h"

namespace pccl::bindings {

void BindMaster(py::module_& m) { (void)m; }

}  // namespace pccl::bindings
