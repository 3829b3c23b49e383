// The exact all-reduce: pccl.ReduceMode.EXACT and PRIVATE.
//
// A floating-point ring sum depends on the order in which partial sums meet, so the same
// inputs give results that differ in their last bits under another ring order, another
// membership or a retry. EXACT takes the order out of the arithmetic, in three steps:
//
// 1. The scale. Every peer reports max |x| of its input through the master (a data-less
//    operation of its own on the call's tag, whose verdict hands every member all reports:
//    one round trip, where a MAX all-reduce would take n - 1 round trips around the ring),
//    after a one-byte greeting each way around the ring that makes a neighbour in another
//    mode fail at once (Collectives::Report). Afterwards all know M, the largest magnitude
//    anywhere, and the world n of that exchange. The fixed-point scale 2^F is the
//    largest with n * (M * 2^F + 1/2) <= H = (p - 1) / 2, so no sum of n rounded, encoded
//    inputs can leave the centred range (and no partial sum of fewer). A non-finite input
//    anywhere makes M infinite and every peer refuses the call; so does an M too large for
//    F >= 0 (integers: F = 0 always). Nothing is wrapped.
// 2. The sum. Each peer encodes its input as residues round(x * 2^F) mod p (p = kExactModulus,
//    the largest prime below 2^32; kernels/modular.h FixedEncode; 4 bytes per element on the
//    wire, like float32), and the ring adds residues mod p with the Barrett kernels (an
//    all-reduce with CollectiveRequest::modulus). Addition mod p is associative and
//    commutative: every peer ends with the same residues whatever the ring order, rank or
//    link that carried them, and a failed operation's retry sums the same residues again.
// 3. The result: residues decoded (a residue above H is negative), divided by n for AVG, and
//    rounded once to the caller's dtype. Deterministic, so the same bytes on every peer and
//    in every run over the same set of inputs. The result is written only after the sum's
//    verdict: a failed call leaves recv as it was and send untouched (in place too).
//
// Precision: each input is rounded to the nearest multiple of 2^-F, and F is the floor of
// log2(H' / (n M)) with H' = H - n/2, so 2^-F < 2 n M / H'. Every element of the sum is then
// within n 2^-(F+1) < n^2 M / H', about 2 n^2 M / (p - 1) (n^2 * 4.7e-10 * M), of the exact
// sum of the inputs, before the final rounding to the output dtype. float16 and
// bfloat16 inputs are widened to float32 first; integers are summed exactly (F = 0) as long
// as n * max|x| <= H (about 2.1e9), and refused beyond.
//
// PRIVATE (secure aggregation) adds, between steps 2's encoding and its sum, a mask to
// every input that cancels in the sum: peer r adds mask(r -> next) and subtracts
// mask(prev -> r), one ChaCha20 stream (kernels::MaskGenerate: uniform residues) per ring
// edge, keyed by HKDF of the two ends' shared key material (link::Credentials::SharedWith:
// their X25519 agreement, bound to the run secret when there is one) and the operation's
// key (ring epoch, group, tag, sequence number). Around the ring every edge's mask is added
// once and subtracted once, so the residues sum to the same value as without masks, and the
// result's bytes are those of EXACT. What a peer receives during the reduce-scatter is a
// partial sum of masked inputs of consecutive peers s..prev: it carries the mask of the
// edge into s, which only s and its predecessor know, so to any single other peer (and to
// the master, which never sees data) it is uniformly distributed; the one partial it could
// unmask is the sum of everyone else's inputs, which the result reveals anyway. Not hidden:
// the sum itself, and one peer's input from its two ring neighbours colluding. A lost peer
// fails the operation as usual; the retry runs as a new operation (a new key), so its masks
// are fresh and no vector is ever masked twice with one stream.
//
// VERIFIED catches a member that corrupts what it reduces or forwards, before anyone
// applies the result. The sum runs as above, and each peer also keeps a copy of every
// reduce-scatter partial it receives (algo::AllReduceOptions::received). The sum's success
// verdict carries 32 random bytes the master drew once every member had reported, that is
// after every byte of the sum had moved: the challenge. From it every peer draws the same
// vector c of uniform residues, and reports through the master (a third, data-less
// operation whose OpDone carries the report) the linear hashes sum c[i] v[i] mod p of, per
// chunk of the ring schedule, its input, the partial it received, and its result. The
// verdict of that operation hands every peer all reports, and every peer runs the same
// check (CheckHashReports): along each chunk's reduce-scatter path a partial must hash to
// the sum of the hashes of the inputs before it, the owner's result to the sum of all, and
// each all-gather copy to the owner's. Hashes are linear, so a partial that is not the sum
// of those inputs passes with probability 1/p per check (c is unknown until the data has
// moved: no corruption can be aimed at it). The first chunk that fails is named, with the
// ring link where its path stopped adding up (or its owner, if the owner reduced it wrong),
// in an Integrity error (pccl.IntegrityError) that every peer raises alike; nobody decodes
// the result. A member that lies about its own input cannot be told from one that has
// another input (no scheme can); what VERIFIED rules out is a result that is not the sum of
// the inputs the members vouch for, or that differs between members.
//
// Every step of a call runs on the ring the call was bound to at its start: Bind takes the
// call's sequence numbers (one per step) together (Session::BindRing). A peer lost between
// the steps breaks that ring, so the steps left fail as any collective would (Aborted,
// PeerLostError) on every peer, and the retry, a new call on the master's new ring, agrees
// a fresh scale among the survivors: its bytes are those of a fresh run among them. Taking
// the numbers together also keeps the peers' next calls on the same keys when their calls
// failed at different steps (taken one step at a time, a peer that failed at the scale
// would start its retry where another's sum had been, and both would wait for the other).
#include "pccl/comm/exact_allreduce.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <vector>

#include "pccl/algo/ring_allreduce.h"
#include "pccl/comm/collectives.h"
#include "pccl/common/params.h"
#include "pccl/net/wire.h"
#include "pccl/secure/crypto.h"

namespace pccl::comm {
namespace {

// The operations of an exact all-reduce (the scale, the sum, VERIFIED's check) carry the
// caller's mode shifted up and their step below it, so that their descriptors differ from
// each other's and from any user's all-reduce.
constexpr uint32_t kStepScale = 1;
constexpr uint32_t kStepSum = 2;
constexpr uint32_t kStepCheck = 3;
uint32_t StepMode(uint32_t mode, uint32_t step) { return mode << 8 | step; }
// The binding of `step`: Bind took the call's sequence numbers together, the scale's first.
RingBinding StepBinding(const RingBinding& scale_bound, uint32_t step) {
  RingBinding bound = scale_bound;
  bound.key.seq += step - kStepScale;
  return bound;
}

// The largest magnitude among unsigned bit patterns with the sign cleared: for IEEE floats
// their order is that of |x|, and every NaN or infinity is at least `inf_bits`. Integer
// max vectorises where a float max (with NaN rules) does not.
template <typename Bits, typename Float>
double MaxAbsBits(const void* data, size_t count, Bits inf_bits) {
  const Bits magnitude = ~(Bits{1} << (8 * sizeof(Bits) - 1));
  Bits largest = 0;
  const auto* bytes = static_cast<const char*>(data);
  for (size_t i = 0; i < count; ++i) {
    Bits b;
    std::memcpy(&b, bytes + i * sizeof(Bits), sizeof(Bits));
    b &= magnitude;
    largest = b > largest ? b : largest;
  }
  if (largest >= inf_bits) return HUGE_VAL;
  Float f;
  std::memcpy(&f, &largest, sizeof(f));
  return static_cast<double>(f);
}

// Calls f(T{}) with T the C++ type of the integer dtype `dtype`; false for other dtypes.
template <typename F>
bool WithIntegerType(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kUint8: f(uint8_t{}); return true;
    case DType::kInt8: f(int8_t{}); return true;
    case DType::kUint16: f(uint16_t{}); return true;
    case DType::kInt16: f(int16_t{}); return true;
    case DType::kUint32: f(uint32_t{}); return true;
    case DType::kInt32: f(int32_t{}); return true;
    case DType::kUint64: f(uint64_t{}); return true;
    case DType::kInt64: f(int64_t{}); return true;
    default: return false;
  }
}

// The input as float32 (float16/bfloat16 widened) or float64 (integers converted: exact
// below 2^53, and anything larger is refused by the scale anyway) in `out`, for the encoder.
Status Widen(DType dtype, const void* in, void* out, size_t count) {
  if (IsHalfPrecision(dtype)) return kernels::WidenHalf(dtype, static_cast<float*>(out), in, count);
  auto* d = static_cast<double*>(out);
  const auto* bytes = static_cast<const char*>(in);
  const bool integer = WithIntegerType(dtype, [&](auto t) {
    using T = decltype(t);
    for (size_t i = 0; i < count; ++i) {
      T v;
      std::memcpy(&v, bytes + i * sizeof(T), sizeof(T));
      d[i] = static_cast<double>(v);
    }
  });
  return integer ? Status::Ok() : Internal("Widen of " + std::string(DTypeName(dtype)));
}

// Exact integer sums (float64 holding integers) as the integer dtype `dtype` in `out`, or
// OutOfRange naming the first sum the dtype cannot hold: a sum of uint8 inputs may pass
// 255, and the exact modes refuse rather than wrap. (Bounds as doubles are exact for the
// 8 and 16 bit types; wider ones hold every sum below 2^31, the most that gets this far.)
Status NarrowIntegers(DType dtype, const double* sums, void* out, size_t count) {
  Status st = Status::Ok();
  auto* bytes = static_cast<char*>(out);
  WithIntegerType(dtype, [&](auto t) {
    using T = decltype(t);
    const double lowest = static_cast<double>(std::numeric_limits<T>::lowest());
    const double highest = static_cast<double>(std::numeric_limits<T>::max());
    for (size_t i = 0; i < count; ++i) {
      if (sums[i] < lowest || sums[i] > highest) {
        st = OutOfRange("exact all-reduce: the sum at index " + std::to_string(i) + ", " +
                        std::to_string(static_cast<int64_t>(sums[i])) + ", does not fit " +
                        DTypeName(dtype) + "; use a wider dtype");
        return;
      }
    }
    for (size_t i = 0; i < count; ++i) {
      const T v = static_cast<T>(sums[i]);
      std::memcpy(bytes + i * sizeof(T), &v, sizeof(T));
    }
  });
  return st;
}

// The dtype the encoder reads for a caller's dtype.
DType WideDType(DType dtype) {
  if (dtype == DType::kFloat32 || IsHalfPrecision(dtype)) return DType::kFloat32;
  return DType::kFloat64;
}

}  // namespace

double MaxAbs(DType dtype, const void* data, size_t count) {
  if (dtype == DType::kFloat32) return MaxAbsBits<uint32_t, float>(data, count, 0x7f800000u);
  return MaxAbsBits<uint64_t, double>(data, count, 0x7ff0000000000000ull);
}

Status FracBitsFor(uint32_t world, double largest, bool integers, int* frac_bits) {
  if (!std::isfinite(largest)) {
    return InvalidArgument("exact all-reduce: an input holds NaN or infinity on some peer");
  }
  const double half = (kExactModulus - 1) / 2;
  const double n = std::max<uint32_t>(world, 1);
  // Rounding moves each encoded value by at most 1/2: n * (largest * 2^F + 1/2) <= H.
  const double budget = half - n / 2;
  int f = integers ? 0 : kernels::kMaxFracBits;
  if (largest > 0 && !integers) {
    f = std::min(f, static_cast<int>(std::floor(std::log2(budget / (n * largest)))));
  }
  while (f >= 0 && n * largest * std::ldexp(1.0, f) > budget) --f;  // log2's rounding
  if (f < 0) {
    return OutOfRange("exact all-reduce: the sum of " + std::to_string(world) +
                      " inputs up to " + std::to_string(largest) +
                      " in magnitude does not fit the fixed-point range (at most " +
                      std::to_string(static_cast<uint64_t>(budget / n)) +
                      " per input); scale the inputs down");
  }
  *frac_bits = f;
  return Status::Ok();
}

Status EdgeMaskKey(const std::string& shared, const proto::OpKey& key, uint64_t from,
                   uint64_t to, kernels::MaskKey* out) {
  uint8_t info[12 + 8 + 4 + 8 + 8 + 8 + 8];
  std::memcpy(info, "pccl mask v1", 12);
  net::PutU64(info + 12, key.epoch);
  net::PutU32(info + 20, key.peer_group);
  net::PutU64(info + 24, key.tag);
  net::PutU64(info + 32, key.seq);
  net::PutU64(info + 40, from);
  net::PutU64(info + 48, to);
  std::string okm;
  PCCL_RETURN_IF_ERROR(secure::HkdfSha256(
      shared, /*salt=*/"", std::string_view(reinterpret_cast<const char*>(info), sizeof(info)),
      out->size(), &okm));
  std::memcpy(out->data(), okm.data(), out->size());
  return Status::Ok();
}

Status LinearHashes(const kernels::Modulus& m, const kernels::MaskKey& challenge,
                    const void* const vectors[3], size_t begin, size_t end, uint32_t out[3]) {
  constexpr size_t kBlock = 16384;
  std::vector<uint32_t> c(std::min(kBlock, end - begin)), acc(c.size());
  uint64_t sums[3] = {0, 0, 0};
  for (size_t offset = begin; offset < end; offset += kBlock) {
    const size_t len = std::min(kBlock, end - offset);
    PCCL_RETURN_IF_ERROR(kernels::MaskGenerate(m, challenge, 0, offset, c.data(), len));
    for (int v = 0; v < 3; ++v) {
      if (vectors[v] == nullptr) continue;
      std::fill(acc.begin(), acc.begin() + static_cast<ptrdiff_t>(len), 0u);
      PCCL_RETURN_IF_ERROR(kernels::ModMulAcc(
          m, acc.data(), c.data(), static_cast<const uint32_t*>(vectors[v]) + offset, len));
      uint64_t block = 0;  // at most 16384 residues below 2^32: no overflow
      for (size_t i = 0; i < len; ++i) block += acc[i];
      sums[v] = (sums[v] + m.Reduce(block)) % m.p();
    }
  }
  for (int v = 0; v < 3; ++v) out[v] = static_cast<uint32_t>(sums[v]);
  return Status::Ok();
}

Status CheckHashReports(const kernels::Modulus& m, const std::vector<HashReport>& by_rank,
                        size_t count) {
  const int world = static_cast<int>(by_rank.size());
  const algo::RingSchedule schedule{world, 0, count, /*segment_elements=*/1};
  auto peer = [&](int rank) {
    const int r = ((rank % world) + world) % world;
    return "peer " + std::to_string(by_rank[r].peer_id) + " (rank " + std::to_string(r) + ")";
  };
  auto add = [&](uint32_t a, uint32_t b) {
    return static_cast<uint32_t>((uint64_t{a} + b) % m.p());
  };
  int failed = 0;
  std::string first;
  for (int chunk = 0; chunk < world; ++chunk) {
    // Reduce-scatter: the chunk starts at rank `chunk` and gathers one input per hop; the
    // rank chunk + s + 1 receives the sum of the inputs of ranks chunk .. chunk + s.
    std::string where;
    uint32_t expected = 0;
    for (int s = 0; s < world - 1 && where.empty(); ++s) {
      expected = add(expected, by_rank[(chunk + s) % world].input[chunk]);
      if (by_rank[(chunk + s + 1) % world].received[chunk] != expected) {
        where = "on the ring link from " + peer(chunk + s) + " to " + peer(chunk + s + 1) +
                ", in the reduce-scatter";
      }
    }
    const int owner = (chunk + world - 1) % world;
    if (where.empty()) {
      expected = add(expected, by_rank[owner].input[chunk]);  // the sum of every input
      if (by_rank[owner].result[chunk] != expected) {
        where = "in its reduction by its owner, " + peer(owner);
      }
    }
    for (int s = 1; s < world && where.empty(); ++s) {  // all-gather: the owner's copy goes round
      if (by_rank[(owner + s) % world].result[chunk] != by_rank[owner].result[chunk]) {
        where = "on the ring link from " + peer(owner + s - 1) + " to " + peer(owner + s) +
                ", in the all-gather";
      }
    }
    if (where.empty()) continue;
    if (failed++ == 0) {
      const size_t begin = schedule.ChunkBegin(chunk);
      first = "chunk " + std::to_string(chunk) + " of " + std::to_string(world) +
              " (elements " + std::to_string(begin) + " to " +
              std::to_string(begin + schedule.ChunkElements(chunk)) + ") went wrong " + where;
    }
  }
  if (failed == 0) return Status::Ok();
  return Status(StatusCode::kIntegrity,
                "ReduceMode.VERIFIED: the sum does not add up: " + first + " (" +
                    std::to_string(failed) + " of " + std::to_string(world) +
                    " chunks failed); nobody applied the result");
}

uint32_t Collectives::StepsOf(const CollectiveRequest& request) {
  if ((request.mode & kModeMask) == 0) return 1;
  return (request.mode & kModeVerified) != 0 ? kStepCheck : kStepSum;
}

Status Collectives::CheckExact(const CollectiveRequest& request) {
  if ((request.mode & ~kModeMask) != 0) {
    return InvalidArgument("unknown reduce mode bits " + std::to_string(request.mode));
  }
  if (request.op != kernels::ReduceOp::kSum && request.op != kernels::ReduceOp::kAvg) {
    return InvalidArgument(std::string("an exact all-reduce supports SUM and AVG, not ") +
                           kernels::ReduceOpName(request.op));
  }
  if (request.quant.algorithm != kernels::QuantAlgorithm::kNone || request.modulus != 0) {
    return InvalidArgument("an exact all-reduce is neither quantized nor given a modulus");
  }
  if (request.count > kernels::kMaxMaskIndex) {
    return InvalidArgument("an exact all-reduce takes at most 2^56 elements");
  }
  return Status::Ok();
}

Status Collectives::RunExact(const CollectiveRequest& request, const RingBinding& scale_bound,
                             Deadline deadline, ReduceInfo* info) {
  uint32_t reported = 0;  // the last step whose OpDone went to the master
  Status st = RunExactSteps(request, scale_bound, deadline, info, &reported);
  // The steps after a failure are reported failed too: the master then decides every
  // sequence number the call took (update_topology() waits for that), and a peer that
  // took fewer for this key (one in another mode) fails its next call on them at once.
  for (uint32_t step = reported + 1; !st.ok() && step <= StepsOf(request); ++step) {
    CollectiveRequest skipped = request;
    skipped.mode = StepMode(request.mode, step);
    ReportFailure(skipped, StepBinding(scale_bound, step),
                  Status(StatusCode::kAborted,
                         "an earlier step of this exact all-reduce failed: " + st.message()),
                  deadline);
  }
  return st;
}

Status Collectives::RunExactSteps(const CollectiveRequest& request,
                                  const RingBinding& scale_bound, Deadline deadline,
                                  ReduceInfo* info, uint32_t* reported) {
  const size_t n = request.count;
  const DType dtype = request.dtype;
  const DType wide = WideDType(dtype);
  const bool integers = !IsFloatingPoint(dtype);
  kernels::Modulus m;
  PCCL_RETURN_IF_ERROR(kernels::Modulus::Make(kExactModulus, &m));

  // The input as the encoder reads it.
  BufferPool::Lease widened = buffers_.Acquire(dtype == wide ? 0 : n * DTypeSize(wide));
  const void* x = request.send;
  if (dtype != wide) {
    PCCL_RETURN_IF_ERROR(Widen(dtype, request.send, widened.data(), n));
    x = widened.data();
  }

  // 1. The scale: every member's max |x| through the master.
  CollectiveRequest scale = request;
  scale.mode = StepMode(request.mode, kStepScale);
  std::string reports;
  Status scaled = Report(scale, scale_bound, proto::EncodeScaleReport(MaxAbs(wide, x, n)),
                         /*greet_neighbours=*/true, deadline, &reports);
  *reported = kStepScale;
  PCCL_RETURN_IF_ERROR(scaled);
  const auto world = static_cast<uint32_t>(scale_bound.world);
  double largest = 0;
  PCCL_RETURN_IF_ERROR(proto::LargestOfScaleReports(reports, world, &largest));
  int frac_bits = 0;
  PCCL_RETURN_IF_ERROR(FracBitsFor(world, largest, integers, &frac_bits));

  // 2. The sum: encode, mask (PRIVATE), sum mod p.
  BufferPool::Lease residues = buffers_.Acquire(n * sizeof(uint32_t));
  BufferPool::Lease sums = buffers_.Acquire(n * sizeof(uint32_t));
  kernels::FixedPointOptions fixed;
  fixed.frac_bits = frac_bits;
  PCCL_RETURN_IF_ERROR(kernels::FixedEncode(m, wide, residues.data(), x, n, fixed));
  const RingBinding sum_bound = StepBinding(scale_bound, kStepSum);
  if ((request.mode & kModePrivate) != 0 && sum_bound.world >= 2) {
    PCCL_RETURN_IF_ERROR(AddMasks(m, sum_bound, residues.data(), n, deadline));
  }
  CollectiveRequest sum;
  sum.send = residues.data();
  sum.recv = sums.data();
  sum.count = n;
  sum.dtype = DType::kUint32;
  sum.op = kernels::ReduceOp::kSum;
  sum.tag = request.tag;
  sum.modulus = kExactModulus;
  sum.mode = StepMode(request.mode, kStepSum);
  const bool verified = (request.mode & kModeVerified) != 0;
  if (verified && world > kMaxVerifiedWorld) {
    return InvalidArgument("ReduceMode.VERIFIED runs in groups of at most " +
                           std::to_string(kMaxVerifiedWorld) + " peers, not " +
                           std::to_string(world));
  }
  BufferPool::Lease received = buffers_.Acquire(verified ? n * sizeof(uint32_t) : 0);
  ExecuteExtras extras;
  std::string challenge;
  if (verified) {
    extras.received = received.data();
    extras.corruptible = true;
    extras.challenge = &challenge;
  }
  ReduceInfo sum_info;
  Status summed = Execute(sum, sum_bound, deadline, &sum_info, extras);
  *reported = kStepSum;
  PCCL_RETURN_IF_ERROR(summed);
  if (verified) {
    const void* vectors[3] = {residues.data(), received.data(), sums.data()};
    PCCL_RETURN_IF_ERROR(Verify(m, request, scale_bound, challenge, vectors, deadline, reported));
  }

  // 3. The result, decoded into recv.
  const uint64_t divisor = request.op == kernels::ReduceOp::kAvg ? world : 1;
  if (dtype == wide) {  // float32, float64
    PCCL_RETURN_IF_ERROR(kernels::FixedDecode(m, dtype, request.recv, sums.data(), n, frac_bits));
    if (divisor != 1) PCCL_RETURN_IF_ERROR(kernels::DivideBy(dtype, request.recv, n, divisor));
  } else {
    // `widened` is free again: decode into it, then narrow into recv.
    PCCL_RETURN_IF_ERROR(kernels::FixedDecode(m, wide, widened.data(), sums.data(), n, frac_bits));
    if (integers) {
      // An average is truncated toward zero (as the default mode's integer AVG is) and
      // always fits; a sum must fit the dtype. Exact: |sum| <= H < 2^31, far below 2^53.
      auto* sums_as_doubles = reinterpret_cast<double*>(widened.data());
      for (size_t i = 0; divisor != 1 && i < n; ++i) {
        sums_as_doubles[i] = std::trunc(sums_as_doubles[i] / static_cast<double>(divisor));
      }
      PCCL_RETURN_IF_ERROR(NarrowIntegers(dtype, sums_as_doubles, request.recv, n));
    } else {
      PCCL_RETURN_IF_ERROR(kernels::NarrowHalf(
          dtype, request.recv, reinterpret_cast<const float*>(widened.data()), n, divisor));
    }
  }
  info->local_world_size = world;
  info->tx_bytes = sum_info.tx_bytes;
  info->rx_bytes = sum_info.rx_bytes;
  return Status::Ok();
}

Status Collectives::Verify(const kernels::Modulus& m, const CollectiveRequest& request,
                           const RingBinding& scale_bound, const std::string& challenge,
                           const void* const vectors[3], Deadline deadline,
                           uint32_t* reported) {
  const RingBinding sum_bound = StepBinding(scale_bound, kStepSum);
  if (challenge.size() != kernels::MaskKey{}.size()) {
    return Internal("the sum's verdict carried no challenge");
  }
  kernels::MaskKey key;
  std::memcpy(key.data(), challenge.data(), key.size());
  const algo::RingSchedule schedule{sum_bound.world, sum_bound.rank, request.count,
                                    /*segment_elements=*/1};
  if (const std::string& dump = GetParams().test_dump_received; !dump.empty()) {
    std::ofstream(dump, std::ios::binary | std::ios::trunc)
        .write(static_cast<const char*>(vectors[1]),
               static_cast<std::streamsize>(request.count * sizeof(uint32_t)));
  }
  HashReport mine;
  mine.peer_id = session_.peer_id();
  mine.rank = static_cast<uint32_t>(sum_bound.rank);
  for (int chunk = 0; chunk < sum_bound.world; ++chunk) {
    const size_t begin = schedule.ChunkBegin(chunk);
    const size_t end = begin + schedule.ChunkElements(chunk);
    const void* these[3] = {vectors[0], chunk == sum_bound.rank ? nullptr : vectors[1],
                            vectors[2]};
    uint32_t hashes[3];
    PCCL_RETURN_IF_ERROR(LinearHashes(m, key, these, begin, end, hashes));
    mine.input.push_back(hashes[0]);
    mine.received.push_back(hashes[1]);
    mine.result.push_back(hashes[2]);
  }
  CollectiveRequest check = request;
  check.mode = StepMode(request.mode, kStepCheck);
  std::string reports;
  Status checked = Report(check, StepBinding(scale_bound, kStepCheck), EncodeHashReport(mine),
                          /*greet_neighbours=*/false, deadline, &reports);
  *reported = kStepCheck;
  PCCL_RETURN_IF_ERROR(checked);
  std::vector<HashReport> by_rank;
  PCCL_RETURN_IF_ERROR(
      DecodeHashReports(reports, static_cast<uint32_t>(sum_bound.world), &by_rank));
  return CheckHashReports(m, by_rank, request.count);
}

Status Collectives::AddMasks(const kernels::Modulus& m, const RingBinding& bound, void* residues,
                             size_t count, Deadline deadline) {
  const link::Credentials& credentials = session_.credentials();
  const uint64_t self = session_.peer_id();
  const uint64_t next = bound.links->next_peer_id();
  const uint64_t prev = bound.links->prev_peer_id();
  std::string shared;
  kernels::MaskKey add_key, subtract_key;
  PCCL_RETURN_IF_ERROR(credentials.SharedWith(next, deadline, &shared));
  PCCL_RETURN_IF_ERROR(EdgeMaskKey(shared, bound.key, self, next, &add_key));
  PCCL_RETURN_IF_ERROR(credentials.SharedWith(prev, deadline, &shared));
  PCCL_RETURN_IF_ERROR(EdgeMaskKey(shared, bound.key, prev, self, &subtract_key));
  // Block by block, so that each mask block is still in cache when it is applied.
  constexpr size_t kBlock = 16384;
  std::vector<uint32_t> mask(std::min(count, kBlock));
  auto* r = static_cast<uint32_t*>(residues);
  for (size_t offset = 0; offset < count; offset += kBlock) {
    const size_t len = std::min(kBlock, count - offset);
    PCCL_RETURN_IF_ERROR(kernels::MaskGenerate(m, add_key, 0, offset, mask.data(), len));
    PCCL_RETURN_IF_ERROR(kernels::ModAdd(m, r + offset, mask.data(), len));
    PCCL_RETURN_IF_ERROR(kernels::MaskGenerate(m, subtract_key, 0, offset, mask.data(), len));
    PCCL_RETURN_IF_ERROR(kernels::ModSub(m, r + offset, mask.data(), len));
  }
  return Status::Ok();
}

}  // namespace pccl::comm
