#include "pccl/proto/hash_report.h"

#include <utility>

#include "pccl/net/wire.h"

namespace pccl::proto {

std::string EncodeHashReport(const HashReport& report) {
  const size_t chunks = report.input.size();
  std::string out(8 + 4 + 4 + 3 * 4 * chunks, '\0');
  auto* p = reinterpret_cast<uint8_t*>(out.data());
  net::PutU64(p, report.peer_id);
  net::PutU32(p + 8, report.rank);
  net::PutU32(p + 12, static_cast<uint32_t>(chunks));
  p += 16;
  for (const auto* hashes : {&report.input, &report.received, &report.result}) {
    for (uint32_t h : *hashes) {
      net::PutU32(p, h);
      p += 4;
    }
  }
  return out;
}

Status DecodeHashReports(const std::string& reports, uint32_t world,
                         std::vector<HashReport>* by_rank) {
  auto malformed = [](const std::string& what) {
    return Status(StatusCode::kIntegrity, "ReduceMode.VERIFIED: the reports " + what);
  };
  by_rank->assign(world, HashReport{});
  std::vector<bool> seen(world, false);
  const auto* p = reinterpret_cast<const uint8_t*>(reports.data());
  size_t left = reports.size();
  for (uint32_t i = 0; i < world; ++i) {
    if (left < 4) return malformed("cover " + std::to_string(i) + " of " + std::to_string(world) + " peers");
    const uint32_t length = net::GetU32(p);
    p += 4;
    left -= 4;
    const size_t expected = 16 + 12 * size_t{world};
    if (length != expected || left < length) return malformed("have the wrong size");
    HashReport r;
    r.peer_id = net::GetU64(p);
    r.rank = net::GetU32(p + 8);
    if (r.rank >= world || seen[r.rank] || net::GetU32(p + 12) != world) {
      return malformed("name ranks that are not those of the ring");
    }
    const uint8_t* h = p + 16;
    for (auto* hashes : {&r.input, &r.received, &r.result}) {
      for (uint32_t c = 0; c < world; ++c, h += 4) hashes->push_back(net::GetU32(h));
    }
    seen[r.rank] = true;
    (*by_rank)[r.rank] = std::move(r);
    p += length;
    left -= length;
  }
  if (left != 0) return malformed("hold more than one per peer");
  return Status::Ok();
}

}  // namespace pccl::proto
