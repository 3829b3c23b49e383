// Shared helpers of the pybind11 module: the one Status -> exception mapping and the one
// place that turns Python buffers into (pointer, count, dtype).
//
// Exceptions exist only here, at the Python edge. Blocking calls release the GIL in the
// binding that calls them. Argument errors name the argument ("dst must be writable").
#pragma once

#include <pybind11/pybind11.h>

#include <cstddef>
#include <exception>
#include <optional>
#include <string>

#include "pccl/common/dtype.h"
#include "pccl/common/status.h"

namespace pccl::bindings {

namespace py = pybind11;

// A failed Status on its way to Python. Safe to throw without the GIL.
class StatusError : public std::exception {
 public:
  explicit StatusError(Status status) : status_(std::move(status)), what_(status_.ToString()) {}
  const Status& status() const { return status_; }
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  Status status_;
  std::string what_;
};

// Throws StatusError for a failed `status` (no-op when OK). The translator registered by
// RegisterStatusTranslator turns it into the exception pccl.errors.error_for_status picks:
// the one place that maps codes to exception classes.
void ThrowIfError(const Status& status);
void RegisterStatusTranslator();

// Runs `call` (returning Status) with the GIL released, then raises its error, if any.
template <class Call>
void RunWithoutGil(Call&& call) {
  Status status;
  {
    py::gil_scoped_release release;
    status = call();
  }
  ThrowIfError(status);
}

// A C-contiguous buffer taken from a Python object (numpy array, memoryview, bytearray,
// anything with the buffer protocol). Holds the buffer (and so the object) alive.
struct Array {
  py::buffer_info info;
  void* data = nullptr;
  size_t count = 0;  // elements
  DType dtype = DType::kUint8;
};

// Reads argument `name`. `dtype` is the element type the caller states; the buffer's item
// size must match it (memory safety: the kernels index it by that size). `writable`
// demands a writable buffer. Raises TypeError (not a buffer, wrong item size) or
// ValueError (not contiguous, read-only) naming `name`.
Array GetArray(py::handle obj, const char* name, DType dtype, bool writable);

// Raises ValueError unless a.count == b.count, naming both arguments.
void CheckSameCount(const Array& a, const char* a_name, const Array& b, const char* b_name);

// Registration of each part of the module (one file each). BindEnums comes first: the
// others take its enums as argument types.
void BindEnums(py::module_& m);
void BindReduce(py::module_& m);
void BindQuantize(py::module_& m);
void BindModular(py::module_& m);
void BindHash(py::module_& m);
void BindMaster(py::module_& m);
void BindCommunicator(py::module_& m);

}  // namespace pccl::bindings
