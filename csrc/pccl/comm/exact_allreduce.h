// The pieces of an exact all-reduce (pccl.ReduceMode.EXACT and PRIVATE) that do not touch
// the network, exposed for tests; the pipeline itself is Collectives::RunExact
// (exact_allreduce.cc tells the whole story).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pccl/common/dtype.h"
#include "pccl/common/status.h"
#include "pccl/kernels/modular.h"
#include "pccl/proto/messages.h"
#include "pccl/proto/reports.h"

namespace pccl::comm {

// The prime every exact all-reduce sums modulo: the largest below 2^32, so that a residue
// travels in 4 bytes like a float32.
inline constexpr uint32_t kExactModulus = 4294967291u;

// The largest |x| of `count` float32 or float64 values (`dtype`); +infinity if any is NaN
// or infinite. 0 for no values.
double MaxAbs(DType dtype, const void* data, size_t count);

// The fixed-point fraction bits F for a sum of `world` inputs each at most `largest` in
// magnitude: the largest F <= kernels::kMaxFracBits with world * largest * 2^F <= (p-1)/2,
// so that no sum of encoded inputs leaves the centred range. `integers`: F must be 0.
// InvalidArgument (the same on every peer, which all know `world` and `largest`) when the
// input is not finite or no F fits.
Status FracBitsFor(uint32_t world, double largest, bool integers, int* frac_bits);

// The 32-byte ChaCha20 key of the mask that peer `from` adds, and its ring successor `to`
// subtracts, in operation `key`: HKDF-SHA256 of the two peers' shared key material
// (`shared`, link::Credentials::SharedWith), the operation and the ordered pair.
Status EdgeMaskKey(const std::string& shared, const proto::OpKey& key, uint64_t from,
                   uint64_t to, kernels::MaskKey* out);

// --- VERIFIED -------------------------------------------------------------------------------

// The largest group a VERIFIED sum runs in (its reports grow with the group).
inline constexpr uint32_t kMaxVerifiedWorld = 1024;

using proto::DecodeHashReports;
using proto::EncodeHashReport;
using proto::HashReport;

// Linear hashes of `vectors` (uint32 residues; null ones are skipped, their hash 0) over
// elements [begin, end): sum of c[i] * v[i] mod p, where c is the challenge vector, the
// uniform residues kernels::MaskGenerate draws from `challenge`. Two vectors that differ
// hash alike with probability 1/p.
Status LinearHashes(const kernels::Modulus& m, const kernels::MaskKey& challenge,
                    const void* const vectors[3], size_t begin, size_t end, uint32_t out[3]);

// Whether the reports of a VERIFIED sum of `count` elements (segment size irrelevant:
// chunks are the schedule's) add up: for every chunk, every reduce-scatter partial must
// hash to the sum of the inputs before it on the chunk's path, the owner's result to the
// sum of all inputs, and every all-gather copy to the owner's. Integrity naming the first
// chunk that does not, and the ring link (or the owner) where it went wrong.
Status CheckHashReports(const kernels::Modulus& m, const std::vector<HashReport>& by_rank,
                        size_t count);

}  // namespace pccl::comm
