#include "pccl/algo/ring_allreduce.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "pccl/common/by_ref.h"
#include "pccl/kernels/copy.h"

namespace pccl::algo {

using link::AwaitArrivalsAndSends;
using link::ScopedArrivalHandler;

bool AccumulatesWide(const AllReduceOptions& options) {
  return IsHalfPrecision(options.dtype) && options.world > 2;
}

namespace {

// One receive slot: a segment, or a chunk where chunks are smaller.
size_t SlotBytes(const AllReduceOptions& options) {
  const size_t elem = DTypeSize(options.dtype);
  const size_t segment = std::max<size_t>(options.segment_bytes / elem, 1);
  const size_t world = static_cast<size_t>(std::max(options.world, 1));
  return std::min(segment, (options.count + world - 1) / world) * elem;
}

}  // namespace

size_t ScratchBytes(const AllReduceOptions& options) {
  // Wide partials live in the workspace; with a backup they land in the backup.
  if (AccumulatesWide(options) || options.backup != nullptr) return 0;
  return options.receive_slots * SlotBytes(options);
}

size_t BackupBytes(DType dtype, size_t count) { return count * DTypeSize(dtype); }

RingSchedule ScheduleFor(const AllReduceOptions& options) {
  size_t segment_elements = options.segment_bytes / DTypeSize(options.dtype);
  return RingSchedule{options.world, options.rank, options.count,
                      segment_elements > 0 ? segment_elements : 1};
}

namespace {

// One ring pass of an all-reduce: `options` narrowed to its window of the tensor (its part
// of every tensor-sized buffer; the receive slots are shared, as one pass runs at a time,
// and so is the scratch, unless the pass has room in the backup: options.room), the first
// step of its channel keys, and where its segments' flags start in
// AllReduceStats::backed_up.
struct Pass {
  AllReduceOptions options;
  uint32_t step_base;
  size_t segment_offset;
  size_t segments;
};

// Windows stop shrinking to fit their room in the backup below this many elements: the
// rest (where even a window this wide has no room after it) runs in windows this wide, in
// the shared scratch (for wide float16/bfloat16 partials, at most 4 x 64 Ki bytes: 256
// KiB; for a quantized bfloat16 call's accumulators and wire slots about 420 KiB).
constexpr size_t kTailElements = size_t{64} << 10;

// Calls visit(pass) for each pass of `options`, in order: consecutive windows of
// options.window_elements (the last one shorter), or the whole tensor in one.
//
// Windows that keep scratch per element (wide float16/bfloat16 partials in float32, a
// quantized call's wire slots: options.room_bytes) need room beside the tensor. In place
// with the restore copy, the backup of the windows after a pass is unused while it runs
// (an input segment is saved there only in its own window's pass), so the room goes there
// and the backup is all the call adds: towards the end of the tensor, where fewer windows
// are left, each window shrinks to the widest whose room then fits (for wide partials, a
// third of what is left), down to kTailElements; only the last few windows (kTailElements
// each) use the shared scratch. The widths depend on what every peer shares (count,
// window_elements, the room a window needs), so every peer cuts the same windows whether
// it keeps a backup or not.
template <typename Visit>
void PassesOf(const AllReduceOptions& options, Visit&& visit) {
  const size_t width = options.window_elements > 0 ? options.window_elements
                                                   : std::max<size_t>(options.count, 1);
  const bool wide = AccumulatesWide(options);
  std::function<size_t(const AllReduceOptions&)> room_bytes = options.room_bytes;
  if (!room_bytes && wide) {
    room_bytes = [](const AllReduceOptions& w) { return w.count * sizeof(float); };
  }
  const bool shrinks = room_bytes && options.window_elements > 0;
  const size_t elem = DTypeSize(options.dtype);
  const size_t acc_elem = wide ? sizeof(float) : elem;
  AllReduceOptions probe = options;  // a window of some width, to ask room_bytes about
  uint32_t step_base = 0;
  size_t segment_offset = 0;
  for (size_t first = 0; first < options.count;) {
    auto at = [&](auto* base, size_t unit) {
      return base == nullptr ? base : base + first * unit;
    };
    const size_t left = options.count - first;
    AllReduceOptions part = options;
    part.count = std::min(width, left);
    // Whether the room of `w` elements (and 64 bytes to align it) fits in the backup of
    // the elements after them.
    auto fits = [&](size_t w) {
      probe.count = w;
      return room_bytes(probe) + 64 <= (left - w) * elem;
    };
    bool room_in_backup = false;
    if (shrinks && fits(part.count)) {
      room_in_backup = true;
    } else if (shrinks && part.count > kTailElements && fits(kTailElements)) {
      size_t lo = kTailElements, hi = part.count;  // fits(lo), !fits(hi): the widest that fits
      while (hi - lo > 1) {
        const size_t mid = lo + (hi - lo) / 2;
        (fits(mid) ? lo : hi) = mid;
      }
      part.count = lo;
      room_in_backup = true;
    } else if (shrinks) {
      part.count = std::min(part.count, kTailElements);  // the tail, in the shared scratch
    }
    part.room = nullptr;
    if (room_in_backup && options.backup != nullptr) {
      const auto after = reinterpret_cast<uintptr_t>(static_cast<char*>(options.backup) +
                                                     (first + part.count) * elem);
      part.room = reinterpret_cast<void*>((after + 63) & ~uintptr_t{63});
      if (wide) part.workspace = static_cast<float*>(part.room);
    }
    part.send = at(static_cast<const char*>(options.send), elem);
    part.recv = at(static_cast<char*>(options.recv), elem);
    part.backup = at(static_cast<char*>(options.backup), elem);
    part.received = at(static_cast<char*>(options.received), acc_elem);
    if (first > 0) part.corrupt_step = -1;  // the test switch corrupts one segment in all
    const RingSchedule schedule = ScheduleFor(part);
    const size_t segments = schedule.SegmentsBefore(schedule.world);
    visit(Pass{part, step_base, segment_offset, segments});
    step_base += static_cast<uint32_t>(schedule.steps());
    segment_offset += segments;
    first += part.count;
  }
}

// dst op= src over n elements: the request's reduction, or the sum mod its modulus.
Status ReduceInto(const AllReduceOptions& options, void* dst, const void* src, size_t n) {
  if (options.modulus != nullptr) return kernels::ModAdd(*options.modulus, dst, src, n);
  return kernels::Reduce(options.dtype, options.op, dst, src, n);
}

// Folds a partial into the buffer and saves the input it overwrites: afterwards `buffer`
// holds input op partial and `backup` the input. The partial either landed in the backup
// itself, at its segment's own offset (the two trade places), or waited in the link's own
// memory because it came before this peer declared where it goes
// (RingChannel::ExpectOrKeepEarly). One pass that reads each byte of the two once and
// writes it once, as the copy that would otherwise save the input does on its own.
Status FoldAndSave(const AllReduceOptions& options, char* buffer, char* backup,
                   const void* partial, size_t n) {
  if (options.modulus == nullptr) {
    return kernels::ReduceSaving(options.dtype, options.op, buffer, partial, backup, n);
  }
  // The sum mod a modulus has no saving kernel: block by block through a small buffer that
  // stays in the cache.
  constexpr size_t kBlockBytes = 16 << 10;
  alignas(64) char block_partial[kBlockBytes];
  const size_t elem = DTypeSize(options.dtype);
  const size_t block = kBlockBytes / elem;
  for (size_t done = 0; done < n; done += block) {
    const size_t bytes = std::min(block, n - done) * elem;
    char* in = buffer + done * elem;
    char* saved = backup + done * elem;
    std::memcpy(block_partial, static_cast<const char*>(partial) + done * elem, bytes);
    std::memcpy(saved, in, bytes);
    Status st = ReduceInto(options, in, block_partial, bytes / elem);
    if (!st.ok()) {  // the kernel refused: the segment is not saved, so give its input back
      std::memcpy(buffer, backup, done * elem + bytes);
      return st;
    }
  }
  return Status::Ok();
}

}  // namespace

size_t LargestWithoutRoom(const AllReduceOptions& options,
                          const std::function<size_t(const AllReduceOptions&)>& bytes) {
  size_t most = 0;
  PassesOf(options, [&](const Pass& p) {
    if (p.options.room == nullptr) most = std::max(most, bytes(p.options));
  });
  return most;
}

size_t WorkspaceBytes(const AllReduceOptions& options) {
  if (!AccumulatesWide(options)) return 0;
  // A float per element of a window, but for the chunk this peer sends first (RingPass).
  return LargestWithoutRoom(options, [&](const AllReduceOptions& window) {
    return (window.count - ScheduleFor(window).ChunkElements(options.rank)) * sizeof(float);
  });
}

Status ForEachWindow(const AllReduceOptions& options, AllReduceStats* stats,
                     const RingPassFn& pass) {
  stats->tx_bytes = 0;
  stats->rx_bytes = 0;
  // Cut twice, not kept: counting first (the flags' size) needs no list of the passes.
  // (stats' vectors take their memory from CallMemory.)
  stats->windows.clear();
  stats->backed_up.clear();
  if (options.send == options.recv && options.backup != nullptr) {
    size_t segments = 0;
    PassesOf(options, [&](const Pass& p) {
      stats->windows.push_back(p.options.count);
      segments = p.segment_offset + p.segments;
    });
    stats->backed_up.assign(segments, 0);
  }
  Status status = Status::Ok();
  PassesOf(options, [&](const Pass& p) {
    if (status.ok()) status = pass(p.options, p.step_base, p.segment_offset);
  });
  return status;
}

void RestoreInput(const AllReduceOptions& options, const AllReduceStats& stats) {
  if (options.backup == nullptr || stats.backed_up.empty()) return;
  const size_t elem = DTypeSize(options.dtype);
  auto* input = static_cast<char*>(options.recv);
  const auto* saved = static_cast<const char*>(options.backup);
  size_t index = 0;         // the segment's flag in stats.backed_up
  size_t window_first = 0;  // the window's first element
  for (size_t count : stats.windows) {
    AllReduceOptions window = options;
    window.count = count;
    const RingSchedule schedule = ScheduleFor(window);
    for (int c = 0; c < schedule.world; ++c) {
      for (uint32_t seg = 0; seg < schedule.Segments(c); ++seg, ++index) {
        if (index >= stats.backed_up.size()) return;
        if (!stats.backed_up[index]) continue;
        size_t first, n;
        schedule.Segment(c, seg, &first, &n);
        const size_t at = (window_first + first) * elem;
        std::memcpy(input + at, saved + at, n * elem);
      }
    }
    window_first += count;
  }
}

int RingSchedule::SendChunk(int step) const {
  int shift = IsReduceScatter(step) ? step : step - (world - 1) - 1;
  return ((rank - shift) % world + world) % world;
}

int RingSchedule::RecvChunk(int step) const {
  int shift = IsReduceScatter(step) ? step + 1 : step - (world - 1);
  return ((rank - shift) % world + world) % world;
}

size_t RingSchedule::ChunkBegin(int chunk) const {
  size_t base = count / static_cast<size_t>(world);
  size_t extra = count % static_cast<size_t>(world);
  size_t c = static_cast<size_t>(chunk);
  return c * base + (c < extra ? c : extra);
}

size_t RingSchedule::ChunkElements(int chunk) const {
  return ChunkBegin(chunk + 1) - ChunkBegin(chunk);
}

uint32_t RingSchedule::Segments(int chunk) const {
  size_t n = ChunkElements(chunk);
  return static_cast<uint32_t>((n + segment_elements - 1) / segment_elements);
}

size_t RingSchedule::SegmentsBefore(int chunk) const {
  // The first count % world chunks hold one element more than the others.
  const size_t base = count / static_cast<size_t>(world);
  const size_t extra = count % static_cast<size_t>(world);
  const size_t c = static_cast<size_t>(chunk);
  const size_t longer = std::min(c, extra);
  auto segments_of = [&](size_t n) { return (n + segment_elements - 1) / segment_elements; };
  return longer * segments_of(base + 1) + (c - longer) * segments_of(base);
}

void RingSchedule::Segment(int chunk, uint32_t segment, size_t* first, size_t* n) const {
  size_t begin = ChunkBegin(chunk) + segment * segment_elements;
  size_t end = ChunkBegin(chunk) + ChunkElements(chunk);
  *first = begin;
  *n = (end - begin < segment_elements) ? end - begin : segment_elements;
}

namespace {
Status RingPass(const AllReduceOptions& options, RingChannel& channel, Deadline deadline,
                uint32_t step_base, size_t segment_offset, AllReduceStats* stats);
}  // namespace

// The ring all-reduce, pipelined by segment.
//
// The buffer is cut into `world` chunks; chunk c is owned by rank c - 1 (mod world). In the
// reduce-scatter phase (steps 0 .. world-2) every rank sends one chunk to the next rank and
// receives another from the previous one: at step s rank r sends chunk r - s and receives
// chunk r - s - 1, which it reduces with its own contribution; that partial result is what
// it sends at step s + 1. After world - 1 steps rank r holds the complete reduction of chunk
// r + 1: it owns it, finalises it once (AVG divides, float16/bfloat16 round from float32)
// and starts the all-gather phase (steps world-1 .. 2*world-3), where each chunk travels
// once around the ring and every rank stores and forwards the owner's bytes verbatim. So
// every rank ends with bit-identical results, whatever the arithmetic.
//
// Chunks move in segments. Every segment is independent: as soon as segment j of a step
// has arrived and been reduced, segment j of the next step is queued, so receiving,
// reducing and sending overlap, and the channel spreads segments over all connections of
// its pool. The reduction runs on the thread that received the segment, right after the
// bytes landed (cache-hot, no hand-off to another thread). All receive destinations are
// declared up front, so payloads land directly in place: reduce-scatter partials in the
// accumulator (the result buffer, or a float32 workspace for float16/bfloat16 so that
// partial sums travel and accumulate in float32), all-gather segments in the result
// buffer. In place at full precision the partials cannot land in the buffer (it still
// holds this peer's input for them): they land in a few receive slots, one segment each,
// and are folded into the buffer as they arrive, which then holds the running sum that
// goes on; so the operation needs no buffer of the tensor's size (only the backup, when
// the input must be restorable). With a backup they need no slots either: a partial lands
// in the backup at its segment's place, and folding it into the buffer puts the input
// there instead (FoldAndSave), so the backup is the only memory the call adds; one that
// came before this peer started the call is folded in from where it waited. The chunk
// this peer sends first has no partial to fold: its input is copied to the backup, with
// non-temporal stores (kernels::CopyStreaming: the backup is read only to undo a failure).
//
// float16/bfloat16: what a peer sends at step 0 is its own input, which its dtype holds
// exactly, so it travels as it is; every later partial is a sum and travels in float32.
// Each peer sends 2(3N - 4)/N bytes per element instead of 6(N - 1)/N: a third fewer
// with 2 peers, a ninth fewer with 4. Between two peers step 0 is the whole
// reduce-scatter: the partial a peer receives is the other's input, which it folds into
// its own and rounds at once (kernels::FoldHalf), landing where a full-precision partial
// lands (the backup, a receive slot, the output); so it needs no float32 room and the
// backup is again all the call adds. With more peers (AccumulatesWide) the receiver
// lands a step-0 segment in the upper half of that segment's float32 room and widens it
// in place as it adds its own input (kernels::CombineHalf).
//
// Wide float16/bfloat16 partial sums need float32 room for every element they cover. So
// that it stays bounded, the caller may cut the tensor into windows
// (options.window_elements): one ring pass per window, one after the other over the same
// channel, each under steps of its own (ForEachWindow); the workspace then holds one
// window (in place with the restore copy most windows keep their room in the backup of
// the windows after them instead: PassesOf). A window's pass ends when
// every send of it was handed to the kernel, so the next one may reuse the workspace; the
// previous peer may start the next window meanwhile, and on a near link its first
// segments wait in their sockets until this peer declares them (link/ring_links.h).
Status RingAllReduce(const AllReduceOptions& options, RingChannel& channel, Deadline deadline,
                     AllReduceStats* stats) {
  if (options.world < 2 || options.rank < 0 || options.rank >= options.world) {
    return InvalidArgument("ring all-reduce needs world >= 2 and 0 <= rank < world, got rank " +
                           std::to_string(options.rank) + " of " + std::to_string(options.world));
  }
  if (options.count == 0) return Status::Ok();
  const bool wide = AccumulatesWide(options);
  if (wide && options.workspace == nullptr && WorkspaceBytes(options) > 0) {
    return InvalidArgument("float16/bfloat16 all-reduce needs a float32 workspace");
  }
  const bool in_place = options.send == options.recv;
  if (in_place && !wide && options.backup == nullptr &&
      (options.scratch == nullptr || options.receive_slots == 0)) {
    return InvalidArgument("an in-place all-reduce needs receive slots (scratch) or a backup");
  }
  auto pass = [&](const AllReduceOptions& window, uint32_t step_base, size_t segment_offset) {
    return RingPass(window, channel, deadline, step_base, segment_offset, stats);
  };
  return ForEachWindow(options, stats, ByRef(pass));
}

namespace {

// One ring pass of RingAllReduce over `options` (the whole call, or one window of it): its
// channel keys are steps step_base + 0 .. step_base + steps - 1, its segments' backup flags
// stats->backed_up[segment_offset ..], and its bytes add to stats' counts.
Status RingPass(const AllReduceOptions& options, RingChannel& channel, Deadline deadline,
                uint32_t step_base, size_t segment_offset, AllReduceStats* stats) {
  // float16/bfloat16 partial sums in the float32 workspace (3 or more peers); between two
  // peers a float16/bfloat16 partial folds in at once (`half_pair`).
  const bool wide = AccumulatesWide(options);
  const bool half_pair = IsHalfPrecision(options.dtype) && !wide;
  const bool in_place = options.send == options.recv;
  const bool saves_input = in_place && options.backup != nullptr;  // else: no restore
  // In place, unless wide, the partials land in the backup (restoring) or in receive
  // slots, and fold into the buffer.
  const bool in_backup = saves_input && !wide;
  const bool in_slots = in_place && !wide && !saves_input;
  const size_t elem = DTypeSize(options.dtype);
  const size_t acc_elem = wide ? sizeof(float) : elem;
  const auto* send = static_cast<const char*>(options.send);
  auto* recv = static_cast<char*>(options.recv);
  auto* backup = static_cast<char*>(options.backup);

  const RingSchedule schedule = ScheduleFor(options);
  // Where the reduce-scatter partial of element `first` accumulates: the result buffer
  // (in place, once this peer's input for that segment was read: see on_arrival), or the
  // float32 workspace, which leaves out the chunk this peer sends first (it never
  // receives a partial of it), so every window touches the same prefix (WorkspaceBytes).
  const size_t own_first = schedule.ChunkBegin(options.rank);
  const size_t own_count = schedule.ChunkElements(options.rank);
  auto acc_at = [&](size_t first) -> char* {
    if (!wide) return recv + first * elem;
    const size_t index = first < own_first ? first : first - own_count;
    return reinterpret_cast<char*>(options.workspace + index);
  };
  // In place, saves the input of a segment before anything can overwrite it: the owner's
  // result or all-gather data for that chunk can only exist after this peer's own
  // contribution to it was read, which happens right after this call.
  auto save_input = [&](int chunk, uint32_t seg, size_t first, size_t n) {
    if (!saves_input) return;
    kernels::CopyStreaming(backup + first * elem, send + first * elem, n * elem);
    stats->backed_up[segment_offset + schedule.SegmentsBefore(chunk) + seg] = 1;  // distinct bytes
  };
  const int steps = schedule.steps();
  const int last_reduce_step = options.world - 2;
  const uint64_t divisor = options.op == kernels::ReduceOp::kAvg ? options.world : 1;

  std::atomic<uint64_t> tx_bytes{0};
  std::atomic<uint64_t> rx_bytes{0};
  std::vector<char> corrupted;  // the test fault switch's forwarded copy (see corrupt_step)
  auto send_segment = [&](int step, uint32_t seg, const char* data, size_t bytes) {
    if (step == options.corrupt_step && seg == 0 && bytes > 0) {
      if (schedule.IsReduceScatter(step) || step == last_reduce_step + 1) {
        const_cast<char*>(data)[0] ^= 1;  // our partial, or the chunk we own: reduced wrong
      } else {
        corrupted.assign(data, data + bytes);  // forwarded wrong; our own copy stays right
        corrupted[0] ^= 1;
        data = corrupted.data();
      }
    }
    channel.Send(step_base + static_cast<uint32_t>(step), seg, data, bytes);
    tx_bytes.fetch_add(bytes, std::memory_order_relaxed);
  };

  // What happens when segment `seg` of `step` has landed: reduce it into the partial result
  // and pass it on. Runs on the channel's I/O threads, concurrently for different segments
  // (they touch disjoint memory).
  auto on_arrival = [&](uint32_t step_u, uint32_t seg, const void* landed) -> Status {
    const int step = static_cast<int>(step_u - step_base);
    const int chunk = schedule.RecvChunk(step);
    size_t first, n;
    schedule.Segment(chunk, seg, &first, &n);
    char* result = recv + first * elem;
    if (!schedule.IsReduceScatter(step)) {
      rx_bytes.fetch_add(n * elem, std::memory_order_relaxed);
      if (step + 1 < steps) send_segment(step + 1, seg, result, n * elem);
      return Status::Ok();
    }
    // Wide: what comes at step 0 is the previous peer's input, in its own dtype.
    const bool half_input = wide && step == 0;
    const size_t landed_bytes = n * (half_input ? elem : acc_elem);
    rx_bytes.fetch_add(landed_bytes, std::memory_order_relaxed);
    // The running sum of this segment, which goes on (or, at the owner, is final).
    char* partial = acc_at(first);
    if (!in_backup) save_input(chunk, seg, first, n);
    if (options.received != nullptr) {
      std::memcpy(static_cast<char*>(options.received) + first * acc_elem, landed,
                  landed_bytes);
    }
    const bool owner = step == last_reduce_step;
    if (half_pair) {  // owner already: input op partial, rounded (and divided) once
      char* saved = in_backup ? backup + first * elem : nullptr;
      PCCL_RETURN_IF_ERROR(kernels::FoldHalf(options.dtype, options.op, result, landed,
                                             send + first * elem, saved, n, divisor));
      if (in_backup) stats->backed_up[segment_offset + schedule.SegmentsBefore(chunk) + seg] = 1;
      send_segment(step + 1, seg, result, n * elem);
      return Status::Ok();
    }
    if (in_backup) {
      char* saved = backup + first * elem;
      PCCL_RETURN_IF_ERROR(FoldAndSave(options, partial, saved, landed, n));
      stats->backed_up[segment_offset + schedule.SegmentsBefore(chunk) + seg] = 1;
    } else if (half_input) {  // landed in the upper half of `partial`: widened in place
      PCCL_RETURN_IF_ERROR(kernels::CombineHalf(options.dtype, options.op,
                                                reinterpret_cast<float*>(partial), landed,
                                                send + first * elem, n));
    } else if (wide) {
      PCCL_RETURN_IF_ERROR(kernels::AccumulateHalf(options.dtype, options.op,
                                                   reinterpret_cast<float*>(partial),
                                                   send + first * elem, n));
    } else if (in_slots) {
      // The input, saved above, becomes the running sum: input op= what arrived.
      PCCL_RETURN_IF_ERROR(ReduceInto(options, partial, landed, n));
    } else {
      PCCL_RETURN_IF_ERROR(ReduceInto(options, partial, send + first * elem, n));
    }
    if (!owner) {
      send_segment(step + 1, seg, partial, n * acc_elem);
      return Status::Ok();
    }
    // We own this chunk: finalise once, then start its trip around the ring.
    if (wide) {
      PCCL_RETURN_IF_ERROR(kernels::NarrowHalf(options.dtype, result,
                                               reinterpret_cast<float*>(partial), n, divisor));
    } else if (divisor != 1) {
      PCCL_RETURN_IF_ERROR(kernels::DivideBy(options.dtype, result, n, divisor));
    }
    send_segment(step + 1, seg, result, n * elem);
    return Status::Ok();
  };
  ScopedArrivalHandler handler_scope(channel, on_arrival);

  // Every destination, declared before anything is sent.
  if (in_slots) {
    channel.SetReceiveSlots(options.scratch, SlotBytes(options), options.receive_slots);
  }
  size_t expected = 0;
  for (int step = 0; step < steps; ++step) {
    const int chunk = schedule.RecvChunk(step);
    const uint32_t wire_step = step_base + static_cast<uint32_t>(step);
    for (uint32_t seg = 0; seg < schedule.Segments(chunk); ++seg) {
      size_t first, n;
      schedule.Segment(chunk, seg, &first, &n);
      if (schedule.IsReduceScatter(step) && in_slots) {
        channel.ExpectInSlot(wire_step, seg, n * elem);
      } else if (schedule.IsReduceScatter(step) && in_backup) {
        channel.ExpectOrKeepEarly(wire_step, seg, backup + first * elem, n * elem);
      } else if (schedule.IsReduceScatter(step) && wide && step == 0) {
        channel.Expect(wire_step, seg, acc_at(first) + n * elem, n * elem);
      } else if (schedule.IsReduceScatter(step)) {
        channel.Expect(wire_step, seg, acc_at(first), n * acc_elem);
      } else {
        channel.Expect(wire_step, seg, recv + first * elem, n * elem);
      }
      ++expected;
    }
  }

  // Step 0: our own contribution to chunk `rank`, straight from the input (float16 and
  // bfloat16 too: a single input needs no float32 to travel exactly).
  const int own = schedule.SendChunk(0);
  for (uint32_t seg = 0; seg < schedule.Segments(own); ++seg) {
    size_t first, n;
    schedule.Segment(own, seg, &first, &n);
    save_input(own, seg, first, n);  // all-gather data for it arrives later
    send_segment(0, seg, send + first * elem, n * elem);
  }

  // Every arrival is handled by on_arrival; here we only count them.
  Status sent = AwaitArrivalsAndSends(channel, expected, deadline);
  stats->tx_bytes += tx_bytes.load();
  stats->rx_bytes += rx_bytes.load();
  return sent;
}

}  // namespace

}  // namespace pccl::algo
