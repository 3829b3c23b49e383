// pccl._core: the compiled half of pccl. Thin by design: argument checks and GIL release
// here, everything else in csrc/pccl. The Python package wraps it (python/pccl).
#include <chrono>
#include <cmath>
#include <vector>

#include "bindings/common.h"
#include "pccl/common/logging.h"
#include "pccl/kernels/isa.h"

namespace py = pybind11;

namespace {

pccl::kernels::Isa IsaFromName(const std::string& name) {
  for (auto isa : {pccl::kernels::Isa::kGeneric, pccl::kernels::Isa::kAvx2,
                   pccl::kernels::Isa::kAvx512}) {
    if (name == pccl::kernels::IsaName(isa)) return isa;
  }
  throw py::value_error("isa must be one of 'generic', 'avx2', 'avx512', got '" + name + "'");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "pccl compiled core";
  pccl::bindings::RegisterStatusTranslator();
  pccl::bindings::BindEnums(m);
  py::module_ k = m.def_submodule("kernels", "compute kernels on host buffers");

  k.def("supported_isas", [] {
    py::list out;
    for (auto isa : {pccl::kernels::Isa::kGeneric, pccl::kernels::Isa::kAvx2,
                     pccl::kernels::Isa::kAvx512}) {
      if (pccl::kernels::IsaSupported(isa)) out.append(pccl::kernels::IsaName(isa));
    }
    return out;
  }, "ISA paths this build has and this CPU runs, slowest first.");
  k.def("active_isa", [] { return std::string(pccl::kernels::IsaName(pccl::kernels::ActiveIsa())); },
        "The ISA path kernels use now.");
  k.def("set_isa", [](const std::string& name) {
    pccl::bindings::ThrowIfError(pccl::kernels::ForceIsa(IsaFromName(name)));
  }, py::arg("isa"), "Forces an ISA path (tests and benchmarks).");

  m.def("capture_log_lines", &pccl::CaptureLogLines, py::arg("on"),
        "Queue the core's log lines for take_log_lines (True) or write them to stderr.");
  m.def("take_log_lines", [](double seconds) {
    std::vector<pccl::LogRecord> lines;
    {
      py::gil_scoped_release release;
      pccl::TakeLogLines(pccl::Deadline::In(std::chrono::duration_cast<pccl::Duration>(
                             std::chrono::duration<double>(std::max(0.0, seconds)))),
                         &lines);
    }
    py::list out;
    for (const pccl::LogRecord& r : lines) {
      out.append(py::make_tuple(static_cast<int>(r.level), r.unix_time, r.message));
    }
    return out;
  }, py::arg("timeout"),
        "Waits up to `timeout` seconds for queued log lines; [(level, unix time, message)].");

  pccl::bindings::BindReduce(k);
  pccl::bindings::BindQuantize(k);
  pccl::bindings::BindModular(k);
  pccl::bindings::BindHash(k);
  pccl::bindings::BindMaster(m);
  pccl::bindings::BindCommunicator(m);
}
