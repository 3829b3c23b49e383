#include "pccl/master/state_election.h"

#include <algorithm>
#include <map>

#include "pccl/common/dtype.h"
#include "pccl/kernels/hash.h"

namespace pccl::master {

// The election, step by step:
//
// 1. Agreement. Every participant must register the same keys with the same size, dtype
//    and allow_content_inequality flag. Any difference fails the round on every peer with
//    InvalidArgument naming the key and the two peers.
// 2. Voters. RECEIVE_ONLY peers never vote and never send; if nobody else is there the
//    round fails. The elected revision R is the highest revision among voters. If the group
//    synced before at revision L, R may be at most L + 1: a jump fails the round
//    (InvalidArgument naming the peer). A revision counts syncs, so one of 2^63 or more is
//    a lie or a wrap, refused alike: no peer can put the group where L + 1 overflows and
//    every later sync would fail. Voters below R are outdated.
// 3. Popularity. Among voters at revision R, the content fingerprint (the hashes of all
//    entries that are compared, in key order) held by the most peers wins; a tie goes to
//    the fingerprint whose first holder comes first in ring order (the oldest member).
// 4. Plans. A peer fetches every compared entry whose hash differs from the elected one,
//    from the voters that hold the elected hash: the plan lists up to kMaxStateSources of
//    them per key, the preferred one first (it rotates over keys and receivers to spread
//    load); the receiver stripes the entry's bytes over all of them. Entries with allow_content_inequality are not compared; a peer that
//    has never synced and is not a winner fetches them from a winner. A SEND_ONLY peer
//    never receives: if it would have to, the round fails with InvalidArgument naming it
//    (its content lost the election; make it RECEIVE_ONLY or ENFORCE_POPULAR, or fix it).
//    A peer whose revision is stale but whose content matches fetches nothing.

namespace {

std::string DescribeEntry(const proto::StateEntry& e) {
  std::string dtype = e.dtype < kNumDTypes ? DTypeName(static_cast<DType>(e.dtype)) : "?";
  return std::to_string(e.bytes) + " bytes of " + dtype +
         (e.allow_content_inequality ? " (allow_content_inequality)" : "");
}

std::string PeerName(const SyncParticipant& p) { return "peer " + std::to_string(p.peer_id); }

using EntryMap = std::map<std::string, const proto::StateEntry*>;

Status BuildMap(const SyncParticipant& p, EntryMap* out) {
  for (const proto::StateEntry& e : p.state.entries) {
    if (!out->emplace(e.key, &e).second) {
      return InvalidArgument(PeerName(p) + " registered shared-state key '" + e.key + "' twice");
    }
  }
  return Status::Ok();
}

}  // namespace

Election ElectSharedState(const std::vector<SyncParticipant>& peers,
                          std::optional<uint64_t> last_revision) {
  Election out;
  if (peers.empty()) {
    out.status = Internal("shared-state election without participants");
    return out;
  }
  // 1. Agreement.
  std::vector<EntryMap> maps(peers.size());
  for (size_t i = 0; i < peers.size(); ++i) {
    out.status = BuildMap(peers[i], &maps[i]);
    if (!out.status.ok()) return out;
  }
  for (size_t i = 1; i < peers.size(); ++i) {
    for (const auto& [key, e] : maps[0]) {
      auto it = maps[i].find(key);
      if (it == maps[i].end()) {
        out.status = InvalidArgument("shared state mismatch on key '" + key + "': " +
                                     PeerName(peers[0]) + " has it, " + PeerName(peers[i]) +
                                     " does not");
        return out;
      }
      const proto::StateEntry& o = *it->second;
      if (o.bytes != e->bytes || o.dtype != e->dtype ||
          o.allow_content_inequality != e->allow_content_inequality) {
        out.status = InvalidArgument("shared state mismatch on key '" + key + "': " +
                                     PeerName(peers[0]) + " has " + DescribeEntry(*e) + ", " +
                                     PeerName(peers[i]) + " has " + DescribeEntry(o));
        return out;
      }
    }
    for (const auto& [key, e] : maps[i]) {
      if (!maps[0].count(key)) {
        out.status = InvalidArgument("shared state mismatch on key '" + key + "': " +
                                     PeerName(peers[i]) + " has it, " + PeerName(peers[0]) +
                                     " does not");
        return out;
      }
    }
  }

  // 2. Voters and the revision.
  auto strategy = [&](size_t i) { return static_cast<proto::SyncStrategy>(peers[i].state.strategy); };
  std::vector<size_t> voters;
  for (size_t i = 0; i < peers.size(); ++i) {
    if (strategy(i) != proto::SyncStrategy::kReceiveOnly) voters.push_back(i);
  }
  if (voters.empty()) {
    out.status = InvalidArgument(
        "every peer of the group syncs its shared state with RECEIVE_ONLY: nobody can send");
    return out;
  }
  constexpr uint64_t kMaxRevision = uint64_t{1} << 63;
  uint64_t revision = 0;
  for (size_t i : voters) {
    if (peers[i].state.revision >= kMaxRevision) {
      out.status = InvalidArgument("shared state revision violation: " + PeerName(peers[i]) +
                                   " claims revision " + std::to_string(peers[i].state.revision) +
                                   " (revisions count syncs and stay below 2^63)");
      return out;
    }
    revision = std::max(revision, peers[i].state.revision);
  }
  if (last_revision.has_value() && revision > *last_revision + 1) {
    for (size_t i : voters) {
      if (peers[i].state.revision == revision) {
        out.status = InvalidArgument(
            "shared state revision violation: " + PeerName(peers[i]) + " is at revision " +
            std::to_string(revision) + " but the group's last sync was at revision " +
            std::to_string(*last_revision) + "; a sync may advance the revision by at most 1");
        return out;
      }
    }
  }
  out.revision = revision;

  // 3. Popularity among voters at the elected revision.
  std::vector<uint64_t> fingerprint(peers.size(), 0);
  for (size_t i = 0; i < peers.size(); ++i) {
    kernels::Hasher h(0x73746174u);
    for (const auto& [key, e] : maps[i]) {
      if (e->allow_content_inequality) continue;
      h.Update(key.data(), key.size());
      h.Update(&e->hash, sizeof(e->hash));
    }
    fingerprint[i] = h.Digest();
  }
  std::vector<uint64_t> order;  // fingerprints by first holder in ring order
  std::map<uint64_t, int> votes;
  for (size_t i : voters) {
    if (peers[i].state.revision != revision) continue;
    if (votes[fingerprint[i]]++ == 0) order.push_back(fingerprint[i]);
  }
  uint64_t winner = order.front();
  for (uint64_t f : order) {
    if (votes[f] > votes[winner]) winner = f;
  }
  std::vector<size_t> winners;
  for (size_t i : voters) {
    if (peers[i].state.revision == revision && fingerprint[i] == winner) winners.push_back(i);
  }
  const EntryMap& elected = maps[winners.front()];

  // 4. Plans.
  out.plans.resize(peers.size());
  size_t key_index = 0;
  for (const auto& [key, e] : elected) {
    std::vector<size_t> sources;
    if (e->allow_content_inequality) {
      sources = winners;
    } else {
      for (size_t i : voters) {
        if (maps[i].at(key)->hash == e->hash) sources.push_back(i);
      }
    }
    for (size_t i = 0; i < peers.size(); ++i) {
      out.plans[i].revision = revision;
      bool fetch;
      if (e->allow_content_inequality) {
        fetch = !peers[i].ever_synced &&
                std::find(winners.begin(), winners.end(), i) == winners.end();
      } else {
        fetch = maps[i].at(key)->hash != e->hash;
      }
      if (!fetch) continue;
      if (strategy(i) == proto::SyncStrategy::kSendOnly) {
        out.status = InvalidArgument(
            PeerName(peers[i]) + " syncs with SEND_ONLY but its shared state lost the "
            "election at revision " + std::to_string(revision) + ": key '" + key +
            "' differs from the popular content; a SEND_ONLY peer never receives");
        out.plans.clear();
        return out;
      }
      // The preferred source first, then the other holders of the same bytes in rotation
      // order (an allow_content_inequality entry may differ between winners: only those
      // with the preferred source's hash qualify).
      const size_t first = (i + key_index) % sources.size();
      const uint64_t hash = maps[sources[first]].at(key)->hash;
      size_t listed = 0;
      for (size_t n = 0; n < sources.size() && listed < proto::kMaxStateSources; ++n) {
        const size_t s = sources[(first + n) % sources.size()];
        if (maps[s].at(key)->hash != hash) continue;
        const SyncParticipant& src = peers[s];
        out.plans[i].fetches.push_back(
            proto::StateFetch{key, hash, src.peer_id, src.host, src.port});
        ++listed;
      }
    }
    ++key_index;
  }
  return out;
}

}  // namespace pccl::master
