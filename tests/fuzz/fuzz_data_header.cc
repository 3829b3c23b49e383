// Fuzzes proto::DecodeDataHeader, the fixed 40-byte block in front of every segment on a
// ring link (link/ring_links.cc reads it straight off the socket, after the frame header).
// It cannot refuse anything, so the property is that it is a bijection with
// EncodeDataHeader: every field read from its place, no byte dropped or read twice, for
// every possible block (no sanitizer report either).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "pccl/proto/messages.h"
#include "seeds.h"

// Seeds: headers of a first and a last segment.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::vector<std::string> seeds;
  for (const pccl::proto::DataHeader& h :
       {pccl::proto::DataHeader{0, 0, 0xfeed, 0, 0, 1 << 20},
        pccl::proto::DataHeader{7, 12, 0xabcdef, 6, 3, 12345}}) {
    uint8_t block[pccl::proto::kDataHeaderBytes];
    pccl::proto::EncodeDataHeader(h, block);
    seeds.emplace_back(reinterpret_cast<const char*>(block), sizeof(block));
  }
  pccl::fuzz::WriteSeedsIfAsked(seeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using pccl::proto::kDataHeaderBytes;
  if (size != kDataHeaderBytes) return -1;  // not a header: not worth keeping
  const pccl::proto::DataHeader header = pccl::proto::DecodeDataHeader(data);
  uint8_t again[kDataHeaderBytes];
  pccl::proto::EncodeDataHeader(header, again);
  FUZZ_CHECK(std::memcmp(again, data, kDataHeaderBytes) == 0);
  return 0;
}
