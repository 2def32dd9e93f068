// Thin wrappers over OpenSSL 3: SHA-256, HMAC-SHA-256, HKDF-SHA-256, AES-256-GCM,
// and the system CSPRNG. Nothing here allocates key material outside SecretBytes.
#ifndef CHUNKSTORE_CRYPTO_H_
#define CHUNKSTORE_CRYPTO_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "chunkstore/status.h"
#include "secret.h"

namespace chunkstore {

using Hash256 = std::array<uint8_t, 32>;

std::string ToHex(const uint8_t* p, size_t n);
inline std::string ToHex(const Hash256& h) { return ToHex(h.data(), h.size()); }
// Parses exactly 2*n lowercase/uppercase hex digits.
bool FromHex(std::string_view hex, uint8_t* out, size_t n);

void RandomBytes(void* out, size_t n);  // aborts if the CSPRNG fails

Hash256 Sha256(std::string_view data);

// Incremental SHA-256 (for blob digests computed while data streams in).
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  void Update(std::string_view data);
  Hash256 Finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// HMAC-SHA-256 with a fixed key; Compute() is thread-safe (no shared mutable state).
class Hmac256 {
 public:
  explicit Hmac256(std::string_view key);
  ~Hmac256();
  Hmac256(const Hmac256&) = delete;
  Hmac256& operator=(const Hmac256&) = delete;
  Hash256 Compute(std::string_view data) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// HKDF-SHA-256 (RFC 5869) expanding `ikm` into `out_len` bytes.
SecretBytes Hkdf(std::string_view ikm, std::string_view salt, std::string_view info,
                 size_t out_len);

// AES-256-GCM with a random 96-bit nonce per message.
// Sealed layout: nonce[12] | ciphertext | tag[16].
class Aead {
 public:
  static constexpr size_t kNonceSize = 12;
  static constexpr size_t kTagSize = 16;
  static constexpr size_t kOverhead = kNonceSize + kTagSize;

  explicit Aead(std::string_view key32);
  // Appends the sealed form of `plain` to *out.
  void Seal(std::string_view plain, std::string_view aad, std::string* out) const;
  // Opens a sealed message; Corruption if authentication fails (wrong key,
  // damaged bytes, or a different AAD). `what` names the object in the error.
  Status Open(std::string_view sealed, std::string_view aad, std::string* plain,
              std::string_view what) const;
  // The same into plain[0, sealed.size() - kOverhead): no resize, so the hot
  // read path decrypts into a buffer it reuses. Garbage in plain on failure.
  Status Open(std::string_view sealed, std::string_view aad, char* plain,
              std::string_view what) const;

 private:
  SecretBytes key_;
};

}  // namespace chunkstore

#endif  // CHUNKSTORE_CRYPTO_H_
