#include "pccl/secure/records.h"

#include <openssl/err.h>
#include <openssl/evp.h>

#include <cstring>

namespace pccl::secure {
namespace {

constexpr size_t kIvBytes = 12;

void PutLength(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

}  // namespace

const char* CipherName(Cipher cipher) {
  switch (cipher) {
    case Cipher::kNone: return "none";
    case Cipher::kAes256Gcm: return "AES-256-GCM";
    case Cipher::kChaCha20Poly1305: return "ChaCha20-Poly1305";
  }
  return "unknown";
}

Cipher PreferredCipher() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool aes = __builtin_cpu_supports("aes") && __builtin_cpu_supports("pclmul");
  return aes ? Cipher::kAes256Gcm : Cipher::kChaCha20Poly1305;
#elif defined(__aarch64__)
  return Cipher::kAes256Gcm;  // ARMv8 servers have the crypto extension
#else
  return Cipher::kChaCha20Poly1305;
#endif
}

Cipher AgreeCipher(Cipher dialer, Cipher acceptor) {
  return dialer == Cipher::kAes256Gcm && acceptor == Cipher::kAes256Gcm
             ? Cipher::kAes256Gcm
             : Cipher::kChaCha20Poly1305;
}

// One direction's AEAD: a cipher context keyed once, and the record counter (the nonce).
class Aead {
 public:
  static Status Create(Cipher cipher, std::string_view key, bool encrypt,
                       std::unique_ptr<Aead>* out) {
    const EVP_CIPHER* evp = cipher == Cipher::kAes256Gcm          ? EVP_aes_256_gcm()
                            : cipher == Cipher::kChaCha20Poly1305 ? EVP_chacha20_poly1305()
                                                                  : nullptr;
    if (evp == nullptr) return InvalidArgument("no AEAD for cipher " + std::string(CipherName(cipher)));
    if (key.size() != 32) {
      return InvalidArgument("AEAD keys are 32 bytes, got " + std::to_string(key.size()));
    }
    auto aead = std::unique_ptr<Aead>(new Aead(encrypt));
    const auto* k = reinterpret_cast<const unsigned char*>(key.data());
    int ok = encrypt ? EVP_EncryptInit_ex(aead->ctx_, evp, nullptr, nullptr, nullptr)
                     : EVP_DecryptInit_ex(aead->ctx_, evp, nullptr, nullptr, nullptr);
    if (ok != 1 ||
        EVP_CIPHER_CTX_ctrl(aead->ctx_, EVP_CTRL_AEAD_SET_IVLEN, kIvBytes, nullptr) != 1 ||
        (encrypt ? EVP_EncryptInit_ex(aead->ctx_, nullptr, nullptr, k, nullptr)
                 : EVP_DecryptInit_ex(aead->ctx_, nullptr, nullptr, k, nullptr)) != 1) {
      ERR_clear_error();
      return Internal("setting up " + std::string(CipherName(cipher)) + " failed");
    }
    *out = std::move(aead);
    return Status::Ok();
  }
  ~Aead() { EVP_CIPHER_CTX_free(ctx_); }

  // Starts the next record: its nonce, then the header as additional data.
  bool Begin(const uint8_t header[kRecordHeaderBytes]) {
    uint8_t iv[kIvBytes] = {0};
    for (int i = 0; i < 8; ++i) iv[4 + i] = static_cast<uint8_t>(counter_ >> (8 * i));
    ++counter_;
    int n = 0;
    return (encrypt_ ? EVP_EncryptInit_ex(ctx_, nullptr, nullptr, nullptr, iv)
                     : EVP_DecryptInit_ex(ctx_, nullptr, nullptr, nullptr, iv)) == 1 &&
           (encrypt_ ? EVP_EncryptUpdate(ctx_, nullptr, &n, header, kRecordHeaderBytes)
                     : EVP_DecryptUpdate(ctx_, nullptr, &n, header, kRecordHeaderBytes)) == 1;
  }
  bool Update(const uint8_t* in, size_t n, uint8_t* out) {
    int written = 0;
    return (encrypt_ ? EVP_EncryptUpdate(ctx_, out, &written, in, static_cast<int>(n))
                     : EVP_DecryptUpdate(ctx_, out, &written, in, static_cast<int>(n))) == 1 &&
           static_cast<size_t>(written) == n;
  }
  bool FinishSeal(uint8_t tag[kTagBytes]) {
    int n = 0;
    uint8_t none[16];
    return EVP_EncryptFinal_ex(ctx_, none, &n) == 1 && n == 0 &&
           EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG, kTagBytes, tag) == 1;
  }
  bool FinishOpen(const uint8_t tag[kTagBytes]) {
    int n = 0;
    uint8_t none[16];
    return EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG, kTagBytes,
                               const_cast<uint8_t*>(tag)) == 1 &&
           EVP_DecryptFinal_ex(ctx_, none, &n) == 1 && n == 0;
  }

 private:
  explicit Aead(bool encrypt) : ctx_(EVP_CIPHER_CTX_new()), encrypt_(encrypt) {}
  EVP_CIPHER_CTX* ctx_;
  const bool encrypt_;
  uint64_t counter_ = 0;
};

// --- sealing -----------------------------------------------------------------------------

Status RecordSealer::Create(Cipher cipher, std::string_view key,
                            std::unique_ptr<RecordSealer>* out) {
  std::unique_ptr<Aead> aead;
  PCCL_RETURN_IF_ERROR(Aead::Create(cipher, key, /*encrypt=*/true, &aead));
  *out = std::unique_ptr<RecordSealer>(new RecordSealer(std::move(aead)));
  return Status::Ok();
}

RecordSealer::RecordSealer(std::unique_ptr<Aead> aead) : aead_(std::move(aead)) {}
RecordSealer::~RecordSealer() = default;

size_t RecordSealer::SealedSize(size_t plaintext_bytes) {
  const size_t records = (plaintext_bytes + kMaxRecordPayload - 1) / kMaxRecordPayload;
  return plaintext_bytes + records * kRecordOverhead;
}

Status RecordSealer::Seal(const struct iovec* iov, int iovcnt, std::string* out) {
  size_t total = 0;
  for (int i = 0; i < iovcnt; ++i) total += iov[i].iov_len;
  const size_t pos = out->size();
  out->resize(pos + SealedSize(total));
  return SealTo(iov, iovcnt, reinterpret_cast<uint8_t*>(out->data()) + pos);
}

Status RecordSealer::SealTo(const struct iovec* iov, int iovcnt, uint8_t* dst) {
  size_t total = 0;
  for (int i = 0; i < iovcnt; ++i) total += iov[i].iov_len;
  size_t pos = 0;
  int piece = 0;
  size_t piece_offset = 0;
  size_t left = total;
  while (left > 0) {
    const size_t length = left < kMaxRecordPayload ? left : kMaxRecordPayload;
    uint8_t* header = dst + pos;
    PutLength(header, static_cast<uint32_t>(length));
    if (!aead_->Begin(header)) return Internal("sealing a record failed");
    pos += kRecordHeaderBytes;
    size_t need = length;
    while (need > 0) {  // the record's bytes may span several iovecs
      const auto* base = static_cast<const uint8_t*>(iov[piece].iov_base);
      const size_t n = std::min(need, iov[piece].iov_len - piece_offset);
      if (n > 0 && !aead_->Update(base + piece_offset, n, dst + pos)) {
        return Internal("sealing a record failed");
      }
      pos += n;
      need -= n;
      piece_offset += n;
      if (piece_offset == iov[piece].iov_len) {
        ++piece;
        piece_offset = 0;
      }
    }
    if (!aead_->FinishSeal(dst + pos)) return Internal("sealing a record failed");
    pos += kTagBytes;
    left -= length;
  }
  return Status::Ok();
}

Status RecordSealer::Seal(std::string_view bytes, std::string* out) {
  struct iovec iov = {const_cast<char*>(bytes.data()), bytes.size()};
  return Seal(&iov, 1, out);
}

// --- opening -----------------------------------------------------------------------------

Status RecordOpener::Create(Cipher cipher, std::string_view key,
                            std::unique_ptr<RecordOpener>* out) {
  std::unique_ptr<Aead> aead;
  PCCL_RETURN_IF_ERROR(Aead::Create(cipher, key, /*encrypt=*/false, &aead));
  *out = std::unique_ptr<RecordOpener>(new RecordOpener(std::move(aead)));
  return Status::Ok();
}

RecordOpener::RecordOpener(std::unique_ptr<Aead> aead) : aead_(std::move(aead)) {}
RecordOpener::~RecordOpener() = default;

Status RecordOpener::PayloadLength(const uint8_t header[kRecordHeaderBytes], size_t* length) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | header[i];
  if (v == 0 || v > kMaxRecordPayload) {
    return Status(StatusCode::kDataLoss, "encrypted record of " + std::to_string(v) +
                                             " bytes (the limit is " +
                                             std::to_string(kMaxRecordPayload) + ")");
  }
  *length = v;
  return Status::Ok();
}

Status RecordOpener::Open(const uint8_t header[kRecordHeaderBytes], uint8_t* data, size_t length,
                          const uint8_t tag[kTagBytes]) {
  if (!aead_->Begin(header) || !aead_->Update(data, length, data) || !aead_->FinishOpen(tag)) {
    ERR_clear_error();
    return Status(StatusCode::kDataLoss,
                  "an encrypted record failed authentication (tampered, replayed, reordered "
                  "or lost on the way)");
  }
  return Status::Ok();
}

Status RecordOpener::Feed(std::string_view bytes, std::string* plaintext) {
  if (!failed_.ok()) return failed_;
  partial_.append(bytes);
  size_t pos = 0;
  while (partial_.size() - pos >= kRecordHeaderBytes) {
    auto* p = reinterpret_cast<uint8_t*>(partial_.data() + pos);
    size_t length = 0;
    failed_ = PayloadLength(p, &length);
    if (!failed_.ok()) return failed_;
    if (partial_.size() - pos < kRecordOverhead + length) break;
    uint8_t* data = p + kRecordHeaderBytes;
    failed_ = Open(p, data, length, data + length);
    if (!failed_.ok()) return failed_;
    plaintext->append(reinterpret_cast<const char*>(data), length);
    pos += kRecordOverhead + length;
  }
  partial_.erase(0, pos);
  return Status::Ok();
}

}  // namespace pccl::secure
