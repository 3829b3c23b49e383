// Bindings of master/server.h and master/relay.h: pccl._core.MasterServer, wrapped by
// pccl.MasterNode, and pccl._core.RelayServer, wrapped by pccl.RelayNode. Start and join
// release the GIL; the server threads never touch Python.
#include <memory>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "bindings/common.h"
#include "pccl/auth/handshake.h"
#include "pccl/master/relay.h"
#include "pccl/master/server.h"

namespace pccl::bindings {

namespace {

using master::MasterServer;

std::unique_ptr<MasterServer> StartServer(const std::string& listen_address,
                                          int64_t link_timeout_ms, int64_t heartbeat_timeout_ms,
                                          const std::string& secret,
                                          const std::string& transport,
                                          const std::string& relay_address,
                                          const std::string& external_relay,
                                          const py::bytes& relay_key,
                                          const std::string& state_file,
                                          int64_t resume_window_ms) {
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
  options.external_relay = external_relay;
  options.relay_key = relay_key;
  options.state_file = state_file;
  if (resume_window_ms < 0) {
    throw py::value_error("resume_window_ms must not be negative, got " +
                          std::to_string(resume_window_ms));
  }
  options.resume_window = std::chrono::milliseconds(resume_window_ms);
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

std::unique_ptr<master::Relay> StartRelay(const std::string& listen_address,
                                          const py::bytes& key) {
  master::RelayOptions options;
  options.listen_address = listen_address;
  options.key = key;
  if (options.key.size() < 16) {
    throw py::value_error("the relay key must be at least 16 bytes");
  }
  std::unique_ptr<master::Relay> relay;
  Status status;
  {
    py::gil_scoped_release release;
    status = master::Relay::Start(options, &relay);
  }
  if (status.code() == StatusCode::kInvalidArgument) {
    throw py::value_error("listen_address: " + status.message());
  }
  ThrowIfError(status);
  return relay;
}

py::list RelayLinks(const std::vector<master::Relay::LinkBytes>& links) {
  py::list out;
  for (const auto& l : links) {
    out.append(py::make_tuple(l.from_peer, l.to_peer, l.bytes, l.open, l.connections));
  }
  return out;
}

// A RunStatus as the dict MasterNode.status() returns (pccl/_master.py documents it).
py::dict StatusDict(const master::RunStatus& s) {
  py::list peers;
  for (const auto& p : s.peers) {
    py::dict d;
    d["peer_id"] = p.peer_id;
    d["host"] = p.host;
    d["port"] = p.port;
    d["peer_group"] = p.peer_group;
    d["member"] = p.member;
    d["reachable"] = p.reachable == proto::kReachabilityUnknown
                         ? py::object(py::none())
                         : py::object(py::bool_(p.reachable == proto::kReachable));
    d["rto_s"] = p.rto_s;
    d["idle_s"] = p.idle_s;
    d["heartbeat_rtt_s"] = p.heartbeat_rtt_s;
    peers.append(d);
  }
  py::list groups;
  for (const auto& g : s.groups) {
    py::dict d;
    d["peer_group"] = g.peer_group;
    d["ring_epoch"] = g.ring_epoch;
    d["ring"] = g.ring;
    py::list links;
    for (size_t i = 0; i < g.ring.size(); ++i) {
      py::dict link;
      link["from"] = g.ring[i];
      link["to"] = g.ring[(i + 1) % g.ring.size()];
      link["bytes_per_second"] = g.bytes_per_second[i];
      links.append(link);
    }
    d["links"] = links;
    d["operations_in_flight"] = g.operations_in_flight;
    d["state_revision"] = g.state_revision;  // None before the group's first sync
    groups.append(d);
  }
  py::list events;
  for (const auto& e : s.events) {
    py::dict d;
    d["time"] = e.unix_time;
    d["kind"] = e.kind;
    d["text"] = e.text;
    events.append(d);
  }
  py::dict out;
  out["epoch"] = s.epoch;
  out["epoch_cause"] = s.epoch_cause;
  out["peers"] = peers;
  out["groups"] = groups;
  out["events"] = events;
  out["counters"] = s.counters;
  py::dict histograms;
  for (const auto& [name, h] : s.histograms) {
    py::dict d;
    // [upper bound, observations in it]; the last bound is None (no bound: JSON has no
    // infinity).
    py::list buckets;
    for (size_t i = 0; i <= master::Histogram::kBuckets; ++i) {
      const py::object le = i < master::Histogram::kBuckets
                                ? py::object(py::float_(master::Histogram::kBounds[i]))
                                : py::object(py::none());
      buckets.append(py::make_tuple(le, h.counts[i]));
    }
    d["buckets"] = buckets;
    d["sum"] = h.sum;
    d["count"] = h.count;
    histograms[py::str(name)] = d;
  }
  out["histograms"] = histograms;
  return out;
}

}  // namespace

void BindMaster(py::module_& m) {
  py::class_<master::Relay>(m, "RelayServer",
                            "A relay in its own process (use pccl.RelayNode instead).")
      .def_static("start", &StartRelay, py::arg("listen_address"), py::arg("key"),
                  "Binds listen_address and relays for the masters that share `key`.")
      .def_property_readonly("port", &master::Relay::port, "The bound port.")
      .def("links", [](master::Relay& r) { return RelayLinks(r.Links()); },
           "[(from peer, to peer, bytes forwarded, open connections, connections so far)]")
      .def("close", &master::Relay::Close, py::call_guard<py::gil_scoped_release>(),
           "Cuts every connection and joins the threads.");
  py::class_<MasterServer>(m, "MasterServer",
                           "The master's server thread (use pccl.MasterNode instead).")
      .def_static("start", &StartServer, py::arg("listen_address"),
                  py::arg("link_timeout_ms") = 30000, py::arg("heartbeat_timeout_ms") = 3000,
                  py::arg("secret") = "", py::arg("transport") = "",
                  py::arg("relay_address") = "", py::arg("external_relay") = "",
                  py::arg("relay_key") = py::bytes(), py::arg("state_file") = "",
                  py::arg("resume_window_ms") = 5000,
                  "Binds listen_address ('host:port', port 0 = any) and starts serving. "
                  "secret: the run secret (empty: PCCL_RUN_SECRET, PCCL_RUN_SECRET_FILE or "
                  "none); transport: 'plain' or 'encrypted' (empty: PCCL_TRANSPORT); "
                  "relay_address: '' (the listen host, any port), 'off' or 'host:port'; "
                  "external_relay: 'host:port' of a pccl_relay started with relay_key; "
                  "state_file: where the run is kept for a warm restart ('' none); "
                  "resume_window_ms: how long a restarted master waits for resuming peers.")
      .def_property_readonly("relay_port", &MasterServer::relay_port,
                             "The relay's port (0: none).")
      .def("relay_links", [](MasterServer& s) { return RelayLinks(s.relay_links()); },
           "[(from peer, to peer, bytes forwarded, open connections, connections so far)]")
      .def_property_readonly("port", &MasterServer::port, "The bound port.")
      .def_property_readonly("address", &MasterServer::address, "The bound 'host:port'.")
      .def_property_readonly("running", &MasterServer::running,
                             "False once the server thread has exited.")
      .def("status", [](MasterServer& s) { return StatusDict(s.run_status()); },
           "The run as the server last published it (master/run_status.h), as a dict.")
      .def("interrupt", &MasterServer::Interrupt, "Asks the server to stop; returns at once.")
      .def("join", &MasterServer::Join, py::call_guard<py::gil_scoped_release>(),
           "Waits for the server thread to exit.");
}

}  // namespace pccl::bindings
