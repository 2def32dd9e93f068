// Bearer token authentication as docker expects it (the Docker Registry token
// spec, which the OCI distribution spec leaves to the implementation): a client
// refused with `WWW-Authenticate: Bearer realm=...,service=...,scope=...` asks the
// realm for a token covering the scope and retries with `Authorization: Bearer`.
//
// Tokens are JWTs (compact JWS) signed ES256 (P-256 keys) or RS256 (RSA keys):
//   header  {"typ":"JWT","alg":"ES256","kid":"<key id>"}
//   claims  {"iss","sub","aud","exp","nbf","iat","jti",
//            "access":[{"type":"repository","name":"library/x","actions":["pull","push"]}]}
// A token is accepted when its signature verifies under one of the trusted keys,
// `iss` and `aud` match, and now is within [nbf - 60 s, exp + 60 s].
//
// Two ways to run: trust an external token server (its certificates or public
// keys in a PEM file), or let the registry issue tokens itself at /token from
// an ephemeral key generated at start (never written anywhere; tokens die with
// the process and clients simply fetch new ones).
#ifndef COFFER_REGISTRY_TOKEN_H_
#define COFFER_REGISTRY_TOKEN_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "chunkstore/status.h"

namespace cofferregistry {

// One granted (or requested) scope: "repository:library/x:pull,push" is
// {"repository", "library/x", kPull|kPush}; "registry:catalog:*" is
// {"registry", "catalog", all actions}.
struct TokenAccess {
  std::string type, name;
  unsigned actions = 0;  // Action bits (auth.h)
};

// Parses a scope parameter ("type:name:actions"; name may contain ':'). Unknown
// action names are ignored; nullopt when malformed.
std::optional<TokenAccess> ParseScope(const std::string& scope);
// "repository:<name>:pull,push" for a challenge.
std::string FormatScope(const TokenAccess& a);

struct TokenClaims {
  std::string subject;  // the user the token was issued to ("" anonymous)
  std::vector<TokenAccess> access;
  // The actions the token grants on (type, name).
  unsigned Granted(const std::string& type, const std::string& name) const;
};

class TokenAuthority {
 public:
  // Verifies tokens from an external server: `pem` holds certificates and/or
  // public keys (P-256 EC or RSA). No Issue().
  static chunkstore::Result<std::unique_ptr<TokenAuthority>> Trusting(const std::string& pem,
                                                                      std::string issuer,
                                                                      std::string service);
  // Issues and verifies its own tokens with a fresh P-256 key.
  static chunkstore::Result<std::unique_ptr<TokenAuthority>> Ephemeral(std::string issuer,
                                                                       std::string service);
  ~TokenAuthority();

  bool can_issue() const;
  const std::string& service() const { return service_; }
  const std::string& issuer() const { return issuer_; }

  // A signed token for `subject` granting `access`, valid `ttl_s` seconds.
  chunkstore::Result<std::string> Issue(const std::string& subject,
                                        const std::vector<TokenAccess>& access, int64_t now_s,
                                        int64_t ttl_s) const;
  // The claims of a valid token; InvalidArgument/PermissionDenied saying why not.
  chunkstore::Result<TokenClaims> Verify(const std::string& token, int64_t now_s) const;

 private:
  struct Keys;
  TokenAuthority(std::string issuer, std::string service);
  std::string issuer_, service_;
  std::unique_ptr<Keys> keys_;
};

// base64url without padding (RFC 7515 section 2).
std::string Base64UrlEncode(const std::string& in);
std::optional<std::string> Base64UrlDecode(const std::string& in);

}  // namespace cofferregistry

#endif  // COFFER_REGISTRY_TOKEN_H_
