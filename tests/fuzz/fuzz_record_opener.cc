// Fuzzes secure::RecordOpener::Feed, which takes the raw byte stream of an encrypted
// connection (the master's non-blocking reader feeds it whatever recv() returned) and opens
// the AEAD records in it (secure/records.h). Whatever arrives, it must only ever hand out
// plaintext that the other end sealed, in order, and fail with DataLoss otherwise.
//
// Two modes, both with a fixed key:
//   raw:    the input is the stream: a stranger's bytes (the seeds hold real records, so
//           mutations reach the tag check). Fed in pieces or all at once, the opener must
//           give the same plaintext and the same verdict: only DataLoss may stop it.
//   sealed: the input describes a plaintext, which a RecordSealer with the same key seals
//           (in two Seal() calls, so records of both sizes and a record counter that goes
//           on across calls), then a few byte flips and a cut at the end. Checked: the
//           opener's output is always a prefix of the plaintext; an untouched stream gives
//           all of it back; a flipped byte gives nothing from its record on (the record and
//           every later one stay closed); a cut stream gives a prefix and no error.
// In both, the stream is fed in pieces of a chosen size, and after a failure every later
// Feed fails the same way.
//
// Input layout:
//   [0]      flags: bit 0 ChaCha20-Poly1305 (else AES-256-GCM), bit 1 raw mode
//   [1..2]   u16 piece size for Feed (0: the whole stream in one call)
//   raw:     [3..]  the stream
//   sealed:  [3..4] u16 bytes cut from the end of the sealed stream
//            [5..6] u16 where the plaintext splits between the two Seal() calls
//            [7..8] u16 repeat: the plaintext is the unit below, 1 + repeat times (capped at
//                   kMaxPlaintext, so that small inputs make records of the full 64 KiB)
//            [9]    number of flips (mod 4), then per flip u32 position, u8 xor mask
//            [..]   the plaintext unit
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_check.h"
#include "pccl/secure/records.h"
#include "seeds.h"

namespace pccl::fuzz {
namespace {

using secure::Cipher;
using secure::RecordOpener;
using secure::RecordSealer;

constexpr size_t kMaxPlaintext = 3 * secure::kMaxRecordPayload + 4321;

// Reads the input's little-endian fields front to back; past the end everything is 0.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint64_t Uint(int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) {
      const uint64_t b = pos_ < size_ ? data_[pos_++] : 0;
      v |= b << (8 * i);
    }
    return v;
  }
  std::string_view Rest() const {
    if (pos_ >= size_) return {};
    return std::string_view(reinterpret_cast<const char*>(data_ + pos_), size_ - pos_);
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

const std::string& Key() {
  static const std::string key(32, '\x11');
  return key;
}

// Feeds `stream` in pieces of `piece` bytes (0: one call; at most kMaxFeeds calls, to keep
// executions fast); stops at the first failure, then checks that a later Feed fails the
// same way.
constexpr size_t kMaxFeeds = 512;
Status FeedAll(RecordOpener& opener, std::string_view stream, size_t piece, std::string* out) {
  if (piece == 0) piece = stream.size();
  piece = std::max({piece, (stream.size() + kMaxFeeds - 1) / kMaxFeeds, size_t{1}});
  Status st;
  for (size_t pos = 0; pos < stream.size() && st.ok(); pos += piece) {
    st = opener.Feed(stream.substr(pos, piece), out);
  }
  if (!st.ok()) {
    FUZZ_CHECK(st.code() == StatusCode::kDataLoss);
    const size_t before = out->size();
    const Status again = opener.Feed("more", out);
    FUZZ_CHECK(again.code() == st.code() && again.message() == st.message());
    FUZZ_CHECK(out->size() == before);
  }
  return st;
}

void FuzzRaw(Cipher cipher, size_t piece, std::string_view stream) {
  std::unique_ptr<RecordOpener> in_pieces, at_once;
  FUZZ_CHECK(RecordOpener::Create(cipher, Key(), &in_pieces).ok());
  FUZZ_CHECK(RecordOpener::Create(cipher, Key(), &at_once).ok());
  std::string out_pieces, out_at_once;
  const Status st_pieces = FeedAll(*in_pieces, stream, piece, &out_pieces);
  const Status st_at_once = FeedAll(*at_once, stream, 0, &out_at_once);
  FUZZ_CHECK(st_pieces.code() == st_at_once.code());
  FUZZ_CHECK(st_pieces.message() == st_at_once.message());
  FUZZ_CHECK(out_pieces == out_at_once);
}

// The first position where `a` differs from `b` (at least as long), or a.size(). Compares
// blocks with memcmp first: a byte loop here would dominate the run time under libFuzzer's
// comparison tracing.
size_t FirstDifference(std::string_view a, std::string_view b) {
  constexpr size_t kBlock = 256;
  size_t pos = 0;
  while (pos + kBlock <= a.size() && std::memcmp(&a[pos], &b[pos], kBlock) == 0) pos += kBlock;
  while (pos < a.size() && a[pos] == b[pos]) ++pos;
  return pos;
}

void FuzzSealed(Cipher cipher, size_t piece, Input& in) {
  const size_t cut = in.Uint(2);
  const size_t split = in.Uint(2);
  const size_t repeat = in.Uint(2);
  struct Flip {
    size_t position;
    uint8_t mask;
  };
  std::vector<Flip> flips(in.Uint(1) % 4);
  for (Flip& f : flips) {
    f.position = in.Uint(4);
    f.mask = static_cast<uint8_t>(in.Uint(1));
  }
  const std::string_view unit = in.Rest();
  std::string plaintext;
  for (size_t i = 0; i <= repeat && !unit.empty() && plaintext.size() < kMaxPlaintext; ++i) {
    plaintext.append(unit);
  }
  if (plaintext.size() > kMaxPlaintext) plaintext.resize(kMaxPlaintext);

  std::unique_ptr<RecordSealer> sealer;
  FUZZ_CHECK(RecordSealer::Create(cipher, Key(), &sealer).ok());
  const size_t first = split % (plaintext.size() + 1);
  std::string sealed;
  FUZZ_CHECK(sealer->Seal(std::string_view(plaintext).substr(0, first), &sealed).ok());
  FUZZ_CHECK(sealer->Seal(std::string_view(plaintext).substr(first), &sealed).ok());

  // Where each record starts in the stream, and the plaintext offset it carries.
  std::vector<size_t> record_start, plain_start;
  for (size_t pos = 0, plain = 0; pos < sealed.size();) {
    size_t length = 0;
    FUZZ_CHECK(RecordOpener::PayloadLength(reinterpret_cast<const uint8_t*>(&sealed[pos]),
                                           &length).ok());
    record_start.push_back(pos);
    plain_start.push_back(plain);
    pos += secure::kRecordOverhead + length;
    plain += length;
  }

  std::string stream = sealed;
  for (const Flip& f : flips) {
    if (!stream.empty()) stream[f.position % stream.size()] ^= static_cast<char>(f.mask);
  }
  stream.resize(stream.size() - std::min(cut, stream.size()));
  const size_t changed = FirstDifference(stream, sealed);
  const bool tampered = changed < stream.size();

  std::unique_ptr<RecordOpener> opener;
  FUZZ_CHECK(RecordOpener::Create(cipher, Key(), &opener).ok());
  std::string out;
  const Status st = FeedAll(*opener, stream, piece, &out);

  FUZZ_CHECK(out.size() <= plaintext.size());
  FUZZ_CHECK(std::string_view(plaintext).substr(0, out.size()) == out);
  if (!tampered) {
    FUZZ_CHECK(st.ok());  // a cut stream is only incomplete
    if (stream.size() == sealed.size()) FUZZ_CHECK(out == plaintext);
    return;
  }
  // Nothing from the altered record on: find the record that holds the first changed byte.
  const auto after = std::upper_bound(record_start.begin(), record_start.end(), changed);
  const size_t record = static_cast<size_t>(after - record_start.begin()) - 1;
  FUZZ_CHECK(out.size() <= plain_start[record]);
}

// Appends `v` as `bytes` little-endian bytes (the layout's fields).
void Put(std::string* s, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s->push_back(static_cast<char>(v >> (8 * i)));
}

std::string SealedSeed(uint8_t flags, uint16_t piece, uint16_t cut, uint16_t split,
                       uint16_t repeat, const std::vector<std::pair<uint32_t, uint8_t>>& flips,
                       const std::string& unit) {
  std::string s;
  Put(&s, flags, 1);
  Put(&s, piece, 2);
  Put(&s, cut, 2);
  Put(&s, split, 2);
  Put(&s, repeat, 2);
  Put(&s, flips.size(), 1);
  for (const auto& [position, mask] : flips) {
    Put(&s, position, 4);
    Put(&s, mask, 1);
  }
  return s + unit;
}

// A raw-mode input: real records of `messages`, sealed with the fuzzer's key.
std::string RawSeed(Cipher cipher, uint16_t piece, const std::vector<std::string>& messages) {
  std::string s;
  Put(&s, 2 | (cipher == Cipher::kChaCha20Poly1305 ? 1 : 0), 1);
  Put(&s, piece, 2);
  std::unique_ptr<RecordSealer> sealer;
  FUZZ_CHECK(RecordSealer::Create(cipher, Key(), &sealer).ok());
  for (const std::string& m : messages) FUZZ_CHECK(sealer->Seal(m, &s).ok());
  return s;
}

}  // namespace
}  // namespace pccl::fuzz

// Seeds: sealed-mode descriptions (untouched, multi-record, flipped and cut) and raw streams
// of real records, for both ciphers.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using pccl::fuzz::RawSeed;
  using pccl::fuzz::SealedSeed;
  using pccl::secure::Cipher;
  std::string unit(256, '\0');
  for (size_t i = 0; i < unit.size(); ++i) unit[i] = static_cast<char>(i * 7);
  pccl::fuzz::WriteSeedsIfAsked({
      SealedSeed(0, 0, 0, 3, 0, {}, "hello, ring"),
      SealedSeed(1, 7, 0, 100, 300, {}, unit),  // 77 KB: records of 64 KiB and less
      SealedSeed(0, 1000, 5, 0, 1, {{30, 0x80}}, "a flipped bit and a cut"),
      SealedSeed(1, 0, 0, 9, 2, {{2, 0x01}}, "a flipped length"),
      RawSeed(Cipher::kAes256Gcm, 0, {"hello"}),
      RawSeed(Cipher::kChaCha20Poly1305, 5, {"first record", "second record"}),
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pccl::fuzz::Input in(data, size);
  const uint64_t flags = in.Uint(1);
  const size_t piece = in.Uint(2);
  const auto cipher = (flags & 1) ? pccl::secure::Cipher::kChaCha20Poly1305
                                  : pccl::secure::Cipher::kAes256Gcm;
  if (flags & 2) {
    pccl::fuzz::FuzzRaw(cipher, piece, in.Rest());
  } else {
    pccl::fuzz::FuzzSealed(cipher, piece, in);
  }
  return 0;
}
