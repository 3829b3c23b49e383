// Test support for the master's state machines (membership.h and the machines it routes
// to): a fake clock, fixed peer ids, a Membership fixture that drives whole runs, a Roster
// builder for testing one machine alone, and decoders for the actions they produce.
//
// Thread-safety: test code, one thread.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "pccl/master/admission.h"
#include "pccl/master/membership.h"
#include "pccl/master/roster.h"
#include "pccl/master/step.h"

namespace pccl::master {

inline constexpr auto kLinkTimeout = std::chrono::seconds(30);

inline event::Hello MakeHello(ConnId conn, uint16_t p2p_port, std::string observed_host) {
  event::Hello e;
  e.conn = conn;
  e.hello.p2p_port = p2p_port;
  e.observed_host = std::move(observed_host);
  return e;
}

// Peer ids 1001, 1002, ... in Hello order (after a 0, which Membership must skip).
inline PeerIdGenerator CountingIds() {
  return [next = uint64_t{1000}, first = true]() mutable -> uint64_t {
    if (first) {
      first = false;
      return 0;
    }
    return ++next;
  };
}

// --- reading actions -----------------------------------------------------------------------

// Messages of `kind` sent to `conn` in `actions`.
inline std::vector<std::string> Sent(const std::vector<Action>& actions, ConnId conn,
                                     proto::Kind kind) {
  std::vector<std::string> out;
  for (const Action& a : actions) {
    if (const Send* s = std::get_if<Send>(&a); s && s->conn == conn && s->kind == kind) {
      out.push_back(s->payload);
    }
  }
  return out;
}

// The connections that got a message of `kind`, in send order.
inline std::vector<ConnId> Recipients(const std::vector<Action>& actions, proto::Kind kind) {
  std::vector<ConnId> out;
  for (const Action& a : actions) {
    if (const Send* s = std::get_if<Send>(&a); s && s->kind == kind) out.push_back(s->conn);
  }
  return out;
}

inline bool Dropped(const std::vector<Action>& actions, ConnId conn) {
  return std::any_of(actions.begin(), actions.end(), [conn](const Action& a) {
    const Drop* d = std::get_if<Drop>(&a);
    return d && d->conn == conn;
  });
}

// The one message of type M (kind `kind`) sent to `conn`; a failed expectation otherwise.
template <typename M>
M OneMessage(const std::vector<Action>& actions, ConnId conn, proto::Kind kind) {
  auto payloads = Sent(actions, conn, kind);
  EXPECT_EQ(payloads.size(), 1u) << proto::KindName(static_cast<uint16_t>(kind))
                                 << " to conn " << conn;
  M m;
  if (!payloads.empty()) {
    EXPECT_TRUE(proto::Decode(payloads[0], &m).ok());
  }
  return m;
}
inline proto::Topology OneTopology(const std::vector<Action>& actions, ConnId conn) {
  return OneMessage<proto::Topology>(actions, conn, proto::Kind::kTopology);
}
inline proto::Verdict OneVerdict(const std::vector<Action>& actions, ConnId conn) {
  return OneMessage<proto::Verdict>(actions, conn, proto::Kind::kVerdict);
}
inline proto::ErrorMessage OneError(const std::vector<Action>& actions, ConnId conn) {
  return OneMessage<proto::ErrorMessage>(actions, conn, proto::Kind::kError);
}
inline proto::SyncResult Result(const std::vector<Action>& actions, ConnId conn) {
  return OneMessage<proto::SyncResult>(actions, conn, proto::Kind::kSyncComplete);
}

inline std::vector<uint64_t> Ids(const proto::Topology& t) {
  std::vector<uint64_t> ids;
  for (const auto& member : t.members) ids.push_back(member.peer_id);
  return ids;
}

// --- one machine alone -----------------------------------------------------------------------

// A run of members on conns 1..n (peer ids 1001.., hosts 10.0.0.<conn>) in epoch 1, peer
// group groups[c - 1]; then pending peers on conns n+1.. (groups `pending`).
inline Roster MakeRoster(const std::vector<uint32_t>& groups,
                         const std::vector<uint32_t>& pending = {}) {
  Roster roster;
  std::vector<ConnId> members;
  ConnId conn = 0;
  auto add = [&](uint32_t group, bool queue) {
    ++conn;
    Peer peer;
    peer.conn = conn;
    peer.peer_id = 1000 + conn;
    peer.host = "10.0.0." + std::to_string(conn);
    peer.port = static_cast<uint16_t>(40000 + conn);
    peer.peer_group = group;
    roster.Add(peer, queue);
    return conn;
  };
  for (uint32_t g : groups) members.push_back(add(g, false));
  roster.Advance(members, roster.ChangedGroups(members), "the test began");
  for (uint32_t g : pending) add(g, true);
  return roster;
}

// Drives an Admission alone. Where it decides on an epoch, the helpers start it as
// Membership would, without the other machines (there are no collectives here).
class AdmissionTest : public ::testing::Test {
 protected:
  static AdmissionOptions Options() {
    AdmissionOptions o;
    o.link_timeout = kLinkTimeout;
    o.heartbeat_timeout = std::chrono::seconds(3);
    return o;
  }
  AdmissionTest() : a_(Options(), CountingIds()) {}

  Step NewStep() const { return Step(now_); }
  const Peer& P(ConnId c) const { return a_.roster().at(c); }
  void Start(const NextEpoch& next, Step& step) {
    a_.StartEpoch(next, a_.roster().ChangedGroups(next.members), step);
  }
  std::vector<Action> Hello(ConnId c, uint32_t group = 0) {
    Step step = NewStep();
    event::Hello e = MakeHello(c, static_cast<uint16_t>(40000 + c), "10.0.0." + std::to_string(c));
    e.hello.peer_group = group;
    if (auto first = a_.OnHello(e, step)) Start(*first, step);
    return step.TakeActions();
  }
  // A vote; admits at once if it completes the round (wait_for is not consulted).
  std::vector<Action> Vote(ConnId c, proto::Vote vote = {}) {
    Step step = NewStep();
    if (a_.OnVote(P(c), vote, step)) {
      if (auto admit = a_.ReadyToAdmit()) Start(admit->next, step);
    }
    return step.TakeActions();
  }
  std::vector<Action> Ready(ConnId c) {
    Step step = NewStep();
    a_.OnLinksReady(P(c), a_.roster().epoch(), step);
    return step.TakeActions();
  }
  // Members on conns 1..n (groups from `groups`, default 0), past their link phase.
  void Run(int n, std::vector<uint32_t> groups = {}) {
    groups.resize(n, 0);
    Hello(1, groups[0]);
    Ready(1);
    for (int c = 2; c <= n; ++c) Hello(c, groups[c - 1]);
    if (n > 1) Vote(1);
    for (int c = 1; c <= n; ++c) Ready(c);
    ASSERT_FALSE(a_.links_pending());
    ASSERT_EQ(a_.roster().members().size(), static_cast<size_t>(n));
  }

  Admission a_;
  TimePoint now_ = TimePoint() + std::chrono::hours(1);
};

// --- whole runs ------------------------------------------------------------------------------

class MembershipTest : public ::testing::Test {
 protected:
  MembershipTest() : m_(Options(), CountingIds()) {}

  static MembershipOptions Options() {
    MembershipOptions o;
    o.link_timeout = kLinkTimeout;
    // These tests move the clock by whole link timeouts; heartbeats are not their subject
    // (MembershipHeartbeatTest sets its own).
    o.heartbeat_timeout = std::chrono::hours(24);
    return o;
  }

  std::vector<Action> Do(const Event& e) { return last_ = m_.Handle(e, now_); }

  std::vector<Action> Hello(ConnId conn, uint32_t group = 0, std::string advertise = "") {
    event::Hello e;
    e.conn = conn;
    e.hello.peer_group = group;
    e.hello.p2p_port = static_cast<uint16_t>(40000 + conn);
    e.hello.advertise_host = std::move(advertise);
    e.observed_host = "10.0.0." + std::to_string(conn);
    return Do(e);
  }
  std::vector<Action> Vote(ConnId c) { return Do(event::VoteTopology{c, {}}); }
  std::vector<Action> Ready(ConnId c, uint64_t epoch) { return Do(event::LinksReady{c, epoch}); }
  std::vector<Action> Report(ConnId c, proto::OpKey key, bool ok, uint64_t hash = 7,
                             std::string reason = "", uint32_t code = 0) {
    event::OpDone e;
    e.conn = c;
    e.op.key = key;
    e.op.ok = ok ? 1 : 0;
    e.op.descriptor_hash = hash;
    e.op.reason = std::move(reason);
    e.op.code = code;
    return Do(e);
  }

  // Admits conns 1..n (groups from `groups`, default 0) and completes their link phase.
  void Run(int n, std::vector<uint32_t> groups = {}) {
    groups.resize(n, 0);
    Hello(1, groups[0]);
    Ready(1, 1);
    for (int c = 2; c <= n; ++c) Hello(c, groups[c - 1]);
    if (n > 1) Vote(1);
    for (int c = 1; c <= n; ++c) Ready(c, m_.epoch());
    ASSERT_FALSE(m_.links_pending());
    ASSERT_EQ(m_.MemberIds().size(), static_cast<size_t>(n));
  }

  Membership m_;
  TimePoint now_ = TimePoint() + std::chrono::hours(1);
  std::vector<Action> last_;
};

}  // namespace pccl::master
