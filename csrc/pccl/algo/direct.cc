#include "pccl/algo/direct.h"

#include <atomic>
#include <cstring>
#include <string>

#include "pccl/algo/ring_blocks.h"

namespace pccl::algo {

using internal::CheckRoot;
using internal::CheckShape;
using internal::ExpectBlock;
using internal::Mod;
using internal::Segments;
using internal::SegmentsOf;
using internal::SendBlock;
using internal::SlotOf;

std::pmr::vector<int> DirectPartners(const RingCollectiveOptions& options, bool rooted) {
  std::pmr::vector<int> partners(CallMemory());  // (made once per call: see CallMemory)
  if (rooted && options.rank != options.root) {
    partners.push_back(options.root);
    return partners;
  }
  // Starting with the next position: while every peer sends, each sends to a different
  // one first.
  for (int d = 1; d < options.world; ++d) partners.push_back(Mod(options.rank + d, options.world));
  return partners;
}

namespace {

// What moves between this peer and one partner: the block it sends (null: none) and where
// the partner's block lands (null: none).
struct Exchange {
  int partner;
  const char* send;
  char* recv;
};

// Declares every landing, then sends every block, then waits for all of it.
Status Run(const RingCollectiveOptions& options, Channels channels,
           const std::pmr::vector<Exchange>& exchanges, Deadline deadline,
           RingCollectiveStats* stats) {
  const size_t elem = DTypeSize(options.dtype);
  const Segments segments = SegmentsOf(options);
  for (const Exchange& e : exchanges) {
    if (static_cast<size_t>(e.partner) >= channels.size() || channels[e.partner] == nullptr) {
      return InvalidArgument("no channel to ring position " + std::to_string(e.partner));
    }
  }
  size_t blocks_in = 0;
  for (const Exchange& e : exchanges) {
    if (e.recv == nullptr) continue;
    ExpectBlock(*channels[e.partner], segments, elem, 0, e.recv);
    ++blocks_in;
  }
  std::atomic<uint64_t> tx_bytes{0};
  for (const Exchange& e : exchanges) {
    if (e.send != nullptr) SendBlock(*channels[e.partner], segments, elem, 0, e.send, &tx_bytes);
  }
  Status done;
  for (const Exchange& e : exchanges) {
    const size_t arrivals = e.recv == nullptr ? 0 : segments.n();
    done = link::AwaitArrivalsAndSends(*channels[e.partner], arrivals, deadline);
    if (!done.ok()) break;
  }
  stats->tx_bytes = tx_bytes.load();
  stats->rx_bytes = done.ok() ? blocks_in * options.count * elem : 0;
  return done;
}

// Gather and scatter: the root exchanges a block with every other peer, and each of them
// one with the root. `gather`: the blocks go to the root, into their slots of its `recv`
// (every other peer sends its `send`); else they come from the root, out of their slots of
// its `send` (every other peer receives into its `recv`).
Status RootedExchange(const RingCollectiveOptions& options,
                      Channels channels, bool gather,
                      Deadline deadline, RingCollectiveStats* stats) {
  PCCL_RETURN_IF_ERROR(CheckRoot(options, gather ? "gather" : "scatter"));
  if (options.count == 0) return Status::Ok();
  const size_t block_bytes = options.count * DTypeSize(options.dtype);
  const auto* send = static_cast<const char*>(options.send);
  auto* recv = static_cast<char*>(options.recv);
  const bool root = options.rank == options.root;
  std::pmr::vector<Exchange> exchanges(CallMemory());
  for (int p : DirectPartners(options, true)) {
    const size_t slot = static_cast<size_t>(SlotOf(options, p)) * block_bytes;
    if (root) {
      exchanges.push_back(gather ? Exchange{p, nullptr, recv + slot}
                                 : Exchange{p, send + slot, nullptr});
    } else {
      exchanges.push_back(gather ? Exchange{p, send, nullptr} : Exchange{p, nullptr, recv});
    }
  }
  if (root) {  // its own block stays here
    const size_t own = static_cast<size_t>(SlotOf(options, options.rank)) * block_bytes;
    const char* from = gather ? send : send + own;
    char* to = gather ? recv + own : recv;
    if (from != to) std::memcpy(to, from, block_bytes);
  }
  return Run(options, channels, exchanges, deadline, stats);
}

}  // namespace

Status DirectGather(const RingCollectiveOptions& options,
                    Channels channels, Deadline deadline,
                    RingCollectiveStats* stats) {
  return RootedExchange(options, channels, true, deadline, stats);
}

Status DirectScatter(const RingCollectiveOptions& options,
                     Channels channels, Deadline deadline,
                     RingCollectiveStats* stats) {
  return RootedExchange(options, channels, false, deadline, stats);
}

// Every peer sends block b of its `send` to the peer whose slot is b and receives that
// peer's block for it into `recv` block b.
Status DirectAllToAll(const RingCollectiveOptions& options,
                      Channels channels, Deadline deadline,
                      RingCollectiveStats* stats) {
  PCCL_RETURN_IF_ERROR(CheckShape(options, "all-to-all"));
  if (options.count == 0) return Status::Ok();
  const size_t block_bytes = options.count * DTypeSize(options.dtype);
  const auto* send = static_cast<const char*>(options.send);
  auto* recv = static_cast<char*>(options.recv);
  std::pmr::vector<Exchange> exchanges(CallMemory());
  for (int p : DirectPartners(options, false)) {
    const size_t block = static_cast<size_t>(SlotOf(options, p)) * block_bytes;
    exchanges.push_back({p, send + block, recv + block});
  }
  const size_t own = static_cast<size_t>(SlotOf(options, options.rank)) * block_bytes;
  std::memcpy(recv + own, send + own, block_bytes);
  return Run(options, channels, exchanges, deadline, stats);
}

}  // namespace pccl::algo
