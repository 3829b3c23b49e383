#include "pccl/algo/quantized_allreduce.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "pccl/common/by_ref.h"
#include "pccl/kernels/copy.h"

namespace pccl::algo {

using link::AwaitArrivalsAndSends;
using link::ScopedArrivalHandler;
namespace {

// The accumulator type: float32 for float16/bfloat16/float32 data, float64 for float64.
DType AccumulatorOf(DType dtype) {
  return dtype == DType::kFloat64 ? DType::kFloat64 : DType::kFloat32;
}

// Bytes one quantized segment of `n` elements takes on the wire: values, then parameters.
size_t WireBytes(DType acc, size_t n, const kernels::QuantizeOptions& quant, size_t* values) {
  size_t params = 0;
  (void)kernels::QuantizedValuesBytes(n, quant, values);
  (void)kernels::QuantizedParamsBytes(acc, n, quant, &params);
  return *values + params;
}

// Where the scratch of one QuantizedRingAllReduce pass lies: wire slots, one per (step,
// segment), each as large as the largest segment's quantized bytes, then the accumulators.
struct ScratchLayout {
  uint32_t max_segments = 0;
  size_t max_segment_wire = 0;
  // Slots of every step, for what arrives (the all-gather forwards those very bytes).
  size_t rx_bytes = 0;
  // Slots of the steps that send freshly quantized bytes: the reduce-scatter's and the
  // owner's first all-gather step (0 .. world-1).
  size_t tx_bytes = 0;
  // Partial sums of float16/bfloat16 data, in float32 (float32/float64 data sum in the
  // output: its segment is not needed again until the all-gather overwrites it).
  size_t acc_bytes = 0;

  size_t slot(int step, uint32_t seg) const {
    return (static_cast<size_t>(step) * max_segments + seg) * max_segment_wire;
  }
  size_t total() const { return rx_bytes + tx_bytes + acc_bytes; }
};

ScratchLayout LayoutOf(const AllReduceOptions& options, const kernels::QuantizeOptions& quant) {
  const RingSchedule schedule = ScheduleFor(options);
  ScratchLayout layout;
  size_t largest_chunk = 0;
  for (int c = 0; c < options.world; ++c) {
    layout.max_segments = std::max(layout.max_segments, schedule.Segments(c));
    largest_chunk = std::max(largest_chunk, schedule.ChunkElements(c));
  }
  const DType acc = AccumulatorOf(options.dtype);
  // The largest segment: a whole chunk where chunks are shorter than a segment.
  const size_t largest_segment = std::min(schedule.segment_elements, largest_chunk);
  size_t unused;
  layout.max_segment_wire = WireBytes(acc, largest_segment, quant, &unused);
  const size_t step_bytes = layout.max_segments * layout.max_segment_wire;
  layout.rx_bytes = static_cast<size_t>(schedule.steps()) * step_bytes;
  layout.tx_bytes = static_cast<size_t>(options.world) * step_bytes;
  layout.acc_bytes = acc != options.dtype ? options.count * DTypeSize(acc) : 0;
  return layout;
}

// The scratch one window needs, for AllReduceOptions::room_bytes. It refers to `quant`
// (the call's: it outlives every copy of the options), so that the std::function keeps it
// inline and the options' copies (one per window) allocate nothing.
std::function<size_t(const AllReduceOptions&)> RoomBytes(const kernels::QuantizeOptions& quant) {
  return [q = &quant](const AllReduceOptions& window) { return LayoutOf(window, *q).total(); };
}

// `options` with the room a quantized window needs: in place with a backup, most windows
// keep their scratch in the backup of the windows after them (PassesOf cuts the windows
// by it, the same for QuantizedScratchBytes and the call).
AllReduceOptions WithRoom(const AllReduceOptions& options,
                          const kernels::QuantizeOptions& quant) {
  AllReduceOptions roomy = options;
  roomy.room_bytes = RoomBytes(quant);
  return roomy;
}

}  // namespace

size_t QuantizedScratchBytes(const AllReduceOptions& options,
                             const kernels::QuantizeOptions& quant) {
  const AllReduceOptions roomy = WithRoom(options, quant);
  return LargestWithoutRoom(roomy, roomy.room_bytes);
}

Status CheckQuantizedAllReduce(const AllReduceOptions& options,
                               const kernels::QuantizeOptions& quant) {
  if (!IsFloatingPoint(options.dtype)) {
    return InvalidArgument(std::string("quantized all-reduce needs float data, got ") +
                           DTypeName(options.dtype));
  }
  if (options.op != kernels::ReduceOp::kSum && options.op != kernels::ReduceOp::kAvg) {
    return InvalidArgument(std::string("quantized all-reduce supports SUM and AVG, not ") +
                           kernels::ReduceOpName(options.op));
  }
  return kernels::CheckQuantizeOptions(AccumulatorOf(options.dtype), quant);
}

namespace {
Status QuantizedPass(const AllReduceOptions& options, const kernels::QuantizeOptions& quant,
                     RingChannel& channel, Deadline deadline, uint32_t step_base,
                     size_t segment_offset, AllReduceStats* stats, char* scratch);
}  // namespace

// The quantized ring: the schedule of RingAllReduce (reduce-scatter, then all-gather), but
// every segment travels as quantized values plus per-block parameters.
//
// Reduce-scatter: partial sums accumulate in float32 (float64 for float64 data): in the
// output itself for float32/float64 data (its segment is not needed again until the
// all-gather overwrites it; in place, after the input was saved), in scratch for
// float16/bfloat16. At each hop a peer sets its accumulator segment to its own
// contribution, adds the dequantized segment it received, and quantizes the sum afresh
// (per-block parameters fit the sum, so rounding errors add up like a random walk instead
// of compounding). The owner of a chunk finishes the sum (AVG divides), quantizes it once,
// and adopts the dequantized value itself.
// All-gather: every peer dequantizes the owner's bytes into its result and forwards those
// very bytes, so every peer ends with bit-identical results.
// The scratch (wire slots and accumulators) is per element: with options.window_elements
// the tensor runs window after window (ForEachWindow) and the scratch holds one window;
// in place with a backup most windows keep theirs in the backup of the windows after them
// instead (WithRoom, PassesOf).
Status QuantizedRingAllReduce(const AllReduceOptions& options,
                              const kernels::QuantizeOptions& quant, RingChannel& channel,
                              Deadline deadline, AllReduceStats* stats, char* scratch) {
  PCCL_RETURN_IF_ERROR(CheckQuantizedAllReduce(options, quant));
  if (options.world < 2 || options.rank < 0 || options.rank >= options.world) {
    return InvalidArgument("ring all-reduce needs world >= 2 and 0 <= rank < world");
  }
  if (options.count == 0) return Status::Ok();
  std::unique_ptr<char[]> owned;
  if (scratch == nullptr) {
    owned.reset(new char[QuantizedScratchBytes(options, quant)]);
    scratch = owned.get();
  }
  auto pass = [&](const AllReduceOptions& window, uint32_t step_base, size_t segment_offset) {
    char* room = static_cast<char*>(window.room);  // in the backup of the windows after it
    return QuantizedPass(window, quant, channel, deadline, step_base, segment_offset, stats,
                         room != nullptr ? room : scratch);
  };
  return ForEachWindow(WithRoom(options, quant), stats, ByRef(pass));
}

namespace {

// One ring pass of QuantizedRingAllReduce over `options` (a window of the call): channel
// keys from step `step_base` on, backup flags from stats->backed_up[segment_offset].
Status QuantizedPass(const AllReduceOptions& options, const kernels::QuantizeOptions& quant,
                     RingChannel& channel, Deadline deadline, uint32_t step_base,
                     size_t segment_offset, AllReduceStats* stats, char* scratch) {
  const bool in_place = options.send == options.recv;
  const bool saves_input = in_place && options.backup != nullptr;  // else: no restore
  const DType dtype = options.dtype;
  const DType acc_dtype = AccumulatorOf(dtype);
  const size_t elem = DTypeSize(dtype);
  const size_t acc_elem = DTypeSize(acc_dtype);
  const auto* send = static_cast<const char*>(options.send);
  auto* recv = static_cast<char*>(options.recv);
  auto* backup = static_cast<char*>(options.backup);
  const uint64_t divisor = options.op == kernels::ReduceOp::kAvg ? options.world : 1;

  const RingSchedule schedule = ScheduleFor(options);
  const int steps = schedule.steps();
  const int last_reduce_step = options.world - 2;

  // Wire slots: every (step, segment) has its own, for what arrives (rx) and for what this
  // peer quantizes and sends (tx: reduce-scatter steps and the owner's first all-gather).
  const ScratchLayout layout = LayoutOf(options, quant);
  char* const rx = scratch;
  char* const tx = rx + layout.rx_bytes;
  char* const acc = layout.acc_bytes > 0 ? tx + layout.tx_bytes : recv;

  std::atomic<uint64_t> tx_bytes{0};
  std::atomic<uint64_t> rx_bytes{0};

  // acc segment := own contribution (widened), saving the input first when in place.
  auto start_sum = [&](int chunk, uint32_t seg, size_t first, size_t n) -> Status {
    if (saves_input) {
      kernels::CopyStreaming(backup + first * elem, send + first * elem, n * elem);
      stats->backed_up[segment_offset + schedule.SegmentsBefore(chunk) + seg] = 1;
    }
    char* a = acc + first * acc_elem;
    if (IsHalfPrecision(dtype)) {
      return kernels::WidenHalf(dtype, reinterpret_cast<float*>(a), send + first * elem, n);
    }
    if (a != send + first * elem) std::memcpy(a, send + first * elem, n * elem);  // in place
    return Status::Ok();
  };
  // Quantizes acc segment into tx slot (step, seg) and sends it.
  auto quantize_and_send = [&](int step, uint32_t seg, size_t first, size_t n,
                               char** wire_out) -> Status {
    size_t values;
    const size_t bytes = WireBytes(acc_dtype, n, quant, &values);
    char* wire = tx + layout.slot(step, seg);
    PCCL_RETURN_IF_ERROR(kernels::Quantize(acc_dtype, acc + first * acc_elem, n, quant,
                                           wire, wire + values, bytes - values));
    channel.Send(step_base + static_cast<uint32_t>(step), seg, wire, bytes);
    tx_bytes.fetch_add(bytes, std::memory_order_relaxed);
    if (wire_out != nullptr) *wire_out = wire;
    return Status::Ok();
  };

  auto on_arrival = [&](uint32_t step_u, uint32_t seg, const void*) -> Status {
    const int step = static_cast<int>(step_u - step_base);
    const int chunk = schedule.RecvChunk(step);
    size_t first, n;
    schedule.Segment(chunk, seg, &first, &n);
    size_t values;
    const size_t bytes = WireBytes(acc_dtype, n, quant, &values);
    char* wire = rx + layout.slot(step, seg);
    rx_bytes.fetch_add(bytes, std::memory_order_relaxed);
    if (!schedule.IsReduceScatter(step)) {
      PCCL_RETURN_IF_ERROR(kernels::DequantizeSet(dtype, recv + first * elem, acc_dtype, wire,
                                                  wire + values, bytes - values, n, quant));
      if (step + 1 < steps) {
        channel.Send(step_u + 1, seg, wire, bytes);  // the owner's bytes, verbatim
        tx_bytes.fetch_add(bytes, std::memory_order_relaxed);
      }
      return Status::Ok();
    }
    PCCL_RETURN_IF_ERROR(start_sum(chunk, seg, first, n));
    PCCL_RETURN_IF_ERROR(kernels::DequantizeAccumulate(acc_dtype, acc + first * acc_elem,
                                                       acc_dtype, wire, wire + values,
                                                       bytes - values, n, quant));
    if (step < last_reduce_step) return quantize_and_send(step + 1, seg, first, n, nullptr);
    // We own this chunk: finish the sum, quantize it once, adopt what the others will see.
    if (divisor != 1) {
      PCCL_RETURN_IF_ERROR(
          kernels::DivideBy(acc_dtype, acc + first * acc_elem, n, divisor));
    }
    char* final_wire = nullptr;
    PCCL_RETURN_IF_ERROR(quantize_and_send(step + 1, seg, first, n, &final_wire));
    return kernels::DequantizeSet(dtype, recv + first * elem, acc_dtype, final_wire,
                                  final_wire + values, bytes - values, n, quant);
  };
  ScopedArrivalHandler handler_scope(channel, on_arrival);

  size_t expected = 0;
  for (int step = 0; step < steps; ++step) {
    int chunk = schedule.RecvChunk(step);
    for (uint32_t seg = 0; seg < schedule.Segments(chunk); ++seg) {
      size_t first, n, values;
      schedule.Segment(chunk, seg, &first, &n);
      channel.Expect(step_base + static_cast<uint32_t>(step), seg, rx + layout.slot(step, seg),
                     WireBytes(acc_dtype, n, quant, &values));
      ++expected;
    }
  }
  const int own = schedule.SendChunk(0);
  for (uint32_t seg = 0; seg < schedule.Segments(own); ++seg) {
    size_t first, n;
    schedule.Segment(own, seg, &first, &n);
    PCCL_RETURN_IF_ERROR(start_sum(own, seg, first, n));
    PCCL_RETURN_IF_ERROR(quantize_and_send(0, seg, first, n, nullptr));
  }
  Status sent = AwaitArrivalsAndSends(channel, expected, deadline);
  stats->tx_bytes += tx_bytes.load();
  stats->rx_bytes += rx_bytes.load();
  return sent;
}

}  // namespace

}  // namespace pccl::algo
