// Bindings of comm::Communicator: every blocking call releases the GIL; buffers are
// checked by GetArray; failures become pccl.errors exceptions via ThrowIfError.
#include <chrono>
#include <cmath>
#include <memory>

#include <pybind11/stl.h>

#include "bindings/common.h"
#include "pccl/auth/handshake.h"
#include "pccl/comm/communicator.h"
#include "pccl/common/call_memory.h"
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
// and keeps them alive), enums as the core's own (pybind11 admits nothing else). One is
// made per call, so its memory comes from CallMemory, as the AsyncWork's does.
struct PyAllReduceRequest final : InCallMemory {
  comm::CollectiveKind kind = comm::CollectiveKind::kAllReduce;
  uintptr_t send = 0;
  uintptr_t recv = 0;
  size_t count = 0;
  DType dtype = DType::kFloat32;
  kernels::ReduceOp op = kernels::ReduceOp::kSum;
  uint64_t tag = 0;
  kernels::QuantAlgorithm quant_algorithm = kernels::QuantAlgorithm::kNone;
  DType quant_dtype = DType::kUint8;
  uint32_t modulus = 0;  // not settable from Python: the exact modes choose it
  uint32_t mode = 0;     // pccl.ReduceMode
  size_t recv_count = 0;
  uint64_t root = 0;
  std::vector<uint64_t> order;
  bool restore_input = true;
  uint64_t peer = 0;  // send/recv: the other end
};

comm::CollectiveRequest MakeRequest(const PyAllReduceRequest& r) {
  comm::CollectiveRequest request;
  request.kind = r.kind;
  request.recv_count = r.kind == comm::CollectiveKind::kAllReduce ? r.count : r.recv_count;
  request.root = r.root;
  request.peer = r.peer;
  request.order = r.order;
  request.restore_input = r.restore_input;
  request.send = reinterpret_cast<const void*>(r.send);
  request.recv = reinterpret_cast<void*>(r.recv);
  request.count = r.count;
  request.dtype = r.dtype;
  request.op = r.op;
  request.tag = r.tag;
  request.quant.algorithm = r.quant_algorithm;
  request.quant.quantized_dtype = r.quant_dtype;
  request.modulus = r.modulus;
  request.mode = r.mode;
  return request;
}

// The Python side of comm::AsyncCollective; the Python handle keeps the buffers alive,
// this the communicator (the operation's thread uses it). Holding it here rather than with
// py::keep_alive saves the three allocations of pybind11's bookkeeping per call.
class AsyncWork final : public InCallMemory {
 public:
  AsyncWork(std::shared_ptr<Communicator> owner, std::unique_ptr<comm::AsyncCollective> op)
      : owner_(std::move(owner)), op_(std::move(op)) {}
  // (ok, status code, message, (world, tx, rx)); blocks without the GIL.
  py::tuple Wait() {
    comm::ReduceInfo info;
    Status st;
    {
      py::gil_scoped_release release;
      st = op_->Wait(&info);
    }
    peer_ = info.peer;
    return py::make_tuple(st.ok(), static_cast<int>(st.code()), st.message(), InfoTuple(info));
  }
  bool Done() { return op_->done(); }
  // Send/recv, once Wait() returned success: the other end's peer id.
  uint64_t Peer() const { return peer_; }

 private:
  std::shared_ptr<Communicator> owner_;     // declared first: outlives op_
  std::unique_ptr<comm::AsyncCollective> op_;
  uint64_t peer_ = 0;
};

}  // namespace

void BindCommunicator(py::module_& m) {
  py::class_<PyAllReduceRequest>(m, "AllReduceRequest")
      .def(py::init([](uintptr_t send, uintptr_t recv, size_t count, DType dtype,
                       kernels::ReduceOp op, uint64_t tag, kernels::QuantAlgorithm quant_algorithm,
                       DType quant_dtype, uint32_t mode, int kind, size_t recv_count,
                       uint64_t root, std::vector<uint64_t> order, bool restore_input,
                       uint64_t peer) {
             if (kind < 0 || kind > static_cast<int>(comm::CollectiveKind::kRecv)) {
               throw py::value_error("unknown collective kind " + std::to_string(kind));
             }
             return PyAllReduceRequest{{}, static_cast<comm::CollectiveKind>(kind),
                                       send, recv, count, dtype, op, tag, quant_algorithm,
                                       quant_dtype, /*modulus=*/0, mode, recv_count, root,
                                       std::move(order), restore_input, peer};
           }),
           py::kw_only(), py::arg("send"), py::arg("recv"), py::arg("count"), py::arg("dtype"),
           py::arg("op"), py::arg("tag") = 0,
           py::arg("quant_algorithm") = kernels::QuantAlgorithm::kNone,
           py::arg("quant_dtype") = DType::kUint8, py::arg("mode") = 0,
           // comm::CollectiveKind: 0 all-reduce, 1 broadcast, 2 all-gather, 3 reduce-scatter,
           // 4 gather, 5 scatter, 6 all-to-all, 7 send, 8 recv
           py::arg("kind") = 0, py::arg("recv_count") = 0, py::arg("root") = 0,
           py::arg("order") = std::vector<uint64_t>{}, py::arg("restore_input") = true,
           py::arg("peer") = 0)
      .def_readonly("count", &PyAllReduceRequest::count)
      .def_readonly("tag", &PyAllReduceRequest::tag);

  py::class_<comm::SharedStateEntry>(m, "SharedStateEntry")
      .def(py::init([](std::string key, uintptr_t address, size_t nbytes, DType dtype,
                       bool allow_content_inequality) {
             return comm::SharedStateEntry{std::move(key), reinterpret_cast<void*>(address),
                                           nbytes, dtype, allow_content_inequality};
           }),
           py::kw_only(), py::arg("key"), py::arg("address"), py::arg("nbytes"),
           py::arg("dtype"), py::arg("allow_content_inequality") = false)
      .def_readonly("key", &comm::SharedStateEntry::key)
      .def_readonly("nbytes", &comm::SharedStateEntry::bytes);

  py::class_<AsyncWork>(m, "AsyncAllReduce")
      .def("wait", &AsyncWork::Wait)
      .def("done", &AsyncWork::Done)
      .def("peer", &AsyncWork::Peer);

  py::class_<Communicator, std::shared_ptr<Communicator>>(m, "Communicator")
      .def(py::init([](const std::string& master_address, uint32_t peer_group,
                       uint32_t pool_size, const std::string& listen_host,
                       const std::string& advertise_host, const std::string& secret,
                       const std::string& transport) {
             comm::CommunicatorOptions options;
             options.master_address = master_address;
             options.peer_group = peer_group;
             options.pool_size = pool_size;
             options.listen_host = listen_host;
             options.advertise_host = advertise_host;
             options.secret = secret;
             options.transport = transport;
             // Checked here so that a wrong secret or transport fails at construction.
             auth::RunAuth run;
             Status valid = auth::MakeRunAuth(secret, transport, &run);
             if (!valid.ok()) throw py::value_error(valid.message());
             return std::make_shared<Communicator>(options);
           }),
           py::arg("master_address"), py::arg("peer_group"), py::arg("pool_size"),
           py::arg("listen_host"), py::arg("advertise_host"), py::arg("secret") = "",
           py::arg("transport") = "")
      .def("connect", [](Communicator& c, double timeout) {
        RunWithoutGil([&] { return c.Connect(DeadlineFromSeconds(timeout)); });
      }, py::arg("timeout"))
      .def("optimize_topology", [](Communicator& c, double timeout) {
        RunWithoutGil([&] { return c.OptimizeTopology(DeadlineFromSeconds(timeout)); });
      }, py::arg("timeout"))
      .def("update_topology", [](Communicator& c, double timeout) {
        RunWithoutGil([&] { return c.UpdateTopology(DeadlineFromSeconds(timeout)); });
      }, py::arg("timeout"))
      .def("are_peers_pending", [](Communicator& c, double timeout, bool joint, bool wait) {
        bool pending = false;
        RunWithoutGil([&] {
          return c.ArePeersPending(DeadlineFromSeconds(timeout), joint, &pending, wait);
        });
        return pending;
      }, py::arg("timeout"), py::kw_only(), py::arg("joint") = true, py::arg("wait") = false)
      .def("get_attribute", [](Communicator& c, comm::Attribute attribute) {
        int64_t value = 0;
        ThrowIfError(c.GetAttribute(attribute, &value));
        return value;
      }, py::arg("attribute"))
      .def("all_reduce", [](Communicator& c, const PyAllReduceRequest& r, double timeout) {
        comm::CollectiveRequest request = MakeRequest(r);
        comm::ReduceInfo info;
        RunWithoutGil([&] { return c.Collective(request, DeadlineFromSeconds(timeout), &info); });
        return InfoTuple(info);
      }, py::arg("request"), py::arg("timeout"))
      .def("all_reduce_async", [](std::shared_ptr<Communicator> c, const PyAllReduceRequest& r,
                                  double timeout) {
        comm::CollectiveRequest request = MakeRequest(r);
        std::unique_ptr<comm::AsyncCollective> work;
        // Binding the operation to the ring may wait for a topology change.
        RunWithoutGil(
            [&] { return c->StartCollective(request, DeadlineFromSeconds(timeout), &work); });
        return std::make_unique<AsyncWork>(std::move(c), std::move(work));
      }, py::arg("request"), py::arg("timeout"))
      .def("sync_shared_state", [](Communicator& c,
                                   const std::vector<comm::SharedStateEntry>& entries,
                                   uint64_t revision, proto::SyncStrategy strategy,
                                   double timeout) {
        // The Python SharedState keeps the entries' tensors alive.
        comm::SharedStateSyncRequest request;
        request.revision = revision;
        request.strategy = strategy;
        request.entries = entries;
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
      .def_property_readonly("p2p_port", &Communicator::p2p_port)
      // (reachable, observed host, observed port, detail), or None until the master answered.
      .def_property_readonly("reachability", [](Communicator& c) -> py::object {
        std::optional<proto::Reachability> r = c.reachability();
        if (!r) return py::none();
        return py::make_tuple(r->reachable != 0, r->observed_host, r->observed_port, r->detail);
      })
      .def("wait_reachability", [](Communicator& c, double timeout) {
        proto::Reachability r;
        RunWithoutGil([&] { return c.WaitReachability(DeadlineFromSeconds(timeout), &r); });
        return py::make_tuple(r.reachable != 0, r.observed_host, r.observed_port, r.detail);
      })
      // [(peer id, "next"/"prev", "direct"/"punched"/"relayed"/"unknown", bytes per second,
      //   bytes, rtt us, retransmits, stripes, early bytes)]
      .def("links", [](Communicator& c) {
        py::list out;
        for (const auto& l : c.Links()) {
          out.append(py::make_tuple(l.peer_id, l.next ? "next" : "prev",
                                    link::RouteName(l.route), l.bytes_per_second, l.bytes,
                                    l.rtt_us, l.retransmits, l.stripes, l.early_bytes));
        }
        return out;
      })
      // {kind: (succeeded, failed, total s, max s, [(bucket upper bound s, calls)])}
      .def("op_stats", [](Communicator& c) {
        py::dict out;
        const auto stats = c.OpStatsSnapshot();
        for (int k = 0; k < comm::kNumOpKinds; ++k) {
          const comm::OpKindStats& s = stats[k];
          py::list buckets;
          for (size_t b = 0; b < comm::kLatencyBuckets.size(); ++b) {
            buckets.append(py::make_tuple(comm::kLatencyBuckets[b], s.buckets[b]));
          }
          out[comm::OpKindName(static_cast<comm::OpKind>(k))] =
              py::make_tuple(s.succeeded, s.failed, s.total_seconds, s.max_seconds, buckets);
        }
        return out;
      });
}

}  // namespace pccl::bindings
