#include "pccl/algo/point_to_point.h"

#include <algorithm>

namespace pccl::algo {

size_t TransferSegments(size_t bytes, size_t segment_bytes) {
  const size_t per = std::max<size_t>(segment_bytes, 1);
  return (bytes + per - 1) / per;
}

Status SendBuffer(link::RingChannel& channel, const void* data, size_t bytes,
                  size_t segment_bytes, Deadline deadline) {
  const auto* base = static_cast<const char*>(data);
  const size_t per = std::max<size_t>(segment_bytes, 1);
  const size_t segments = TransferSegments(bytes, per);
  for (size_t i = 0; i < segments; ++i) {
    const size_t offset = i * per;
    channel.Send(0, static_cast<uint32_t>(i), base + offset, std::min(per, bytes - offset));
  }
  return channel.WaitSends(deadline);
}

Status ReceiveBuffer(link::RingChannel& channel, void* data, size_t bytes,
                     size_t segment_bytes, Deadline deadline) {
  auto* base = static_cast<char*>(data);
  const size_t per = std::max<size_t>(segment_bytes, 1);
  const size_t segments = TransferSegments(bytes, per);
  for (size_t i = 0; i < segments; ++i) {
    const size_t offset = i * per;
    channel.Expect(0, static_cast<uint32_t>(i), base + offset, std::min(per, bytes - offset));
  }
  return link::AwaitArrivalsAndSends(channel, segments, deadline);
}

}  // namespace pccl::algo
