// auth/handshake.h: the handshake that proves the run secret, driven message by message
// (who refuses what, and why), and an encrypted net::Socket pair after it.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstdlib>
#include <thread>

#include "pccl/auth/handshake.h"
#include "pccl/net/socket.h"
#include "pccl/net/wire.h"
#include "pccl/proto/messages.h"
#include "pccl/secure/crypto.h"

namespace pccl::auth {
namespace {

const std::string kSecret = "correct horse battery staple";

RunAuth Auth(const std::string& secret, const std::string& transport = "plain") {
  RunAuth auth;
  EXPECT_TRUE(MakeRunAuth(secret, transport, &auth).ok());
  return auth;
}

proto::Greeting RingGreeting() {
  proto::Greeting g;
  g.purpose = static_cast<uint16_t>(proto::Kind::kP2PHello);
  g.from_peer_id = 11;
  g.to_peer_id = 22;
  g.epoch = 3;
  g.slot = 1;
  return g;
}

// One complete exchange; returns the acceptor's verdict on the proof.
struct Exchange {
  Status dialer_status;    // the dialer's verdict on the challenge
  Status acceptor_status;  // the acceptor's verdict on greeting or proof
  Established dialer, acceptor;
};

Exchange Handshake(const RunAuth& dialer_auth, const RunAuth& acceptor_auth,
             const std::string& dialer_pair = "", const std::string& acceptor_pair = "") {
  Exchange x;
  Dialer dialer(dialer_auth, RingGreeting());
  Acceptor acceptor(acceptor_auth);
  std::string greeting, challenge, proof;
  EXPECT_TRUE(dialer.MakeGreeting(&greeting).ok());
  proto::Greeting seen;
  x.acceptor_status = acceptor.OnGreeting(greeting, &seen);
  if (!x.acceptor_status.ok()) return x;
  EXPECT_EQ(seen.from_peer_id, 11u);
  EXPECT_TRUE(acceptor.MakeChallenge(acceptor_pair, &challenge).ok());
  x.dialer_status = dialer.OnChallenge(challenge, dialer_pair, &proof, &x.dialer);
  if (!x.dialer_status.ok()) return x;
  x.acceptor_status = acceptor.OnProof(proof, &x.acceptor);
  return x;
}

TEST(AuthTest, SameSecretSucceeds) {
  RunAuth auth = Auth(kSecret);
  Exchange x = Handshake(auth, auth);
  EXPECT_TRUE(x.dialer_status.ok()) << x.dialer_status.ToString();
  EXPECT_TRUE(x.acceptor_status.ok()) << x.acceptor_status.ToString();
  EXPECT_EQ(x.dialer.cipher, secure::Cipher::kNone);
  EXPECT_EQ(x.dialer.sealer, nullptr);
}

TEST(AuthTest, WrongSecretIsRefusedByTheDialerFirst) {
  // The acceptor proves first: a dialer with another secret refuses the acceptor's proof
  // and never sends one of its own.
  Exchange x = Handshake(Auth(kSecret), Auth("another secret, also long"));
  EXPECT_EQ(x.dialer_status.code(), StatusCode::kUnauthenticated);
}

TEST(AuthTest, NoSecretAgainstASecretIsRefused) {
  RunAuth none;
  ASSERT_TRUE(MakeRunAuth("", "", &none).ok());
  ASSERT_FALSE(none.enabled());
  Acceptor acceptor(none);
  Dialer dialer(Auth(kSecret), RingGreeting());
  std::string greeting;
  ASSERT_TRUE(dialer.MakeGreeting(&greeting).ok());
  proto::Greeting seen;
  EXPECT_EQ(acceptor.OnGreeting(greeting, &seen).code(), StatusCode::kUnauthenticated);
}

TEST(AuthTest, ShortSecretsAndBadTransportsAreRefused) {
  RunAuth auth;
  EXPECT_EQ(MakeRunAuth("too short", "", &auth).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeRunAuth(kSecret, "tls", &auth).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeRunAuth("", "encrypted", &auth).code(), StatusCode::kInvalidArgument);
}

TEST(AuthTest, SecretComesFromTheEnvironment) {
  ::setenv("PCCL_RUN_SECRET", kSecret.c_str(), 1);
  RunAuth from_env;
  ASSERT_TRUE(MakeRunAuth("", "", &from_env).ok());
  ::unsetenv("PCCL_RUN_SECRET");
  EXPECT_EQ(from_env.auth_key, Auth(kSecret).auth_key);
  char path[] = "/tmp/pccl-secret-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  std::string line = kSecret + "\n";
  ASSERT_EQ(::write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
  ::close(fd);
  ::setenv("PCCL_RUN_SECRET_FILE", path, 1);
  RunAuth from_file;
  Status st = MakeRunAuth("", "", &from_file);
  ::unsetenv("PCCL_RUN_SECRET_FILE");
  ::unlink(path);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(from_file.auth_key, Auth(kSecret).auth_key);  // the newline is not part of it
}

TEST(AuthTest, TransportMismatchIsRefused) {
  Exchange x = Handshake(Auth(kSecret, "plain"), Auth(kSecret, "encrypted"));
  EXPECT_EQ(x.acceptor_status.code(), StatusCode::kUnauthenticated);
  EXPECT_NE(x.acceptor_status.message().find("encrypted"), std::string::npos);
}

TEST(AuthTest, ReplayedProofIsRefused) {
  RunAuth auth = Auth(kSecret);
  // Record a whole successful exchange...
  Dialer dialer(auth, RingGreeting());
  Acceptor acceptor(auth);
  std::string greeting, challenge, proof;
  ASSERT_TRUE(dialer.MakeGreeting(&greeting).ok());
  proto::Greeting seen;
  ASSERT_TRUE(acceptor.OnGreeting(greeting, &seen).ok());
  ASSERT_TRUE(acceptor.MakeChallenge("", &challenge).ok());
  Established e;
  ASSERT_TRUE(dialer.OnChallenge(challenge, "", &proof, &e).ok());
  ASSERT_TRUE(acceptor.OnProof(proof, &e).ok());
  // ...and replay the greeting and proof against a fresh acceptor: its nonce is new.
  Acceptor fresh(auth);
  ASSERT_TRUE(fresh.OnGreeting(greeting, &seen).ok());
  ASSERT_TRUE(fresh.MakeChallenge("", &challenge).ok());
  EXPECT_EQ(fresh.OnProof(proof, &e).code(), StatusCode::kUnauthenticated);
}

TEST(AuthTest, ReflectedChallengeIsRefused) {
  // An attacker answers a dialer's Greeting with a Challenge whose proof is the dialer's
  // own role's: the two roles derive different proofs.
  RunAuth auth = Auth(kSecret);
  Dialer dialer(auth, RingGreeting());
  std::string greeting, challenge_payload, proof;
  ASSERT_TRUE(dialer.MakeGreeting(&greeting).ok());
  Acceptor acceptor(auth);
  proto::Greeting seen;
  ASSERT_TRUE(acceptor.OnGreeting(greeting, &seen).ok());
  ASSERT_TRUE(acceptor.MakeChallenge("", &challenge_payload).ok());
  proto::Challenge challenge;
  ASSERT_TRUE(proto::Decode(challenge_payload, &challenge).ok());
  // The dialer's proof for this transcript, as an eavesdropper would see it.
  Established e;
  ASSERT_TRUE(dialer.OnChallenge(challenge_payload, "", &proof, &e).ok());
  proto::Proof dialer_proof;
  ASSERT_TRUE(proto::Decode(proof, &dialer_proof).ok());
  challenge.proof = dialer_proof.proof;  // reflect it as the acceptor's
  Dialer victim(auth, RingGreeting());
  std::string victim_greeting;
  ASSERT_TRUE(victim.MakeGreeting(&victim_greeting).ok());
  EXPECT_EQ(victim.OnChallenge(proto::Encode(challenge), "", &proof, &e).code(),
            StatusCode::kUnauthenticated);
}

TEST(AuthTest, RedirectedGreetingDerivesOtherProofs) {
  // A Greeting whose addressee was changed on the way (to reach another peer, which checks
  // the addressee itself in link/listener.cc): the proofs cover what the dialer sent, so
  // they disagree.
  RunAuth auth = Auth(kSecret);
  Dialer dialer(auth, RingGreeting());
  std::string greeting, challenge, proof;
  ASSERT_TRUE(dialer.MakeGreeting(&greeting).ok());
  proto::Greeting altered;
  ASSERT_TRUE(proto::Decode(greeting, &altered).ok());
  altered.to_peer_id = 33;
  Acceptor acceptor(auth);
  proto::Greeting seen;
  ASSERT_TRUE(acceptor.OnGreeting(proto::Encode(altered), &seen).ok());
  ASSERT_TRUE(acceptor.MakeChallenge("", &challenge).ok());
  Established e;
  EXPECT_EQ(dialer.OnChallenge(challenge, "", &proof, &e).code(), StatusCode::kUnauthenticated);
}

TEST(AuthTest, DowngradedTransportIsRefused) {
  // An encrypted dialer whose Greeting is rewritten to plain on the way: the acceptor (also
  // plain, say) would agree, but the proofs cover the transport the dialer sent.
  RunAuth encrypted = Auth(kSecret, "encrypted");
  Dialer dialer(encrypted, RingGreeting());
  std::string greeting, challenge, proof;
  ASSERT_TRUE(dialer.MakeGreeting(&greeting).ok());
  proto::Greeting altered;
  ASSERT_TRUE(proto::Decode(greeting, &altered).ok());
  altered.transport = 0;
  altered.cipher = 0;
  RunAuth plain = Auth(kSecret, "plain");
  Acceptor acceptor(plain);
  proto::Greeting seen;
  ASSERT_TRUE(acceptor.OnGreeting(proto::Encode(altered), &seen).ok());
  ASSERT_TRUE(acceptor.MakeChallenge("", &challenge).ok());
  Established e;
  EXPECT_FALSE(dialer.OnChallenge(challenge, "", &proof, &e).ok());
}

TEST(AuthTest, PeerToPeerProofsNeedThePairSecret) {
  // A member with the run secret but without the named peer's private key derives another
  // pair secret, and its proof fails.
  secure::KeyPair a, b, mallory;
  ASSERT_TRUE(secure::GenerateX25519(&a).ok());
  ASSERT_TRUE(secure::GenerateX25519(&b).ok());
  ASSERT_TRUE(secure::GenerateX25519(&mallory).ok());
  std::string ab, ba, mb;
  ASSERT_TRUE(secure::X25519(a.private_key, b.public_key, &ab).ok());
  ASSERT_TRUE(secure::X25519(b.private_key, a.public_key, &ba).ok());
  ASSERT_TRUE(secure::X25519(mallory.private_key, b.public_key, &mb).ok());
  RunAuth auth = Auth(kSecret);
  EXPECT_TRUE(Handshake(auth, auth, ab, ba).dialer_status.ok());
  EXPECT_EQ(Handshake(auth, auth, mb, ba).dialer_status.code(), StatusCode::kUnauthenticated);
}

TEST(AuthTest, EncryptedSocketsCarryTheStreamAndRefuseTampering) {
  RunAuth auth = Auth(kSecret, "encrypted");
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
  net::Socket dial_end(fds[0], "dialer"), accept_end(fds[1], "acceptor");
  Status accepted;
  proto::Greeting seen;
  std::thread acceptor([&] {
    net::FrameHeader header;
    std::string payload;
    accepted = net::RecvFrame(accept_end, net::kMaxHelloPayload, Deadline::In(std::chrono::seconds(5)),
                              &header, &payload);
    if (accepted.ok()) {
      accepted = AcceptHandshake(accept_end, auth, payload, nullptr,
                                 Deadline::In(std::chrono::seconds(5)), &seen);
    }
  });
  Status dialed = DialHandshake(dial_end, auth, RingGreeting(), "", Deadline::In(std::chrono::seconds(5)));
  acceptor.join();
  ASSERT_TRUE(dialed.ok()) << dialed.ToString();
  ASSERT_TRUE(accepted.ok()) << accepted.ToString();
  ASSERT_TRUE(dial_end.encrypted());
  ASSERT_TRUE(accept_end.encrypted());
  // A payload bigger than a record, both ways, read in odd sizes.
  std::string big(200000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i % 251);
  std::thread sender([&] {
    EXPECT_TRUE(dial_end.SendAll(big.data(), big.size(), Deadline::In(std::chrono::seconds(5))).ok());
  });
  std::string got(big.size(), '\0');
  size_t pos = 0;
  for (size_t piece : {size_t{3}, size_t{70000}, size_t{1}, big.size() - 70004}) {
    ASSERT_TRUE(accept_end.RecvAll(got.data() + pos, piece, Deadline::In(std::chrono::seconds(5))).ok());
    pos += piece;
  }
  sender.join();
  EXPECT_EQ(got, big);
  // A byte flipped on the wire (written past the sealer with the raw fd) fails the reader.
  const char junk[40] = {16, 0, 0, 0};
  ASSERT_EQ(::write(dial_end.fd(), junk, sizeof(junk)), static_cast<ssize_t>(sizeof(junk)));
  char one;
  Status tampered = accept_end.RecvAll(&one, 1, Deadline::In(std::chrono::seconds(5)));
  EXPECT_EQ(tampered.code(), StatusCode::kDataLoss) << tampered.ToString();
}

}  // namespace
}  // namespace pccl::auth
