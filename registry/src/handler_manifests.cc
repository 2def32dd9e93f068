// Manifests (GET, HEAD, PUT, DELETE by tag or digest) and the referrers API.
//
// A manifest's bytes are a blob (uploaded and published like any other, so the
// mount checks their digest); the repository holds only links:
//   <name>/_manifests/revisions/sha256/<hex>/{type,link}
//   <name>/_manifests/tags/<tag>/current/link
//   <name>/_referrers/sha256/<subject hex>/<hex>
// A revision exists when its link does; `type` is written first, so a visible
// revision always has its Content-Type. One Sync() makes a push durable before
// the client hears 201.
#include <functional>

#include "handler.h"
#include "manifest.h"
#include "names.h"

namespace cofferregistry {
namespace {

Dispatch Reply(Response r) { return Dispatch{std::move(r), nullptr}; }

Response StorageError(const Status& st) {
  return ErrorResponse(500, "UNKNOWN", "storage failure", st.ToString());
}

Response ManifestUnknown(const std::string& ref) {
  return ErrorResponse(404, "MANIFEST_UNKNOWN", "manifest unknown to registry", ref);
}

// nullopt when `ref` is a valid tag or sha256 digest; else the error.
std::optional<Response> CheckReference(const std::string& ref) {
  if (ref.find(':') != std::string::npos) {
    switch (CheckDigest(ref)) {
      case DigestCheck::kOk:
        return std::nullopt;
      case DigestCheck::kUnsupported:
        return ErrorResponse(400, "UNSUPPORTED", "unsupported digest algorithm (only sha256)", ref);
      case DigestCheck::kInvalid:
        return ErrorResponse(400, "DIGEST_INVALID", "provided digest is malformed", ref);
    }
  }
  if (!ValidTag(ref)) return ErrorResponse(400, "TAG_INVALID", "manifest tag is invalid", ref);
  return std::nullopt;
}

// Buffers a manifest body up to the size limit.
class ManifestSink : public BodySink {
 public:
  ManifestSink(std::function<Response(const std::string&)> done, uint64_t max)
      : done_(std::move(done)), max_(max) {}
  Status Write(const char* data, size_t n) override {
    if (body_.size() + n > max_) return Status::FailedPrecondition("manifest too large");
    body_.append(data, n);
    return Status::OK();
  }
  Response Finish() override { return done_(body_); }
  Response Abort(const Status& why) override {
    if (why.code() == chunkstore::Code::kFailedPrecondition) return TooLarge(max_);
    return StorageError(why);
  }
  static Response TooLarge(uint64_t max) {
    return ErrorResponse(413, "SIZE_INVALID", "manifest is larger than the registry accepts",
                         "limit " + std::to_string(max) + " bytes");
  }

 private:
  std::function<Response(const std::string&)> done_;
  uint64_t max_;
  std::string body_;
};

}  // namespace

namespace {

// The manifest digest hex `ref` names in `name`, or the error response.
chunkstore::Result<std::string> Resolve(Handler* h, const std::string& name,
                                        const std::string& ref) {
  std::string hex;
  if (ref.find(':') != std::string::npos) {
    hex = DigestHex(ref);
  } else {
    auto link = h->storage()->ReadFile(TagDir(name, ref) + "/current/link", 256);
    if (!link.ok()) return link.status();
    if (CheckDigest(*link) != DigestCheck::kOk)
      return Status::Corruption("tag " + ref + " links to malformed `" + *link + "`");
    hex = DigestHex(*link);
  }
  if (!h->RevisionExists(name, hex)) return Status::NotFound("revision sha256:" + hex);
  return hex;
}

}  // namespace

Response Handler::GetManifest(const Request& req, const Route& r) {
  if (auto e = CheckReference(r.ref)) return std::move(*e);
  auto hex = Resolve(this, r.name, r.ref);
  if (!hex.ok()) {
    if (hex.status().IsNotFound()) return ManifestUnknown(r.ref);
    return StorageError(hex.status());
  }
  auto type = storage_->ReadFile(RevisionDir(r.name, *hex) + "/type", 1024);
  Response resp;
  resp.Set("Content-Type", type.ok() && !type->empty() ? *type : std::string(kOciManifest));
  resp.Set("Docker-Content-Digest", "sha256:" + *hex);
  resp.Set("ETag", "\"sha256:" + *hex + "\"");
  auto opened = storage_->OpenBlob(*hex);
  if (!opened.ok()) {
    if (opened.status().IsNotFound()) return ManifestUnknown(r.ref);
    return StorageError(opened.status());
  }
  auto [fd, size] = *opened;
  auto file = std::make_shared<FileRange>(fd, 0, size);
  if (req.method == "HEAD") {
    resp.head = true;
    resp.head_length = size;
  } else {
    resp.file = std::move(file);
  }
  return resp;
}

Dispatch Handler::PutManifest(const Request& req, const Route& r) {
  if (auto e = CheckReference(r.ref)) return Reply(std::move(*e));
  if (req.content_length && *req.content_length > opts_.max_manifest_bytes)
    return Reply(ManifestSink::TooLarge(opts_.max_manifest_bytes));
  std::string ct;
  if (const std::string* h = req.Header("content-type")) ct = *h;
  std::string name = r.name, ref = r.ref;
  auto done = [this, name, ref, ct](const std::string& body) {
    return StoreManifest(name, ref, ct, body);
  };
  return Dispatch{std::nullopt,
                  std::make_unique<ManifestSink>(std::move(done), opts_.max_manifest_bytes)};
}

Response Handler::StoreManifest(const std::string& name, const std::string& ref,
                                const std::string& content_type, const std::string& body) {
  std::string hex = Sha256Hex(body), digest = "sha256:" + hex;
  if (ref.find(':') != std::string::npos && ref != digest)
    return ErrorResponse(400, "DIGEST_INVALID", "manifest digest does not match the reference",
                         "content is " + digest);
  auto m = ParseManifest(body, content_type);
  if (!m.ok())
    return ErrorResponse(400, "MANIFEST_INVALID", "manifest invalid", m.status().message());
  // From the check that its blobs exist to the stored revision: no gc between.
  std::shared_lock<std::shared_mutex> gc(gc_mu_);
  for (const auto& d : m->blobs) {
    std::string h = DigestHex(d);
    if (!BlobLinked(name, h) || !storage_->BlobSize(h).ok())
      return ErrorResponse(400, "MANIFEST_BLOB_UNKNOWN",
                           "manifest references a blob unknown to the repository", d);
  }
  for (const auto& d : m->manifests)
    if (!RevisionExists(name, DigestHex(d)))
      return ErrorResponse(400, "MANIFEST_BLOB_UNKNOWN",
                           "index references a manifest unknown to the repository", d);

  // The bytes, exactly as received, become a blob (digest-checked by the mount).
  if (!storage_->BlobSize(hex).ok()) {
    std::string id = NewUploadId();
    Status st = storage_->CreateUpload(id);
    if (st.ok()) {
      auto w = storage_->OpenUpload(id, 0);
      st = w.ok() ? (*w)->Append(body.data(), body.size()) : w.status();
    }
    if (st.ok()) st = storage_->Publish(id, hex);
    if (!st.ok()) {
      (void)storage_->RemoveUpload(id);
      return StorageError(st);
    }
  }
  std::string rev = RevisionDir(name, hex);
  // Linked like a layer too, so that once the revision is deleted the garbage
  // collector finds the manifest's own blob and frees it.
  Status st = LinkBlob(name, hex);
  if (st.ok()) st = storage_->WriteFile(rev + "/type", m->media_type);
  if (st.ok()) st = storage_->WriteFile(rev + "/link", digest);
  if (st.ok() && ref != digest)
    st = storage_->WriteFile(TagDir(name, ref) + "/current/link", digest);
  if (st.ok() && m->subject)
    st = storage_->WriteFile(ReferrerDir(name, DigestHex(*m->subject)) + "/" + hex, digest);
  if (st.ok()) st = storage_->Sync();
  if (!st.ok()) return StorageError(st);
  Response resp;
  resp.status = 201;
  resp.Set("Location", "/v2/" + name + "/manifests/" + digest);
  resp.Set("Docker-Content-Digest", digest);
  if (m->subject) resp.Set("OCI-Subject", *m->subject);
  return resp;
}

Response Handler::DeleteManifest(const Route& r) {
  if (auto e = CheckReference(r.ref)) return std::move(*e);
  if (r.ref.find(':') == std::string::npos) {  // a tag: only the tag goes
    Status st = storage_->Remove(TagDir(r.name, r.ref));
    if (st.IsNotFound()) return ManifestUnknown(r.ref);
    if (!st.ok() || !(st = storage_->Sync()).ok()) return StorageError(st);
    Response resp;
    resp.status = 202;
    return resp;
  }
  std::string hex = DigestHex(r.ref);
  if (!RevisionExists(r.name, hex)) return ManifestUnknown(r.ref);
  // The revision goes first: it is what makes the manifest exist (a tag that
  // links to a missing revision resolves to 404), so a delete cut short by a
  // crash (the mount may save between these steps) leaves it deleted or not,
  // never untagged but alive. Then its referrer entry and the tags linking to it.
  auto type = storage_->ReadFile(RevisionDir(r.name, hex) + "/type", 1024);
  auto bytes = storage_->ReadBlob(hex, opts_.max_manifest_bytes);
  Status st = storage_->Remove(RevisionDir(r.name, hex));
  if (!st.ok() && !st.IsNotFound()) return StorageError(st);
  if (bytes.ok()) {
    auto m = ParseManifest(*bytes, type.ok() ? *type : "");
    if (m.ok() && m->subject)
      (void)storage_->Remove(ReferrerDir(r.name, DigestHex(*m->subject)) + "/" + hex);
  }
  if (auto tags = storage_->List(r.name + "/_manifests/tags"); tags.ok()) {
    for (const auto& t : *tags) {
      if (!ValidTag(t)) continue;
      auto link = storage_->ReadFile(TagDir(r.name, t) + "/current/link", 256);
      if (link.ok() && *link == r.ref) (void)storage_->Remove(TagDir(r.name, t));
    }
  }
  if (!(st = storage_->Sync()).ok()) return StorageError(st);
  Response resp;
  resp.status = 202;
  return resp;
}

Response Handler::Referrers(const Route& r) {
  if (CheckDigest(r.ref) != DigestCheck::kOk) {
    if (CheckDigest(r.ref) == DigestCheck::kUnsupported)
      return ErrorResponse(400, "UNSUPPORTED", "unsupported digest algorithm (only sha256)", r.ref);
    return ErrorResponse(400, "DIGEST_INVALID", "provided digest is malformed", r.ref);
  }
  const std::string* filter = nullptr;
  if (auto it = r.query.find("artifactType"); it != r.query.end()) filter = &it->second;
  std::vector<std::string> descriptors;
  if (auto entries = storage_->List(ReferrerDir(r.name, DigestHex(r.ref))); entries.ok()) {
    for (const auto& hex : *entries) {
      if (CheckDigest("sha256:" + hex) != DigestCheck::kOk || !RevisionExists(r.name, hex))
        continue;
      auto type = storage_->ReadFile(RevisionDir(r.name, hex) + "/type", 1024);
      auto bytes = storage_->ReadBlob(hex, opts_.max_manifest_bytes);
      if (!bytes.ok()) continue;
      auto m = ParseManifest(*bytes, type.ok() ? *type : "");
      if (!m.ok()) continue;
      if (filter && m->artifact_type != *filter) continue;
      descriptors.push_back(ReferrerDescriptor(*m, "sha256:" + hex, bytes->size()));
    }
  }
  Response resp;
  resp.Set("Content-Type", kOciIndex);
  if (filter) resp.Set("OCI-Filters-Applied", "artifactType");
  resp.body = ReferrersIndex(descriptors);
  return resp;
}

}  // namespace cofferregistry
