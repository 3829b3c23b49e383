// Bindings of kernels/modular.h.
#include <pybind11/stl.h>

#include <cstring>
#include <string>

#include "bindings/common.h"
#include "pccl/kernels/modular.h"

namespace pccl::bindings {
namespace {

constexpr DType kUint32 = DType::kUint32;
constexpr DType kUint64 = DType::kUint64;

kernels::Modulus MakeModulus(uint64_t p) {
  kernels::Modulus m;
  ThrowIfError(kernels::Modulus::Make(p, &m));
  return m;
}

kernels::MaskKey GetKey(const py::bytes& key) {
  std::string bytes = key;
  kernels::MaskKey out{};
  if (bytes.size() != out.size()) {
    throw py::value_error("key must be 32 bytes, got " + std::to_string(bytes.size()));
  }
  std::memcpy(out.data(), bytes.data(), out.size());
  return out;
}

// dst = op(dst, src) on uint32 residues.
template <Status (*kOp)(const kernels::Modulus&, void*, const void*, size_t)>
void BinaryResidues(const kernels::Modulus& m, py::handle dst, py::handle src) {
  Array d = GetArray(dst, "dst", kUint32, true);
  Array s = GetArray(src, "src", kUint32, false);
  CheckSameCount(d, "dst", s, "src");
  RunWithoutGil([&] { return kOp(m, d.data, s.data, d.count); });
}

void MaskGenerate(const kernels::Modulus& m, py::handle dst, const py::bytes& key,
                  uint64_t stream_id, uint64_t offset, std::optional<uint64_t> max_accept) {
  Array d = GetArray(dst, "dst", kUint32, true);
  kernels::MaskKey k = GetKey(key);
  const uint64_t bound = max_accept.value_or(m.max_accept());
  RunWithoutGil([&] {
    return kernels::internal::MaskGenerateWithBound(m, k, stream_id, offset, d.data, d.count,
                                                    bound);
  });
}

}  // namespace

void BindModular(py::module_& m) {
  py::class_<kernels::Modulus>(m, "Modulus", "Barrett constants of a modulus p in [2, 2^32).")
      .def(py::init(&MakeModulus), py::arg("p"))
      .def_property_readonly("p", &kernels::Modulus::p)
      .def_property_readonly("mu", &kernels::Modulus::mu)
      .def_property_readonly("half", &kernels::Modulus::half)
      .def_property_readonly("max_accept", &kernels::Modulus::max_accept)
      .def("reduce", &kernels::Modulus::Reduce, py::arg("x"));

  m.def("mod_reduce", [](const kernels::Modulus& mod, py::handle dst, py::handle src) {
    Array d = GetArray(dst, "dst", kUint32, true);
    Array s = GetArray(src, "src", kUint64, false);
    CheckSameCount(d, "dst", s, "src");
    RunWithoutGil([&] { return kernels::ModReduce(mod, d.data, s.data, d.count); });
  }, py::arg("modulus"), py::arg("dst"), py::arg("src"));
  m.def("mod_add", &BinaryResidues<&kernels::ModAdd>, py::arg("modulus"), py::arg("dst"),
        py::arg("src"));
  m.def("mod_sub", &BinaryResidues<&kernels::ModSub>, py::arg("modulus"), py::arg("dst"),
        py::arg("src"));
  m.def("mod_mul", &BinaryResidues<&kernels::ModMul>, py::arg("modulus"), py::arg("dst"),
        py::arg("src"));
  m.def("mod_mul_acc", [](const kernels::Modulus& mod, py::handle acc, py::handle a,
                          py::handle b) {
    Array c = GetArray(acc, "acc", kUint32, true);
    Array x = GetArray(a, "a", kUint32, false);
    Array y = GetArray(b, "b", kUint32, false);
    CheckSameCount(c, "acc", x, "a");
    CheckSameCount(c, "acc", y, "b");
    RunWithoutGil([&] { return kernels::ModMulAcc(mod, c.data, x.data, y.data, c.count); });
  }, py::arg("modulus"), py::arg("acc"), py::arg("a"), py::arg("b"));

  m.def("fixed_encode", [](const kernels::Modulus& mod, py::handle dst, py::handle src,
                           DType src_dtype, int frac_bits, bool saturate) {
    Array d = GetArray(dst, "dst", kUint32, true);
    Array s = GetArray(src, "src", src_dtype, false);
    CheckSameCount(d, "dst", s, "src");
    kernels::FixedPointOptions options;
    options.frac_bits = frac_bits;
    options.overflow =
        saturate ? kernels::FixedOverflow::kSaturate : kernels::FixedOverflow::kError;
    RunWithoutGil([&] {
      return kernels::FixedEncode(mod, s.dtype, d.data, s.data, d.count, options);
    });
  }, py::arg("modulus"), py::arg("dst"), py::arg("src"), py::arg("src_dtype"),
     py::arg("frac_bits"), py::arg("saturate"));
  m.def("fixed_decode", [](const kernels::Modulus& mod, py::handle dst, py::handle src,
                           DType dst_dtype, int frac_bits) {
    Array d = GetArray(dst, "dst", dst_dtype, true);
    Array s = GetArray(src, "src", kUint32, false);
    CheckSameCount(d, "dst", s, "src");
    RunWithoutGil([&] {
      return kernels::FixedDecode(mod, d.dtype, d.data, s.data, d.count, frac_bits);
    });
  }, py::arg("modulus"), py::arg("dst"), py::arg("src"), py::arg("dst_dtype"),
     py::arg("frac_bits"));

  m.def("mask_generate", &MaskGenerate, py::arg("modulus"), py::arg("dst"), py::arg("key"),
        py::arg("stream_id"), py::arg("offset"), py::arg("max_accept") = py::none(),
        "max_accept is a test hook (k * p - 1) that forces rejections.");

  m.def("chacha20_block", [](const py::bytes& key, uint32_t counter, const py::bytes& nonce) {
    kernels::MaskKey k = GetKey(key);
    std::string n = nonce;
    std::array<uint8_t, 12> nonce_bytes{};
    if (n.size() != nonce_bytes.size()) {
      throw py::value_error("nonce must be 12 bytes, got " + std::to_string(n.size()));
    }
    std::memcpy(nonce_bytes.data(), n.data(), nonce_bytes.size());
    uint8_t out[64];
    kernels::ChaCha20Block(k, counter, nonce_bytes, out);
    return py::bytes(reinterpret_cast<const char*>(out), sizeof(out));
  }, py::arg("key"), py::arg("counter"), py::arg("nonce"));
}

}  // namespace pccl::bindings
