#include "pccl/net/wire.h"

#include <cstring>

namespace pccl::net {

void PutU16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint16_t GetU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t GetU32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void WireWriter::U16(uint16_t v) {
  uint8_t b[2];
  PutU16(b, v);
  buffer_.append(reinterpret_cast<char*>(b), 2);
}
void WireWriter::U32(uint32_t v) {
  uint8_t b[4];
  PutU32(b, v);
  buffer_.append(reinterpret_cast<char*>(b), 4);
}
void WireWriter::U64(uint64_t v) {
  uint8_t b[8];
  PutU64(b, v);
  buffer_.append(reinterpret_cast<char*>(b), 8);
}
void WireWriter::Str(const std::string& s) {
  U32(static_cast<uint32_t>(s.size()));
  buffer_.append(s);
}

bool WireReader::Need(size_t n, const char* field) {
  if (!status_.ok()) return false;
  if (size_ - pos_ < n) {
    status_ = InvalidArgument(std::string("truncated message: field '") + field + "' needs " +
                              std::to_string(n) + " bytes, " + std::to_string(size_ - pos_) +
                              " left");
    return false;
  }
  return true;
}

uint8_t WireReader::U8(const char* field) {
  if (!Need(1, field)) return 0;
  return data_[pos_++];
}
uint16_t WireReader::U16(const char* field) {
  if (!Need(2, field)) return 0;
  uint16_t v = GetU16(data_ + pos_);
  pos_ += 2;
  return v;
}
uint32_t WireReader::U32(const char* field) {
  if (!Need(4, field)) return 0;
  uint32_t v = GetU32(data_ + pos_);
  pos_ += 4;
  return v;
}
uint64_t WireReader::U64(const char* field) {
  if (!Need(8, field)) return 0;
  uint64_t v = GetU64(data_ + pos_);
  pos_ += 8;
  return v;
}
std::string WireReader::Str(const char* field, size_t max_length) {
  std::string s;
  StrInto(field, max_length, &s);
  return s;
}

void WireReader::StrInto(const char* field, size_t max_length, std::string* out) {
  uint32_t n = U32(field);
  if (!status_.ok()) return;
  if (n > max_length) {
    status_ = InvalidArgument(std::string("field '") + field + "' is " + std::to_string(n) +
                              " bytes, limit " + std::to_string(max_length));
    return;
  }
  if (!Need(n, field)) return;
  out->assign(reinterpret_cast<const char*>(data_ + pos_), n);
  pos_ += n;
}

Status WireReader::Finish(const char* message_name) {
  if (!status_.ok()) return InvalidArgument(std::string(message_name) + ": " + status_.message());
  if (pos_ != size_) {
    return InvalidArgument(std::string(message_name) + ": " + std::to_string(size_ - pos_) +
                           " unexpected trailing bytes");
  }
  return Status::Ok();
}

void EncodeFrameHeader(uint16_t kind, uint64_t length, uint8_t out[kFrameHeaderBytes]) {
  PutU32(out, kMagic);
  PutU16(out + 4, kProtocolVersion);
  PutU16(out + 6, kind);
  PutU64(out + 8, length);
}

Status DecodeFrameHeader(const uint8_t in[kFrameHeaderBytes], uint64_t max_length,
                         const std::string& peer, FrameHeader* out) {
  uint32_t magic = GetU32(in);
  if (magic != kMagic) {
    return InvalidArgument("bad frame magic 0x" + std::to_string(magic) + " from " + peer +
                           " (not a pccl peer?)");
  }
  uint16_t version = GetU16(in + 4);
  if (version != kProtocolVersion) {
    return InvalidArgument("protocol version " + std::to_string(version) + " from " + peer +
                           ", this build speaks " + std::to_string(kProtocolVersion));
  }
  out->kind = GetU16(in + 6);
  out->length = GetU64(in + 8);
  if (out->length > max_length) {
    return InvalidArgument("frame of " + std::to_string(out->length) + " bytes from " + peer +
                           " exceeds the limit of " + std::to_string(max_length));
  }
  return Status::Ok();
}

Status SendFrame(Socket& socket, uint16_t kind, const std::string& payload, Deadline deadline) {
  uint8_t header[kFrameHeaderBytes];
  EncodeFrameHeader(kind, payload.size(), header);
  struct iovec iov[2] = {{header, kFrameHeaderBytes},
                         {const_cast<char*>(payload.data()), payload.size()}};
  return socket.SendAllV(iov, 2, deadline);
}

Status RecvFrameHeader(Socket& socket, uint64_t max_length, Deadline deadline,
                       FrameHeader* header) {
  uint8_t bytes[kFrameHeaderBytes];
  PCCL_RETURN_IF_ERROR(socket.RecvAll(bytes, kFrameHeaderBytes, deadline));
  return DecodeFrameHeader(bytes, max_length, socket.peer(), header);
}

Status RecvFrame(Socket& socket, uint64_t max_length, Deadline deadline, FrameHeader* header,
                 std::string* payload) {
  PCCL_RETURN_IF_ERROR(RecvFrameHeader(socket, max_length, deadline, header));
  payload->resize(header->length);
  return socket.RecvAll(payload->data(), header->length, deadline);
}

}  // namespace pccl::net
