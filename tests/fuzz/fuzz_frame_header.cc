// Fuzzes net::DecodeFrameHeader, the 16 bytes in front of every frame on every connection
// (RecvFrame and RecvFrameHeader read them off the socket and call it; it is the pure part
// of frame parsing). Its verdict decides how much a stranger can make us buffer: a header
// it passes sizes the payload buffer. Input: one byte choosing the receiver's limit (one of
// the caps of net/wire.h, or none), then the 16 header bytes. Checked for every input:
//   - it accepts exactly the headers with the right magic and version and a length within
//     the limit (computed here byte by byte, not with wire.h's helpers);
//   - an accepted header reads the kind and length the bytes say, and EncodeFrameHeader of
//     them gives back the same 16 bytes;
//   - a refusal is InvalidArgument and names the peer, as the caller's log needs.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "pccl/net/wire.h"
#include "pccl/proto/messages.h"
#include "seeds.h"

namespace pccl::fuzz {
namespace {

uint64_t LittleEndian(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void FuzzFrameHeader(uint8_t limit_choice, const uint8_t header[net::kFrameHeaderBytes]) {
  constexpr uint64_t kLimits[] = {net::kMaxHelloPayload, net::kMaxControlPayload,
                                  net::kMaxPeerMessage, net::kMaxMasterMessage,
                                  std::numeric_limits<uint64_t>::max()};
  const uint64_t limit = kLimits[limit_choice % std::size(kLimits)];
  const std::string peer = "fuzz-peer:1234";

  net::FrameHeader out;
  const Status st = net::DecodeFrameHeader(header, limit, peer, &out);

  const bool pccl_magic = std::memcmp(header, "PCCL", 4) == 0;
  const bool our_version = LittleEndian(header + 4, 2) == net::kProtocolVersion;
  const uint64_t length = LittleEndian(header + 8, 8);
  FUZZ_CHECK(st.ok() == (pccl_magic && our_version && length <= limit));
  if (!st.ok()) {
    FUZZ_CHECK(st.code() == StatusCode::kInvalidArgument);
    FUZZ_CHECK(st.message().find(peer) != std::string::npos);
    return;
  }
  FUZZ_CHECK(out.kind == LittleEndian(header + 6, 2));
  FUZZ_CHECK(out.length == length);
  uint8_t again[net::kFrameHeaderBytes];
  net::EncodeFrameHeader(out.kind, out.length, again);
  FUZZ_CHECK(std::memcmp(again, header, net::kFrameHeaderBytes) == 0);
}

}  // namespace
}  // namespace pccl::fuzz

// Seeds: real headers (limit choice, then EncodeFrameHeader's bytes), some at their limit.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using pccl::proto::Kind;
  struct Seed {
    uint8_t limit_choice;
    Kind kind;
    uint64_t length;
  };
  const Seed seeds[] = {{0, Kind::kHello, 57},
                        {0, Kind::kGreeting, pccl::net::kMaxHelloPayload},
                        {1, Kind::kStateRequest, 40},
                        {3, Kind::kTopology, 5000},
                        {4, Kind::kData, 40 + (1u << 20)},
                        {2, Kind::kHeartbeat, 0}};
  std::vector<std::string> bytes;
  for (const Seed& seed : seeds) {
    uint8_t header[pccl::net::kFrameHeaderBytes];
    pccl::net::EncodeFrameHeader(static_cast<uint16_t>(seed.kind), seed.length, header);
    bytes.push_back(std::string(1, static_cast<char>(seed.limit_choice)) +
                    std::string(reinterpret_cast<const char*>(header), sizeof(header)));
  }
  pccl::fuzz::WriteSeedsIfAsked(bytes);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size != 1 + pccl::net::kFrameHeaderBytes) return -1;  // not a header: not worth keeping
  pccl::fuzz::FuzzFrameHeader(data[0], data + 1);
  return 0;
}
