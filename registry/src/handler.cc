// Routing, authorization, errors and content discovery (catalog, tags).
#include "handler.h"

#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <functional>

#include "names.h"

namespace cofferregistry {
namespace json = boost::json;

FileRange::~FileRange() {
  if (fd_ >= 0) ::close(fd_);
}

const std::string* Response::Get(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) return &v;
  return nullptr;
}

Response ErrorResponse(int status, const std::string& code, const std::string& message,
                       const std::string& detail) {
  json::object e;
  e["code"] = code;
  e["message"] = message;
  if (!detail.empty()) e["detail"] = detail;
  json::object root;
  root["errors"] = json::array{e};
  Response r;
  r.status = status;
  r.Set("Content-Type", "application/json");
  r.body = json::serialize(root);
  return r;
}

std::string LayerLinkPath(const std::string& name, const std::string& hex) {
  return name + "/_layers/sha256/" + hex + "/link";
}
std::string RevisionDir(const std::string& name, const std::string& hex) {
  return name + "/_manifests/revisions/sha256/" + hex;
}
std::string TagDir(const std::string& name, const std::string& tag) {
  return name + "/_manifests/tags/" + tag;
}
std::string ReferrerDir(const std::string& name, const std::string& subject_hex) {
  return name + "/_referrers/sha256/" + subject_hex;
}

Handler::Handler(Storage* storage, Auth* auth, HandlerOptions opts)
    : storage_(storage), auth_(auth), opts_(std::move(opts)) {}

bool Handler::BlobLinked(const std::string& name, const std::string& hex) {
  return storage_->Exists(LayerLinkPath(name, hex)) || RevisionExists(name, hex);
}
bool Handler::RevisionExists(const std::string& name, const std::string& hex) {
  return storage_->Exists(RevisionDir(name, hex) + "/link");
}
bool Handler::RepoExists(const std::string& name) {
  return storage_->IsDir(name + "/_manifests") || storage_->IsDir(name + "/_layers");
}
Status Handler::LinkBlob(const std::string& name, const std::string& hex) {
  // Rewritten even when present: its mtime is what the garbage collector's
  // grace period counts from (a layer pushed again is recent again).
  return storage_->WriteFile(LayerLinkPath(name, hex), "sha256:" + hex);
}

namespace {

// Splits "/v2/<name>/<suffix>" for the suffixes that end in one path component.
bool SplitLast(const std::string& path, const std::string& marker, std::string* name,
               std::string* rest) {
  size_t at = path.rfind(marker);
  if (at == std::string::npos || at < 4) return false;
  std::string r = path.substr(at + marker.size());
  if (r.find('/') != std::string::npos) return false;
  *name = path.substr(4, at - 4);
  *rest = r;
  return true;
}

std::optional<std::string> Unescape(const std::string& s) {
  auto q = ParseQuery("x=" + s);
  if (!q) return std::nullopt;
  return (*q)["x"];
}

}  // namespace

Dispatch Handler::Handle(const Request& req) {
  auto reply = [](Response r) { return Dispatch{std::move(r), nullptr}; };
  std::string path = req.target, query;
  if (size_t q = path.find('?'); q != std::string::npos) {
    query = path.substr(q + 1);
    path.resize(q);
  }
  if (path == "/token" && opts_.token && opts_.token->can_issue()) {
    if (req.method != "GET" && req.method != "HEAD")
      return reply(ErrorResponse(405, "UNSUPPORTED", "the token endpoint takes GET"));
    return reply(IssueToken(req, query));
  }
  if (path != "/v2" && path.rfind("/v2/", 0) != 0)
    return reply(ErrorResponse(404, "NOT_FOUND", "no such endpoint", path));
  Route r;
  auto parsed = ParseQuery(query);
  if (!parsed) return reply(ErrorResponse(400, "UNSUPPORTED", "malformed query string"));
  r.query = std::move(*parsed);
  std::string rest;
  if (path == "/v2" || path == "/v2/") {
    r.kind = Route::kBase;
  } else if (path == "/v2/_catalog") {
    r.kind = Route::kCatalog;
  } else if (path.size() > 14 && path.compare(path.size() - 10, 10, "/tags/list") == 0) {
    r.kind = Route::kTags;
    r.name = path.substr(4, path.size() - 14);
  } else if (path.size() > 18 && path.compare(path.size() - 14, 14, "/blobs/uploads") == 0) {
    r.kind = Route::kUploads;
    r.name = path.substr(4, path.size() - 18);
  } else if (SplitLast(path, "/blobs/uploads/", &r.name, &rest)) {
    r.kind = rest.empty() ? Route::kUploads : Route::kUpload;
    r.ref = rest;
  } else if (SplitLast(path, "/manifests/", &r.name, &rest)) {
    r.kind = Route::kManifest;
    r.ref = rest;
  } else if (SplitLast(path, "/referrers/", &r.name, &rest)) {
    r.kind = Route::kReferrers;
    r.ref = rest;
  } else if (SplitLast(path, "/blobs/", &r.name, &rest)) {
    r.kind = Route::kBlob;
    r.ref = rest;
  } else {
    return reply(ErrorResponse(404, "NOT_FOUND", "no such endpoint", path));
  }
  if (r.kind != Route::kBase && r.kind != Route::kCatalog && !ValidRepoName(r.name))
    return reply(ErrorResponse(400, "NAME_INVALID", "invalid repository name", r.name));
  if (auto ref = Unescape(r.ref)) {
    r.ref = *ref;  // "sha256%3A..." from clients that escape the colon
  } else {
    return reply(ErrorResponse(400, "DIGEST_INVALID", "malformed path", r.ref));
  }
  return Route_(req, r);
}

std::optional<Response> Handler::Check(const Request& req, const std::string& repo,
                                       unsigned actions, std::string* user) {
  if (!auth_) return std::nullopt;
  auto who = auth_->Authenticate(req.Header("authorization"));
  auto challenge = [&](const std::string& msg) {
    Response e = ErrorResponse(401, "UNAUTHORIZED", msg);
    e.Set("WWW-Authenticate", "Basic realm=\"" + opts_.realm + "\"");
    return e;
  };
  if (!who) return challenge("authentication required: wrong user name or password");
  *user = *who;
  if (repo.empty()) {  // /v2/ and the catalog: any valid user, or anonymous without auth
    if (auth_->enabled() && who->empty()) return challenge("authentication required");
    return std::nullopt;
  }
  if (auth_->Allowed(*who, repo, actions)) return std::nullopt;
  if (who->empty() && auth_->enabled()) return challenge("authentication required");
  return ErrorResponse(403, "DENIED", "requested access to the resource is denied", repo);
}

Dispatch Handler::Route_(const Request& req, const Route& r) {
  auto reply = [](Response resp) { return Dispatch{std::move(resp), nullptr}; };
  const std::string& m = req.method;
  bool read = m == "GET" || m == "HEAD";
  unsigned action = read ? kPull : m == "DELETE" ? kDelete : kPush;
  std::string user;
  std::string repo = r.kind == Route::kBase || r.kind == Route::kCatalog ? "" : r.name;
  if (opts_.token) {
    TokenAccess need{"repository", repo, action};
    if (r.kind == Route::kBase) need = {"", "", 0};
    if (r.kind == Route::kCatalog) need = {"registry", "catalog", kPull};
    if (auto refused = CheckToken(req, need, &user)) return reply(std::move(*refused));
  } else if (auto refused = Check(req, repo, action, &user)) {
    return reply(std::move(*refused));
  }
  if (!read && opts_.read_only)
    return reply(ErrorResponse(405, "UNSUPPORTED", "the registry is read-only"));
  if (m == "DELETE" && !opts_.delete_enabled && r.kind != Route::kUpload)
    return reply(ErrorResponse(405, "UNSUPPORTED", "deletion is disabled on this registry"));
  auto bad_method = [&] {
    return reply(ErrorResponse(405, "UNSUPPORTED", "method " + m + " not allowed here"));
  };
  switch (r.kind) {
    case Route::kBase: {
      if (!read) return bad_method();
      Response resp;
      resp.Set("Content-Type", "application/json");
      resp.body = "{}";
      return reply(std::move(resp));
    }
    case Route::kCatalog:
      return read ? reply(Catalog(req, r, user)) : bad_method();
    case Route::kTags:
      return read ? reply(TagsList(r)) : bad_method();
    case Route::kReferrers:
      return read ? reply(Referrers(r)) : bad_method();
    case Route::kBlob:
      if (read) return reply(GetBlob(req, r));
      if (m == "DELETE") return reply(DeleteBlob(r));
      return bad_method();
    case Route::kUploads:
      return m == "POST" ? StartUpload(req, r, user) : bad_method();
    case Route::kUpload:
      if (!ValidUploadId(r.ref))
        return reply(
            ErrorResponse(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", r.ref));
      if (m == "GET") return reply(UploadStatus(r));
      if (m == "PATCH") return PatchUpload(req, r);
      if (m == "PUT") return PutUpload(req, r);
      if (m == "DELETE") return reply(CancelUpload(r));
      return bad_method();
    case Route::kManifest:
      if (read) return reply(GetManifest(req, r));
      if (m == "PUT") return PutManifest(req, r);
      if (m == "DELETE") return reply(DeleteManifest(r));
      return bad_method();
  }
  return bad_method();
}

namespace {

// n and last of a paginated list. False when n is not a number.
bool PageParams(const std::map<std::string, std::string>& q, size_t* n, std::string* last) {
  *n = SIZE_MAX;
  if (auto it = q.find("n"); it != q.end()) {
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
    if (ec != std::errc() || p != it->second.data() + it->second.size()) return false;
    *n = static_cast<size_t>(std::min<uint64_t>(v, 100000));
  }
  if (auto it = q.find("last"); it != q.end()) *last = it->second;
  return true;
}

// Takes up to n entries after `last` from the sorted `all`; sets *more.
std::vector<std::string> Page(const std::vector<std::string>& all, size_t n,
                              const std::string& last, bool* more) {
  auto it = last.empty() ? all.begin() : std::upper_bound(all.begin(), all.end(), last);
  std::vector<std::string> out;
  for (; it != all.end() && out.size() < n; ++it) out.push_back(*it);
  *more = it != all.end();
  return out;
}

}  // namespace

std::vector<std::string> Handler::ListRepos() {
  // Repositories are the directories below /repos that hold _manifests or _layers;
  // names never start with '_' or '.', so internal entries are skipped.
  std::vector<std::string> repos;
  std::function<void(const std::string&, int)> walk = [&](const std::string& rel, int depth) {
    auto entries = storage_->List(rel);
    if (!entries.ok() || depth > 64) return;
    bool is_repo = false;
    for (const auto& e : *entries) {
      if (e == "_manifests" || e == "_layers") is_repo = true;
      if (e.empty() || e[0] == '_' || e[0] == '.') continue;
      std::string child = rel.empty() ? e : rel + "/" + e;
      if (ValidRepoName(child) && storage_->IsDir(child)) walk(child, depth + 1);
    }
    if (is_repo && !rel.empty()) repos.push_back(rel);
  };
  walk("", 0);
  std::sort(repos.begin(), repos.end());
  return repos;
}

Response Handler::Catalog(const Request& req, const Route& r, const std::string& user) {
  size_t n;
  std::string last;
  if (!PageParams(r.query, &n, &last))
    return ErrorResponse(400, "PAGINATION_NUMBER_INVALID", "n must be a non-negative integer");
  std::vector<std::string> repos;
  for (auto& name : ListRepos())
    if (!auth_ || auth_->Allowed(user, name, kPull)) repos.push_back(std::move(name));
  bool more = false;
  auto page = Page(repos, n, last, &more);
  json::object body;
  json::array arr;
  for (auto& s : page) arr.emplace_back(s);
  body["repositories"] = std::move(arr);
  Response resp;
  resp.Set("Content-Type", "application/json");
  resp.body = json::serialize(body);
  if (more && !page.empty())
    resp.Set("Link", "</v2/_catalog?n=" + std::to_string(n) + "&last=" + QueryEscape(page.back()) +
                         ">; rel=\"next\"");
  (void)req;
  return resp;
}

Response Handler::TagsList(const Route& r) {
  size_t n;
  std::string last;
  if (!PageParams(r.query, &n, &last))
    return ErrorResponse(400, "PAGINATION_NUMBER_INVALID", "n must be a non-negative integer");
  if (!RepoExists(r.name))
    return ErrorResponse(404, "NAME_UNKNOWN", "repository name not known to registry", r.name);
  std::vector<std::string> tags;
  if (auto entries = storage_->List(r.name + "/_manifests/tags"); entries.ok()) {
    for (auto& t : *entries)
      if (ValidTag(t) && storage_->Exists(TagDir(r.name, t) + "/current/link")) tags.push_back(t);
  }
  bool more = false;
  auto page = Page(tags, n, last, &more);
  json::object body;
  body["name"] = r.name;
  json::array arr;
  for (auto& s : page) arr.emplace_back(s);
  body["tags"] = std::move(arr);
  Response resp;
  resp.Set("Content-Type", "application/json");
  resp.body = json::serialize(body);
  if (more && !page.empty())
    resp.Set("Link", "</v2/" + r.name + "/tags/list?n=" + std::to_string(n) +
                         "&last=" + QueryEscape(page.back()) + ">; rel=\"next\"");
  return resp;
}

}  // namespace cofferregistry
