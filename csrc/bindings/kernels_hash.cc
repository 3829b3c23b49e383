// Bindings of kernels/hash.h.
//
// Buffers arrive as bytes (item size 1, pccl.DataType.UINT8): python/pccl/kernels/hash.py
// turns numpy arrays, torch tensors and bytes-like objects into C-contiguous uint8 views,
// since the hash depends on the bytes only. The GIL is released while hashing; a Hasher
// object carries a mutex so that two Python threads updating the same object (which the
// GIL no longer serialises) take turns instead of racing.
#include <cstdint>
#include <mutex>

#include "bindings/common.h"
#include "pccl/kernels/hash.h"

namespace pccl::bindings {
namespace {

constexpr DType kBytesDType = DType::kUint8;

class PyHasher {
 public:
  explicit PyHasher(uint64_t seed) : hasher_(seed) {}

  void Update(py::handle data) {
    Array a = GetArray(data, "data", kBytesDType, false);
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    hasher_.Update(a.data, a.count);
  }

  uint64_t Digest() {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    return hasher_.Digest();
  }

  void Reset(uint64_t seed) {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    hasher_.Reset(seed);
  }

  uint64_t TotalBytes() {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    return hasher_.total_bytes();
  }

 private:
  std::mutex mutex_;
  kernels::Hasher hasher_;
};

}  // namespace

void BindHash(py::module_& m) {
  m.def("hash64", [](py::handle data, uint64_t seed) {
    Array a = GetArray(data, "data", kBytesDType, false);
    py::gil_scoped_release release;
    return kernels::Hash64(a.data, a.count, seed);
  }, py::arg("data"), py::arg("seed") = 0);

  // For callers that hold an address rather than a buffer (a torch tensor without numpy):
  // pccl._tensors.as_buffer checked it and keeps the memory alive during the call.
  m.def("hash64_address", [](uintptr_t address, size_t nbytes, uint64_t seed) {
    if (address == 0 && nbytes > 0) throw py::value_error("address is null");
    py::gil_scoped_release release;
    return kernels::Hash64(reinterpret_cast<const void*>(address), nbytes, seed);
  }, py::arg("address"), py::arg("nbytes"), py::arg("seed") = 0);

  py::class_<PyHasher>(m, "Hasher")
      .def(py::init<uint64_t>(), py::arg("seed") = 0)
      .def("update", &PyHasher::Update, py::arg("data"))
      .def("digest", &PyHasher::Digest)
      .def("reset", &PyHasher::Reset, py::arg("seed") = 0)
      .def_property_readonly("total_bytes", &PyHasher::TotalBytes);
}

}  // namespace pccl::bindings
