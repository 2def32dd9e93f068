#include "crypto.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstdio>
#include <cstdlib>

namespace chunkstore {

std::string ToHex(const uint8_t* p, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = kDigits[p[i] >> 4];
    s[2 * i + 1] = kDigits[p[i] & 15];
  }
  return s;
}

static int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool FromHex(std::string_view hex, uint8_t* out, size_t n) {
  if (hex.size() != 2 * n) return false;
  for (size_t i = 0; i < n; ++i) {
    int hi = HexVal(hex[2 * i]), lo = HexVal(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

void RandomBytes(void* out, size_t n) {
  if (RAND_bytes(static_cast<unsigned char*>(out), static_cast<int>(n)) != 1) {
    std::fprintf(stderr, "coffer: the system random generator failed\n");
    std::abort();  // continuing would risk nonce reuse
  }
}

Hash256 Sha256(std::string_view data) {
  Hash256 h;
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), h.data());
  return h;
}

struct Sha256Stream::Impl {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

Sha256Stream::Sha256Stream() : impl_(new Impl) {
  EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr);
}
Sha256Stream::~Sha256Stream() = default;
void Sha256Stream::Update(std::string_view data) {
  EVP_DigestUpdate(impl_->ctx, data.data(), data.size());
}
Hash256 Sha256Stream::Finish() {
  Hash256 h;
  unsigned int len = 0;
  EVP_DigestFinal_ex(impl_->ctx, h.data(), &len);
  return h;
}

// One prepared MAC context per key; each Compute() dups it, which is cheaper than
// re-deriving the HMAC pads and keeps Compute() free of shared mutable state.
struct Hmac256::Impl {
  EVP_MAC* mac = nullptr;
  EVP_MAC_CTX* base = nullptr;
  ~Impl() {
    EVP_MAC_CTX_free(base);
    EVP_MAC_free(mac);
  }
};

Hmac256::Hmac256(std::string_view key) : impl_(new Impl) {
  impl_->mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  impl_->base = EVP_MAC_CTX_new(impl_->mac);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  EVP_MAC_init(impl_->base, reinterpret_cast<const unsigned char*>(key.data()), key.size(), params);
}
Hmac256::~Hmac256() = default;

Hash256 Hmac256::Compute(std::string_view data) const {
  Hash256 h;
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(impl_->base);
  size_t len = 0;
  EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  EVP_MAC_final(ctx, h.data(), &len, h.size());
  EVP_MAC_CTX_free(ctx);
  return h;
}

SecretBytes Hkdf(std::string_view ikm, std::string_view salt, std::string_view info,
                 size_t out_len) {
  SecretBytes out(out_len);
  EVP_PKEY_CTX* pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  bool ok = pctx && EVP_PKEY_derive_init(pctx) > 0 &&
            EVP_PKEY_CTX_set_hkdf_md(pctx, EVP_sha256()) > 0 &&
            EVP_PKEY_CTX_set1_hkdf_salt(pctx, reinterpret_cast<const unsigned char*>(salt.data()),
                                        static_cast<int>(salt.size())) > 0 &&
            EVP_PKEY_CTX_set1_hkdf_key(pctx, reinterpret_cast<const unsigned char*>(ikm.data()),
                                       static_cast<int>(ikm.size())) > 0 &&
            EVP_PKEY_CTX_add1_hkdf_info(pctx, reinterpret_cast<const unsigned char*>(info.data()),
                                        static_cast<int>(info.size())) > 0;
  size_t len = out_len;
  ok = ok && EVP_PKEY_derive(pctx, out.data(), &len) > 0 && len == out_len;
  EVP_PKEY_CTX_free(pctx);
  if (!ok) {
    std::fprintf(stderr, "coffer: HKDF failed\n");
    std::abort();
  }
  return out;
}

Aead::Aead(std::string_view key32) : key_(key32.data(), key32.size()) {}

void Aead::Seal(std::string_view plain, std::string_view aad, std::string* out) const {
  size_t base = out->size();
  out->resize(base + kNonceSize + plain.size() + kTagSize);
  auto* p = reinterpret_cast<unsigned char*>(out->data()) + base;
  RandomBytes(p, kNonceSize);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0;
  EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key_.data(), p);
  if (!aad.empty())
    EVP_EncryptUpdate(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                      static_cast<int>(aad.size()));
  EVP_EncryptUpdate(ctx, p + kNonceSize, &len, reinterpret_cast<const unsigned char*>(plain.data()),
                    static_cast<int>(plain.size()));
  EVP_EncryptFinal_ex(ctx, p + kNonceSize + len, &len);
  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kTagSize, p + kNonceSize + plain.size());
  EVP_CIPHER_CTX_free(ctx);
}

Status Aead::Open(std::string_view sealed, std::string_view aad, std::string* plain,
                  std::string_view what) const {
  plain->resize(sealed.size() < kOverhead ? 0 : sealed.size() - kOverhead);
  Status st = Open(sealed, aad, plain->data(), what);
  if (!st.ok()) plain->clear();
  return st;
}

Status Aead::Open(std::string_view sealed, std::string_view aad, char* plain,
                  std::string_view what) const {
  if (sealed.size() < kOverhead)
    return Status::Corruption("decrypt " + std::string(what) + ": sealed data too short");
  const auto* p = reinterpret_cast<const unsigned char*>(sealed.data());
  size_t n = sealed.size() - kOverhead;
  auto* out = reinterpret_cast<unsigned char*>(plain);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0;
  EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key_.data(), p);
  if (!aad.empty())
    EVP_DecryptUpdate(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                      static_cast<int>(aad.size()));
  EVP_DecryptUpdate(ctx, out, &len, p + kNonceSize, static_cast<int>(n));
  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kTagSize,
                      const_cast<unsigned char*>(p + kNonceSize + n));
  int ok = EVP_DecryptFinal_ex(ctx, out + len, &len);
  EVP_CIPHER_CTX_free(ctx);
  if (ok <= 0)
    return Status::Corruption("decrypt " + std::string(what) +
                              ": authentication failed (damaged data or wrong key)");
  return Status::OK();
}

}  // namespace chunkstore
