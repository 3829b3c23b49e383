#include "pccl/proto/reports.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "pccl/net/wire.h"

namespace pccl::proto {

Status SplitReports(const std::string& reports, uint32_t world, std::vector<std::string>* out) {
  out->clear();
  size_t at = 0;
  while (at < reports.size()) {
    if (reports.size() - at < 4) return Status(StatusCode::kDataLoss, "truncated reports");
    const uint32_t length = net::GetU32(reinterpret_cast<const uint8_t*>(reports.data()) + at);
    at += 4;
    if (reports.size() - at < length) return Status(StatusCode::kDataLoss, "truncated reports");
    if (out->size() == world) {
      return Status(StatusCode::kDataLoss,
                    "more reports than the " + std::to_string(world) + " members");
    }
    out->push_back(reports.substr(at, length));
    at += length;
  }
  if (out->size() != world) {
    return Status(StatusCode::kDataLoss, std::to_string(out->size()) + " reports for " +
                                             std::to_string(world) + " members");
  }
  return Status::Ok();
}

std::string EncodeScaleReport(double largest) {
  uint64_t bits;
  std::memcpy(&bits, &largest, sizeof(bits));
  std::string out(8, '\0');
  net::PutU64(reinterpret_cast<uint8_t*>(out.data()), bits);
  return out;
}

Status LargestOfScaleReports(const std::string& reports, uint32_t world, double* largest) {
  std::vector<std::string> each;
  PCCL_RETURN_IF_ERROR(SplitReports(reports, world, &each));
  *largest = 0;
  for (size_t i = 0; i < each.size(); ++i) {
    double v = -1;
    if (each[i].size() == 8) {
      const uint64_t bits = net::GetU64(reinterpret_cast<const uint8_t*>(each[i].data()));
      std::memcpy(&v, &bits, sizeof(v));
    }
    if (!(v >= 0) || std::signbit(v)) {  // a wrong size, a negative number (-0 too), NaN
      return Status(StatusCode::kDataLoss,
                    "scale report " + std::to_string(i) + " is not a magnitude");
    }
    *largest = std::max(*largest, v);
  }
  return Status::Ok();
}

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
  std::vector<std::string> each;
  if (Status st = SplitReports(reports, world, &each); !st.ok()) return malformed(st.message());
  by_rank->assign(world, HashReport{});
  std::vector<bool> seen(world, false);
  for (const std::string& bytes : each) {
    if (bytes.size() != 16 + 12 * size_t{world}) return malformed("have the wrong size");
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
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
  }
  return Status::Ok();
}

}  // namespace pccl::proto
