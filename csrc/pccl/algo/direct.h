// Gather, scatter and all-to-all straight from source to destination, one channel per
// partner.
//
// Around a ring a block for the peer k hops ahead would cross k links: an all-to-all
// would put world(world-1)/2 blocks on the wire per peer, and a scatter's root would push
// all of its blocks through one neighbour. Where every member can reach every other (the
// pair links that send/recv dials, comm/session_pairs.cc; between two peers the ring's
// own links) each block crosses one link: world - 1 blocks sent per peer in an
// all-to-all, what Gloo's direct connections carry, and the root of a scatter or gather
// spreads its blocks over all its partners at once.
//
// Each block moves as stream 0 of its partner's channel, cut into segments; the partner's
// block lands straight in `recv`. No scratch, no forwarding, no arrival handler.
//
// Slots, as for the ring collectives (ring_collectives.h): gather: every peer's `send`
// block (`count` elements) into the `world` blocks of `recv` on the root (`recv` unused
// elsewhere); scatter: block b of the root's `send` (`world` blocks) into the `recv` of
// the peer whose slot is b (`send` unused elsewhere); all-to-all: block b of every peer's
// `send` goes to the peer whose slot is b, into its `recv` block of the sender's slot.
//
// Thread-safety: each function runs on the calling thread; its buffers belong to the
// caller until it returns.
#pragma once

#include <memory_resource>
#include <span>
#include <vector>

#include "pccl/algo/ring_collectives.h"

namespace pccl::algo {

// The ring positions a peer exchanges blocks with: every other one in an all-to-all, and
// at the root of a gather or scatter (`rooted`); only the root elsewhere.
std::pmr::vector<int> DirectPartners(const RingCollectiveOptions& options, bool rooted);

// The channels of a direct collective, by ring position (those not DirectPartners may be
// null): a view, so that the caller's list may come from CallMemory.
using Channels = std::span<link::RingChannel* const>;

// `channels[p]` is the channel to and from ring position p, for every p of
// DirectPartners (others may be null). On error `recv` holds garbage (`send` is never
// written) and the caller fails the operation.
Status DirectGather(const RingCollectiveOptions& options,
                    Channels channels, Deadline deadline,
                    RingCollectiveStats* stats);
Status DirectScatter(const RingCollectiveOptions& options,
                     Channels channels, Deadline deadline,
                     RingCollectiveStats* stats);
Status DirectAllToAll(const RingCollectiveOptions& options,
                      Channels channels, Deadline deadline,
                      RingCollectiveStats* stats);

}  // namespace pccl::algo
