// Bindings of master/server.h: pccl._core.MasterServer, wrapped by pccl.master.MasterNode.
// Start and join release the GIL; the server thread never touches Python.
#include <memory>
#include <string>

#include "bindings/common.h"
#include "pccl/auth/handshake.h"
#include "pccl/master/server.h"

namespace pccl::bindings {

namespace {

using master::MasterServer;

std::unique_ptr<MasterServer> StartServer(const std::string& listen_address,
                                          int64_t link_timeout_ms, int64_t heartbeat_timeout_ms,
                                          const std::string& secret,
                                          const std::string& transport,
                                          const std::string& relay_address) {
  if (link_timeout_ms <= 0) {
    throw py::value_error("link_timeout_ms must be positive, got " +
                          std::to_string(link_timeout_ms));
  }
  if (heartbeat_timeout_ms < 4) {
    throw py::value_error("heartbeat_timeout_ms must be at least 4, got " +
                          std::to_string(heartbeat_timeout_ms));
  }
  master::MasterOptions options;
  options.listen_address = listen_address;
  options.link_timeout = std::chrono::milliseconds(link_timeout_ms);
  options.heartbeat_timeout = std::chrono::milliseconds(heartbeat_timeout_ms);
  options.relay_address = relay_address;
  if (Status valid = auth::MakeRunAuth(secret, transport, &options.auth); !valid.ok()) {
    throw py::value_error(valid.message());
  }
  std::unique_ptr<MasterServer> server;
  Status status;
  {
    py::gil_scoped_release release;
    status = MasterServer::Start(options, &server);
  }
  if (status.code() == StatusCode::kInvalidArgument) {
    throw py::value_error("listen_address: " + status.message());
  }
  ThrowIfError(status);
  return server;
}

}  // namespace

void BindMaster(py::module_& m) {
  py::class_<MasterServer>(m, "MasterServer",
                           "The master's server thread (use pccl.MasterNode instead).")
      .def_static("start", &StartServer, py::arg("listen_address"),
                  py::arg("link_timeout_ms") = 30000, py::arg("heartbeat_timeout_ms") = 3000,
                  py::arg("secret") = "", py::arg("transport") = "",
                  py::arg("relay_address") = "",
                  "Binds listen_address ('host:port', port 0 = any) and starts serving. "
                  "secret: the run secret (empty: PCCL_RUN_SECRET, PCCL_RUN_SECRET_FILE or "
                  "none); transport: 'plain' or 'encrypted' (empty: PCCL_TRANSPORT); "
                  "relay_address: '' (the listen host, any port), 'off' or 'host:port'.")
      .def_property_readonly("relay_port", &MasterServer::relay_port,
                             "The relay's port (0: none).")
      .def("relay_links", [](MasterServer& s) {
        py::list out;
        for (const auto& l : s.relay_links()) {
          out.append(py::make_tuple(l.from_peer, l.to_peer, l.bytes, l.open, l.connections));
        }
        return out;
      }, "[(from peer, to peer, bytes forwarded, open connections, connections so far)]")
      .def_property_readonly("port", &MasterServer::port, "The bound port.")
      .def_property_readonly("address", &MasterServer::address, "The bound 'host:port'.")
      .def_property_readonly("running", &MasterServer::running,
                             "False once the server thread has exited.")
      .def("interrupt", &MasterServer::Interrupt, "Asks the server to stop; returns at once.")
      .def("join", &MasterServer::Join, py::call_guard<py::gil_scoped_release>(),
           "Waits for the server thread to exit.");
}

}  // namespace pccl::bindings
