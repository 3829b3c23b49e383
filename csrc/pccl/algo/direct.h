// Gather, scatter and all-to-all straight from source to destination, one channel per
// partner instead of the ring's one channel to the next peer.
//
// Around a ring (ring_routed.cc) a block for the peer k hops ahead crosses k links: an
// all-to-all puts world(world-1)/2 blocks on the wire per peer and a scatter's root pushes
// all of its blocks through one neighbour. Where every member can reach every other (the
// pair links that send/recv dials, comm/session_pairs.cc), each block crosses one link:
// world - 1 blocks sent per peer in an all-to-all, what Gloo's direct connections carry,
// and the root of a scatter or gather spreads its blocks over all its partners at once.
//
// Each block moves as stream 0 of its partner's channel, cut into segments; the partner's
// block lands straight in `recv`. No scratch, no forwarding, no arrival handler.
//
// Thread-safety: each function runs on the calling thread; its buffers belong to the
// caller until it returns.
#pragma once

#include <vector>

#include "pccl/algo/ring_collectives.h"

namespace pccl::algo {

// The ring positions a peer exchanges blocks with: every other one in an all-to-all, and
// at the root of a gather or scatter (`rooted`); only the root elsewhere.
std::vector<int> DirectPartners(const RingCollectiveOptions& options, bool rooted);

// The same collectives and buffers as RingGather, RingScatter and RingAllToAll
// (ring_collectives.h); `channels[p]` is the channel to and from ring position p, for
// every p of DirectPartners (others may be null). On error `recv` holds garbage.
Status DirectGather(const RingCollectiveOptions& options,
                    const std::vector<link::RingChannel*>& channels, Deadline deadline,
                    RingCollectiveStats* stats);
Status DirectScatter(const RingCollectiveOptions& options,
                     const std::vector<link::RingChannel*>& channels, Deadline deadline,
                     RingCollectiveStats* stats);
Status DirectAllToAll(const RingCollectiveOptions& options,
                      const std::vector<link::RingChannel*>& channels, Deadline deadline,
                      RingCollectiveStats* stats);

}  // namespace pccl::algo
