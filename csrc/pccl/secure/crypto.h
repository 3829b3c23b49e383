// The cryptographic primitives pccl uses, every one from OpenSSL's libcrypto (none is
// written here): random bytes, SHA-256, HMAC-SHA256, HKDF-SHA256 (RFC 5869), X25519 key
// agreement (RFC 7748) and constant-time comparison. Byte strings are std::string.
//
// Thread-safety: plain functions, safe from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "pccl/common/status.h"

namespace pccl::secure {

inline constexpr size_t kKeyBytes = 32;        // symmetric keys, HMAC keys
inline constexpr size_t kNonceBytes = 32;      // handshake nonces
inline constexpr size_t kMacBytes = 32;        // HMAC-SHA256 outputs (handshake proofs)
inline constexpr size_t kPublicKeyBytes = 32;  // X25519 public keys
inline constexpr size_t kDigestBytes = 32;     // SHA-256

// `n` bytes from OpenSSL's CSPRNG; Internal if it cannot deliver (it never should).
Status RandomBytes(size_t n, std::string* out);
std::string Sha256(std::string_view data);
std::string HmacSha256(std::string_view key, std::string_view data);
// HKDF-SHA256: `n` bytes (at most 255 * 32) of key material from `ikm`.
Status HkdfSha256(std::string_view ikm, std::string_view salt, std::string_view info, size_t n,
                  std::string* out);
// Equal length and equal bytes, in time that does not depend on where they differ.
bool ConstantTimeEqual(std::string_view a, std::string_view b);

struct KeyPair {
  std::string private_key;  // 32 bytes; never leaves the process
  std::string public_key;   // 32 bytes
};
Status GenerateX25519(KeyPair* out);
// The X25519 shared secret of our `private_key` and their `public_key` (InvalidArgument for
// a malformed or low-order public key).
Status X25519(std::string_view private_key, std::string_view public_key, std::string* shared);

}  // namespace pccl::secure
