// One fuzz target per control-plane or peer-to-peer message: proto::Decode of the type named
// by PCCL_FUZZ_MESSAGE (tests/fuzz/CMakeLists.txt builds this file once per message, e.g.
// fuzz_hello with -DPCCL_FUZZ_MESSAGE=Hello). Every one of these payloads arrives from the
// network, most before the sender proved anything, so the decoder must refuse garbage
// cleanly: no crash, no undefined behaviour (ASan, UBSan), no huge allocation. Beyond that,
// for every input:
//   - a refusal is InvalidArgument with a message (the receiver drops the sender);
//   - an accepted payload is canonical: Encode(Decode(x)) == x byte for byte (the format
//     has no optional fields or padding), so the round trip is a fixed point;
//   - an accepted message keeps every cap and rule of messages.h (message_invariants.h);
//   - decoding into a struct that already holds a message (samples.h) gives the same verdict
//     and the same message as decoding into a fresh one (receivers reuse their structs).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "message_invariants.h"
#include "samples.h"
#include "seeds.h"
#include "pccl/proto/messages.h"

#ifndef PCCL_FUZZ_MESSAGE
#error "build with -DPCCL_FUZZ_MESSAGE=<a message type of proto/messages.h>"
#endif

namespace pccl::fuzz {
namespace {

using Message = proto::PCCL_FUZZ_MESSAGE;

void FuzzDecode(const std::string& payload) {
  Message fresh;
  const Status st = proto::Decode(payload, &fresh);

  // A struct that already holds a message (the richest sample), as receivers reuse theirs.
  static const Message kUsed = SamplesOf<Message>().back();
  Message reused = kUsed;
  const Status again = proto::Decode(payload, &reused);
  FUZZ_CHECK(again.code() == st.code() && again.message() == st.message());

  if (!st.ok()) {
    FUZZ_CHECK(st.code() == StatusCode::kInvalidArgument);
    FUZZ_CHECK(!st.message().empty());
    return;
  }
  Invariants(fresh);
  Invariants(reused);
  const std::string encoded = proto::Encode(fresh);
  FUZZ_CHECK(encoded == payload);
  FUZZ_CHECK(proto::Encode(reused) == payload);
  Message back;
  FUZZ_CHECK(proto::Decode(encoded, &back).ok());
  FUZZ_CHECK(proto::Encode(back) == encoded);
}

}  // namespace
}  // namespace pccl::fuzz

// Seeds: the encoded samples (samples.h), each checked to decode.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using pccl::fuzz::Message;
  std::vector<std::string> seeds;
  for (const Message& m : pccl::fuzz::SamplesOf<Message>()) {
    seeds.push_back(pccl::proto::Encode(m));
    Message back;
    FUZZ_CHECK(pccl::proto::Decode(seeds.back(), &back).ok());
  }
  pccl::fuzz::WriteSeedsIfAsked(seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pccl::fuzz::FuzzDecode(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}
