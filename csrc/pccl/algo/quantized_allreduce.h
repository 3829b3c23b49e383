// Quantized ring all-reduce: the ring of ring_allreduce.h with compressed segments.
//
// Thread-safety: runs on the calling thread (and the channel's I/O threads, through the
// arrival handler); its buffers belong to the caller until it returns.
#pragma once

#include "pccl/link/channel.h"
#include "pccl/algo/ring_allreduce.h"
#include "pccl/kernels/quantize.h"

namespace pccl::algo {

using link::RingChannel;

// OK if `options` (dtype, op) can be all-reduced with `quant`: float16, bfloat16, float32 or
// float64 data, SUM or AVG, MIN_MAX or ZERO_POINT_SCALE into uint8 or uint16. Otherwise
// InvalidArgument naming what is not supported; callers check this before sending anything.
Status CheckQuantizedAllReduce(const AllReduceOptions& options,
                               const kernels::QuantizeOptions& quant);

// Bytes of scratch QuantizedRingAllReduce needs for `options` and `quant`, for its largest
// window (AllReduceOptions::window_elements) without room in the backup: a wire slot per
// (step, segment) for what arrives and for what this peer quantizes and sends, and
// (float16/bfloat16 data only: float32/float64 partial sums accumulate in the output) the
// float32 partial sums. In place with a backup, most windows keep theirs in the backup of
// the windows after them (they shrink towards the end of the tensor for it).
size_t QuantizedScratchBytes(const AllReduceOptions& options,
                             const kernels::QuantizeOptions& quant);

// Runs the all-reduce of `options` over `channel`, every segment on the wire quantized with
// `quant`. `options.workspace` is not used; in place, with `options.backup` (as for
// RingAllReduce) RestoreInput undoes a failed operation; without, nothing can. `scratch`: at least
// QuantizedScratchBytes (any contents), or nullptr to have the call allocate its own.
Status QuantizedRingAllReduce(const AllReduceOptions& options,
                              const kernels::QuantizeOptions& quant, RingChannel& channel,
                              Deadline deadline, AllReduceStats* stats,
                              char* scratch = nullptr);

}  // namespace pccl::algo
