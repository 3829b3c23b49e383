// The vocabulary between the master's server and Membership (membership.h): the events the
// server observed, and the actions Membership asks it to perform.
//
// Every connection the server accepted is named by a ConnId. Events carry the connection
// they happened on; actions name the connection they concern.
//
// Thread-safety: value types.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include "pccl/proto/messages.h"

namespace pccl::master {

// The server's id for one accepted connection; never reused within a server's life.
using ConnId = uint64_t;

// Events: what the server observed. `conn` is the connection it happened on.
namespace event {
struct Hello {
  ConnId conn = 0;
  proto::Hello hello;
  std::string observed_host;  // the address the server sees the connection from (no port)
};
struct VoteTopology {
  ConnId conn = 0;
  proto::Vote vote;
};
struct LinksReady {
  ConnId conn = 0;
  uint64_t epoch = 0;
};
// are_peers_pending(): `joint`, answered once every member asked; else to this peer alone,
// at once or, with `wait`, once a peer is pending.
struct QueryPending {
  ConnId conn = 0;
  uint64_t seq = 0;
  bool joint = true;
  bool wait = false;
};
struct OpDone {
  ConnId conn = 0;
  proto::OpDone op;
};
struct Goodbye {  // the peer said goodbye; the server closes the connection afterwards
  ConnId conn = 0;
};
struct Disconnected {  // the connection closed or failed; the server already closed it
  ConnId conn = 0;
};
struct ProtocolError {  // the server could not decode a frame from `conn`
  ConnId conn = 0;
  std::string reason;
};
struct Heartbeat {  // the peer is alive (any message counts too)
  ConnId conn = 0;
  // The connection's retransmission timeout as the server's kernel measures it: a long or
  // lossy path earns a longer allowance before silence means death (admission.h).
  Duration rto{0};
  // The round trip of the peer's previous heartbeat, as it measured it (0: none yet).
  Duration rtt{0};
};
struct SyncState {  // sync_shared_state(): the peer's revision, strategy and hashes
  ConnId conn = 0;
  proto::SyncState state;
};
struct SyncDone {  // the peer fetched what its SyncPlan said (or failed to)
  ConnId conn = 0;
  proto::SyncResult result;
};
struct OptimizeTopology {  // optimize_topology(): the epoch the peer is in
  ConnId conn = 0;
  uint64_t epoch = 0;
};
struct BandwidthReport {  // a member's probes of one measurement round
  ConnId conn = 0;
  proto::BandwidthReport report;
};
struct LinkBroken {  // a ring link of the member's group broke between live peers
  ConnId conn = 0;
  proto::LinkBroken report;
};
struct Tick {};  // time passed; deadlines are checked against `now`
// The server's loop did not run for `gap` (the process was stopped or starved): the
// silence of every peer during it is the master's, not theirs.
struct Resumed {
  Duration gap{0};
};
}  // namespace event

using Event = std::variant<event::Hello, event::VoteTopology, event::LinksReady,
                           event::QueryPending, event::OpDone, event::Goodbye,
                           event::Disconnected, event::ProtocolError, event::Heartbeat,
                           event::SyncState, event::SyncDone, event::OptimizeTopology,
                           event::BandwidthReport, event::LinkBroken, event::Tick,
                           event::Resumed>;

// Actions: what the server must do, in order.
struct Send {
  ConnId conn = 0;
  proto::Kind kind = proto::Kind::kError;
  std::string payload;  // the encoded message (proto::Encode)
};
struct Drop {  // flush what was sent to `conn`, then close it; Membership forgot it already
  ConnId conn = 0;
  std::string reason;
};
using Action = std::variant<Send, Drop>;

}  // namespace pccl::master
