// Pipelined ring all-reduce over a RingChannel.
//
// Thread-safety: RingAllReduce runs on the calling thread; its buffers belong to the caller
// until it returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory_resource>
#include <vector>

#include "pccl/link/channel.h"
#include "pccl/common/call_memory.h"
#include "pccl/common/clock.h"
#include "pccl/common/dtype.h"
#include "pccl/common/status.h"
#include "pccl/kernels/modular.h"
#include "pccl/kernels/reduce.h"

namespace pccl::algo {

using link::RingChannel;

struct AllReduceOptions {
  DType dtype = DType::kFloat32;
  kernels::ReduceOp op = kernels::ReduceOp::kSum;
  size_t count = 0;         // elements in send and in recv
  // This peer's contribution. Never written, except in place (send == recv).
  const void* send = nullptr;
  // The result: a buffer that does not overlap `send`, or `send` itself (in place).
  void* recv = nullptr;
  int rank = 0;             // position in the ring, 0 <= rank < world
  int world = 1;            // peers in the ring, >= 2
  // Payload bytes per segment (the unit that moves and is reduced at once). Default 1 MiB.
  size_t segment_bytes = size_t{1} << 20;
  // float16/bfloat16 with 3 or more peers only: float32 scratch for the partial sums of one
  // window (any contents; see WorkspaceBytes). In place with a backup, most windows have
  // their room in the backup of the windows after them instead.
  float* workspace = nullptr;
  // Elements per ring pass; 0: the whole tensor in one. The tensor is all-reduced window
  // after window (RingAllReduce), so that scratch kept per element (float16/bfloat16
  // partial sums in float32, a quantized call's wire slots) is needed for one window only.
  size_t window_elements = 0;
  // The scratch one window of `window.count` elements needs (bytes). Where set (and for
  // wide float16/bfloat16 partials, 4 bytes an element, where not), windows shrink towards
  // the end of the tensor so that it fits in the backup of the windows after them (PassesOf
  // in ring_allreduce.cc); every peer must set the same, as the windows depend on it.
  std::function<size_t(const AllReduceOptions& window)> room_bytes;
  // Set by PassesOf on a window's options, in place with a backup: where that window's
  // scratch lies in the backup of the windows after it; null: in the shared scratch.
  void* room = nullptr;
  // In place only. `backup`: `count` elements where each segment of the input is saved
  // right before its first overwrite, so that a failed operation can be undone with
  // RestoreInput (BackupBytes); the reduce-scatter partials from the previous peer land in
  // it too, at their own offsets, and trade places with the input as they are folded into
  // the buffer. No backup: a failed operation leaves garbage (for callers that recompute
  // their input), and the partials land in `scratch`: the receive slots
  // (RingChannel::ExpectInSlot), `receive_slots` of one segment each (ScratchBytes; none
  // where float16/bfloat16 partials live in `workspace`). As many slots as the channel
  // has connections never hold the pipeline up.
  void* scratch = nullptr;
  size_t receive_slots = 8;
  void* backup = nullptr;
  // Non-null: uint32 residues summed mod this modulus (kernels::ModAdd) instead of `op`.
  const kernels::Modulus* modulus = nullptr;
  // Non-null (ReduceMode.VERIFIED, not for float16/bfloat16): `count` elements where every
  // reduce-scatter partial this peer receives is copied, at its own offset, before it is
  // reduced; the chunk this peer never receives is left as it was.
  void* received = nullptr;
  // Tests only (PCCL_TEST_CORRUPT_STEP, common/params.h): flip the lowest bit of the first
  // element of segment 0 of what this peer sends at this step (>= 1): a reduce-scatter
  // partial it forwards, the chunk it owns (its own copy too: a wrong reduction), or an
  // all-gather segment it forwards (a copy: its own result stays right). -1: never.
  int corrupt_step = -1;
};

// The window callers that keep scratch per element use (AllReduceOptions::window_elements):
// 32 MiB of float32.
inline constexpr size_t kWindowElements = size_t{8} << 20;

// Whether the all-reduce of `options` keeps float16/bfloat16 partial sums in float32 (in
// its workspace): with 3 or more peers. Between two peers the one partial a peer receives
// is the other's input, which it folds into its own and rounds at once, as a full-precision
// dtype is folded (kernels::FoldHalf).
bool AccumulatesWide(const AllReduceOptions& options);
// Bytes of AllReduceOptions::workspace the all-reduce of `options` needs: where it
// AccumulatesWide, a float per element of its largest window, or, in place with a backup,
// of its largest window without room in the backup (PassesOf in ring_allreduce.cc: 256
// KiB at most); none otherwise.
size_t WorkspaceBytes(const AllReduceOptions& options);
// Bytes of AllReduceOptions::scratch and ::backup an in-place all-reduce needs (scratch:
// receive slots, at most the tensor, none with a backup; the backup: the tensor).
size_t ScratchBytes(const AllReduceOptions& options);
size_t BackupBytes(DType dtype, size_t count);

// Where one ring step's data comes from and goes to; pure, exposed for tests.
struct RingSchedule {
  int world;
  int rank;
  size_t count;
  size_t segment_elements;

  int steps() const { return 2 * (world - 1); }
  bool IsReduceScatter(int step) const { return step < world - 1; }
  int SendChunk(int step) const;
  int RecvChunk(int step) const;
  size_t ChunkBegin(int chunk) const;
  size_t ChunkElements(int chunk) const;
  uint32_t Segments(int chunk) const;
  // The segments of the chunks before `chunk` (0 <= chunk <= world): where its first
  // segment stands when all are numbered in chunk order.
  size_t SegmentsBefore(int chunk) const;
  // Elements [first, first + n) of segment `segment` of `chunk`.
  void Segment(int chunk, uint32_t segment, size_t* first, size_t* n) const;
};

// The schedule of an all-reduce: `options`' world, rank and count, cut in segments of
// options.segment_bytes.
RingSchedule ScheduleFor(const AllReduceOptions& options);

struct AllReduceStats {
  uint64_t tx_bytes = 0;
  uint64_t rx_bytes = 0;
  // In place: 1 for every segment (in schedule order, window after window) whose input is
  // saved in `backup`.
  std::pmr::vector<uint8_t> backed_up{CallMemory()};  // (made once per call: see CallMemory)
  // In place with a backup: the elements of each window the call cut (ForEachWindow), in
  // order, so that RestoreInput finds each segment where it was saved, whatever cut them.
  std::pmr::vector<size_t> windows{CallMemory()};
};

// Runs the all-reduce of `options` over `channel`. On error (or when the master's verdict
// says another peer failed) `recv` holds garbage; `send` is intact out of place, and in
// place RestoreInput() makes it so.
Status RingAllReduce(const AllReduceOptions& options, RingChannel& channel, Deadline deadline,
                     AllReduceStats* stats);

// In place, after a failure: copies every saved input segment back from `backup` (the
// segments of stats.windows, as the call cut them).
void RestoreInput(const AllReduceOptions& options, const AllReduceStats& stats);

// For the all-reduce algorithms: the most `bytes` (of a window's options) any window of
// `options` without room in the backup needs: what their shared scratch must hold.
size_t LargestWithoutRoom(const AllReduceOptions& options,
                          const std::function<size_t(const AllReduceOptions&)>& bytes);
// Runs `pass` once per window of `options`, in order, each with `options` narrowed to the
// window, the first step of its channel keys and the index of its first segment in
// stats->backed_up (sized here for all windows when in place with a backup); stops at the
// first error. Zeroes stats' byte counts first: each pass adds its own.
// (The callers pass ByRef(their pass): no allocation per call.)
using RingPassFn = std::function<Status(const AllReduceOptions& window, uint32_t step_base,
                                        size_t segment_offset)>;
Status ForEachWindow(const AllReduceOptions& options, AllReduceStats* stats,
                     const RingPassFn& pass);

}  // namespace pccl::algo
