// Buffer ingestion and the Status -> exception hand-off (see common.h).
#include <string>

#include "bindings/common.h"

namespace pccl::bindings {

void ThrowIfError(const Status& status) {
  if (!status.ok()) throw StatusError(status);
}

void RegisterStatusTranslator() {
  // pybind11 runs translators with the GIL held, wherever the StatusError was thrown. The
  // Python side owns the mapping from codes to exception classes (pccl/errors.py).
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      py::object error = py::module_::import("pccl.errors")
                             .attr("error_for_status")(static_cast<int>(e.status().code()),
                                                       e.status().message());
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
    }
  });
}

Array GetArray(py::handle obj, const char* name, DType dtype, bool writable) {
  Array a;
  a.dtype = dtype;
  if (!PyObject_CheckBuffer(obj.ptr())) {
    throw py::type_error(std::string(name) + " must support the buffer protocol, got " +
                         std::string(py::str(py::type::of(obj).attr("__name__"))));
  }
  try {
    a.info = py::reinterpret_borrow<py::buffer>(obj).request(writable);
  } catch (py::error_already_set& e) {
    throw py::value_error(std::string(name) + (writable ? " must be writable" : "") + ": " +
                          e.what());
  }
  if (writable && a.info.readonly) {
    throw py::value_error(std::string(name) + " must be writable, got a read-only buffer");
  }
  const size_t itemsize = DTypeSize(a.dtype);
  if (static_cast<size_t>(a.info.itemsize) != itemsize) {
    throw py::type_error(std::string(name) + " has items of " + std::to_string(a.info.itemsize) +
                         " bytes, but dtype " + DTypeName(a.dtype) + " needs " +
                         std::to_string(itemsize));
  }
  // C-contiguous: strides must be the packed row-major strides.
  py::ssize_t expected = a.info.itemsize;
  for (py::ssize_t d = a.info.ndim - 1; d >= 0; --d) {
    if (a.info.shape[d] != 1 && a.info.strides[d] != expected) {
      throw py::value_error(std::string(name) + " must be C-contiguous");
    }
    expected *= a.info.shape[d];
  }
  a.data = a.info.ptr;
  a.count = static_cast<size_t>(a.info.size);
  return a;
}

void CheckSameCount(const Array& a, const char* a_name, const Array& b, const char* b_name) {
  if (a.count != b.count) {
    throw py::value_error(std::string(a_name) + " has " + std::to_string(a.count) +
                          " elements but " + b_name + " has " + std::to_string(b.count));
  }
}

}  // namespace pccl::bindings
