// Blobs (GET, HEAD, DELETE) and blob uploads (POST, PATCH, PUT, GET, DELETE).
//
// An upload is the file /uploads/<id> on the mount and nothing else: its size is
// the upload's progress, so uploads survive a registry restart (not a daemon
// restart) and need no state here. Bodies stream into the file as they arrive.
#include <fcntl.h>
#include <unistd.h>

#include "handler.h"
#include "names.h"

namespace cofferregistry {
namespace {

std::string UploadLocation(const std::string& name, const std::string& id) {
  return "/v2/" + name + "/blobs/uploads/" + id;
}

std::string RangeHeader(uint64_t size) {  // distribution's form: "0-0" when empty
  return "0-" + std::to_string(size == 0 ? 0 : size - 1);
}

Response UploadProgress(int status, const std::string& name, const std::string& id, uint64_t size) {
  Response r;
  r.status = status;
  r.Set("Location", UploadLocation(name, id));
  r.Set("Range", RangeHeader(size));
  r.Set("Docker-Upload-UUID", id);
  return r;
}

Response StorageError(const Status& st) {
  return ErrorResponse(500, "UNKNOWN", "storage failure", st.ToString());
}

Response BadDigest(const std::string& d) {
  if (CheckDigest(d) == DigestCheck::kUnsupported)
    return ErrorResponse(400, "UNSUPPORTED", "unsupported digest algorithm (only sha256)", d);
  return ErrorResponse(400, "DIGEST_INVALID", "provided digest is malformed", d);
}

// Streams a request body into an upload. kAppend answers 202 with the progress;
// kFinish then publishes the upload as `digest`.
class UploadSink : public BodySink {
 public:
  enum Mode { kAppend, kFinish };
  UploadSink(Handler* h, Mode mode, std::string name, std::string id, std::string digest,
             std::unique_ptr<UploadWriter> w, std::optional<uint64_t> expect, bool owned)
      : h_(h),
        mode_(mode),
        name_(std::move(name)),
        id_(std::move(id)),
        digest_(std::move(digest)),
        w_(std::move(w)),
        start_(w_->offset()),
        expect_(expect),
        owned_(owned) {}

  // A monolithic upload whose request died is unreachable: remove it.
  ~UploadSink() override {
    if (owned_ && !done_) (void)h_->storage()->RemoveUpload(id_);
  }

  Status Write(const char* data, size_t n) override {
    if (expect_ && w_->offset() - start_ + n > *expect_)
      return Status::FailedPrecondition("body longer than Content-Range says");
    return w_->Append(data, n);
  }
  bool Batched() const override { return true; }

  Response Finish() override {
    done_ = true;
    uint64_t got = w_->offset() - start_;
    if (expect_ && got != *expect_)
      return ErrorResponse(400, "SIZE_INVALID", "body length does not match Content-Range",
                           std::to_string(got) + " of " + std::to_string(*expect_) + " bytes");
    if (mode_ == kAppend) return UploadProgress(202, name_, id_, w_->offset());
    w_.reset();  // closed before publishing
    return h_->FinishUpload(name_, id_, digest_);
  }

  Response Abort(const Status& why) override {
    done_ = !owned_;  // a monolithic upload is removed by the destructor
    if (why.code() == chunkstore::Code::kInvalidArgument) {  // someone else appended
      Response r = ErrorResponse(416, "BLOB_UPLOAD_INVALID", "upload offset changed concurrently");
      r.Set("Location", UploadLocation(name_, id_));
      return r;
    }
    if (why.code() == chunkstore::Code::kFailedPrecondition)
      return ErrorResponse(400, "SIZE_INVALID", why.message());
    return StorageError(why);
  }

 private:
  Handler* h_;
  Mode mode_;
  std::string name_, id_, digest_;
  std::unique_ptr<UploadWriter> w_;
  uint64_t start_;
  std::optional<uint64_t> expect_;
  bool owned_;
  bool done_ = false;
};

Dispatch Reply(Response r) { return Dispatch{std::move(r), nullptr}; }

}  // namespace

Response Handler::GetBlob(const Request& req, const Route& r) {
  if (CheckDigest(r.ref) != DigestCheck::kOk) return BadDigest(r.ref);
  std::string hex = DigestHex(r.ref);
  if (!BlobLinked(r.name, hex))
    return ErrorResponse(404, "BLOB_UNKNOWN", "blob unknown to registry", r.ref);
  Response resp;
  resp.Set("Docker-Content-Digest", r.ref);
  resp.Set("Content-Type", "application/octet-stream");
  resp.Set("Accept-Ranges", "bytes");
  resp.Set("ETag", "\"" + r.ref + "\"");
  resp.Set("Cache-Control", "max-age=31536000");
  if (req.method == "HEAD") {
    auto size = storage_->BlobSize(hex);
    if (!size.ok()) {
      if (size.status().IsNotFound())
        return ErrorResponse(404, "BLOB_UNKNOWN", "blob unknown to registry", r.ref);
      return StorageError(size.status());
    }
    resp.head = true;
    resp.head_length = *size;
    return resp;
  }
  auto opened = storage_->OpenBlob(hex);
  if (!opened.ok()) {
    if (opened.status().IsNotFound())
      return ErrorResponse(404, "BLOB_UNKNOWN", "blob unknown to registry", r.ref);
    return StorageError(opened.status());
  }
  auto [fd, size] = *opened;
  ByteRange range;
  RangeParse rp = RangeParse::kIgnore;
  if (const std::string* h = req.Header("range")) rp = ParseRange(*h, size, &range);
  if (rp == RangeParse::kUnsatisfiable) {
    ::close(fd);
    Response e = ErrorResponse(416, "BLOB_UNKNOWN", "requested range not satisfiable");
    e.status = 416;
    e.Set("Content-Range", "bytes */" + std::to_string(size));
    return e;
  }
  if (rp == RangeParse::kOk) {
    resp.status = 206;
    resp.Set("Content-Range", "bytes " + std::to_string(range.first) + "-" +
                                  std::to_string(range.last) + "/" + std::to_string(size));
    resp.file = std::make_shared<FileRange>(fd, range.first, range.last - range.first + 1);
  } else {
    resp.file = std::make_shared<FileRange>(fd, 0, size);
  }
  return resp;
}

Response Handler::DeleteBlob(const Route& r) {
  if (CheckDigest(r.ref) != DigestCheck::kOk) return BadDigest(r.ref);
  std::string hex = DigestHex(r.ref);
  // Deleting a blob unlinks it from this repository; the bytes go when `coffer gc`
  // finds nothing referencing them.
  Status st = storage_->Remove(r.name + "/_layers/sha256/" + hex);
  if (st.IsNotFound()) return ErrorResponse(404, "BLOB_UNKNOWN", "blob unknown to registry", r.ref);
  if (!st.ok() || !(st = storage_->Sync()).ok()) return StorageError(st);
  Response resp;
  resp.status = 202;
  return resp;
}

Dispatch Handler::StartUpload(const Request& req, const Route& r, const std::string& user) {
  if (auto m = r.query.find("mount"); m != r.query.end()) {
    if (CheckDigest(m->second) != DigestCheck::kOk) return Reply(BadDigest(m->second));
    std::string hex = DigestHex(m->second);
    auto from = r.query.find("from");
    bool ok;
    if (from != r.query.end()) {
      ok = ValidRepoName(from->second) && (!auth_ || auth_->Allowed(user, from->second, kPull)) &&
           BlobLinked(from->second, hex) && storage_->BlobSize(hex).ok();
    } else {
      // Automatic mount: only when there is no auth (every repository is readable
      // by everyone anyway); with auth, knowing a digest must not give access to a
      // blob of a repository the user cannot pull.
      ok = !auth_ && storage_->BlobSize(hex).ok();
    }
    std::shared_lock<std::shared_mutex> gc(gc_mu_);
    if (ok) ok = storage_->BlobSize(hex).ok();  // still there: no gc ran since the check
    if (ok) {
      Status st = LinkBlob(r.name, hex);
      if (st.ok()) st = storage_->Sync();
      if (!st.ok()) return Reply(StorageError(st));
      Response resp;
      resp.status = 201;
      resp.Set("Location", "/v2/" + r.name + "/blobs/" + m->second);
      resp.Set("Docker-Content-Digest", m->second);
      return Reply(std::move(resp));
    }
    // Not mountable: the client gets an upload session instead, as the spec says.
  }
  auto digest = r.query.find("digest");
  if (digest != r.query.end() && CheckDigest(digest->second) != DigestCheck::kOk)
    return Reply(BadDigest(digest->second));
  std::string id = NewUploadId();
  if (Status st = storage_->CreateUpload(id); !st.ok()) return Reply(StorageError(st));
  if (digest == r.query.end()) return Reply(UploadProgress(202, r.name, id, 0));
  // Monolithic: POST ?digest= with the whole blob as the body.
  auto w = storage_->OpenUpload(id, 0);
  if (!w.ok()) return Reply(StorageError(w.status()));
  (void)req;
  return Dispatch{std::nullopt,
                  std::make_unique<UploadSink>(this, UploadSink::kFinish, r.name, id,
                                               digest->second, std::move(*w), std::nullopt,
                                               /*owned=*/true)};
}

namespace {

// Checks Content-Range/Content-Length of a chunk against the upload's size.
// Sets *expect to the chunk's length when the client stated it.
std::optional<Response> CheckChunk(const Request& req, const std::string& name,
                                   const std::string& id, uint64_t size,
                                   std::optional<uint64_t>* expect) {
  const std::string* cr = req.Header("content-range");
  if (cr) {
    ByteRange range;
    if (!ParseUploadRange(*cr, &range) || range.first != size) {
      Response e =
          ErrorResponse(416, "BLOB_UPLOAD_INVALID", "Content-Range does not continue the upload",
                        "upload has " + std::to_string(size) + " bytes; got " + *cr);
      e.Set("Location", UploadLocation(name, id));
      e.Set("Range", RangeHeader(size));
      e.Set("Docker-Upload-UUID", id);
      return e;
    }
    *expect = range.last - range.first + 1;
    if (req.content_length && *req.content_length != **expect)
      return ErrorResponse(400, "SIZE_INVALID", "Content-Length does not match Content-Range");
  } else if (req.content_length) {
    *expect = *req.content_length;
  }
  return std::nullopt;
}

}  // namespace

Dispatch Handler::PatchUpload(const Request& req, const Route& r) {
  auto size = storage_->UploadSize(r.ref);
  if (!size.ok()) {
    if (size.status().IsNotFound())
      return Reply(
          ErrorResponse(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", r.ref));
    return Reply(StorageError(size.status()));
  }
  std::optional<uint64_t> expect;
  if (auto e = CheckChunk(req, r.name, r.ref, *size, &expect)) return Reply(std::move(*e));
  auto w = storage_->OpenUpload(r.ref, *size);
  if (!w.ok()) {
    if (w.status().code() == chunkstore::Code::kInvalidArgument) {
      Response e = ErrorResponse(416, "BLOB_UPLOAD_INVALID", "upload offset changed concurrently");
      e.Set("Location", UploadLocation(r.name, r.ref));
      return Reply(std::move(e));
    }
    return Reply(StorageError(w.status()));
  }
  return Dispatch{std::nullopt,
                  std::make_unique<UploadSink>(this, UploadSink::kAppend, r.name, r.ref, "",
                                               std::move(*w), expect, false)};
}

Dispatch Handler::PutUpload(const Request& req, const Route& r) {
  auto d = r.query.find("digest");
  if (d == r.query.end())
    return Reply(ErrorResponse(400, "DIGEST_INVALID",
                               "digest query parameter is required to finish an upload"));
  if (CheckDigest(d->second) != DigestCheck::kOk) return Reply(BadDigest(d->second));
  auto size = storage_->UploadSize(r.ref);
  if (!size.ok()) {
    if (size.status().IsNotFound())
      return Reply(
          ErrorResponse(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", r.ref));
    return Reply(StorageError(size.status()));
  }
  std::optional<uint64_t> expect;
  if (auto e = CheckChunk(req, r.name, r.ref, *size, &expect)) return Reply(std::move(*e));
  auto w = storage_->OpenUpload(r.ref, *size);
  if (!w.ok()) return Reply(StorageError(w.status()));
  return Dispatch{std::nullopt,
                  std::make_unique<UploadSink>(this, UploadSink::kFinish, r.name, r.ref, d->second,
                                               std::move(*w), expect, false)};
}

Response Handler::FinishUpload(const std::string& name, const std::string& id,
                               const std::string& digest) {
  std::string hex = DigestHex(digest);
  std::shared_lock<std::shared_mutex> gc(gc_mu_);  // publish and link as one step
  Status st = storage_->Publish(id, hex);
  if (st.code() == chunkstore::Code::kInvalidArgument) {
    // The bytes are not what the client claimed: the upload is useless now.
    (void)storage_->RemoveUpload(id);
    return ErrorResponse(400, "DIGEST_INVALID", "provided digest did not match uploaded content",
                         digest);
  }
  if (st.IsNotFound())
    return ErrorResponse(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", id);
  if (!st.ok()) return StorageError(st);
  st = LinkBlob(name, hex);
  if (st.ok()) st = storage_->Sync();
  if (!st.ok()) return StorageError(st);
  Response resp;
  resp.status = 201;
  resp.Set("Location", "/v2/" + name + "/blobs/" + digest);
  resp.Set("Docker-Content-Digest", digest);
  return resp;
}

Response Handler::UploadStatus(const Route& r) {
  auto size = storage_->UploadSize(r.ref);
  if (!size.ok()) {
    if (size.status().IsNotFound())
      return ErrorResponse(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", r.ref);
    return StorageError(size.status());
  }
  return UploadProgress(204, r.name, r.ref, *size);
}

Response Handler::CancelUpload(const Route& r) {
  Status st = storage_->RemoveUpload(r.ref);
  if (st.IsNotFound())
    return ErrorResponse(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", r.ref);
  if (!st.ok()) return StorageError(st);
  Response resp;
  resp.status = 204;
  return resp;
}

}  // namespace cofferregistry
