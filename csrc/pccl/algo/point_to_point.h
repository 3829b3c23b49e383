// Send and receive: one buffer from one peer to another, over a pair's channel.
//
// The buffer travels as segments of at most `segment_bytes`, step 0 and segment i for the
// i-th (one empty segment for an empty buffer, so that a receiver sees every transfer
// begin, which a recv from any source waits for), so the channel stripes them over every
// connection of the pair's pool and the receiver's links land each straight in the
// receive buffer (or hold it aside until the receive starts there). Once every segment is
// in, the receiver commits (its `commit` says whether it may) and answers with one byte
// (step 1, segment 0), and the sender is done when that byte came: the receiver decides
// the transfer, and the byte tells the sender that it succeeded (comm/point_to_point.cc).
// A send whose receiver does not receive in time fails at its own deadline.
//
// Thread-safety: each function runs on the calling thread; its buffer belongs to the
// caller until it returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "pccl/common/clock.h"
#include "pccl/common/status.h"
#include "pccl/link/channel.h"

namespace pccl::algo {

// Segments a transfer of `bytes` takes (1 for an empty one).
size_t TransferSegments(size_t bytes, size_t segment_bytes);

Status SendBuffer(link::RingChannel& channel, const void* data, size_t bytes,
                  size_t segment_bytes, Deadline deadline);
// Ok once every segment is in and `commit` said Ok: the ack is then on its way (whether it
// reaches the sender or not, the transfer is committed). `answer` false (tests only:
// PCCL_TEST_SILENT_RECEIVES) commits without the ack.
Status ReceiveBuffer(link::RingChannel& channel, void* data, size_t bytes,
                     size_t segment_bytes, Deadline deadline,
                     const std::function<Status()>& commit, bool answer = true);

}  // namespace pccl::algo
