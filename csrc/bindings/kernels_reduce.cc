// Bindings of kernels/reduce.h.
#include "bindings/common.h"
#include "pccl/kernels/reduce.h"

namespace pccl::bindings {

using kernels::ReduceOp;

void BindReduce(py::module_& m) {
  m.def("reduce", [](py::handle dst, py::handle src, DType dtype, ReduceOp op) {
    Array d = GetArray(dst, "dst", dtype, true);
    Array s = GetArray(src, "src", dtype, false);
    CheckSameCount(d, "dst", s, "src");
    py::gil_scoped_release release;
    ThrowIfError(kernels::Reduce(d.dtype, op, d.data, s.data, d.count));
  }, py::arg("dst"), py::arg("src"), py::arg("dtype"), py::arg("op"));

  m.def("divide_by", [](py::handle data, DType dtype, uint64_t divisor) {
    Array d = GetArray(data, "data", dtype, true);
    py::gil_scoped_release release;
    ThrowIfError(kernels::DivideBy(d.dtype, d.data, d.count, divisor));
  }, py::arg("data"), py::arg("dtype"), py::arg("divisor"));

  m.def("widen_half", [](py::handle acc, py::handle src, DType dtype) {
    Array a = GetArray(acc, "acc", DType::kFloat32, true);
    Array s = GetArray(src, "src", dtype, false);
    CheckSameCount(a, "acc", s, "src");
    py::gil_scoped_release release;
    ThrowIfError(kernels::WidenHalf(s.dtype, static_cast<float*>(a.data), s.data, s.count));
  }, py::arg("acc"), py::arg("src"), py::arg("dtype"));

  m.def("accumulate_half", [](py::handle acc, py::handle src, DType dtype, ReduceOp op) {
    Array a = GetArray(acc, "acc", DType::kFloat32, true);
    Array s = GetArray(src, "src", dtype, false);
    CheckSameCount(a, "acc", s, "src");
    py::gil_scoped_release release;
    ThrowIfError(kernels::AccumulateHalf(s.dtype, op, static_cast<float*>(a.data),
                                         s.data, s.count));
  }, py::arg("acc"), py::arg("src"), py::arg("dtype"), py::arg("op"));

  m.def("narrow_half", [](py::handle dst, py::handle acc, DType dtype, uint64_t divisor) {
    Array d = GetArray(dst, "dst", dtype, true);
    Array a = GetArray(acc, "acc", DType::kFloat32, false);
    CheckSameCount(d, "dst", a, "acc");
    py::gil_scoped_release release;
    ThrowIfError(kernels::NarrowHalf(d.dtype, d.data, static_cast<const float*>(a.data),
                                     d.count, divisor));
  }, py::arg("dst"), py::arg("acc"), py::arg("dtype"), py::arg("divisor") = 1);
}

}  // namespace pccl::bindings
