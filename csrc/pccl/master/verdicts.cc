#include "pccl/master/verdicts.h"

#include <algorithm>

#include "pccl/common/logging.h"
#include "pccl/net/wire.h"
#include "pccl/secure/crypto.h"

namespace pccl::master {

// The story of a run, as the master sees it: verdicts.
// (Joining, voting, epochs and leaving: admission.cc.)
//
// Verdicts. After a collective a member reports OpDone(key, ok, descriptor hash). The
// master answers the whole peer group with one verdict: failure as soon as one member
// failed or two hashes differ, success once every member of the group reported ok with
// equal hashes. Decided verdicts are kept (bounded) for late reporters. Collectives carry
// their group's ring epoch: the epoch in which the group's ring (members and order) last
// changed. A new epoch that changes a group's ring fails that group's undecided
// collectives and forgets its verdicts; groups whose ring stays the same carry on. A
// member leaving fails its group's undecided collectives at once, naming it. A report
// that carries an older ring epoch is answered to its sender alone, saying why the ring
// changed.
//
// A send/recv (a key that names its two ends) is decided by its receiver, which alone knows
// whether every byte came and matched its descriptor (each frame carries the sender's
// descriptor hash). The receiver commits the moment it has everything, answers the sender
// over the pair's links (an ack), ends its call and reports ok without waiting; a sender
// with the ack ends its call too and reports nothing. So a transfer that works costs one
// message to the master and no verdict at all. What the master decides:
//   - the receiver's ok report: success. It goes to nobody, except a sender that reported
//     a failure first (it lost the ack: a link reset, its deadline) and waits for it.
//   - the receiver's failed report: failure, to both ends.
//   - a sender's failed report (the only kind it sends): nothing yet. If the receiver has
//     not reported, the master asks it (PairQuery); the receiver reports what it did with
//     the transfer: ok if it committed, a failure if it had not (one it had not begun is
//     then refused for good, comm/session_pairs.cc).
//   - the receiver leaving (or being no member any more): failure, to the sender.
// Decided transfers are kept (bounded) across ring changes, and a ring change does not fail
// an undecided one: the receiver may have committed it a moment before. A send/recv takes
// part in no admission vote (Decided counts collectives only).

namespace {

// A failed verdict (`code` kOk: none given, the peer raises its default, Aborted).
proto::Verdict Failure(const proto::OpKey& key, const std::string& reason, StatusCode code,
                       bool ring_replaced) {
  proto::Verdict v;
  v.key = key;
  v.reason = reason;
  v.code = static_cast<uint32_t>(code);
  v.ring_replaced = ring_replaced ? 1 : 0;
  return v;
}

// The answer to a report of `key` from an earlier ring of its group.
proto::Verdict RingChanged(const proto::OpKey& key, const Roster& roster) {
  return Failure(key,
                 "the ring changed while " + key.ToString() + " ran (now epoch " +
                     std::to_string(roster.epoch()) + ": " + roster.epoch_cause() + "); retry",
                 StatusCode::kAborted, /*ring_replaced=*/true);
}

// Every member's report as u32 length + bytes, in report order; empty when nobody reported
// anything, or when together they would pass kMaxReportsLength (the peers that wanted them
// then fail the operation, saying the reports were dropped).
std::string ConcatenateReports(const auto& state) {
  size_t total = 0;
  for (const auto& [conn, r] : state.reports) total += r.report.size();
  if (total == 0) return "";
  std::string out;
  for (const auto& [conn, r] : state.reports) {
    if (out.size() + 4 + r.report.size() > proto::kMaxReportsLength) return "";
    uint8_t length[4];
    net::PutU32(length, static_cast<uint32_t>(r.report.size()));
    out.append(reinterpret_cast<const char*>(length), 4);
    out += r.report;
  }
  return out;
}

// Who takes part in `key`: the group's members, or a send/recv's two ends that are still
// members of the group.
std::vector<ConnId> Participants(const proto::OpKey& key, const Roster& roster) {
  std::vector<ConnId> members = roster.GroupMembers(key.peer_group);
  if (!key.pair()) return members;
  std::erase_if(members, [&](ConnId c) {
    const uint64_t id = roster.at(c).peer_id;
    return id != key.from_peer && id != key.to_peer;
  });
  return members;
}

}  // namespace

void Verdicts::DecidedSeqs::Add(uint64_t seq) {
  if (seq < prefix) return;
  beyond.insert(seq);
  while (!beyond.empty() && *beyond.begin() == prefix) {
    beyond.erase(beyond.begin());
    ++prefix;
  }
}

bool Verdicts::OnOpDone(const Peer& peer, const proto::OpDone& op, const Roster& roster,
                        Step& step) {
  const proto::OpKey& key = op.key;
  if (peer.role != Role::kMember) {
    step.Refuse(peer.conn, Describe(peer) + " is pending and takes part in no collective");
    return false;
  }
  if (key.peer_group != peer.peer_group) {
    step.Refuse(peer.conn, Describe(peer) + " is in peer group " +
                               std::to_string(peer.peer_group) + " but reported " +
                               key.ToString());
    return false;
  }
  if (key.pair()) return OnPairDone(peer, op, roster, step);
  auto answer_sender = [&](const proto::Verdict& v) {
    step.SendTo(peer.conn, proto::Kind::kVerdict, proto::Encode(v));
  };
  if (key.epoch != roster.RingEpoch(key.peer_group)) {
    answer_sender(RingChanged(key, roster));
    return false;
  }
  if (auto it = decided_.find(key); it != decided_.end()) {
    answer_sender(it->second);
    return false;
  }
  OpState* open = FindOrOpen(peer, key, step);
  if (open == nullptr) return false;
  OpState& state = *open;
  auto reported = [&](ConnId m) {
    return std::any_of(state.reports.begin(), state.reports.end(),
                       [m](const auto& r) { return r.first == m; });
  };
  if (reported(peer.conn)) {
    step.Refuse(peer.conn, Describe(peer) + " reported " + key.ToString() + " twice");
    return false;
  }
  Report report{op.ok != 0, op.descriptor_hash, op.report};
  if (!report.ok) {
    std::string cause = op.reason.empty() ? "no reason given" : op.reason;
    if (static_cast<StatusCode>(op.code) == StatusCode::kDeadlineExceeded) {
      // It waited in vain: for whom is worth saying (a member that never started this
      // collective, or is stuck before it, is the one to look at).
      std::string silent;
      for (ConnId m : Participants(key, roster)) {
        if (m == peer.conn || reported(m)) continue;
        silent += (silent.empty() ? "" : ", ") + Describe(roster.at(m));
      }
      if (!silent.empty()) cause += " (not reported by " + silent + ")";
    }
    Decide(key, false, Describe(peer) + " failed " + key.ToString() + ": " + cause, roster,
           step, MemberReportedCode(op.code));
    return true;
  }
  for (const auto& [conn, earlier] : state.reports) {
    if (earlier.descriptor_hash != report.descriptor_hash) {
      const Peer* q = roster.Find(conn);
      std::string other =
          q != nullptr ? Describe(*q) : "peer on connection " + std::to_string(conn);
      Decide(key, false,
             "descriptor mismatch on " + key.ToString() + ": " + other + " has " +
                 HashText(earlier.descriptor_hash) + ", " + Describe(peer) + " has " +
                 HashText(report.descriptor_hash) +
                 " (count, dtype, op, quantization or reduce mode differ)",
             roster, step, StatusCode::kInvalidArgument);
      return true;
    }
  }
  state.reports.emplace_back(peer.conn, report);
  for (ConnId m : Participants(key, roster)) {
    if (!reported(m)) return false;
  }
  Decide(key, true, "", roster, step);
  return true;
}

bool Verdicts::OnPairDone(const Peer& peer, const proto::OpDone& op, const Roster& roster,
                          Step& step) {
  const proto::OpKey& key = op.key;
  auto answer_sender = [&](const proto::Verdict& v) {
    step.SendTo(peer.conn, proto::Kind::kVerdict, proto::Encode(v));
  };
  if (key.from_peer == key.to_peer ||
      (peer.peer_id != key.from_peer && peer.peer_id != key.to_peer)) {
    step.Refuse(peer.conn, Describe(peer) + " reported " + key.ToString() +
                               ", which is not between itself and another peer");
    return false;
  }
  const bool receiver = peer.peer_id == key.to_peer;
  if (!receiver && op.ok) {
    step.Refuse(peer.conn, Describe(peer) + " reported " + key.ToString() +
                               " as done: a sender reports only a failure, its receiver decides");
    return false;
  }
  if (auto it = decided_.find(key); it != decided_.end()) {
    answer_sender(it->second);  // a sender that lost the ack, or a receiver asked again
    return false;
  }
  auto failed = [&] {  // what a failed report says, for the verdict or the question
    return Describe(peer) + " failed " + key.ToString() + ": " +
           (op.reason.empty() ? "no reason given" : op.reason);
  };
  const Peer* r = roster.FindId(key.to_peer);
  const bool receiver_member =
      r != nullptr && r->role == Role::kMember && r->peer_group == key.peer_group;
  if (!receiver) {
    if (!receiver_member) {
      // Nobody can decide it any more: the receiver left (the ring changed since), or never
      // was a member of this ring.
      answer_sender(key.epoch != roster.RingEpoch(key.peer_group)
                        ? RingChanged(key, roster)
                        : Failure(key,
                                  "peer " + std::to_string(key.to_peer) +
                                      " is not a member of group " +
                                      std::to_string(key.peer_group),
                                  StatusCode::kInvalidArgument, /*ring_replaced=*/false));
      return false;
    }
    OpState* open = FindOrOpen(peer, key, step);
    if (open == nullptr) return false;
    if (!open->reports.empty()) {  // only its sender reports into it, once
      step.Refuse(peer.conn, Describe(peer) + " reported " + key.ToString() + " twice");
      return false;
    }
    open->reports.emplace_back(peer.conn, Report{false, op.descriptor_hash, ""});
    proto::PairQuery query{key, op.code, failed()};
    if (query.reason.size() > proto::kMaxReasonLength) {
      query.reason.resize(proto::kMaxReasonLength);
    }
    step.SendTo(r->conn, proto::Kind::kPairQuery, proto::Encode(query));
    return false;
  }
  Decide(key, op.ok != 0, op.ok ? "" : failed(), roster, step, MemberReportedCode(op.code));
  return true;
}

Verdicts::OpState* Verdicts::FindOrOpen(const Peer& peer, const proto::OpKey& key,
                                        Step& step) {
  auto it = open_ops_.find(key);
  if (it != open_ops_.end()) return &it->second;
  if (open_ops_.size() >= options_.max_open_ops) {
    step.SendTo(peer.conn, proto::Kind::kVerdict,
                proto::Encode(Failure(key,
                                      "the master tracks " + std::to_string(open_ops_.size()) +
                                          " undecided collectives, its limit",
                                      StatusCode::kOk, /*ring_replaced=*/false)));
    return nullptr;
  }
  ++opened_by_[peer.conn];  // within its limit: Membership checked Admits() first
  return &open_ops_.emplace(key, OpState{peer.conn, {}}).first->second;
}

Status Verdicts::Admits(const Peer& peer, const proto::OpKey& key) const {
  if (open_ops_.count(key) || decided_.count(key)) return Status::Ok();
  auto it = opened_by_.find(peer.conn);
  const size_t opened = it == opened_by_.end() ? 0 : it->second;
  if (opened < options_.max_open_ops_per_peer) return Status::Ok();
  return InvalidArgument(Describe(peer) + " reported " + std::to_string(opened) +
                         " collectives that no other member has reported yet (the limit is " +
                         std::to_string(options_.max_open_ops_per_peer) + ")");
}

bool Verdicts::Decided(uint32_t peer_group, uint64_t tag, uint64_t count) const {
  auto it = decided_seqs_.find({peer_group, tag});
  return it != decided_seqs_.end() && it->second.prefix >= count;
}

void Verdicts::FailGroup(uint32_t peer_group, const std::string& reason, const Roster& roster,
                         Step& step) {
  for (const proto::OpKey& key : OpenOpsOf({peer_group})) {
    if (key.pair()) {  // undecided until its receiver reports, or is gone
      const Peer* r = roster.FindId(key.to_peer);
      if (r != nullptr && r->role == Role::kMember && r->peer_group == key.peer_group) continue;
    }
    Decide(key, false, reason, roster, step, StatusCode::kAborted, /*ring_replaced=*/true);
  }
}

void Verdicts::OnRingsChanged(const std::set<uint32_t>& groups, uint64_t next_epoch,
                              const std::string& cause, const Roster& roster, Step& step) {
  for (const proto::OpKey& key : OpenOpsOf(groups)) {
    if (key.pair()) continue;  // its receiver may have committed it: it still decides
    Decide(key, false,
           "the ring changed (epoch " + std::to_string(next_epoch) + ": " + cause +
               ") before every peer of " + key.ToString() + " reported; retry",
           roster, step, StatusCode::kAborted, /*ring_replaced=*/true);
  }
  for (uint32_t group : groups) breaking_.erase(group);
  auto forgotten = [&](const proto::OpKey& key) {
    return groups.count(key.peer_group) > 0 && !key.pair();
  };
  std::erase_if(decided_, [&](const auto& kv) { return forgotten(kv.first); });
  std::erase_if(decided_order_, forgotten);
  std::erase_if(decided_seqs_, [&](const auto& kv) { return groups.count(kv.first.first) > 0; });
}

void Verdicts::Decide(const proto::OpKey& key, bool ok, const std::string& reason,
                      const Roster& roster, Step& step, StatusCode code, bool ring_replaced) {
  proto::Verdict verdict = Failure(key, reason, code, false);
  verdict.ok = ok ? 1 : 0;
  if (ok) verdict.code = 0;
  verdict.ring_replaced = !ok && (ring_replaced || breaking_.count(key.peer_group) > 0);
  if (verdict.reason.size() > proto::kMaxReasonLength) {
    verdict.reason.resize(proto::kMaxReasonLength);
  }
  auto open = open_ops_.find(key);
  if (ok && !key.pair()) {
    // Drawn now, after every member reported: nobody knew it while the data moved.
    if (!secure::RandomBytes(proto::kChallengeLength, &verdict.challenge).ok()) {
      verdict.challenge.clear();  // never happens; a peer that needs one then fails
    }
    if (open != open_ops_.end()) verdict.reports = ConcatenateReports(open->second);
  }
  if (log_ != nullptr) {
    log_->Count(ok ? "ops_succeeded" : "ops_failed");
    if (!ok) {
      log_->Count(std::string("ops_failed_") + StatusCodeName(code));
      log_->Add(step.now(), "failed", key.ToString() + ": " + verdict.reason);
    }
  }
  std::string payload = proto::Encode(verdict);
  verdict.reports.clear();  // a late reporter gets the verdict without them (bounded memory)
  if (key.pair() && ok) {
    // Only a sender that reported a failure (it lost the ack) waits for a success.
    if (open != open_ops_.end()) {
      for (const auto& [conn, report] : open->second.reports) {
        step.SendTo(conn, proto::Kind::kVerdict, payload);
      }
    }
  } else {
    for (ConnId m : Participants(key, roster)) {
      step.SendTo(m, proto::Kind::kVerdict, payload);
    }
  }
  if (open != open_ops_.end()) {
    auto opened = opened_by_.find(open->second.opener);
    if (opened != opened_by_.end() && --opened->second == 0) opened_by_.erase(opened);
    open_ops_.erase(open);
  }
  if (!key.pair() && key.epoch != roster.RingEpoch(key.peer_group)) return;
  if (!key.pair()) decided_seqs_[{key.peer_group, key.tag}].Add(key.seq);
  decided_[key] = std::move(verdict);
  decided_order_.push_back(key);
  while (decided_order_.size() > options_.max_decided_ops) {
    decided_.erase(decided_order_.front());
    decided_order_.pop_front();
  }
}

size_t Verdicts::open_ops(uint32_t peer_group) const {
  size_t n = 0;
  for (const auto& [key, op] : open_ops_) n += key.peer_group == peer_group ? 1 : 0;
  return n;
}

std::vector<proto::OpKey> Verdicts::OpenOpsOf(const std::set<uint32_t>& groups) const {
  std::vector<proto::OpKey> keys;
  for (const auto& [key, op] : open_ops_) {
    if (groups.count(key.peer_group)) keys.push_back(key);
  }
  return keys;
}

}  // namespace pccl::master
