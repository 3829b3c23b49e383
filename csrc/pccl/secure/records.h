// Encrypted connections: how an encrypted connection carries its byte stream.
//
// Once a handshake has given a connection one key per direction (secure/handshake.h), every
// byte either side sends travels in records:
//
//   u32 length L (little-endian, 1 .. kMaxRecordPayload) | L bytes of ciphertext | 16-byte tag
//
// sealed with an AEAD (AES-256-GCM where both ends have AES instructions, ChaCha20-Poly1305
// otherwise; OpenSSL's EVP does the work), the four length bytes as additional data and the
// record's number in its direction (0, 1, 2, ...) as the nonce. A record that was altered,
// dropped, replayed or reordered does not open (its number no longer matches its nonce),
// and the connection fails with DataLoss; the operation it served fails and restores its
// input as for any broken link. Each connection's keys come from both ends' fresh nonces,
// so a counter never repeats under a key.
//
// Thread-safety: a sealer and an opener each belong to one thread at a time (a socket's
// sender and its receiver).
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "pccl/common/status.h"

namespace pccl::secure {

enum class Cipher : uint8_t {
  kNone = 0,  // a plain connection
  kAes256Gcm = 1,
  kChaCha20Poly1305 = 2,
};
const char* CipherName(Cipher cipher);
// AES-256-GCM when this CPU has AES and carry-less multiply instructions, else ChaCha20.
Cipher PreferredCipher();
// What two ends settle on: AES-256-GCM only if both prefer it (ChaCha20 is the faster one
// on a CPU without AES instructions, and both are always available).
Cipher AgreeCipher(Cipher dialer, Cipher acceptor);

inline constexpr size_t kRecordHeaderBytes = 4;
inline constexpr size_t kTagBytes = 16;
inline constexpr size_t kMaxRecordPayload = 64 << 10;
inline constexpr size_t kRecordOverhead = kRecordHeaderBytes + kTagBytes;

class Aead;

// Seals one direction's records.
class RecordSealer {
 public:
  // `key`: 32 bytes. InvalidArgument for a wrong key size or kNone.
  static Status Create(Cipher cipher, std::string_view key, std::unique_ptr<RecordSealer>* out);
  ~RecordSealer();
  RecordSealer(const RecordSealer&) = delete;
  RecordSealer& operator=(const RecordSealer&) = delete;

  // The bytes of the records that carry `plaintext_bytes`.
  static size_t SealedSize(size_t plaintext_bytes);
  // Writes the records carrying every byte of the iovecs to `out`, which holds
  // SealedSize(their total) bytes.
  Status SealTo(const struct iovec* iov, int iovcnt, uint8_t* out);
  // Appends the records carrying every byte of the iovecs (or `bytes`) to *out.
  Status Seal(const struct iovec* iov, int iovcnt, std::string* out);
  Status Seal(std::string_view bytes, std::string* out);

 private:
  explicit RecordSealer(std::unique_ptr<Aead> aead);
  std::unique_ptr<Aead> aead_;
};

// Opens the other direction's records.
class RecordOpener {
 public:
  static Status Create(Cipher cipher, std::string_view key, std::unique_ptr<RecordOpener>* out);
  ~RecordOpener();
  RecordOpener(const RecordOpener&) = delete;
  RecordOpener& operator=(const RecordOpener&) = delete;

  // A record's payload length from its header (InvalidArgument if it is 0 or too large).
  static Status PayloadLength(const uint8_t header[kRecordHeaderBytes], size_t* length);
  // Opens one record whose `length` ciphertext bytes are at `data`, in place; `tag` follows
  // them on the wire. DataLoss if it does not verify (the bytes at `data` are then garbage).
  Status Open(const uint8_t header[kRecordHeaderBytes], uint8_t* data, size_t length,
              const uint8_t tag[kTagBytes]);
  // For non-blocking readers: takes the next bytes of the stream, keeps what does not make
  // a whole record yet, and appends the plaintext of every whole record to *plaintext.
  // After an error every later call fails with it.
  Status Feed(std::string_view bytes, std::string* plaintext);

 private:
  explicit RecordOpener(std::unique_ptr<Aead> aead);
  std::unique_ptr<Aead> aead_;
  std::string partial_;  // Feed: bytes of a record not yet complete
  Status failed_;
};

}  // namespace pccl::secure
