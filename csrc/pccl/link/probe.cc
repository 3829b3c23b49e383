#include "pccl/link/probe.h"

#include <algorithm>
#include <string>

#include "pccl/common/logging.h"
#include "pccl/link/handshake.h"
#include "pccl/net/wire.h"

namespace pccl::link {
namespace {

using proto::Kind;

// The probed side counts the bytes of every frame after the first (whose start it cannot
// see) between the first frame's arrival and the last's: frames must be small enough that a
// slow link still delivers several per stream within a probe (at 40 Mbit/s over 8 streams
// and 300 ms, one stream moves about 190 KB; with 256 KiB frames it measured nothing).
constexpr size_t kFrameBytes = 32 << 10;
// How long a probed peer waits for the next frame before it gives up on the prober.
constexpr auto kServeIdle = std::chrono::seconds(10);

Status ExpectKind(const net::FrameHeader& header, Kind kind, const std::string& who) {
  if (header.kind == static_cast<uint16_t>(kind)) return Status::Ok();
  return InvalidArgument(who + " sent " + proto::KindName(header.kind) + ", expected " +
                         proto::KindName(static_cast<uint16_t>(kind)));
}

// One connection of a probe: handshake, filler frames until `stop`, the empty frame, and
// the target's measurement.
Status ProbeOne(uint64_t self, const proto::Member& target, const Credentials& credentials,
                Routes& routes, TimePoint stop, Deadline deadline, proto::ProbeResult* result) {
  const std::string who = "peer " + std::to_string(target.peer_id);
  net::Socket socket;
  PCCL_RETURN_IF_ERROR(DialPeer(routes, {target.host, target.port},
                                Hello{Purpose::kProbe, self, target.peer_id, 0, 0}, credentials,
                                deadline, &socket));
  net::FrameHeader header;
  std::string payload;

  static const std::string filler(kFrameBytes, '\0');
  do {
    PCCL_RETURN_IF_ERROR(net::SendFrame(socket, static_cast<uint16_t>(Kind::kProbeData), filler,
                                        deadline));
  } while (Clock::now() < stop);
  PCCL_RETURN_IF_ERROR(
      net::SendFrame(socket, static_cast<uint16_t>(Kind::kProbeData), "", deadline));
  PCCL_RETURN_IF_ERROR(net::RecvFrame(socket, net::kMaxControlPayload, deadline, &header, &payload));
  PCCL_RETURN_IF_ERROR(ExpectKind(header, Kind::kProbeResult, who));
  return proto::Decode(payload, result);
}

// The probed side of one connection.
void Drain(net::Socket& socket) {
  uint64_t bytes = 0;
  TimePoint first{};
  TimePoint last{};
  bool started = false;
  while (true) {
    net::FrameHeader header;
    std::string payload;
    Status st = net::RecvFrame(socket, kFrameBytes, Deadline::In(kServeIdle), &header, &payload);
    if (st.ok()) st = ExpectKind(header, Kind::kProbeData, "prober " + socket.peer());
    if (!st.ok()) {
      PCCL_LOG(kDebug, "bandwidth probe from " + socket.peer() + " ended: " + st.ToString());
      return;
    }
    if (payload.empty()) break;
    last = Clock::now();
    if (!started) {
      started = true;
      first = last;
    } else {
      bytes += payload.size();
    }
  }
  proto::ProbeResult result{
      bytes, static_cast<uint64_t>(
                 std::chrono::duration_cast<std::chrono::nanoseconds>(last - first).count())};
  (void)net::SendFrame(socket, static_cast<uint16_t>(Kind::kProbeResult), proto::Encode(result),
                       Deadline::In(kServeIdle));
}

}  // namespace

Status ProbeBandwidth(uint64_t self_peer_id, const proto::Member& target, uint32_t streams,
                      Duration duration, const Credentials& credentials, Routes& routes,
                      Deadline deadline, uint64_t* bytes_per_second) {
  streams = std::max<uint32_t>(streams, 1);
  const TimePoint stop = Clock::now() + duration;
  std::vector<proto::ProbeResult> results(streams);
  std::vector<Status> statuses(streams);
  std::vector<std::thread> threads;
  for (uint32_t i = 0; i < streams; ++i) {
    threads.emplace_back([&, i] {
      statuses[i] = ProbeOne(self_peer_id, target, credentials, routes, stop, deadline,
                             &results[i]);
    });
  }
  for (auto& t : threads) t.join();
  double rate = 0;
  for (uint32_t i = 0; i < streams; ++i) {
    PCCL_RETURN_IF_ERROR(statuses[i]);
    if (results[i].nanoseconds > 0) rate += results[i].bytes * 1e9 / results[i].nanoseconds;
  }
  *bytes_per_second = static_cast<uint64_t>(rate);
  return Status::Ok();
}

void ProbeServer::Serve(net::Socket socket) {
  threads_.Start(std::move(socket), [](net::Socket& s) { Drain(s); });
}

void ProbeServer::Close() { threads_.CutAll(); }

}  // namespace pccl::link
