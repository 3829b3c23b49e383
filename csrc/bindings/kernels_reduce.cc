// Bindings of kernels/reduce.h.
#include "bindings/common.h"
#include "pccl/kernels/reduce.h"

namespace pccl::bindings {
namespace {

kernels::ReduceOp GetOp(int value) {
  if (!kernels::IsValidReduceOp(value)) {
    throw py::value_error("op must be a pccl.ReduceOp, got " + std::to_string(value));
  }
  return static_cast<kernels::ReduceOp>(value);
}

}  // namespace

void BindReduce(py::module_& m) {
  m.def("reduce", [](py::handle dst, py::handle src, int dtype, int op) {
    Array d = GetArray(dst, "dst", dtype, true);
    Array s = GetArray(src, "src", dtype, false);
    CheckSameCount(d, "dst", s, "src");
    kernels::ReduceOp reduce_op = GetOp(op);
    py::gil_scoped_release release;
    ThrowIfError(kernels::Reduce(d.dtype, reduce_op, d.data, s.data, d.count));
  }, py::arg("dst"), py::arg("src"), py::arg("dtype"), py::arg("op"));

  m.def("divide_by", [](py::handle data, int dtype, uint64_t divisor) {
    Array d = GetArray(data, "data", dtype, true);
    py::gil_scoped_release release;
    ThrowIfError(kernels::DivideBy(d.dtype, d.data, d.count, divisor));
  }, py::arg("data"), py::arg("dtype"), py::arg("divisor"));

  m.def("widen_half", [](py::handle acc, py::handle src, int dtype) {
    Array a = GetArray(acc, "acc", static_cast<int>(DType::kFloat32), true);
    Array s = GetArray(src, "src", dtype, false);
    CheckSameCount(a, "acc", s, "src");
    py::gil_scoped_release release;
    ThrowIfError(kernels::WidenHalf(s.dtype, static_cast<float*>(a.data), s.data, s.count));
  }, py::arg("acc"), py::arg("src"), py::arg("dtype"));

  m.def("accumulate_half", [](py::handle acc, py::handle src, int dtype, int op) {
    Array a = GetArray(acc, "acc", static_cast<int>(DType::kFloat32), true);
    Array s = GetArray(src, "src", dtype, false);
    CheckSameCount(a, "acc", s, "src");
    kernels::ReduceOp reduce_op = GetOp(op);
    py::gil_scoped_release release;
    ThrowIfError(kernels::AccumulateHalf(s.dtype, reduce_op, static_cast<float*>(a.data),
                                         s.data, s.count));
  }, py::arg("acc"), py::arg("src"), py::arg("dtype"), py::arg("op"));

  m.def("narrow_half", [](py::handle dst, py::handle acc, int dtype, uint64_t divisor) {
    Array d = GetArray(dst, "dst", dtype, true);
    Array a = GetArray(acc, "acc", static_cast<int>(DType::kFloat32), false);
    CheckSameCount(d, "dst", a, "acc");
    py::gil_scoped_release release;
    ThrowIfError(kernels::NarrowHalf(d.dtype, d.data, static_cast<const float*>(a.data),
                                     d.count, divisor));
  }, py::arg("dst"), py::arg("acc"), py::arg("dtype"), py::arg("divisor") = 1);
}

}  // namespace pccl::bindings
