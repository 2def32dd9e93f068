#include "layer_blob.h"

#include <openssl/evp.h>

#include <mutex>
#include <optional>

#include "identify.h"
#include "recipe.h"
#include "reconstruct.h"
#include "tar.h"

namespace cofferlayer {

using chunkstore::BlobReader;
using chunkstore::ChunkRef;
using chunkstore::ContentWriter;
using chunkstore::Repository;

namespace {

constexpr size_t kPiece = 1 << 20;  // bytes read from the repository at a time

// Tar segments into a content writer, a chunk boundary at each file's first
// byte and after its last, so the file's chunks do not depend on its neighbours.
class ChunkingTarSink : public TarSink {
 public:
  explicit ChunkingTarSink(ContentWriter* w) : w_(w) {}
  Status OnRaw(std::string_view b) override { return w_->Append(b); }
  Status OnMemberBegin(const TarMember&) override { return w_->Boundary(); }
  Status OnMemberData(std::string_view b) override { return w_->Append(b); }
  Status OnMemberEnd() override { return w_->Boundary(); }

 private:
  ContentWriter* w_;
};

class Sha256Stream {
 public:
  Sha256Stream() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256Stream() { EVP_MD_CTX_free(ctx_); }
  void Update(std::string_view b) { EVP_DigestUpdate(ctx_, b.data(), b.size()); }
  std::string Digest() {
    unsigned char md[32];
    EVP_DigestFinal_ex(ctx_, md, nullptr);
    static const char kHex[] = "0123456789abcdef";
    std::string out = "sha256:";
    for (unsigned char c : md) {
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

// Reads the new form back chunk by chunk and re-creates the blob from it: the
// form replaces the pushed bytes only if this yields exactly `digest`.
Status VerifyForm(Repository* repo, std::string_view digest, const std::string& encoding,
                  const std::vector<ChunkRef>& chunks, const std::function<bool()>& stop) {
  std::optional<LayerRecipe> recipe;
  if (!encoding.empty()) {
    ASSIGN_OR_RETURN(recipe, LayerRecipe::Decode(encoding));
  }
  Sha256Stream sha;
  std::unique_ptr<VerifyingReconstructor> rec;
  if (recipe)
    rec = std::make_unique<VerifyingReconstructor>(*recipe, std::string(digest),
                                                   [](std::string_view) { return Status::OK(); });
  std::string buf;
  for (const ChunkRef& c : chunks) {
    if (stop && stop()) return Status::Unavailable("layer ingestion stopped");
    buf.clear();
    RETURN_IF_ERROR(repo->ReadChunk(c.id, &buf));
    if (rec) {
      RETURN_IF_ERROR(rec->Feed(buf));
    } else {
      sha.Update(buf);
    }
  }
  if (rec) return rec->Finish();
  std::string got = sha.Digest();
  if (got != digest)
    return Status::Corruption("layer " + std::string(digest) + ": re-chunked tar reads back as " +
                              got);
  return Status::OK();
}

}  // namespace

const char* OutcomeName(IngestReport::Outcome o) {
  switch (o) {
    case IngestReport::Outcome::kReplaced:
      return "stored as layer";
    case IngestReport::Outcome::kKeptAsPushed:
      return "kept as pushed";
    case IngestReport::Outcome::kNotALayer:
      return "not a layer";
    case IngestReport::Outcome::kAlreadyDone:
      return "already stored as layer";
  }
  return "?";
}

chunkstore::Result<IngestReport> IngestLayer(Repository* repo, std::string_view digest,
                                             const std::function<bool()>& stop) {
  ASSIGN_OR_RETURN(chunkstore::BlobLayout layout, repo->GetBlobLayout(digest));
  IngestReport rep;
  rep.blob_bytes = layout.size;
  if (!layout.encoding.empty()) {
    rep.outcome = IngestReport::Outcome::kAlreadyDone;
    return rep;
  }
  ASSIGN_OR_RETURN(auto blob, repo->OpenBlob(digest));
  std::unique_ptr<ContentWriter> writer = repo->NewContentWriter();
  ChunkingTarSink tar_sink(writer.get());
  TarScanner scanner(&tar_sink);
  LayerAnalyzer analyzer([&](std::string_view plain) {
    rep.plain_bytes += plain.size();
    return scanner.Feed(plain);
  });
  auto not_a_layer = [&](const Status& why) {
    rep.outcome = IngestReport::Outcome::kNotALayer;
    rep.why = why.message();
    return rep;
  };
  std::string buf(kPiece, '\0');
  for (uint64_t off = 0; off < layout.size;) {
    if (stop && stop()) return Status::Unavailable("layer ingestion stopped");
    ASSIGN_OR_RETURN(size_t got, blob->ReadAt(off, buf.size(), buf.data()));
    if (got == 0) return Status::Corruption("blob " + std::string(digest) + " ends early");
    if (off == 0) rep.compression = DetectCompression(std::string_view(buf.data(), got));
    Status st = analyzer.Feed(std::string_view(buf.data(), got));
    if (st.code() == chunkstore::Code::kCorruption) return not_a_layer(st);
    RETURN_IF_ERROR(st);
    off += got;
  }
  auto analysis = analyzer.Finish();
  if (!analysis.ok()) {
    if (analysis.status().code() == chunkstore::Code::kCorruption)
      return not_a_layer(analysis.status());
    return analysis.status();
  }
  if (Status st = scanner.Finish(); !st.ok()) return not_a_layer(st);
  rep.members = scanner.member_count();
  if (analysis->compression != LayerCompression::kTar && !analysis->recipe) {
    rep.outcome = IngestReport::Outcome::kKeptAsPushed;
    rep.why = analysis->why_not;
    return rep;
  }
  ASSIGN_OR_RETURN(std::vector<ChunkRef> chunks, writer->Finish());
  std::string encoding = analysis->recipe ? analysis->recipe->Encode() : std::string();
  RETURN_IF_ERROR(VerifyForm(repo, digest, encoding, chunks, stop));
  RETURN_IF_ERROR(repo->ReplaceBlob(digest, layout.size, encoding, chunks));
  rep.outcome = IngestReport::Outcome::kReplaced;
  return rep;
}

namespace {

// Re-creates a layer's compressed bytes from its tar as reads ask for them.
class LayerReader : public BlobReader {
 public:
  LayerReader(LayerRecipe recipe, std::string digest, uint64_t size,
              std::unique_ptr<BlobReader> stored)
      : recipe_(std::move(recipe)),
        digest_(std::move(digest)),
        size_(size),
        stored_(std::move(stored)),
        piece_(256 << 10, '\0') {}

  uint64_t size() const override { return size_; }

  chunkstore::Result<size_t> ReadAt(uint64_t offset, size_t n, char* buf) override {
    std::lock_guard<std::mutex> l(mu_);
    if (offset >= size_) return size_t{0};
    n = static_cast<size_t>(std::min<uint64_t>(n, size_ - offset));
    if (!rec_ || offset < base_) Restart();
    while (base_ + window_.size() < offset + n) {
      if (offset > base_ + kKeepBehind) {  // what readers will not ask for again
        size_t drop = static_cast<size_t>(offset - kKeepBehind - base_);
        window_.erase(0, drop);
        base_ += drop;
      }
      Status st = Step();
      if (!st.ok()) {
        rec_.reset();
        return st.Annotate("read layer " + digest_);
      }
    }
    window_.copy(buf, n, static_cast<size_t>(offset - base_));
    return n;
  }

 private:
  static constexpr uint64_t kKeepBehind = 4 << 20;

  void Restart() {
    rec_ = std::make_unique<VerifyingReconstructor>(recipe_, digest_, [this](std::string_view b) {
      window_.append(b);
      return Status::OK();
    });
    plain_ = 0;
    base_ = 0;
    finished_ = false;
    window_.clear();
  }

  // Feeds the next piece of the tar, or finishes (verifying the digest).
  Status Step() {
    if (plain_ >= stored_->size()) {
      if (finished_)
        return Status::Corruption("layer " + digest_ + " re-created shorter than its size");
      finished_ = true;
      return rec_->Finish();  // the last bytes, and the digest check
    }
    ASSIGN_OR_RETURN(size_t got, stored_->ReadAt(plain_, piece_.size(), piece_.data()));
    if (got == 0) return Status::Corruption("layer " + digest_ + ": stored tar ends early");
    plain_ += got;
    return rec_->Feed(std::string_view(piece_.data(), got));
  }

  const LayerRecipe recipe_;
  const std::string digest_;
  const uint64_t size_;
  std::unique_ptr<BlobReader> stored_;
  std::mutex mu_;
  std::unique_ptr<VerifyingReconstructor> rec_;  // GUARDED_BY(mu_), as everything below
  uint64_t plain_ = 0;                           // next tar byte to feed
  uint64_t base_ = 0;                            // blob offset of window_[0]
  bool finished_ = false;
  std::string window_;  // recent output
  std::string piece_;
};

}  // namespace

chunkstore::Result<std::unique_ptr<BlobReader>> DecodeLayerBlob(
    std::string_view digest, uint64_t size, std::string_view encoding,
    std::unique_ptr<BlobReader> stored) {
  auto recipe = LayerRecipe::Decode(encoding);
  if (!recipe.ok()) return recipe.status().Annotate("layer " + std::string(digest));
  return std::unique_ptr<BlobReader>(
      new LayerReader(std::move(recipe).value(), std::string(digest), size, std::move(stored)));
}

}  // namespace cofferlayer
