#include "pccl/algo/point_to_point.h"

#include <algorithm>
#include <string>

namespace pccl::algo {

size_t TransferSegments(size_t bytes, size_t segment_bytes) {
  const size_t per = std::max<size_t>(segment_bytes, 1);
  return std::max<size_t>((bytes + per - 1) / per, 1);
}

namespace {

// The receiver's answer: every segment arrived.
constexpr uint32_t kAckStep = 1;
constexpr uint8_t kAck = 1;

}  // namespace

Status SendBuffer(link::RingChannel& channel, const void* data, size_t bytes,
                  size_t segment_bytes, Deadline deadline) {
  const auto* base = static_cast<const char*>(data);
  const size_t per = std::max<size_t>(segment_bytes, 1);
  const size_t segments = TransferSegments(bytes, per);
  uint8_t ack = 0;
  channel.Expect(kAckStep, 0, &ack, 1);
  for (size_t i = 0; i < segments; ++i) {
    const size_t offset = i * per;
    channel.Send(0, static_cast<uint32_t>(i), base + offset, std::min(per, bytes - offset));
  }
  PCCL_RETURN_IF_ERROR(link::AwaitArrivalsAndSends(channel, 1, deadline));
  if (ack != kAck) {
    return Status(StatusCode::kDataLoss, "the receiver answered " + std::to_string(ack));
  }
  return Status::Ok();
}

Status ReceiveBuffer(link::RingChannel& channel, void* data, size_t bytes,
                     size_t segment_bytes, Deadline deadline,
                     const std::function<Status()>& commit, bool answer) {
  auto* base = static_cast<char*>(data);
  const size_t per = std::max<size_t>(segment_bytes, 1);
  const size_t segments = TransferSegments(bytes, per);
  for (size_t i = 0; i < segments; ++i) {
    const size_t offset = i * per;
    channel.Expect(0, static_cast<uint32_t>(i), base + offset, std::min(per, bytes - offset));
  }
  PCCL_RETURN_IF_ERROR(link::AwaitArrivalsAndSends(channel, segments, deadline));
  PCCL_RETURN_IF_ERROR(commit());
  if (!answer) return Status::Ok();
  static const uint8_t ack = kAck;
  channel.Send(kAckStep, 0, &ack, 1);
  // Committed: an ack that does not get through (the link broke just now) leaves the
  // sender to ask the master, which asks this peer (comm/session_pairs.cc).
  (void)channel.WaitSends(deadline);
  return Status::Ok();
}

}  // namespace pccl::algo
