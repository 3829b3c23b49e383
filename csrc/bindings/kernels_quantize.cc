// Bindings of kernels/quantize.h.
#include "bindings/common.h"
#include "pccl/kernels/quantize.h"

namespace pccl::bindings {
namespace {

using kernels::QuantAlgorithm;

kernels::QuantizeOptions GetOptions(QuantAlgorithm algorithm, DType quantized_dtype,
                                    size_t block_size) {
  kernels::QuantizeOptions options;
  options.algorithm = algorithm;
  options.quantized_dtype = quantized_dtype;
  options.block_size = block_size;
  return options;
}

}  // namespace

void BindQuantize(py::module_& m) {
  m.attr("DEFAULT_QUANT_BLOCK_SIZE") = kernels::kDefaultQuantBlockSize;
  m.attr("MAX_QUANT_BLOCK_SIZE") = kernels::kMaxQuantBlockSize;

  m.def("quantized_params_bytes",
        [](size_t count, DType source_dtype, QuantAlgorithm algorithm, DType quantized_dtype,
           size_t block_size) {
          kernels::QuantizeOptions options = GetOptions(algorithm, quantized_dtype, block_size);
          size_t bytes = 0;
          ThrowIfError(kernels::QuantizedParamsBytes(source_dtype, count,
                                                     options, &bytes));
          return bytes;
        },
        py::arg("count"), py::arg("source_dtype"), py::arg("algorithm"),
        py::arg("quantized_dtype"), py::arg("block_size"));

  // params is a uint8 buffer of quantized_params_bytes() bytes.
  m.def("quantize",
        [](py::handle src, py::handle q, py::handle params, DType source_dtype,
           DType quantized_dtype, QuantAlgorithm algorithm, size_t block_size) {
          Array s = GetArray(src, "src", source_dtype, false);
          Array qa = GetArray(q, "q", quantized_dtype, true);
          Array p = GetArray(params, "params", DType::kUint8, true);
          CheckSameCount(qa, "q", s, "src");
          kernels::QuantizeOptions options = GetOptions(algorithm, quantized_dtype, block_size);
          py::gil_scoped_release release;
          ThrowIfError(kernels::Quantize(s.dtype, s.data, s.count, options, qa.data, p.data,
                                         p.count));
        },
        py::arg("src"), py::arg("q"), py::arg("params"), py::arg("source_dtype"),
        py::arg("quantized_dtype"), py::arg("algorithm"), py::arg("block_size"));

  // accumulate: dst += deq(q); otherwise dst = deq(q).
  m.def("dequantize",
        [](py::handle dst, py::handle q, py::handle params, DType dst_dtype, DType source_dtype,
           DType quantized_dtype, QuantAlgorithm algorithm, size_t block_size,
           bool accumulate) {
          Array d = GetArray(dst, "dst", dst_dtype, true);
          Array qa = GetArray(q, "q", quantized_dtype, false);
          Array p = GetArray(params, "params", DType::kUint8, false);
          CheckSameCount(d, "dst", qa, "q");
          kernels::QuantizeOptions options = GetOptions(algorithm, quantized_dtype, block_size);
          DType source = source_dtype;
          py::gil_scoped_release release;
          if (accumulate) {
            ThrowIfError(kernels::DequantizeAccumulate(d.dtype, d.data, source, qa.data, p.data,
                                                       p.count, d.count, options));
          } else {
            ThrowIfError(kernels::DequantizeSet(d.dtype, d.data, source, qa.data, p.data, p.count,
                                                d.count, options));
          }
        },
        py::arg("dst"), py::arg("q"), py::arg("params"), py::arg("dst_dtype"),
        py::arg("source_dtype"), py::arg("quantized_dtype"), py::arg("algorithm"),
        py::arg("block_size"), py::arg("accumulate"));
}

}  // namespace pccl::bindings
