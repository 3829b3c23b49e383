// The session's pair links: what send/recv (comm/point_to_point.cc) runs on.
//
// A send/recv moves bytes between two members of a group that need not be ring
// neighbours, so it gets links of its own: a ring of two (link/ring_links.h with next ==
// prev == the other member), whose connections open with PairHello and wait in their own
// incoming pool. Each end dials its pool to the other when it first needs the pair, so
// both directions stripe over a full pool. The links belong to the group's ring epoch:
// a new ring drops them (DropPairs) and the next send/recv dials again. A pair link that
// breaks after it was built is reported to the master like a ring link (LinkBroken), and
// the master re-dials the group as a new ring epoch; a retry waits for it (AwaitRing).
//
// Keys: a send/recv's OpKey names its sender and receiver; its seq counts the transfers
// in that direction with that tag in this ring epoch, times two, plus one when the sender
// has the larger id, so the two directions never share an operation on the pair's links
// (which tell operations apart by tag and seq). Each end counts its own calls: the
// sender's n-th send to a peer with a tag meets that peer's n-th recv from it with that
// tag, as in torch and MPI.
#include <algorithm>
#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "pccl/comm/session.h"
#include "pccl/common/by_ref.h"

namespace pccl::comm {

using link::LinkPeer;
using link::RingLinks;

proto::OpKey Session::PairKeyLocked(uint64_t from, uint64_t to, uint64_t tag) {
  auto it = pair_counts_.find({from, to, tag});
  const uint64_t taken = it == pair_counts_.end() ? 0 : it->second;
  return proto::OpKey{ring_epoch_, options_.peer_group, tag, 2 * taken + (from > to ? 1 : 0),
                      from, to};
}

Status Session::BindPair(uint64_t peer_id, uint64_t tag, bool sending, Deadline deadline,
                         RingBinding* out) {
  RefreshViewOnReturn refresh{this};
  const uint64_t self = peer_id_.load();
  const uint64_t from = sending ? self : peer_id;
  const uint64_t to = sending ? peer_id : self;
  const char* caller = sending ? "send()" : "recv()";
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!connected_) return FailedPrecondition("call connect() first");
  }
  if (peer_id == self) {
    return InvalidArgument(std::string(caller) + " names this peer (" + std::to_string(self) +
                           ") as the other end");
  }
  auto first_key = [&] { return PairKeyLocked(from, to, tag); };
  PCCL_RETURN_IF_ERROR(AwaitRing(deadline, caller, peer_id, ByRef(first_key), 1));
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<const std::vector<uint64_t>> ring = GroupRingLocked();
  if (std::find(ring->begin(), ring->end(), peer_id) == ring->end()) {
    std::string members;
    for (uint64_t id : *ring) members += (members.empty() ? "" : ", ") + std::to_string(id);
    return InvalidArgument(std::string(caller) + ": peer " + std::to_string(peer_id) +
                           " is not a member of group " + std::to_string(options_.peer_group) +
                           " (its members: " + members + ")");
  }
  proto::OpKey key = PairKeyLocked(from, to, tag);
  ++pair_counts_[{from, to, tag}];
  if (!sending) {
    // Refused before it began (OnPairQuery): it fails here at once, as the master decided
    // (that report was made when it was refused; its verdict says the same).
    if (ReceiptState* refused = RefusedReceiptLocked(key)) {
      refused->state = Receipt::kFailed;  // settled: its recv came and failed
      return refused->why;
    }
    RecordReceiptLocked(key, Receipt::kReceiving, Status::Ok());
  }
  // The group's rank and world, as a collective's binding has them (callers compare the
  // world a call ran with to the group they expect).
  *out = RingBinding{key, nullptr, rank_, group_world_, std::move(ring)};
  return Status::Ok();
}

Status Session::ConnectPair(const proto::OpKey& key, uint64_t peer_id, Deadline deadline,
                            std::shared_ptr<RingLinks>* out,
                            const std::function<bool()>& give_up) {
  std::shared_ptr<PairLinks> pair;
  LinkPeer other{peer_id, {}};
  // Without a master for good (OnVerdict dropped every pair's links), no new ones: the
  // other end cannot bind its call any more, and this one would wait for it in vain.
  if (MasterGoneForGood()) return master_.lost();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ring_epoch_ != key.epoch) {
      return Status(StatusCode::kAborted, "the ring changed (now epoch " +
                                              std::to_string(ring_epoch_) + ") before " +
                                              key.ToString() + " started; retry");
    }
    for (const auto& m : topology_.members) {
      if (m.peer_id == peer_id) other.endpoint = {m.host, m.port};
    }
    std::shared_ptr<PairLinks>& slot = pairs_[peer_id];
    if (!slot) slot = std::make_shared<PairLinks>();
    pair = slot;
  }
  // One builder per pair; the others wait for its outcome (or their deadline, or their
  // give_up, looked at every 50 ms).
  std::unique_lock<std::timed_mutex> building(pair->mu, std::defer_lock);
  while (!building.try_lock_until(
      std::min(deadline.when(), Clock::now() + std::chrono::milliseconds(50)))) {
    if (give_up && give_up()) {
      return Status(StatusCode::kAborted, "gave up waiting for the links to peer " +
                                              std::to_string(peer_id) + " for " +
                                              key.ToString());
    }
    if (deadline.expired()) {
      return Status(StatusCode::kDeadlineExceeded,
                    "timed out waiting for the links to peer " + std::to_string(peer_id));
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pair->links) {
      *out = pair->links;
      return Status::Ok();  // built (if broken since, the op fails on them and says why)
    }
  }
  // Only a break after the links were built is a link fault worth a new ring: a peer that
  // does not dial in time here is one that has not called its recv (or send) yet.
  auto built = std::make_shared<std::atomic<bool>>(false);
  const uint64_t ring_epoch = key.epoch;
  auto links = std::make_shared<RingLinks>(
      ring_epoch, peer_id_.load(), other, other, pool_size(),
      [this, ring_epoch, built](uint64_t peer, const Status& why) {
        if (built->load()) ReportBrokenLink(ring_epoch, peer, why);
      },
      link::Purpose::kPair);
  links->SetNewOpListener([this] { NotePairActivity(); });  // a recv from any source looks
  // Give up once the ring changes (pushed, or applied already by another call or the
  // topology watcher): the other end then binds its call to the new ring. And once the
  // master is gone for good: the other end cannot bind its call any more.
  Status st = links->Establish(pair_incoming_, credentials_, routes_, deadline,
                               [this, ring_epoch, &give_up] {
                                 if (closed_.load() || RingChangePushed()) return true;
                                 if (give_up && give_up()) return true;
                                 if (MasterGoneForGood()) return true;
                                 std::lock_guard<std::mutex> lock(mu_);
                                 return ring_epoch_ != ring_epoch;
                               });
  if (!st.ok()) {
    // Called off (kAborted) because the ring changed: say so, as the other failures of a
    // change do, rather than the link layer's "topology superseded".
    std::string why = st.message();
    if (st.code() == StatusCode::kAborted && !closed_.load()) {
      std::lock_guard<std::mutex> lock(mu_);
      const uint64_t pushed = PushedRingEpochLocked();  // pushed, not applied yet
      if (ring_epoch_ != ring_epoch) {
        why = RingChanged(ring_epoch_).message();
      } else if (pushed != 0 && pushed != ring_epoch_) {
        why = RingChanged(pushed).message();
      }
    }
    return Status(st.code() == StatusCode::kUnavailable ? StatusCode::kAborted : st.code(),
                  "connecting to peer " + std::to_string(peer_id) + " for " + key.ToString() +
                      ": " + why);
  }
  built->store(true);
  std::lock_guard<std::mutex> lock(mu_);
  auto slot = pairs_.find(peer_id);
  const bool dropped = slot == pairs_.end() || slot->second != pair;  // DropPairs ran
  if (dropped || ring_epoch_ != ring_epoch || closed_.load()) {
    links->Break(Status(StatusCode::kAborted, "topology changed"));
    return Status(StatusCode::kAborted, "the ring changed (or the master is gone) while " +
                                            key.ToString() + " connected; retry");
  }
  pair->links = links;
  NotePairActivityLocked();  // its first segment may have come before it was stored here
  *out = std::move(links);
  return Status::Ok();
}

void Session::NotePairActivity() {
  std::lock_guard<std::mutex> lock(mu_);
  NotePairActivityLocked();
}

void Session::NotePairActivityLocked() {
  ++pair_activity_;
  pair_cv_.notify_all();
}

Status Session::AwaitAnySender(uint64_t tag, Deadline deadline, uint64_t* from) {
  const uint64_t self = peer_id_.load();
  while (true) {
    if (closed_.load()) return FailedPrecondition("communicator is closed");
    // Each member's next transfer to this peer with `tag`, and its links if built.
    struct Candidate {
      proto::OpKey key;
      std::shared_ptr<RingLinks> links;
    };
    std::vector<Candidate> candidates;
    uint64_t activity;  // what has happened so far: the wait below is for anything newer
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!connected_) return FailedPrecondition("call connect() first");
      activity = pair_activity_;
      for (const auto& m : topology_.members) {
        if (m.peer_group != options_.peer_group || m.peer_id == self) continue;
        auto it = pairs_.find(m.peer_id);
        candidates.push_back({PairKeyLocked(m.peer_id, self, tag),
                              it == pairs_.end() ? nullptr : it->second->links});
      }
    }
    for (const Candidate& c : candidates) {
      if (c.links && c.links->HasOp(c.key.tag, c.key.seq)) {
        *from = c.key.from_peer;
        return Status::Ok();
      }
    }
    // A member that dials this peer's pair links for this ring wants to send (or receive):
    // build them, so that its first segment can come.
    for (const Candidate& c : candidates) {
      if (c.links || !pair_incoming_.Has(c.key.epoch, c.key.from_peer)) continue;
      std::shared_ptr<RingLinks> links;
      Status st = ConnectPair(c.key, c.key.from_peer, deadline, &links);
      if (!st.ok() && st.code() != StatusCode::kAborted) return st;
    }
    // Nothing yet: wait until a pair is dialled in or an operation appears on a pair's
    // links (either may be the sender), then look again.
    std::unique_lock<std::mutex> lock(mu_);
    if (!WaitFor(pair_cv_, lock, deadline, [&] { return pair_activity_ != activity; })) {
      return Status(StatusCode::kDeadlineExceeded,
                    "recv from any source: no member sent to this peer with tag " +
                        std::to_string(tag) + " in time");
    }
  }
}

// The receiver decides a transfer (the story in master/verdicts.cc). Its commit and the
// master's question are the two things that can settle a receipt first, both under mu_:
// once committed, a question is answered "ok"; once refused (the sender failed and asked
// through the master), the commit fails. A receipt not begun when the question comes is
// refused for good: the recv that later binds its key fails at once (BindPair).
namespace {
// The newest kReceiptMemory settled receipts are kept for questions. Unsettled ones
// (receiving, or refused before their recv came) are never dropped: their answer must not
// change.
constexpr size_t kReceiptMemory = 16384;
}  // namespace

void Session::RecordReceiptLocked(const proto::OpKey& key, Receipt state, const Status& why) {
  auto [it, inserted] = receipts_.try_emplace(key);
  it->second = ReceiptState{state, why};
  if (!inserted) return;
  receipt_order_.push_back(key);
  for (size_t looked = receipt_order_.size();
       looked > 0 && receipt_order_.size() > kReceiptMemory; --looked) {
    const proto::OpKey oldest = receipt_order_.front();
    receipt_order_.pop_front();
    auto old = receipts_.find(oldest);
    const Receipt kept = old->second.state;
    if (kept == Receipt::kReceiving || kept == Receipt::kRefused) {
      receipt_order_.push_back(oldest);  // unsettled: to the back of the queue
    } else {
      receipts_.erase(old);
    }
  }
}

Session::ReceiptState* Session::RefusedReceiptLocked(const proto::OpKey& key) {
  auto it = receipts_.find(key);
  return it != receipts_.end() && it->second.state == Receipt::kRefused ? &it->second : nullptr;
}

Status Session::CommitReceive(const proto::OpKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  if (const ReceiptState* refused = RefusedReceiptLocked(key)) return refused->why;
  RecordReceiptLocked(key, Receipt::kCommitted, Status::Ok());
  return Status::Ok();
}

bool Session::ReceiptRefused(const proto::OpKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  return RefusedReceiptLocked(key) != nullptr;
}

Status Session::NoteReceiveFailed(const proto::OpKey& key, const Status& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (const ReceiptState* refused = RefusedReceiptLocked(key)) return refused->why;
  RecordReceiptLocked(key, Receipt::kFailed, why);
  return why;
}

void Session::OnPairQuery(const proto::PairQuery& query) {
  const proto::OpKey& key = query.key;
  const uint64_t self = peer_id_.load();
  if (key.to_peer != self || key.from_peer == self || closed_.load()) return;
  const Status sender_failed(StatusCodeFromWire(query.code, StatusCode::kAborted), query.reason);
  std::shared_ptr<RingLinks> links;  // to fail the receipt in flight on
  std::optional<Status> report;      // what to report now, if anything
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = receipts_.find(key);
    if (it == receipts_.end()) {
      // Not begun here. If a later recv could still bind it (its key is not taken yet, in
      // this ring or one this peer has yet to apply), it is refused for good.
      const bool ahead =
          key.epoch > ring_epoch_ ||
          (key.epoch == ring_epoch_ &&
           key.seq >= PairKeyLocked(key.from_peer, self, key.tag).seq);
      if (ahead) RecordReceiptLocked(key, Receipt::kRefused, sender_failed);
      report = sender_failed;
    } else if (it->second.state == Receipt::kReceiving) {
      it->second = ReceiptState{Receipt::kRefused, sender_failed};
      auto pair = pairs_.find(key.from_peer);
      if (pair != pairs_.end()) links = pair->second->links;
    } else {
      // Settled here: said again (its report may have gone to a master that is gone, or
      // been forgotten there). A duplicate is answered with the stored verdict.
      report = it->second.state == Receipt::kCommitted ? Status::Ok() : it->second.why;
    }
  }
  // A receipt in flight fails (one still connecting gives up, ReceiptRefused; one whose op
  // is not open yet fails at OpenOp), and its own report follows.
  if (links) links->FailOp(key, sender_failed);
  if (!report) return;
  proto::OpDone done;
  done.key = key;
  done.ok = report->ok() ? 1 : 0;
  done.code = static_cast<uint32_t>(report->code());
  done.reason = report->message().substr(0, proto::kMaxReasonLength);
  ReportReceived(done);
}

std::shared_ptr<RingLinks> Session::BrokenPairLinks(uint64_t peer_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pairs_.find(peer_id);
  if (it == pairs_.end() || !it->second->links) return nullptr;
  return it->second->links->broken_status().ok() ? nullptr : it->second->links;
}

proto::OpKey Session::DirectKey(const proto::OpKey& ring_key) {
  proto::OpKey key = ring_key;
  key.seq |= uint64_t{1} << 63;
  return key;
}

std::vector<std::shared_ptr<RingLinks>> Session::PairLinksLocked() {
  std::vector<std::shared_ptr<RingLinks>> built;
  for (auto& [peer, pair] : pairs_) {
    if (pair->links) built.push_back(pair->links);
  }
  return built;
}

void Session::DropPairs(const Status& why) {
  std::vector<std::shared_ptr<RingLinks>> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    dropped = PairLinksLocked();
    pairs_.clear();
  }
  for (auto& links : dropped) links->Break(why);
}

}  // namespace pccl::comm
