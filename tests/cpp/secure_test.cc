// secure/: OpenSSL's primitives as pccl uses them (known-answer vectors), and encrypted
// records: round trips over every cipher and record boundary, and refusal of records that
// were tampered with, replayed, reordered, truncated or oversized.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "pccl/secure/crypto.h"
#include "pccl/secure/records.h"

namespace pccl::secure {
namespace {

std::string Hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string Unhex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

TEST(CryptoTest, Sha256KnownAnswer) {
  EXPECT_EQ(Hex(Sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(CryptoTest, HmacSha256KnownAnswer) {  // RFC 4231, test case 2
  EXPECT_EQ(Hex(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(CryptoTest, HkdfKnownAnswer) {  // RFC 5869, test case 1
  std::string okm;
  ASSERT_TRUE(HkdfSha256(Unhex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
                         Unhex("000102030405060708090a0b0c"), Unhex("f0f1f2f3f4f5f6f7f8f9"), 42,
                         &okm)
                  .ok());
  EXPECT_EQ(Hex(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

TEST(CryptoTest, X25519AgreesAndRefusesBadKeys) {
  KeyPair a, b;
  ASSERT_TRUE(GenerateX25519(&a).ok());
  ASSERT_TRUE(GenerateX25519(&b).ok());
  std::string ab, ba;
  ASSERT_TRUE(X25519(a.private_key, b.public_key, &ab).ok());
  ASSERT_TRUE(X25519(b.private_key, a.public_key, &ba).ok());
  EXPECT_EQ(ab, ba);
  EXPECT_EQ(ab.size(), kKeyBytes);
  std::string shared;
  EXPECT_EQ(X25519(a.private_key, "short", &shared).code(), StatusCode::kInvalidArgument);
  // A low-order point (all zero) would give an all-zero secret: refused.
  EXPECT_EQ(X25519(a.private_key, std::string(32, '\0'), &shared).code(),
            StatusCode::kInvalidArgument);
}

TEST(CryptoTest, RandomBytesDiffer) {
  std::string a, b;
  ASSERT_TRUE(RandomBytes(32, &a).ok());
  ASSERT_TRUE(RandomBytes(32, &b).ok());
  EXPECT_NE(a, b);
  EXPECT_TRUE(ConstantTimeEqual(a, a));
  EXPECT_FALSE(ConstantTimeEqual(a, b));
  EXPECT_FALSE(ConstantTimeEqual(a, a.substr(1)));
}

const std::string kKey(32, 'k');

struct Pair {
  std::unique_ptr<RecordSealer> sealer;
  std::unique_ptr<RecordOpener> opener;
};

Pair MakePair(Cipher cipher) {
  Pair p;
  EXPECT_TRUE(RecordSealer::Create(cipher, kKey, &p.sealer).ok());
  EXPECT_TRUE(RecordOpener::Create(cipher, kKey, &p.opener).ok());
  return p;
}

class RecordsTest : public ::testing::TestWithParam<Cipher> {};

TEST_P(RecordsTest, RoundTripAcrossRecordBoundaries) {
  Pair p = MakePair(GetParam());
  std::string message(3 * kMaxRecordPayload + 17, '\0');
  for (size_t i = 0; i < message.size(); ++i) message[i] = static_cast<char>(i * 7 + 3);
  std::string wire;
  // Three iovecs that cut across record boundaries.
  struct iovec iov[3] = {{message.data(), 5},
                         {message.data() + 5, kMaxRecordPayload + 100},
                         {message.data() + 5 + kMaxRecordPayload + 100,
                          message.size() - 5 - kMaxRecordPayload - 100}};
  ASSERT_TRUE(p.sealer->Seal(iov, 3, &wire).ok());
  EXPECT_EQ(wire.size(), message.size() + 4 * kRecordOverhead);
  EXPECT_EQ(wire.find(message.substr(0, 64)), std::string::npos);  // it is encrypted
  // Fed in odd pieces, as a non-blocking reader gets them.
  std::string plain;
  for (size_t pos = 0; pos < wire.size(); pos += 1000) {
    ASSERT_TRUE(p.opener->Feed(std::string_view(wire).substr(pos, 1000), &plain).ok());
  }
  EXPECT_EQ(plain, message);
}

TEST_P(RecordsTest, TamperedRecordFailsAndStaysFailed) {
  Pair p = MakePair(GetParam());
  std::string wire;
  ASSERT_TRUE(p.sealer->Seal(std::string("gradients"), &wire).ok());
  wire[kRecordHeaderBytes + 2] ^= 1;
  std::string plain;
  EXPECT_EQ(p.opener->Feed(wire, &plain).code(), StatusCode::kDataLoss);
  EXPECT_TRUE(plain.empty());
  std::string next;
  ASSERT_TRUE(p.sealer->Seal(std::string("more"), &next).ok());
  EXPECT_EQ(p.opener->Feed(next, &plain).code(), StatusCode::kDataLoss);
}

TEST_P(RecordsTest, TamperedTagOrLengthFails) {
  for (size_t at : {size_t{0}, kRecordHeaderBytes + 4 + 3}) {
    Pair p = MakePair(GetParam());
    std::string wire;
    ASSERT_TRUE(p.sealer->Seal(std::string("1234"), &wire).ok());
    wire[at] ^= at == 0 ? 7 : 1;  // the length (4 -> 3: additional data) or the tag
    std::string plain;
    EXPECT_FALSE(p.opener->Feed(wire, &plain).ok()) << "byte " << at;
    EXPECT_TRUE(plain.empty());
  }
}

TEST_P(RecordsTest, ReplayedAndReorderedRecordsFail) {
  {
    Pair p = MakePair(GetParam());
    std::string first;
    ASSERT_TRUE(p.sealer->Seal(std::string("step 1"), &first).ok());
    std::string plain;
    ASSERT_TRUE(p.opener->Feed(first, &plain).ok());
    EXPECT_EQ(p.opener->Feed(first, &plain).code(), StatusCode::kDataLoss);  // replayed
  }
  {
    Pair p = MakePair(GetParam());
    std::string first, second;
    ASSERT_TRUE(p.sealer->Seal(std::string("step 1"), &first).ok());
    ASSERT_TRUE(p.sealer->Seal(std::string("step 2"), &second).ok());
    std::string plain;
    EXPECT_EQ(p.opener->Feed(second, &plain).code(), StatusCode::kDataLoss);  // reordered
  }
}

TEST_P(RecordsTest, WrongKeyFails) {
  std::unique_ptr<RecordSealer> sealer;
  std::unique_ptr<RecordOpener> opener;
  ASSERT_TRUE(RecordSealer::Create(GetParam(), kKey, &sealer).ok());
  ASSERT_TRUE(RecordOpener::Create(GetParam(), std::string(32, 'x'), &opener).ok());
  std::string wire, plain;
  ASSERT_TRUE(sealer->Seal(std::string("hello"), &wire).ok());
  EXPECT_EQ(opener->Feed(wire, &plain).code(), StatusCode::kDataLoss);
}

INSTANTIATE_TEST_SUITE_P(Ciphers, RecordsTest,
                         ::testing::Values(Cipher::kAes256Gcm, Cipher::kChaCha20Poly1305),
                         [](const auto& info) {
                           return info.param == Cipher::kAes256Gcm ? "Aes256Gcm" : "ChaCha20";
                         });

TEST(RecordsTest, OversizedOrEmptyRecordHeaderIsRefused) {
  uint8_t header[kRecordHeaderBytes] = {0, 0, 0, 0};
  size_t length = 0;
  EXPECT_EQ(RecordOpener::PayloadLength(header, &length).code(), StatusCode::kDataLoss);
  const uint32_t big = kMaxRecordPayload + 1;
  for (int i = 0; i < 4; ++i) header[i] = static_cast<uint8_t>(big >> (8 * i));
  EXPECT_EQ(RecordOpener::PayloadLength(header, &length).code(), StatusCode::kDataLoss);
}

TEST(RecordsTest, CipherAgreement) {
  EXPECT_EQ(AgreeCipher(Cipher::kAes256Gcm, Cipher::kAes256Gcm), Cipher::kAes256Gcm);
  EXPECT_EQ(AgreeCipher(Cipher::kAes256Gcm, Cipher::kChaCha20Poly1305), Cipher::kChaCha20Poly1305);
  EXPECT_EQ(AgreeCipher(Cipher::kChaCha20Poly1305, Cipher::kAes256Gcm), Cipher::kChaCha20Poly1305);
  std::unique_ptr<RecordSealer> sealer;
  EXPECT_EQ(RecordSealer::Create(Cipher::kNone, kKey, &sealer).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(RecordSealer::Create(Cipher::kAes256Gcm, "short", &sealer).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pccl::secure
