#include "bindings/common.h"

namespace pccl::bindings {

void BindCommunicator(py::module_& m) { (void)m; }

}  // namespace pccl::bindings
