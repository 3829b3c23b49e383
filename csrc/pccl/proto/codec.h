// The field-list codec behind proto/messages.h (internal to proto/; include messages.h).
//
// The story. A message's wire format is its fields in order, little-endian, strings and lists
// length-prefixed, nothing else: no tags, no optional fields (a change is a new
// net::kProtocolVersion). So a message is described by ONE list, a constexpr tuple of field
// descriptors, each naming the field as errors will name it and pointing at the struct member:
//
//   constexpr auto kHello = MessageOf<Hello>("Hello", std::tuple{
//       U32("peer_group", &Hello::peer_group),
//       U16("p2p_port", &Hello::p2p_port),
//       Str("advertise_host", &Hello::advertise_host, kMaxHostLength),
//       Rule(&PortIsSet),
//   });
//
// and that list drives both directions, as the tag enum of google/leveldb's
// db/version_edit.cc drives EncodeTo and DecodeFrom: EncodeFields visits every descriptor
// with a writer, DecodeFields with a Decoder. Adding a field is one line in one list; the
// encoder and the decoder cannot disagree about order, width or name.
//
// The descriptors:
//   U8/U16/U32/U64(name, &M::member)   an integer of exactly that width (the member's type
//                                      must match, so a wrong width does not compile)
//   Bool(name, &M::member)             a u8 that must be 0 or 1
//   Str(name, &M::member, max_length)  u32 length, then the bytes; longer than max refused
//   List(count_name, &M::member, limit, element_fields)
//                                      u32 count (above `limit` refused), then each element
//                                      encoded with `element_fields`
//   Nested(&M::member, fields)         a struct inlined with its own field list (OpKey)
//   Rule(&Check)                       no bytes; when decoding reaches it with nothing
//                                      wrong so far, Check(message read so far) may refuse
//                                      the message (ranges, order, cross-field rules)
//
// Decoding keeps two first failures and goes on reading after a broken rule: the reader's
// (a field that did not fit: truncated, or a string over its limit), which wins, then the
// first broken rule (a bool, a count, a Rule) in wire order, so where a Rule stands in its
// list decides which error a payload that breaks several gets. Either comes back as
// InvalidArgument "<Message>: <what>" naming the field; trailing bytes are refused. A count
// over its limit reads no elements, so the elements after it are trailing bytes. On failure
// the output holds what was read; the caller drops the sender.
//
// The lists live in messages.cc, with the one line per message that turns a list into the
// Encode/Decode overloads of messages.h. The DataHeader is a list too, written into a fixed
// block by BlockWriter; its width is checked against kDataHeaderBytes at compile time.
//
// Thread-safety: constexpr tables and pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "pccl/common/status.h"
#include "pccl/net/wire.h"

namespace pccl::proto::codec {

// Reads one payload: the reader's failure (sticky, names the field) and the first broken rule.
class Decoder {
 public:
  Decoder(const void* data, size_t size) : reader_(data, size) {}

  net::WireReader& reader() { return reader_; }
  // Nothing wrong so far: rules only speak about bytes that were all there.
  bool Clean() const { return reader_.ok() && broken_.ok(); }
  // Records `why` as the broken rule unless something went wrong before.
  void Refuse(Status why) {
    if (Clean()) broken_ = std::move(why);
  }
  // Reads a u32 element count; above `limit` it is refused and counts as 0.
  uint32_t Count(const char* field, uint32_t limit) {
    uint32_t n = reader_.U32(field);
    if (!reader_.ok() || n <= limit) return n;
    Refuse(InvalidArgument(std::string("field '") + field + "' is " + std::to_string(n) +
                           ", above the limit of " + std::to_string(limit)));
    return 0;
  }
  // The verdict on the whole payload of message `name`: the reader's failure or trailing
  // bytes first, then the broken rule.
  Status Finish(const char* name) {
    PCCL_RETURN_IF_ERROR(reader_.Finish(name));
    if (!broken_.ok()) return InvalidArgument(std::string(name) + ": " + broken_.message());
    return Status::Ok();
  }

 private:
  net::WireReader reader_;
  Status broken_;
};

// Writes fixed-width fields into a caller's block (the DataHeader); FixedWireBytes() lets the
// caller check the block's size against the field list at compile time.
class BlockWriter {
 public:
  explicit BlockWriter(uint8_t* block) : next_(block) {}
  void U8(uint8_t v) { *next_++ = v; }
  void U16(uint16_t v) { net::PutU16(Advance(2), v); }
  void U32(uint32_t v) { net::PutU32(Advance(4), v); }
  void U64(uint64_t v) { net::PutU64(Advance(8), v); }

 private:
  uint8_t* Advance(size_t bytes) {
    uint8_t* at = next_;
    next_ += bytes;
    return at;
  }
  uint8_t* next_;
};

// The visitor: every descriptor of `fields`, in list order, writes its part of `m` to `w`
// (a net::WireWriter or a BlockWriter) or reads it from `d`.
template <typename W, typename M, typename... F>
void EncodeFields(W& w, const M& m, const std::tuple<F...>& fields) {
  std::apply([&](const F&... field) { (field.Encode(w, m), ...); }, fields);
}

template <typename M, typename... F>
void DecodeFields(Decoder& d, M& m, const std::tuple<F...>& fields) {
  std::apply([&](const F&... field) { (field.Decode(d, m), ...); }, fields);
}

// The wire size of a list of fixed-width fields (does not compile for strings and lists).
template <typename... F>
constexpr size_t FixedWireBytes(const std::tuple<F...>&) {
  return (size_t{0} + ... + F::kWireBytes);
}

template <typename M, typename T>
struct IntField {
  static_assert(std::is_unsigned_v<T> && sizeof(T) <= 8);
  static constexpr size_t kWireBytes = sizeof(T);
  const char* name;
  T M::*member;

  template <typename W>
  void Encode(W& w, const M& m) const {
    if constexpr (sizeof(T) == 1) w.U8(m.*member);
    if constexpr (sizeof(T) == 2) w.U16(m.*member);
    if constexpr (sizeof(T) == 4) w.U32(m.*member);
    if constexpr (sizeof(T) == 8) w.U64(m.*member);
  }
  void Decode(Decoder& d, M& m) const {
    if constexpr (sizeof(T) == 1) m.*member = d.reader().U8(name);
    if constexpr (sizeof(T) == 2) m.*member = d.reader().U16(name);
    if constexpr (sizeof(T) == 4) m.*member = d.reader().U32(name);
    if constexpr (sizeof(T) == 8) m.*member = d.reader().U64(name);
  }
};

template <typename M>
struct BoolField : IntField<M, uint8_t> {
  void Decode(Decoder& d, M& m) const {
    IntField<M, uint8_t>::Decode(d, m);
    uint8_t v = m.*(this->member);
    if (v > 1) {
      d.Refuse(InvalidArgument(std::string("field '") + this->name + "' must be 0 or 1, got " +
                               std::to_string(v)));
    }
  }
};

template <typename M>
struct StrField {
  const char* name;
  std::string M::*member;
  size_t max_length;

  template <typename W>
  void Encode(W& w, const M& m) const {
    w.Str(m.*member);
  }
  void Decode(Decoder& d, M& m) const { d.reader().StrInto(name, max_length, &(m.*member)); }
};

template <typename M, typename E, typename... F>
struct ListField {
  const char* count_name;
  std::vector<E> M::*member;
  uint32_t limit;
  std::tuple<F...> element;

  template <typename W>
  void Encode(W& w, const M& m) const {
    w.U32(static_cast<uint32_t>((m.*member).size()));
    for (const E& e : m.*member) EncodeFields(w, e, element);
  }
  void Decode(Decoder& d, M& m) const {
    uint32_t n = d.Count(count_name, limit);
    std::vector<E>& list = m.*member;
    list.clear();
    for (uint32_t i = 0; i < n && d.reader().ok(); ++i) {
      E e;
      DecodeFields(d, e, element);
      list.push_back(std::move(e));
    }
  }
};

template <typename M, typename S, typename... F>
struct NestedField {
  S M::*member;
  std::tuple<F...> fields;

  template <typename W>
  void Encode(W& w, const M& m) const {
    EncodeFields(w, m.*member, fields);
  }
  void Decode(Decoder& d, M& m) const { DecodeFields(d, m.*member, fields); }
};

template <typename M>
struct RuleField {
  Status (*check)(const M& so_far);

  template <typename W>
  void Encode(W&, const M&) const {}
  void Decode(Decoder& d, M& m) const {
    if (d.Clean()) d.Refuse(check(m));
  }
};

// The descriptors, as the field lists spell them: U32("slot", &P2PHello::slot). The integer
// ones are function objects named after the WireWriter call they stand for.
template <typename T>
struct IntOf {
  template <typename M>
  constexpr IntField<M, T> operator()(const char* name, T M::*member) const {
    return {name, member};
  }
};
inline constexpr IntOf<uint8_t> U8;
inline constexpr IntOf<uint16_t> U16;
inline constexpr IntOf<uint32_t> U32;
inline constexpr IntOf<uint64_t> U64;
template <typename M>
constexpr BoolField<M> Bool(const char* name, uint8_t M::*member) {
  return {{name, member}};
}
template <typename M>
constexpr StrField<M> Str(const char* name, std::string M::*member, size_t max_length) {
  return {name, member, max_length};
}
template <typename M, typename E, typename... F>
constexpr ListField<M, E, F...> List(const char* count_name, std::vector<E> M::*member,
                                     uint32_t limit, std::tuple<F...> element) {
  return {count_name, member, limit, element};
}
template <typename M, typename S, typename... F>
constexpr NestedField<M, S, F...> Nested(S M::*member, std::tuple<F...> fields) {
  return {member, fields};
}
template <typename M>
constexpr RuleField<M> Rule(Status (*check)(const M& so_far)) {
  return {check};
}

// One message: the name its errors carry and its field list, in wire order.
template <typename M, typename... F>
struct MessageCodec {
  const char* name;
  std::tuple<F...> fields;

  std::string Encode(const M& m) const {
    net::WireWriter w;
    EncodeFields(w, m, fields);
    return w.Take();
  }
  void EncodeInto(const M& m, std::string* out) const {  // reuses *out's room
    net::WireWriter w(std::move(*out));
    EncodeFields(w, m, fields);
    *out = w.Take();
  }
  Status Decode(const std::string& payload, M* m) const {
    Decoder d(payload.data(), payload.size());
    DecodeFields(d, *m, fields);
    return d.Finish(name);
  }
};

template <typename M, typename... F>
constexpr MessageCodec<M, F...> MessageOf(const char* name, std::tuple<F...> fields) {
  return {name, fields};
}

}  // namespace pccl::proto::codec
