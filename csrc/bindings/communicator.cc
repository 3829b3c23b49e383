// Bindings of comm::Communicator: every blocking call releases the GIL; buffers are
// checked by GetArray; failures become pccl.errors exceptions via ThrowIfError.
#include <chrono>
#include <cmath>
#include <memory>

#include "bindings/common.h"
#include "pccl/comm/communicator.h"
#include "pccl/common/params.h"

namespace pccl::bindings {
namespace {

using comm::Communicator;

// Python passes a timeout in seconds, a negative number for the PCCL_TIMEOUT_MS default,
// or infinity for none.
Deadline DeadlineFromSeconds(double seconds) {
  if (seconds < 0) return DefaultCallDeadline();
  if (std::isinf(seconds)) return Deadline::Never();
  return Deadline::In(std::chrono::duration_cast<Duration>(std::chrono::duration<double>(seconds)));
}

py::tuple InfoTuple(const comm::ReduceInfo& info) {
  return py::make_tuple(info.local_world_size, info.tx_bytes, info.rx_bytes);
}

// The request as Python fills it: tensors arrive as addresses (pccl._tensors checked them
// and keeps them alive), enums as their values, checked here once more because a bad value
// would index tables in the core.
struct PyAllReduceRequest {
  uintptr_t send = 0;
  uintptr_t recv = 0;
  size_t count = 0;
  int dtype = 0;
  int op = 0;
  uint64_t tag = 0;
  int quant_algorithm = 0;
  int quant_dtype = 0;
};

comm::AllReduceRequest MakeRequest(const PyAllReduceRequest& r) {
  if (!kernels::IsValidReduceOp(r.op)) {
    throw py::value_error("op must be a pccl.ReduceOp, got " + std::to_string(r.op));
  }
  if (!kernels::IsValidQuantAlgorithm(r.quant_algorithm)) {
    throw py::value_error("quantization algorithm must be a pccl.QuantizationAlgorithm, got " +
                          std::to_string(r.quant_algorithm));
  }
  comm::AllReduceRequest request;
  request.send = reinterpret_cast<const void*>(r.send);
  request.recv = reinterpret_cast<void*>(r.recv);
  request.count = r.count;
  request.dtype = GetDType(r.dtype, "dtype");
  request.op = static_cast<kernels::ReduceOp>(r.op);
  request.tag = r.tag;
  request.quant.algorithm = static_cast<kernels::QuantAlgorithm>(r.quant_algorithm);
  request.quant.quantized_dtype = GetDType(r.quant_dtype, "quantized_datatype");
  return request;
}

// The Python side of comm::AsyncAllReduce; the Python handle keeps the buffers alive.
class AsyncWork {
 public:
  explicit AsyncWork(std::unique_ptr<comm::AsyncAllReduce> op) : op_(std::move(op)) {}
  // (ok, status code, message, (world, tx, rx)); blocks without the GIL.
  py::tuple Wait() {
    comm::ReduceInfo info;
    Status st;
    {
      py::gil_scoped_release release;
      st = op_->Wait(&info);
    }
    return py::make_tuple(st.ok(), static_cast<int>(st.code()), st.message(), InfoTuple(info));
  }
  bool Done() { return op_->done(); }

 private:
  std::unique_ptr<comm::AsyncAllReduce> op_;
};

}  // namespace

void BindCommunicator(py::module_& m) {
  py::class_<PyAllReduceRequest>(m, "AllReduceRequest")
      .def(py::init([](uintptr_t send, uintptr_t recv, size_t count, int dtype, int op,
                       uint64_t tag, int quant_algorithm, int quant_dtype) {
             return PyAllReduceRequest{send, recv, count, dtype, op, tag, quant_algorithm,
                                       quant_dtype};
           }),
           py::kw_only(), py::arg("send"), py::arg("recv"), py::arg("count"), py::arg("dtype"),
           py::arg("op"), py::arg("tag") = 0, py::arg("quant_algorithm") = 0,
           py::arg("quant_dtype") = 0)
      .def_readonly("count", &PyAllReduceRequest::count)
      .def_readonly("tag", &PyAllReduceRequest::tag);

  py::class_<AsyncWork>(m, "AsyncAllReduce")
      .def("wait", &AsyncWork::Wait)
      .def("done", &AsyncWork::Done);

  py::class_<Communicator, std::shared_ptr<Communicator>>(m, "Communicator")
      .def(py::init([](const std::string& master_address, uint32_t peer_group,
                       uint32_t pool_size, const std::string& listen_host,
                       const std::string& advertise_host) {
             comm::CommunicatorOptions options;
             options.master_address = master_address;
             options.peer_group = peer_group;
             options.pool_size = pool_size;
             options.listen_host = listen_host;
             options.advertise_host = advertise_host;
             return std::make_shared<Communicator>(options);
           }),
           py::arg("master_address"), py::arg("peer_group"), py::arg("pool_size"),
           py::arg("listen_host"), py::arg("advertise_host"))
      .def("connect", [](Communicator& c, double timeout) {
        RunWithoutGil([&] { return c.Connect(DeadlineFromSeconds(timeout)); });
      }, py::arg("timeout"))
      .def("optimize_topology", [](Communicator& c, double timeout) {
        RunWithoutGil([&] { return c.OptimizeTopology(DeadlineFromSeconds(timeout)); });
      }, py::arg("timeout"))
      .def("update_topology", [](Communicator& c, double timeout) {
        RunWithoutGil([&] { return c.UpdateTopology(DeadlineFromSeconds(timeout)); });
      }, py::arg("timeout"))
      .def("are_peers_pending", [](Communicator& c, double timeout, bool joint) {
        bool pending = false;
        RunWithoutGil(
            [&] { return c.ArePeersPending(DeadlineFromSeconds(timeout), joint, &pending); });
        return pending;
      }, py::arg("timeout"), py::kw_only(), py::arg("joint") = true)
      .def("get_attribute", [](Communicator& c, int attribute) {
        if (attribute < 1 || attribute > 4) {
          throw py::value_error("attribute must be a pccl.Attribute, got " +
                                std::to_string(attribute));
        }
        int64_t value = 0;
        ThrowIfError(c.GetAttribute(static_cast<comm::Attribute>(attribute), &value));
        return value;
      }, py::arg("attribute"))
      .def("all_reduce", [](Communicator& c, const PyAllReduceRequest& r, double timeout) {
        comm::AllReduceRequest request = MakeRequest(r);
        comm::ReduceInfo info;
        RunWithoutGil([&] { return c.AllReduce(request, DeadlineFromSeconds(timeout), &info); });
        return InfoTuple(info);
      }, py::arg("request"), py::arg("timeout"))
      .def("all_reduce_async", [](Communicator& c, const PyAllReduceRequest& r, double timeout) {
        comm::AllReduceRequest request = MakeRequest(r);
        std::unique_ptr<comm::AsyncAllReduce> work;
        // Binding the operation to the ring may wait for a topology change.
        RunWithoutGil(
            [&] { return c.StartAllReduce(request, DeadlineFromSeconds(timeout), &work); });
        return std::make_unique<AsyncWork>(std::move(work));
      }, py::arg("request"), py::arg("timeout"),
         py::keep_alive<0, 1>())  // the op's thread uses the communicator
      .def("sync_shared_state", [](Communicator& c, const py::list& entries, uint64_t revision,
                                   int strategy, double timeout) {
        // entries: (key, data pointer, bytes, dtype, allow_content_inequality) tuples; the
        // Python SharedState keeps the tensors alive.
        if (strategy < 0 || strategy > 2) {
          throw py::value_error("strategy must be a pccl.SharedStateSyncStrategy, got " +
                                std::to_string(strategy));
        }
        comm::SharedStateSyncRequest request;
        request.revision = revision;
        request.strategy = static_cast<proto::SyncStrategy>(strategy);
        for (const py::handle item : entries) {
          auto t = item.cast<py::tuple>();
          comm::SharedStateEntry e;
          e.key = t[0].cast<std::string>();
          e.data = reinterpret_cast<void*>(t[1].cast<uintptr_t>());
          e.bytes = t[2].cast<size_t>();
          e.dtype = GetDType(t[3].cast<int>(), "dtype");
          e.allow_content_inequality = t[4].cast<bool>();
          request.entries.push_back(std::move(e));
        }
        comm::SharedStateSyncInfo info;
        RunWithoutGil(
            [&] { return c.SyncSharedState(request, DeadlineFromSeconds(timeout), &info); });
        return py::make_tuple(info.revision, info.tx_bytes, info.rx_bytes);
      }, py::arg("entries"), py::arg("revision"), py::arg("strategy"), py::arg("timeout"))
      .def("close", [](Communicator& c) {
        py::gil_scoped_release release;
        c.Close();
      })
      .def("refresh_view", &Communicator::RefreshView)
      .def("ring_order", [](Communicator& c) {
        py::list out;
        for (uint64_t id : c.RingOrder()) out.append(id);
        return out;
      })
      .def_property_readonly("peer_id", &Communicator::peer_id)
      .def_property_readonly("collectives_in_flight", &Communicator::collectives_in_flight)
      .def_property_readonly("p2p_port", &Communicator::p2p_port);
}

}  // namespace pccl::bindings
