// Handler: the registry protocol as a function from request to response. It knows
// no sockets (server.cc does the I/O) and touches files only through Storage.
// Every input is validated before it is used; bad input gets the spec's status
// and error code, never a 500. Thread-safe: any number of requests at once.
#ifndef COFFER_REGISTRY_HANDLER_H_
#define COFFER_REGISTRY_HANDLER_H_

#include <cstdint>
#include <map>
#include <shared_mutex>
#include <string>
#include <vector>

#include "auth.h"
#include "http.h"
#include "registry/server.h"
#include "storage.h"
#include "token.h"

namespace cofferregistry {

struct HandlerOptions {
  bool read_only = false;
  bool delete_enabled = true;
  uint64_t max_manifest_bytes = 4 << 20;
  std::string realm = "coffer";
  // Bearer token auth (token.h) instead of Basic when set; not owned.
  const TokenAuthority* token = nullptr;
  std::string token_realm;  // empty: this registry's own /token, named after the Host header
  int64_t token_ttl_s = 300;
  bool tls = false;  // for URLs this registry names itself (the token realm)
};

// An OCI error response: {"errors":[{"code":..,"message":..,"detail":..}]}.
Response ErrorResponse(int status, const std::string& code, const std::string& message,
                       const std::string& detail = "");

class Handler {
 public:
  // `storage` and `auth` (null: no auth) must outlive the handler.
  Handler(Storage* storage, Auth* auth, HandlerOptions opts);

  Dispatch Handle(const Request& req);

 private:
  // A parsed route below /v2/.
  struct Route {
    enum Kind { kBase, kCatalog, kTags, kManifest, kBlob, kUploads, kUpload, kReferrers } kind;
    std::string name;  // repository (validated)
    std::string ref;   // tag, digest or upload id
    std::map<std::string, std::string> query;
  };

  Dispatch Route_(const Request& req, const Route& r);
  // Authentication and authorization; sets *user. A response when refused.
  std::optional<Response> Check(const Request& req, const std::string& repo, unsigned actions,
                                std::string* user);
  // `need`: {"repository", name, actions}, {"registry", "catalog", kPull}, or
  // type "" for /v2/ (any valid token).
  std::optional<Response> CheckToken(const Request& req, const TokenAccess& need,
                                     std::string* user);
  // GET /token: the built-in token server (handler_token.cc).
  Response IssueToken(const Request& req, const std::string& query);

  Response Catalog(const Request& req, const Route& r, const std::string& user);
  Response TagsList(const Route& r);

  // Blobs and uploads (handler_blobs.cc).
  Response GetBlob(const Request& req, const Route& r);
  Response DeleteBlob(const Route& r);
  Dispatch StartUpload(const Request& req, const Route& r, const std::string& user);
  Dispatch PatchUpload(const Request& req, const Route& r);
  Dispatch PutUpload(const Request& req, const Route& r);
  Response UploadStatus(const Route& r);
  Response CancelUpload(const Route& r);

  // Manifests and referrers (handler_manifests.cc).
  Response GetManifest(const Request& req, const Route& r);
  Dispatch PutManifest(const Request& req, const Route& r);
  Response StoreManifest(const std::string& name, const std::string& ref,
                         const std::string& content_type, const std::string& body);
  Response DeleteManifest(const Route& r);
  Response Referrers(const Route& r);

 public:
  // Internal helpers shared by the handler's translation units.
  bool BlobLinked(const std::string& name, const std::string& hex);
  bool RevisionExists(const std::string& name, const std::string& hex);
  bool RepoExists(const std::string& name);
  Status LinkBlob(const std::string& name, const std::string& hex);  // not synced
  // Publishes upload `id` as `digest` and links it into `name` (201, or the error).
  Response FinishUpload(const std::string& name, const std::string& id, const std::string& digest);
  Storage* storage() { return storage_; }
  // Every repository below /repos (directories holding _manifests or _layers).
  std::vector<std::string> ListRepos();
  // The registry's garbage collection (handler_gc.cc; see Registry::CollectGarbage).
  chunkstore::Result<RegistryGcReport> CollectGarbage(int64_t grace_s, int64_t now_s);
  // Held shared by every request that links a blob or stores a manifest, and
  // exclusively by the garbage collection, so a manifest is never stored over
  // a blob being deleted, nor a link refreshed behind the collector's back.
  std::shared_mutex& gc_mutex() { return gc_mu_; }
  const HandlerOptions& options() const { return opts_; }

 private:
  Storage* const storage_;
  Auth* const auth_;
  const HandlerOptions opts_;
  std::shared_mutex gc_mu_;
};

// Paths below /repos.
std::string LayerLinkPath(const std::string& name, const std::string& hex);
std::string RevisionDir(const std::string& name, const std::string& hex);
std::string TagDir(const std::string& name, const std::string& tag);
std::string ReferrerDir(const std::string& name, const std::string& subject_hex);

}  // namespace cofferregistry

#endif  // COFFER_REGISTRY_HANDLER_H_
