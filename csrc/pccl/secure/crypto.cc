#include "pccl/secure/crypto.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <memory>

namespace pccl::secure {
namespace {

const unsigned char* U(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// The newest OpenSSL error as text, for Status messages.
std::string OpenSslError(const char* what) {
  unsigned long code = ERR_get_error();
  char text[256] = "no detail";
  if (code != 0) ERR_error_string_n(code, text, sizeof(text));
  ERR_clear_error();
  return std::string(what) + " failed (OpenSSL: " + text + ")";
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;

}  // namespace

Status RandomBytes(size_t n, std::string* out) {
  out->assign(n, '\0');
  if (n > 0 && RAND_bytes(reinterpret_cast<unsigned char*>(out->data()), static_cast<int>(n)) != 1) {
    return Internal(OpenSslError("RAND_bytes"));
  }
  return Status::Ok();
}

std::string Sha256(std::string_view data) {
  std::string digest(kDigestBytes, '\0');
  SHA256(U(data), data.size(), reinterpret_cast<unsigned char*>(digest.data()));
  return digest;
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  std::string mac(kMacBytes, '\0');
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), U(data), data.size(),
       reinterpret_cast<unsigned char*>(mac.data()), &length);
  mac.resize(length);
  return mac;
}

Status HkdfSha256(std::string_view ikm, std::string_view salt, std::string_view info, size_t n,
                  std::string* out) {
  PkeyCtx ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr));
  out->assign(n, '\0');
  size_t length = n;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()) <= 0 ||
      EVP_PKEY_CTX_set1_hkdf_salt(ctx.get(), U(salt), static_cast<int>(salt.size())) <= 0 ||
      EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), U(ikm), static_cast<int>(ikm.size())) <= 0 ||
      EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), U(info), static_cast<int>(info.size())) <= 0 ||
      EVP_PKEY_derive(ctx.get(), reinterpret_cast<unsigned char*>(out->data()), &length) <= 0 ||
      length != n) {
    return Internal(OpenSslError("HKDF-SHA256"));
  }
  return Status::Ok();
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Status GenerateX25519(KeyPair* out) {
  PkeyCtx ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) <= 0 || EVP_PKEY_keygen(ctx.get(), &raw) <= 0) {
    return Internal(OpenSslError("X25519 key generation"));
  }
  Pkey key(raw);
  out->private_key.assign(kKeyBytes, '\0');
  out->public_key.assign(kPublicKeyBytes, '\0');
  size_t private_length = kKeyBytes;
  size_t public_length = kPublicKeyBytes;
  if (EVP_PKEY_get_raw_private_key(
          key.get(), reinterpret_cast<unsigned char*>(out->private_key.data()), &private_length) <= 0 ||
      EVP_PKEY_get_raw_public_key(
          key.get(), reinterpret_cast<unsigned char*>(out->public_key.data()), &public_length) <= 0 ||
      private_length != kKeyBytes || public_length != kPublicKeyBytes) {
    return Internal(OpenSslError("X25519 key export"));
  }
  return Status::Ok();
}

Status X25519(std::string_view private_key, std::string_view public_key, std::string* shared) {
  if (private_key.size() != kKeyBytes || public_key.size() != kPublicKeyBytes) {
    return InvalidArgument("X25519 keys are 32 bytes, got " + std::to_string(private_key.size()) +
                           " and " + std::to_string(public_key.size()));
  }
  Pkey ours(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, U(private_key),
                                         private_key.size()));
  Pkey theirs(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, U(public_key),
                                          public_key.size()));
  if (!ours || !theirs) return InvalidArgument(OpenSslError("X25519 key import"));
  PkeyCtx ctx(EVP_PKEY_CTX_new(ours.get(), nullptr));
  shared->assign(kKeyBytes, '\0');
  size_t length = kKeyBytes;
  // OpenSSL refuses low-order public keys (an all-zero shared secret) at derive time.
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) <= 0 ||
      EVP_PKEY_derive_set_peer(ctx.get(), theirs.get()) <= 0 ||
      EVP_PKEY_derive(ctx.get(), reinterpret_cast<unsigned char*>(shared->data()), &length) <= 0 ||
      length != kKeyBytes) {
    return InvalidArgument(OpenSslError("X25519 key agreement"));
  }
  return Status::Ok();
}

}  // namespace pccl::secure
