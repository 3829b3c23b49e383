// Collectives::RunDirect: a gather, scatter or all-to-all, its blocks sent straight to
// their destinations (algo/direct.h), with the ring collectives' guarantees
// (ring_collectives.cc).
//
// The story of one call. It is bound to the ring like every collective (its key K, the
// members' ring positions) and ExecuteRing opens K on the ring's links, where the master's
// verdict for K reaches it. Between two peers those links are the direct ones and the
// blocks move there. With more, no data moves on K: the blocks move over the pair links of
// the members this peer exchanges with (session_pairs.cc: dialled by the first call that
// needs them, kept for the ring epoch). Each member connects its pairs in one order that
// all agree on, by the pair's two ids, so that no members wait for each other in a cycle.
// On each pair's links the call opens operation K with the top bit of its seq set, a key
// that no send/recv takes (Session::DirectKey). When K fails (a verdict: some member
// failed; the ring's links broke) those operations fail too, and so does a wait for a
// pair's other end, so nobody waits for blocks a failed member will never send; a verdict
// also fails that key on every pair whose member never opened it (Session::OnVerdict). The
// call then ends as every ring collective does: its outcome reported to the master and
// the verdict awaited (ExecuteRing).
#include <algorithm>
#include <utility>

#include "pccl/algo/direct.h"
#include "pccl/comm/collectives.h"

namespace pccl::comm {
namespace {

Status RunAlgorithm(CollectiveKind kind, const algo::RingCollectiveOptions& options,
                    algo::Channels channels, Deadline deadline,
                    algo::RingCollectiveStats* stats) {
  switch (kind) {
    case CollectiveKind::kGather: return algo::DirectGather(options, channels, deadline, stats);
    case CollectiveKind::kScatter: return algo::DirectScatter(options, channels, deadline, stats);
    case CollectiveKind::kAllToAll:
      return algo::DirectAllToAll(options, channels, deadline, stats);
    default: return Internal("RunDirect runs gather, scatter and all-to-all only");
  }
}

}  // namespace

Status Collectives::RunDirect(const CollectiveRequest& request, const RingBinding& bound,
                              const algo::RingCollectiveOptions& options,
                              const std::shared_ptr<link::RingOp>& ring_op,
                              uint64_t descriptor_hash, Deadline deadline,
                              algo::RingCollectiveStats* stats) {
  // (Lists made once per call, from CallMemory.)
  std::pmr::vector<link::RingChannel*> channels(options.world, nullptr, CallMemory());
  if (options.world == 2 || options.count == 0) {  // no pair links needed
    if (options.world == 2) channels[1 - options.rank] = ring_op.get();  // they join the two
    return RunAlgorithm(request.kind, options, channels, deadline, stats);
  }
  const bool rooted = request.kind != CollectiveKind::kAllToAll;
  const std::pmr::vector<int> partners = algo::DirectPartners(options, rooted);
  const uint64_t self = (*bound.ring)[bound.rank];
  auto pair_of = [&](int position) {
    const uint64_t other = (*bound.ring)[position];
    return std::make_pair(std::min(self, other), std::max(self, other));
  };
  std::pmr::vector<int> connect_order(partners, CallMemory());
  std::sort(connect_order.begin(), connect_order.end(),
            [&](int a, int b) { return pair_of(a) < pair_of(b); });

  const proto::OpKey pair_key = Session::DirectKey(bound.key);
  std::pmr::vector<std::shared_ptr<link::RingLinks>> links(options.world, CallMemory());
  std::pmr::vector<std::shared_ptr<link::RingOp>> ops(options.world, CallMemory());
  auto failed = [&ring_op] { return !ring_op->status().ok(); };
  Status local;
  for (int p : connect_order) {
    local = session_.ConnectPair(bound.key, (*bound.ring)[p], deadline, &links[p], failed);
    if (local.ok()) local = links[p]->OpenOp(pair_key, descriptor_hash, deadline, &ops[p]);
    if (!local.ok()) break;
    ring_op->PassFailureTo(ops[p]);
    channels[p] = ops[p].get();
  }
  if (local.ok()) local = RunAlgorithm(request.kind, options, channels, deadline, stats);
  if (!local.ok()) {  // stop the other pairs' transfers too, so that they close at once
    for (auto& op : ops) {
      if (op) op->Fail(local);
    }
  }
  for (int p : connect_order) {
    if (ops[p]) links[p]->CloseOp(ops[p], kAbortGrace);  // no I/O thread touches the buffers
  }
  // Failed because K did (the wait for a pair gave up, or its operation was failed): the
  // reason is K's.
  if (!local.ok() && failed()) local = ring_op->status();
  return local;
}

}  // namespace pccl::comm
