#include "layer_blob.h"

#include <openssl/evp.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "identify.h"
#include "recipe.h"
#include "reconstruct.h"
#include "segment_cache.h"
#include "tar.h"
#include "tokens.h"

namespace cofferlayer {

using chunkstore::BlobReader;
using chunkstore::ChunkRef;
using chunkstore::ContentWriter;
using chunkstore::Repository;

namespace {

constexpr size_t kPiece = 1 << 20;  // bytes read from the repository at a time
// Plain bytes between goflate checkpoints: a segment a reader's worker makes
// at once (~4 MiB in, ~1-3 MiB out). Finer costs recipe bytes and per-segment
// set-up (64 KiB of history re-hashed); coarser, memory and start latency.
constexpr uint64_t kCheckpointInterval = 4 << 20;

// Worker threads and segments made ahead of a layer reader.
int SegmentThreads() {
  return static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 2u, 4u));
}

// The new form's tar, read at any offset from its chunks (for verifying the
// segmented reconstruction before the form is committed).
class ChunkPlainReader {
 public:
  ChunkPlainReader(Repository* repo, const std::vector<ChunkRef>& chunks)
      : repo_(repo), chunks_(chunks) {
    uint64_t off = 0;
    for (const ChunkRef& c : chunks_) {
      starts_.push_back(off);
      off += c.length;
    }
  }
  chunkstore::Result<size_t> Read(uint64_t offset, size_t n, char* out) {
    size_t i = size_t(std::upper_bound(starts_.begin(), starts_.end(), offset) - starts_.begin());
    if (i == 0) return size_t{0};
    --i;
    size_t done = 0;
    std::string buf;
    for (; i < chunks_.size() && done < n; ++i) {
      buf.clear();  // ReadChunk appends
      {
        std::lock_guard<std::mutex> l(mu_);
        RETURN_IF_ERROR(repo_->ReadChunk(chunks_[i].id, &buf));
      }
      uint64_t skip = offset + done - starts_[i];
      if (skip >= buf.size()) continue;
      size_t take = std::min<size_t>(n - done, buf.size() - skip);
      std::memcpy(out + done, buf.data() + skip, take);
      done += take;
    }
    return done;
  }

 private:
  Repository* repo_;
  const std::vector<ChunkRef>& chunks_;
  std::vector<uint64_t> starts_;
  std::mutex mu_;
};

// "./usr//bin/" -> "usr/bin"; "." and "./" -> "".
std::string CleanPath(std::string_view p) {
  std::string out;
  size_t i = 0;
  while (i < p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    std::string_view part = p.substr(i, j - i);
    if (!part.empty() && part != ".") out.append(out.empty() ? "" : "/").append(part);
    i = j + 1;
  }
  return out;
}

// The tree entry for a tar member (content chunks are filled in at its end);
// nullopt for what the tree leaves out.
std::optional<chunkstore::TreeEntry> EntryOf(const TarMember& m) {
  using chunkstore::EntryType;
  chunkstore::TreeEntry e;
  e.path = CleanPath(m.path);
  if (!ValidateEntryName(m.path).ok() && !e.path.empty()) return std::nullopt;
  e.mode = m.mode & 07777;
  e.uid = static_cast<uint32_t>(m.uid);
  e.gid = static_cast<uint32_t>(m.gid);
  e.mtime_ns = e.atime_ns = e.ctime_ns = m.mtime * 1000000000;
  e.xattrs = m.xattrs;
  switch (m.type) {
    case '0':
    case '7':
      if (m.sparse) return std::nullopt;
      e.type = EntryType::kFile;
      e.size = m.size;
      break;
    case '1':
      e.type = EntryType::kHardlink;
      e.link = CleanPath(m.linkname);
      if (e.link.empty() || !ValidateEntryName(m.linkname).ok()) return std::nullopt;
      break;
    case '2':
      e.type = EntryType::kSymlink;
      e.link = m.linkname;
      break;
    case '3':
      e.type = EntryType::kCharDev;
      break;
    case '4':
      e.type = EntryType::kBlockDev;
      break;
    case '5':
      e.type = EntryType::kDir;
      break;
    case '6':
      e.type = EntryType::kFifo;
      break;
    default:
      return std::nullopt;
  }
  return e;
}

// Adds a directory entry (0755, root) for every missing ancestor of an entry:
// tars may name "usr/bin/x" without "usr/" and "usr/bin/".
void AddParents(std::map<std::string, chunkstore::TreeEntry>* entries) {
  std::vector<std::string> missing;
  for (const auto& [path, e] : *entries)
    for (size_t slash = path.find('/'); slash != std::string::npos;
         slash = path.find('/', slash + 1))
      if (!entries->count(path.substr(0, slash))) missing.push_back(path.substr(0, slash));
  for (const std::string& dir : missing) {
    chunkstore::TreeEntry d;
    d.path = dir;
    d.type = chunkstore::EntryType::kDir;
    d.mode = 0755;
    entries->emplace(dir, std::move(d));
  }
}

// Tar segments into a content writer, a chunk boundary at each file's first
// byte and after its last, so the file's chunks do not depend on its neighbours;
// meanwhile the members become tree entries naming those chunks.
class ChunkingTarSink : public TarSink {
 public:
  explicit ChunkingTarSink(ContentWriter* w) : w_(w) {}
  Status OnRaw(std::string_view b) override { return w_->Append(b); }
  Status OnMemberBegin(const TarMember& m) override {
    RETURN_IF_ERROR(w_->Boundary());
    first_chunk_ = w_->chunks().size();
    current_ = EntryOf(m);
    if (!current_) ++skipped_;
    return Status::OK();
  }
  Status OnMemberData(std::string_view b) override { return w_->Append(b); }
  Status OnMemberEnd() override {
    RETURN_IF_ERROR(w_->Boundary());
    if (current_ && current_->type == chunkstore::EntryType::kFile) {
      const auto& all = w_->chunks();
      current_->chunks.assign(all.begin() + static_cast<long>(first_chunk_), all.end());
    }
    if (current_) Add(std::move(*current_));
    current_.reset();
    return Status::OK();
  }

  // The entries in an order FsTree::Load accepts (parents first, hardlinks
  // after their targets), missing parent directories added, whiteouts turned
  // into what overlayfs expects.
  std::vector<chunkstore::TreeEntry> TakeEntries(uint64_t* skipped) {
    using chunkstore::EntryType;
    std::map<std::string, chunkstore::TreeEntry> plain;
    std::vector<chunkstore::TreeEntry> links;
    std::vector<std::string> opaque;
    for (auto& [path, e] : by_path_) {
      std::string target;
      WhiteoutKind w = ClassifyWhiteout(path, &target);
      if (w == WhiteoutKind::kOpaque) {
        size_t slash = path.rfind('/');
        opaque.push_back(slash == std::string::npos ? "" : path.substr(0, slash));
        continue;
      }
      if (w == WhiteoutKind::kFile) {
        e.path = CleanPath(target);
        e.type = EntryType::kCharDev;
        e.rdev = e.size = 0;
        e.chunks.clear();
      }
      if (e.type == EntryType::kHardlink) {
        links.push_back(std::move(e));
      } else {
        std::string key = e.path;
        plain[key] = std::move(e);
      }
    }
    AddParents(&plain);
    for (const std::string& dir : opaque)
      if (auto it = plain.find(dir); it != plain.end() && it->second.type == EntryType::kDir)
        it->second.xattrs.emplace_back("trusted.overlay.opaque", "y");
    std::vector<chunkstore::TreeEntry> out;
    for (auto& [path, e] : plain) out.push_back(std::move(e));  // sorted: parents first
    for (auto& e : links) {
      auto t = plain.find(e.link);
      if (t == plain.end() || t->second.type != EntryType::kFile) {
        ++skipped_;  // names a file the tree left out
        continue;
      }
      size_t slash = e.path.rfind('/');
      if (slash != std::string::npos && !plain.count(e.path.substr(0, slash))) {
        ++skipped_;
        continue;
      }
      out.push_back(std::move(e));
    }
    *skipped = skipped_;
    return out;
  }

 private:
  void Add(chunkstore::TreeEntry e) {
    std::string key = e.path;
    by_path_[key] = std::move(e);  // a later member of the same path wins
  }

  ContentWriter* w_;
  size_t first_chunk_ = 0;
  std::optional<chunkstore::TreeEntry> current_;
  std::map<std::string, chunkstore::TreeEntry> by_path_;
  uint64_t skipped_ = 0;
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

// Re-creates the blob from the new form in segments, as readers will: the
// checkpoints are kept only if this yields exactly `digest`. Then, and only
// then, each segment's check and the seam bytes go into recipe->members[0]
// (recipe.h, version 5): readers check every segment against what this
// verified stream held.
Status VerifySegments(Repository* repo, std::string_view digest, LayerRecipe* recipe,
                      const std::vector<ChunkRef>& chunks, const std::function<bool()>& stop) {
  ChunkPlainReader plain(repo, chunks);
  const int threads = SegmentThreads();
  SegmentedReconstructor seg(
      *recipe, std::string(digest),
      [&plain](uint64_t off, size_t n, char* out) { return plain.Read(off, n, out); }, threads,
      threads + 1);
  // Made from the new form, not looked up; kept for the pulls that often
  // follow a push (dropped by the caller if the form fails).
  seg.SetCacheUse(SegmentedReconstructor::CacheUse::kFill);
  MemberRecipe& m = recipe->members[0];
  std::vector<SegmentCheck> checks;
  std::string seams(m.checkpoints.size(), '\0');
  for (size_t i = 0; i < seg.segments(); ++i) {
    if (stop && stop()) return Status::Unavailable("layer ingestion stopped");
    ASSIGN_OR_RETURN(std::string bytes, seg.Next());
    checks.push_back(SegmentCheck::Of(bytes));
    if (i > 0 && m.checkpoints[i - 1].bit_offset % 8 != 0) seams[i - 1] = bytes.at(0);
  }
  m.segment_checks = std::move(checks);  // the last Next matched the digest
  m.seams = std::move(seams);
  return Status::OK();
}

// Writes each segment's search hints, compressed, as chunks after the tar's
// and notes their sizes in the recipe (recipe.h, version 3).
Status AddHints(Repository* repo, const std::vector<std::string>& hints, MemberRecipe* m,
                std::vector<ChunkRef>* chunks) {
  std::unique_ptr<ContentWriter> w = repo->NewContentWriter();
  m->hint_after = kGoFlateHintAfter;
  m->hint_sizes.clear();
  for (const std::string& h : hints) {
    std::string frame = CompressHints(h);
    m->hint_sizes.push_back(frame.size());
    RETURN_IF_ERROR(w->Append(frame));
  }
  ASSIGN_OR_RETURN(std::vector<ChunkRef> more, w->Finish());
  chunks->insert(chunks->end(), more.begin(), more.end());
  return Status::OK();
}

// The second pass over a gzip layer that no encoder reproduced: each
// member's DEFLATE stream becomes a token recipe (tokens.h), its frames
// compressed and appended to `side` as they are made.
class TokenRecipeSink : public DecodeSink {
 public:
  explicit TokenRecipeSink(ContentWriter* side) : side_(side) {
    recipe_.compression = LayerCompression::kGzip;
  }
  Status OnMemberBegin(std::string_view header) override {
    MemberRecipe m;
    m.header = std::string(header);
    m.encoder.id = EncoderId::kTokens;
    m.encoder.level = 0;
    recipe_.members.push_back(std::move(m));
    analyzer_ = std::make_unique<TokenAnalyzer>();
    plain_ = 0;
    return Status::OK();
  }
  Status OnCompressed(std::string_view b) override {
    RETURN_IF_ERROR(Member(analyzer_->Feed(b)));
    return Flush();
  }
  Status OnPlain(std::string_view b) override {
    plain_ += b.size();
    return Status::OK();
  }
  Status OnMemberEnd(std::string_view trailer) override {
    RETURN_IF_ERROR(Member(analyzer_->Finish()));
    RETURN_IF_ERROR(Flush());
    MemberRecipe& m = recipe_.members.back();
    m.plain_size = analyzer_->plain_size();
    if (m.plain_size != plain_)
      return Member(Status::Corruption("tokens decode to " + std::to_string(m.plain_size) +
                                       " bytes, zlib to " + std::to_string(plain_)));
    m.trailer = std::string(trailer);
    m.checkpoints = analyzer_->frame_starts();  // segments for parallel reads
    return Status::OK();
  }
  Status OnTail(std::string_view b) override {
    recipe_.tail.append(b);
    if (recipe_.tail.size() > kMaxTailBytes)
      return Status::Corruption("more than " + std::to_string(kMaxTailBytes) +
                                " bytes after the last gzip member");
    return Status::OK();
  }
  const LayerRecipe& recipe() const { return recipe_; }
  uint64_t frame_bytes() const { return frame_bytes_; }

 private:
  Status Member(Status st) const {
    if (st.ok()) return st;
    return st.Annotate("gzip member " + std::to_string(recipe_.members.size() - 1));
  }
  Status Flush() {
    for (const std::string& f : analyzer_->TakeFrames()) {
      std::string z = CompressHints(f);
      recipe_.members.back().hint_sizes.push_back(z.size());
      frame_bytes_ += z.size();
      RETURN_IF_ERROR(side_->Append(z));
    }
    return Status::OK();
  }

  ContentWriter* side_;
  LayerRecipe recipe_;
  std::unique_ptr<TokenAnalyzer> analyzer_;
  uint64_t plain_ = 0, frame_bytes_ = 0;
};

// Reads `blob` again for its token recipe; the frames' chunks are appended
// to *chunks (after the tar's). Corruption: the stream is not one the token
// writer reproduces.
chunkstore::Result<LayerRecipe> TokenRecipe(Repository* repo, BlobReader* blob, uint64_t size,
                                            std::vector<ChunkRef>* chunks,
                                            const std::function<bool()>& stop) {
  std::unique_ptr<ContentWriter> side = repo->NewContentWriter();
  TokenRecipeSink sink(side.get());
  ASSIGN_OR_RETURN(std::unique_ptr<Decoder> dec, NewDecoder(LayerCompression::kGzip, &sink));
  std::string buf(kPiece, '\0');
  for (uint64_t off = 0; off < size;) {
    if (stop && stop()) return Status::Unavailable("layer ingestion stopped");
    ASSIGN_OR_RETURN(size_t got, blob->ReadAt(off, buf.size(), buf.data()));
    if (got == 0) return Status::Corruption("blob ends early");
    RETURN_IF_ERROR(dec->Feed(std::string_view(buf.data(), got)));
    off += got;
  }
  RETURN_IF_ERROR(dec->Finish());
  ASSIGN_OR_RETURN(std::vector<ChunkRef> more, side->Finish());
  chunks->insert(chunks->end(), more.begin(), more.end());
  return sink.recipe();
}

// The stored form read as readers will read it, in segments: a one-member
// go-flate layer with the checkpoints and search hints its identification
// recorded (their hints become chunks after the tar's), or a token recipe
// (checkpoints at its frames). True, with *encoding and *chunks_io set to
// that form, if the segments re-create exactly `digest`; false if the recipe
// has no segments or they did not (the caller then verifies sequentially).
Result<bool> VerifyInSegments(Repository* repo, std::string_view digest, const LayerRecipe& recipe,
                              const std::vector<RecordedSegments>& recorded, std::string* encoding,
                              std::vector<ChunkRef>* chunks_io, const std::function<bool()>& stop) {
  LayerRecipe with = recipe;
  std::vector<ChunkRef> with_chunks = *chunks_io;
  const bool tokens = recipe.members[0].encoder.id == EncoderId::kTokens;
  if (!tokens) {
    if (recorded.size() != with.members.size()) return false;
    for (size_t i = 0; i < with.members.size(); ++i)
      with.members[i].checkpoints = recorded[i].checkpoints;
    if (!SegmentedReconstructor::Supports(with)) return false;
    RETURN_IF_ERROR(AddHints(repo, recorded[0].hints, &with.members[0], &with_chunks));
  }
  if (!SegmentedReconstructor::Supports(with)) return false;
  Status st = VerifySegments(repo, digest, &with, with_chunks, stop);
  // What it made went into the segment cache; unverified, it must not stay.
  if (!st.ok()) SegmentCache::Global().Drop(digest);
  if (st.code() == chunkstore::Code::kUnavailable) return st;
  if (!st.ok()) return false;  // the hint chunks, if any, become garbage
  *encoding = with.Encode();
  *chunks_io = std::move(with_chunks);
  return true;
}

// Re-creates the blob from its new form: the form replaces the pushed bytes
// only if this yields exactly `digest`. Readers read a segmented form in
// segments, so that is what is checked when there is one (docs/layers.md,
// "Parallel reconstruction", "Search hints"); otherwise, or if the segments
// do not give the digest, the recipe without checkpoints is checked by one
// sequential re-creation and becomes *encoding.
Status VerifyForm(Repository* repo, std::string_view digest, std::string* encoding,
                  std::vector<ChunkRef>* chunks_io, const std::vector<RecordedSegments>& recorded,
                  const std::function<bool()>& stop) {
  const std::vector<ChunkRef>& chunks = *chunks_io;
  if (encoding->empty()) {  // a plain tar: its chunks must hash to the digest
    Sha256Stream sha;
    std::string buf;
    for (const ChunkRef& c : chunks) {
      if (stop && stop()) return Status::Unavailable("layer ingestion stopped");
      buf.clear();
      RETURN_IF_ERROR(repo->ReadChunk(c.id, &buf));
      sha.Update(buf);
    }
    std::string got = sha.Digest();
    if (got != digest)
      return Status::Corruption("layer " + std::string(digest) + ": re-chunked tar reads back as " +
                                got);
    return Status::OK();
  }
  ASSIGN_OR_RETURN(LayerRecipe recipe, LayerRecipe::Decode(*encoding));
  ASSIGN_OR_RETURN(bool done,
                   VerifyInSegments(repo, digest, recipe, recorded, encoding, chunks_io, stop));
  if (done) return Status::OK();
  for (MemberRecipe& m : recipe.members) m.checkpoints.clear();
  *encoding = recipe.Encode();
  VerifyingReconstructor rec(recipe, std::string(digest),
                             [](std::string_view) { return Status::OK(); });
  ChunkPlainReader side(repo, chunks);  // token frames follow the tar
  rec.SetSideReader([&side](uint64_t off, size_t n, char* out) { return side.Read(off, n, out); });
  const uint64_t plain_size = recipe.PlainSize();
  uint64_t fed = 0;
  std::string buf;
  for (const ChunkRef& c : chunks) {
    if (fed >= plain_size) break;  // the tar's chunks end there
    fed += c.length;
    if (stop && stop()) return Status::Unavailable("layer ingestion stopped");
    buf.clear();
    RETURN_IF_ERROR(repo->ReadChunk(c.id, &buf));
    RETURN_IF_ERROR(rec.Feed(buf));
  }
  return rec.Finish();
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
  Sha256Stream diff_id;
  LayerAnalyzer analyzer([&](std::string_view plain) {
    rep.plain_bytes += plain.size();
    diff_id.Update(plain);
    return scanner.Feed(plain);
  });
  analyzer.RecordSegments(kCheckpointInterval);  // the go-flate winner's, for VerifyForm
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
  std::optional<LayerRecipe> recipe = analysis->recipe;
  std::vector<ChunkRef> side;  // token frames, for a stream no encoder reproduced
  if (analysis->compression == LayerCompression::kGzip && !recipe) {
    auto tokens = TokenRecipe(repo, blob.get(), layout.size, &side, stop);
    if (tokens.ok()) {
      recipe = std::move(tokens).value();
      rep.why = "as deflate tokens: no known encoder reproduces it";
    } else if (tokens.status().code() != chunkstore::Code::kCorruption) {
      return tokens.status();
    } else {
      analysis->why_not += "; deflate tokens: " + tokens.status().message();
    }
  }
  if (analysis->compression != LayerCompression::kTar && !recipe) {
    rep.outcome = IngestReport::Outcome::kKeptAsPushed;
    rep.why = analysis->why_not;
    return rep;
  }
  ASSIGN_OR_RETURN(std::vector<ChunkRef> chunks, writer->Finish());
  chunks.insert(chunks.end(), side.begin(), side.end());
  std::string encoding = recipe ? recipe->Encode() : std::string();
  RETURN_IF_ERROR(VerifyForm(repo, digest, &encoding, &chunks, analysis->segments, stop));
  RETURN_IF_ERROR(repo->ReplaceBlob(digest, layout.size, encoding, chunks));
  rep.outcome = IngestReport::Outcome::kReplaced;
  rep.diff_id = diff_id.Digest();
  rep.entries = tar_sink.TakeEntries(&rep.entries_skipped);
  return rep;
}

namespace {

std::atomic<uint64_t> rebuilds_started{0}, bytes_rebuilt{0};

// Re-creates a layer's compressed bytes from its tar as reads ask for them:
// in segments made by worker threads when the recipe has checkpoints, else
// by one encoder.
class LayerReader : public BlobReader {
 public:
  LayerReader(LayerRecipe recipe, std::string digest, uint64_t size,
              std::unique_ptr<BlobReader> stored)
      : recipe_(std::move(recipe)),
        digest_(std::move(digest)),
        size_(size),
        stored_(std::move(stored)),
        piece_(256 << 10, '\0') {
    if (SegmentedReconstructor::Supports(recipe_)) {
      const int threads = SegmentThreads();
      seg_ = std::make_unique<SegmentedReconstructor>(
          recipe_, digest_,
          [this](uint64_t off, size_t n, char* out) { return ReadPlain(off, n, out); }, threads,
          threads + 1);
    }
  }

  uint64_t size() const override { return size_; }
  bool Sequential() const override { return true; }

  chunkstore::Result<size_t> ReadAt(uint64_t offset, size_t n, char* buf) override {
    std::lock_guard<std::mutex> l(mu_);
    if (offset >= size_) return size_t{0};
    n = static_cast<size_t>(std::min<uint64_t>(n, size_ - offset));
    if (seg_ ? (!started_ || offset < base_ || failed_ || FarAhead(offset))
             : (!rec_ || offset < base_))
      Restart(offset);
    while (base_ + window_.size() < offset + n) {
      // What readers will not ask for again, dropped once there is kDropAtOnce
      // of it: each drop moves the rest of the window down (a drop per step
      // moved ~3 bytes per byte delivered).
      if (offset >= base_ + kKeepBehind + kDropAtOnce) {
        // Not more than is there: base_ must stay the offset of window_[0].
        size_t drop = std::min(window_.size(), static_cast<size_t>(offset - kKeepBehind - base_));
        window_.erase(0, drop);
        base_ += drop;
      }
      Status st = seg_ ? StepSegment() : Step();
      if (!st.ok()) {
        rec_.reset();
        failed_ = true;
        return st.Annotate("read layer " + digest_);
      }
    }
    window_.copy(buf, n, static_cast<size_t>(offset - base_));
    return n;
  }

 private:
  static constexpr uint64_t kKeepBehind = 4 << 20;
  static constexpr uint64_t kDropAtOnce = 8 << 20;
  // Checked segments (recipe version 5) need nothing before them: a read this
  // far past what was made (a Range GET, a resumed pull) starts at its own
  // segment instead of making everything up to it. Nearer, the window grows
  // to it, so readahead that arrives out of order does not restart.
  static constexpr uint64_t kJumpAhead = 16 << 20;
  bool FarAhead(uint64_t offset) const {
    return seg_->checked() && offset >= base_ + window_.size() + kJumpAhead;
  }

  // Segmented: from the segment that holds `offset` if the recipe has
  // segment checks or it was made before (the hash state at its start is
  // kept), else from the first.
  void Restart(uint64_t offset) {
    rebuilds_started.fetch_add(1, std::memory_order_relaxed);
    started_ = true;
    failed_ = false;
    window_.clear();
    finished_ = false;
    if (seg_) {
      size_t i = seg_->RestartPoint(offset);
      seg_->Restart(i);
      base_ = seg_->SegmentStart(i);
      return;
    }
    rec_ = std::make_unique<VerifyingReconstructor>(recipe_, digest_, [this](std::string_view b) {
      window_.append(b);
      bytes_rebuilt.fetch_add(b.size(), std::memory_order_relaxed);
      return Status::OK();
    });
    rec_->SetSideReader(
        [this](uint64_t off, size_t n, char* out) { return ReadPlain(off, n, out); });
    plain_ = 0;
    base_ = 0;
  }

  Status StepSegment() {
    ASSIGN_OR_RETURN(std::string b, seg_->Next());
    if (b.empty())
      return Status::Corruption("layer " + digest_ + " re-created shorter than its size");
    window_.append(b);
    bytes_rebuilt.fetch_add(b.size(), std::memory_order_relaxed);
    return Status::OK();
  }

  // The tar for segment workers; one reader of `stored_` at a time.
  chunkstore::Result<size_t> ReadPlain(uint64_t off, size_t n, char* out) {
    std::lock_guard<std::mutex> l(stored_mu_);
    size_t done = 0;
    while (done < n) {
      ASSIGN_OR_RETURN(size_t got, stored_->ReadAt(off + done, n - done, out + done));
      if (got == 0) break;
      done += got;
    }
    return done;
  }

  // Feeds the next piece of the tar, or finishes (verifying the digest).
  Status Step() {
    const uint64_t plain_size = recipe_.PlainSize();  // search hints follow it
    if (plain_ >= plain_size) {
      if (finished_)
        return Status::Corruption("layer " + digest_ + " re-created shorter than its size");
      finished_ = true;
      return rec_->Finish();  // the last bytes, and the digest check
    }
    const size_t want = static_cast<size_t>(std::min<uint64_t>(piece_.size(), plain_size - plain_));
    ASSIGN_OR_RETURN(size_t got, stored_->ReadAt(plain_, want, piece_.data()));
    if (got == 0) return Status::Corruption("layer " + digest_ + ": stored tar ends early");
    plain_ += got;
    return rec_->Feed(std::string_view(piece_.data(), got));
  }

  const LayerRecipe recipe_;
  const std::string digest_;
  const uint64_t size_;
  std::unique_ptr<BlobReader> stored_;
  std::mutex stored_mu_;
  std::mutex mu_;
  std::unique_ptr<VerifyingReconstructor> rec_;  // GUARDED_BY(mu_), as everything below
  uint64_t plain_ = 0;                           // next tar byte to feed
  uint64_t base_ = 0;                            // blob offset of window_[0]
  bool finished_ = false;
  std::string window_;  // recent output
  std::string piece_;
  bool failed_ = false;   // segmented: the last step failed; the next read restarts
  bool started_ = false;  // a re-creation has been started (Restart ran)
  std::unique_ptr<SegmentedReconstructor> seg_;  // declared last: its workers read stored_
};

}  // namespace

std::string LayerEncodingKind(std::string_view encoding) {
  auto r = LayerRecipe::Decode(encoding);
  if (!r.ok()) return "unreadable recipe";
  if (r->members.empty()) return "tar";
  for (const MemberRecipe& m : r->members)
    if (m.encoder.id == EncoderId::kTokens) return EncoderName(EncoderId::kTokens);
  return EncoderName(r->members[0].encoder.id);
}

uint64_t LayerRebuildsStarted() { return rebuilds_started.load(std::memory_order_relaxed); }
uint64_t LayerBytesRebuilt() { return bytes_rebuilt.load(std::memory_order_relaxed); }

chunkstore::Result<std::unique_ptr<BlobReader>> DecodeLayerBlob(
    std::string_view digest, uint64_t size, std::string_view encoding,
    std::unique_ptr<BlobReader> stored) {
  auto recipe = LayerRecipe::Decode(encoding);
  if (!recipe.ok()) return recipe.status().Annotate("layer " + std::string(digest));
  return std::unique_ptr<BlobReader>(
      new LayerReader(std::move(recipe).value(), std::string(digest), size, std::move(stored)));
}

}  // namespace cofferlayer
