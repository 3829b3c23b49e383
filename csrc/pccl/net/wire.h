// The wire format's bytes: little-endian integers, length-prefixed strings, and the frame
// header every message starts with. This is the only code in pccl that knows byte order.
//
// A frame is a 16-byte header, then `length` payload bytes:
//   u32 magic "PCCL" | u16 protocol version | u16 message kind | u64 payload length
// Every field is validated before use: a wrong magic or version, an unknown kind or a
// length above the receiver's limit is an InvalidArgument error naming the field, and the
// connection that sent it is dropped by the caller.
//
// Thread-safety: WireWriter/WireReader are plain values; frame I/O functions follow the
// Socket's rules (one sender and one receiver per socket at a time).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "pccl/common/clock.h"
#include "pccl/common/status.h"
#include "pccl/net/socket.h"

namespace pccl::net {

inline constexpr uint32_t kMagic = 0x4C434350;  // "PCCL" as little-endian bytes
inline constexpr uint16_t kProtocolVersion = 6;
inline constexpr size_t kFrameHeaderBytes = 16;
// Largest payloads anyone accepts, by who may send them. The caps bound what a stranger
// can make a process buffer, while no honest message reaches them: the largest messages
// are sync plans and shared-state reports (10,000+ tensors, several sources each) and
// topologies of thousands of peers, all within the limits proto/messages.h enforces.
//   kMaxHelloPayload: the first frame of any connection (Hello to the master, the
//                     hellos of peer-to-peer connections), before anyone is known; a
//                     resuming peer's Hello names a ring of up to kMaxMembers peers.
//   kMaxControlPayload: control frames between peers (shared-state requests, probes).
//   kMaxPeerMessage: what a peer that said Hello may send the master (SyncState of
//                    kMaxStateEntries entries with the longest keys fits).
//   kMaxMasterMessage: what the master may send a peer (SyncPlan, Topology).
inline constexpr uint64_t kMaxHelloPayload = 80 << 10;
inline constexpr uint64_t kMaxControlPayload = 1 << 20;
inline constexpr uint64_t kMaxPeerMessage = 32 << 20;
inline constexpr uint64_t kMaxMasterMessage = 256 << 20;

void PutU16(uint8_t* p, uint16_t v);
void PutU32(uint8_t* p, uint32_t v);
void PutU64(uint8_t* p, uint64_t v);
uint16_t GetU16(const uint8_t* p);
uint32_t GetU32(const uint8_t* p);
uint64_t GetU64(const uint8_t* p);

// Builds a payload.
class WireWriter {
 public:
  // Writes into `buffer`, emptied first (its room is kept: Take gives it back).
  explicit WireWriter(std::string buffer = {}) : buffer_(std::move(buffer)) { buffer_.clear(); }
  void U8(uint8_t v) { buffer_.push_back(static_cast<char>(v)); }
  void U16(uint16_t v);
  void U32(uint32_t v);
  void U64(uint64_t v);
  void Str(const std::string& s);  // u32 length, then bytes
  const std::string& data() const { return buffer_; }
  std::string Take() { return std::move(buffer_); }

 private:
  std::string buffer_;
};

// Reads a payload; the first failure sticks and names the field that did not fit.
class WireReader {
 public:
  WireReader(const void* data, size_t size)
      : data_(static_cast<const uint8_t*>(data)), size_(size) {}
  explicit WireReader(const std::string& s) : WireReader(s.data(), s.size()) {}

  uint8_t U8(const char* field);
  uint16_t U16(const char* field);
  uint32_t U32(const char* field);
  uint64_t U64(const char* field);
  std::string Str(const char* field, size_t max_length);
  // The same into *out (its room reused: a message decoded into the same struct again
  // allocates nothing for strings that fit); on failure *out is left as it was.
  void StrInto(const char* field, size_t max_length, std::string* out);
  // InvalidArgument if bytes are left over (a message of the wrong shape).
  Status Finish(const char* message_name);
  const Status& status() const { return status_; }
  bool ok() const { return status_.ok(); }

 private:
  bool Need(size_t n, const char* field);
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  Status status_;
};

struct FrameHeader {
  uint16_t kind = 0;
  uint64_t length = 0;
};

void EncodeFrameHeader(uint16_t kind, uint64_t length, uint8_t out[kFrameHeaderBytes]);
// Validates magic, version and length (<= max_length); `peer` names the sender in errors.
Status DecodeFrameHeader(const uint8_t in[kFrameHeaderBytes], uint64_t max_length,
                         const std::string& peer, FrameHeader* out);

// Sends header + payload in one call.
Status SendFrame(Socket& socket, uint16_t kind, const std::string& payload, Deadline deadline);
// Receives one whole frame whose payload is at most `max_length` bytes.
Status RecvFrame(Socket& socket, uint64_t max_length, Deadline deadline, FrameHeader* header,
                 std::string* payload);
// Receives just a header (the caller reads the payload itself, e.g. into tensor memory).
Status RecvFrameHeader(Socket& socket, uint64_t max_length, Deadline deadline,
                       FrameHeader* header);

}  // namespace pccl::net
