// The coffer OCI registry: an OCI Distribution v1.1 (and Docker Registry v2)
// HTTP server over the coffer mount. It uses only POSIX file calls under
// `root` (/blobs, /uploads, /repos; see docs/fs.md) and holds no key material.
// docs/registry.md describes the endpoints, configuration and auth.
#ifndef COFFER_REGISTRY_SERVER_H_
#define COFFER_REGISTRY_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "chunkstore/status.h"

namespace cofferregistry {

struct RegistryOptions {
  std::string listen = "127.0.0.1:5000";  // host:port; port 0 picks a free port
  std::string root;                       // the mount point (REQUIRED)
  int threads = 4;                        // I/O threads
  bool read_only = false;                 // pushes and deletes get 405 UNSUPPORTED
  bool delete_enabled = true;             // DELETE of manifests, tags and blobs
  std::string htpasswd;                   // bcrypt htpasswd file; empty: no auth
  std::string access;                     // per-repository permissions file; empty: every
                                          // authenticated user may pull, push, delete
  std::string realm = "coffer";           // Basic realm in WWW-Authenticate
  // Bearer token auth (docs/registry.md): `token` makes the registry issue tokens
  // itself at /token (users from htpasswd, rights from access), signed by a key
  // generated at start and never stored; `token_certs` (PEM certificates or public
  // keys) trusts an external token server at `token_realm` instead.
  bool token = false;
  std::string token_realm;
  std::string token_certs;
  std::string token_service = "coffer";
  std::string token_issuer = "coffer";
  // TLS: PEM certificate chain and private key. Both empty: plain HTTP.
  std::string tls_cert, tls_key;
  uint64_t max_manifest_bytes = 4 << 20;  // larger manifests get 413
  uint32_t max_header_bytes = 64 << 10;   // larger request heads get 431
  uint32_t read_timeout_ms = 60'000;      // a client that sends nothing this long is dropped
  uint32_t idle_timeout_ms = 120'000;     // keep-alive connections idle this long are closed
  // Verify sha256 in the registry before publishing an upload. Needed only when
  // `root` is not a coffer mount (a plain directory, for tests and development);
  // the mount verifies on rename by itself. Auto: detected from `root`.
  enum class Verify { kAuto, kAlways, kNever } verify = Verify::kAuto;
};

// What a garbage collection did (docs/registry.md, "Garbage collection").
struct RegistryGcReport {
  uint64_t manifests = 0;      // manifests read (every revision of every repository)
  uint64_t blobs_kept = 0;     // blobs some manifest references
  uint64_t blobs_recent = 0;   // unreferenced, but linked within the grace period
  uint64_t blobs_deleted = 0;  // unreferenced and older: deleted from /blobs
  uint64_t bytes_deleted = 0;
  uint64_t links_removed = 0;  // repository links to the deleted blobs
};

// A running registry. Start() returns once the socket listens; requests are
// served on `threads` threads until Stop() or destruction. Thread-safe.
class Registry {
 public:
  static chunkstore::Result<std::unique_ptr<Registry>> Start(const RegistryOptions& opts);
  virtual ~Registry() = default;
  // Stops accepting, closes every connection and joins the threads. Idempotent.
  virtual void Stop() = 0;
  // The address actually listened on, "127.0.0.1:5000".
  virtual std::string address() const = 0;
  // Deletes every blob that no manifest of any repository references and that
  // no repository has linked for `grace_s` seconds (pushes in progress link
  // their layers before their manifest arrives). Pushes and pulls go on; only
  // manifest pushes, blob commits and deletions wait while it runs. Blobs the
  // registry never linked (put there by other tools) are never touched.
  virtual chunkstore::Result<RegistryGcReport> CollectGarbage(int64_t grace_s) = 0;

 protected:
  Registry() = default;
};

}  // namespace cofferregistry

#endif  // COFFER_REGISTRY_SERVER_H_
