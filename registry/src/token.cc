#include "token.h"

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <boost/json.hpp>
#include <cstring>

#include "auth.h"

namespace cofferregistry {
namespace json = boost::json;
using chunkstore::Result;
using chunkstore::Status;

namespace {

constexpr int64_t kLeewayS = 60;  // clock skew tolerated on nbf and exp

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

bool IsEc(EVP_PKEY* k) { return EVP_PKEY_get_base_id(k) == EVP_PKEY_EC; }
const char* AlgOf(EVP_PKEY* k) { return IsEc(k) ? "ES256" : "RS256"; }

// The key id distribution (libtrust) expects: the first 240 bits of the SHA-256
// of the DER SubjectPublicKeyInfo, base32, in groups of four joined by ':'.
std::string KeyId(EVP_PKEY* k) {
  unsigned char* der = nullptr;
  int n = i2d_PUBKEY(k, &der);
  if (n <= 0) return "";
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(der, static_cast<size_t>(n), md);
  OPENSSL_free(der);
  static const char kB32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string b32;
  for (int bit = 0; bit < 240; bit += 5) {
    unsigned v = 0;
    for (int i = 0; i < 5; ++i) v = (v << 1) | ((md[(bit + i) / 8] >> (7 - (bit + i) % 8)) & 1);
    b32.push_back(kB32[v]);
  }
  std::string out;
  for (size_t i = 0; i < b32.size(); i += 4) out += (i ? ":" : "") + b32.substr(i, 4);
  return out;
}

// JWS ES256 signatures are r||s (32 bytes each); OpenSSL speaks DER.
std::string DerToRaw(const unsigned char* der, size_t n) {
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &der, static_cast<long>(n));
  if (!sig) return "";
  std::string raw(64, '\0');
  const BIGNUM *r, *s;
  ECDSA_SIG_get0(sig, &r, &s);
  BN_bn2binpad(r, reinterpret_cast<unsigned char*>(raw.data()), 32);
  BN_bn2binpad(s, reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
  ECDSA_SIG_free(sig);
  return raw;
}

std::string RawToDer(const std::string& raw) {
  if (raw.size() != 64) return "";
  auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  ECDSA_SIG* sig = ECDSA_SIG_new();
  ECDSA_SIG_set0(sig, BN_bin2bn(p, 32, nullptr), BN_bin2bn(p + 32, 32, nullptr));
  unsigned char* der = nullptr;
  int n = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (n <= 0) return "";
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return out;
}

std::string Sign(EVP_PKEY* k, const std::string& input) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t n = 0;
  std::string sig;
  if (EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, k) == 1 &&
      EVP_DigestSign(ctx, nullptr, &n, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size()) == 1) {
    sig.resize(n);
    auto* out = reinterpret_cast<unsigned char*>(sig.data());
    if (EVP_DigestSign(ctx, out, &n, reinterpret_cast<const unsigned char*>(input.data()),
                       input.size()) == 1)
      sig = IsEc(k) ? DerToRaw(out, n) : sig.substr(0, n);
    else
      sig.clear();
  }
  EVP_MD_CTX_free(ctx);
  return sig;
}

bool VerifySig(EVP_PKEY* k, const std::string& input, const std::string& sig) {
  std::string s = IsEc(k) ? RawToDer(sig) : sig;
  if (s.empty()) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok =
      EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, k) == 1 &&
      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(s.data()), s.size(),
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

// Every certificate's and public key's key in a PEM text.
Result<std::vector<Pkey>> LoadPublicKeys(const std::string& pem) {
  std::vector<Pkey> keys;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  char *name = nullptr, *header = nullptr;
  unsigned char* data = nullptr;
  long len = 0;
  while (PEM_read_bio(bio, &name, &header, &data, &len) == 1) {
    const unsigned char* p = data;
    EVP_PKEY* k = nullptr;
    if (std::strcmp(name, "CERTIFICATE") == 0) {
      if (X509* x = d2i_X509(nullptr, &p, len)) {
        k = X509_get_pubkey(x);
        X509_free(x);
      }
    } else if (std::strcmp(name, "PUBLIC KEY") == 0) {
      k = d2i_PUBKEY(nullptr, &p, len);
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    if (!k) continue;
    int id = EVP_PKEY_get_base_id(k);
    if (id == EVP_PKEY_EC || id == EVP_PKEY_RSA)
      keys.emplace_back(k);
    else
      EVP_PKEY_free(k);
  }
  BIO_free(bio);
  if (keys.empty())
    return Status::InvalidArgument("token certificates: no EC or RSA certificate or public key");
  return keys;
}

json::array ActionNames(unsigned a) {
  json::array out;
  if (a & kPull) out.emplace_back("pull");
  if (a & kPush) out.emplace_back("push");
  if (a & kDelete) out.emplace_back("delete");
  return out;
}

unsigned ParseActionList(const std::string& s) {
  unsigned a = 0;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    std::string tok = s.substr(start, comma == std::string::npos ? s.npos : comma - start);
    if (tok == "pull") a |= kPull;
    if (tok == "push") a |= kPush;
    if (tok == "delete") a |= kDelete;
    if (tok == "*") a |= kPull | kPush | kDelete;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return a;
}

Result<json::object> ParseJsonObject(const std::string& text, const char* what) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return Status::InvalidArgument(std::string("token: malformed ") + what);
  return v.as_object();
}

bool AudienceMatches(const json::object& c, const std::string& service) {
  auto it = c.find("aud");
  if (it == c.end()) return false;
  if (it->value().is_string()) return it->value().as_string() == service;
  if (!it->value().is_array()) return false;
  for (const auto& a : it->value().as_array())
    if (a.is_string() && a.as_string() == service) return true;
  return false;
}

Result<std::vector<TokenAccess>> AccessClaims(const json::object& c) {
  std::vector<TokenAccess> out;
  auto it = c.find("access");
  if (it == c.end() || it->value().is_null()) return out;
  if (!it->value().is_array()) return Status::InvalidArgument("token: `access` is not a list");
  for (const auto& e : it->value().as_array()) {
    const json::object* o = e.if_object();
    if (!o || !o->contains("type") || !o->contains("name") || !o->at("type").is_string() ||
        !o->at("name").is_string())
      return Status::InvalidArgument("token: malformed `access` entry");
    TokenAccess a{std::string(o->at("type").as_string()), std::string(o->at("name").as_string()),
                  0};
    if (auto acts = o->find("actions"); acts != o->end() && acts->value().is_array())
      for (const auto& x : acts->value().as_array())
        if (x.is_string()) a.actions |= ParseActionList(std::string(x.as_string()));
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace

struct TokenAuthority::Keys {
  Pkey signer;                // null when only verifying
  std::vector<Pkey> trusted;  // includes the signer's key
};

TokenAuthority::TokenAuthority(std::string issuer, std::string service)
    : issuer_(std::move(issuer)), service_(std::move(service)), keys_(new Keys) {}
TokenAuthority::~TokenAuthority() = default;

bool TokenAuthority::can_issue() const { return keys_->signer != nullptr; }

Result<std::unique_ptr<TokenAuthority>> TokenAuthority::Trusting(const std::string& pem,
                                                                 std::string issuer,
                                                                 std::string service) {
  std::unique_ptr<TokenAuthority> t(new TokenAuthority(std::move(issuer), std::move(service)));
  ASSIGN_OR_RETURN(t->keys_->trusted, LoadPublicKeys(pem));
  return t;
}

Result<std::unique_ptr<TokenAuthority>> TokenAuthority::Ephemeral(std::string issuer,
                                                                  std::string service) {
  std::unique_ptr<TokenAuthority> t(new TokenAuthority(std::move(issuer), std::move(service)));
  EVP_PKEY* k = EVP_EC_gen("P-256");
  if (!k) return Status::Unavailable("token: generate a P-256 signing key: OpenSSL failed");
  t->keys_->signer.reset(k);
  EVP_PKEY_up_ref(k);
  t->keys_->trusted.emplace_back(k);
  return t;
}

Result<std::string> TokenAuthority::Issue(const std::string& subject,
                                          const std::vector<TokenAccess>& access, int64_t now_s,
                                          int64_t ttl_s) const {
  if (!keys_->signer) return Status::FailedPrecondition("token: this registry issues no tokens");
  EVP_PKEY* k = keys_->signer.get();
  json::object header{{"typ", "JWT"}, {"alg", AlgOf(k)}, {"kid", KeyId(k)}};
  json::array acc;
  for (const auto& a : access)
    acc.push_back(
        json::object{{"type", a.type}, {"name", a.name}, {"actions", ActionNames(a.actions)}});
  unsigned char rnd[16];
  RAND_bytes(rnd, sizeof rnd);
  json::object claims{{"iss", issuer_},
                      {"sub", subject},
                      {"aud", service_},
                      {"exp", now_s + ttl_s},
                      {"nbf", now_s},
                      {"iat", now_s},
                      {"jti", Base64UrlEncode(std::string(reinterpret_cast<char*>(rnd), 16))},
                      {"access", std::move(acc)}};
  std::string input =
      Base64UrlEncode(json::serialize(header)) + "." + Base64UrlEncode(json::serialize(claims));
  std::string sig = Sign(k, input);
  if (sig.empty()) return Status::Unavailable("token: signing failed");
  return input + "." + Base64UrlEncode(sig);
}

Result<TokenClaims> TokenAuthority::Verify(const std::string& token, int64_t now_s) const {
  size_t d1 = token.find('.'), d2 = token.rfind('.');
  if (d1 == std::string::npos || d1 == d2) return Status::InvalidArgument("token: not a JWS");
  auto header = Base64UrlDecode(token.substr(0, d1));
  auto payload = Base64UrlDecode(token.substr(d1 + 1, d2 - d1 - 1));
  auto sig = Base64UrlDecode(token.substr(d2 + 1));
  if (!header || !payload || !sig) return Status::InvalidArgument("token: bad base64url");
  ASSIGN_OR_RETURN(json::object h, ParseJsonObject(*header, "header"));
  auto alg = h.find("alg");
  if (alg == h.end() || !alg->value().is_string())
    return Status::InvalidArgument("token: no algorithm");
  const std::string input = token.substr(0, d2);
  bool verified = false;
  for (const auto& k : keys_->trusted)  // "alg" must name the key's own algorithm
    if (alg->value().as_string() == AlgOf(k.get()) && VerifySig(k.get(), input, *sig)) {
      verified = true;
      break;
    }
  if (!verified) return Status::PermissionDenied("token: signature does not verify");
  ASSIGN_OR_RETURN(json::object c, ParseJsonObject(*payload, "claims"));
  auto str = [&](const char* k) {
    auto it = c.find(k);
    return it != c.end() && it->value().is_string() ? std::string(it->value().as_string()) : "";
  };
  auto num = [&](const char* k, int64_t dflt) {
    auto it = c.find(k);
    return it != c.end() && it->value().is_number() ? it->value().to_number<int64_t>() : dflt;
  };
  if (str("iss") != issuer_) return Status::PermissionDenied("token: wrong issuer");
  if (!AudienceMatches(c, service_)) return Status::PermissionDenied("token: wrong audience");
  if (now_s > num("exp", 0) + kLeewayS) return Status::PermissionDenied("token: expired");
  if (now_s + kLeewayS < num("nbf", 0)) return Status::PermissionDenied("token: not yet valid");
  TokenClaims out;
  out.subject = str("sub");
  ASSIGN_OR_RETURN(out.access, AccessClaims(c));
  return out;
}

unsigned TokenClaims::Granted(const std::string& type, const std::string& name) const {
  unsigned a = 0;
  for (const auto& x : access)
    if (x.type == type && x.name == name) a |= x.actions;
  return a;
}

std::optional<TokenAccess> ParseScope(const std::string& scope) {
  size_t first = scope.find(':'), last = scope.rfind(':');
  if (first == std::string::npos || first == last || first == 0 || last == first + 1)
    return std::nullopt;
  return TokenAccess{scope.substr(0, first), scope.substr(first + 1, last - first - 1),
                     ParseActionList(scope.substr(last + 1))};
}

std::string FormatScope(const TokenAccess& a) {
  std::string acts;
  for (const auto& n : ActionNames(a.actions))
    acts += (acts.empty() ? "" : ",") + std::string(n.as_string());
  return a.type + ":" + a.name + ":" + acts;
}

std::string Base64UrlEncode(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return out;
}

std::optional<std::string> Base64UrlDecode(const std::string& in) {
  std::string s = in;
  for (char& c : s) {
    if (c == '+' || c == '/' || c == '=') return std::nullopt;
    c = c == '-' ? '+' : c == '_' ? '/' : c;
  }
  if (s.size() % 4 == 1) return std::nullopt;
  s.append((4 - s.size() % 4) % 4, '=');
  return Base64Decode(s);
}

}  // namespace cofferregistry
