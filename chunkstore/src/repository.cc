// Repository: init, open (lock, unlock, index reconciliation), key management,
// blobs, snapshot listing and stats.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "key_envelope.h"
#include "repo_impl.h"

namespace chunkstore {

// ---- config ----------------------------------------------------------------

std::string EncodeConfig(const RepoConfig& c) {
  nlohmann::json j = {
      {"version", c.version},
      {"id", c.id},
      {"chunker",
       {{"algorithm", "fastcdc2020"},
        {"min", c.params.chunk_min},
        {"avg", c.params.chunk_avg},
        {"max", c.params.chunk_max}}},
      {"compression", {{"algorithm", "zstd"}, {"level", c.params.compression_level}}},
      {"frame_size", c.params.frame_size},
      {"pack_size", c.params.pack_size},
      {"aead", "aes-256-gcm"},
      {"chunk_id", "hmac-sha256"}};
  return j.dump(2) + "\n";
}

Status ReadConfig(Env* env, const std::string& dir, RepoConfig* c) {
  std::string path = JoinPath(dir, kConfigFile), text;
  Status st = env->ReadFileToString(path, &text);
  if (st.IsNotFound())
    return Status::NotFound("no coffer repository at `" + dir +
                            "` (no config file; run "
                            "`coffer init`)");
  RETURN_IF_ERROR(st);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  try {
    if (j.is_discarded()) throw std::runtime_error("not JSON");
    c->version = j.at("version").get<uint32_t>();
    c->id = j.at("id").get<std::string>();
    c->params.chunk_min = j.at("chunker").at("min").get<uint32_t>();
    c->params.chunk_avg = j.at("chunker").at("avg").get<uint32_t>();
    c->params.chunk_max = j.at("chunker").at("max").get<uint32_t>();
    c->params.compression_level = j.at("compression").at("level").get<int>();
    c->params.frame_size = j.at("frame_size").get<uint32_t>();
    c->params.pack_size = j.at("pack_size").get<uint32_t>();
  } catch (const std::exception& e) {
    return Status::Corruption("read config `" + path + "`: " + e.what());
  }
  if (c->version != 1)
    return Status::FailedPrecondition("config `" + path + "`: unsupported version");
  if (c->id.size() != 32) return Status::Corruption("config `" + path + "`: invalid repository id");
  Status st2 = ValidateParams(c->params, "config `" + path + "`");
  if (!st2.ok()) return Status::Corruption(st2.message());
  return Status::OK();
}

std::string IndexPath(const std::string& dir, const OpenOptions& o) {
  return o.local_dir.empty() ? JoinPath(dir, "index") : JoinPath(o.local_dir, "index");
}
std::string HeaderPath(const std::string& dir, const OpenOptions& o) {
  return o.local_dir.empty() ? JoinPath(dir, "keys/luks2.hdr") : JoinPath(o.local_dir, "luks2.hdr");
}

Status ValidateParams(const RepoParams& p, const std::string& what) {
  ChunkerParams cp{p.chunk_min, p.chunk_avg, p.chunk_max};
  if (!cp.Valid())
    return Status::InvalidArgument(what + ": chunk sizes " + std::to_string(p.chunk_min) + "/" +
                                   std::to_string(p.chunk_avg) + "/" + std::to_string(p.chunk_max) +
                                   " are invalid (need min < avg < max, avg a power of two)");
  if (p.frame_size < p.chunk_max || p.frame_size > (16u << 20))
    return Status::InvalidArgument(what + ": frame size must be in [chunk max, 16 MiB]");
  if (p.pack_size < (1u << 20) || p.pack_size > (1u << 30))
    return Status::InvalidArgument(what + ": pack size must be in [1 MiB, 1 GiB]");
  if (p.compression_level < 0 || p.compression_level > 19)
    return Status::InvalidArgument(what + ": compression level must be in [0, 19]");
  return Status::OK();
}

// ---- init and open -----------------------------------------------------------

Status Repository::Init(const std::string& dir, std::string_view secret, std::string_view label,
                        const RepoParams& params, const KeyCost& cost, const OpenOptions& opts) {
  Env* env = opts.env ? opts.env : Env::Default();
  if (env->FileExists(JoinPath(dir, kConfigFile)))
    return Status::AlreadyExists("init `" + dir + "`: a repository already exists there");
  if (secret.empty()) return Status::InvalidArgument("init `" + dir + "`: empty passphrase");
  RETURN_IF_ERROR(ValidateParams(params, "init `" + dir + "`"));
  RETURN_IF_ERROR(env->CreateDirs(dir));
  for (const char* d : {kTmpDir, kPacksDir, kBlobRootsDir, kSnapshotRootsDir, kHeadRootsDir})
    RETURN_IF_ERROR(env->CreateDirs(JoinPath(dir, d)));
  std::string header = HeaderPath(dir, opts);
  std::error_code ec;
  std::filesystem::create_directories(DirName(header), ec);
  if (ec)
    return Status::IOError("init `" + dir + "`: create `" + DirName(header) + "`: " + ec.message());
  // No config means no repository: a header here is the leftover of an init that
  // was interrupted before its last step, and protects nothing.
  std::filesystem::remove(header, ec);
  {
    auto index = Index::Open(IndexPath(dir, opts), false, true);  // readers need it to exist
    if (!index.ok()) return index.status();
  }
  KdfParams kdf{cost.iterations, cost.memory_kib, cost.parallel};
  auto key = KeyEnvelope::Create(header, secret, kdf, label);
  if (!key.ok()) return key.status();
  RepoConfig cfg;
  uint8_t id[16];
  RandomBytes(id, sizeof id);
  cfg.id = ToHex(id, sizeof id);
  cfg.params = params;
  // The config is written last: a crash before this leaves no repository, and a
  // second init over the leftovers is allowed.
  return env->WriteFileAtomic(JoinPath(dir, kConfigFile), EncodeConfig(cfg));
}

RepositoryImpl::RepositoryImpl(std::string dir, Env* env, const OpenOptions& opts)
    : Repository(std::move(dir)), env_(env), opts_(opts) {}

RepositoryImpl::~RepositoryImpl() {
  writer_.reset();  // abandons (removes) an unflushed tmp pack
  index_.reset();
  lock_.reset();
}

Result<std::unique_ptr<Repository>> Repository::Open(const std::string& dir,
                                                     std::string_view secret,
                                                     const OpenOptions& opts) {
  return RepositoryImpl::Open(dir, secret, opts);
}

static Result<std::unique_ptr<FileLock>> TakeLock(Env* env, const std::string& dir,
                                                  uint32_t wait_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  for (;;) {
    int stale = 0;
    auto lock = env->LockFile(JoinPath(dir, kLockFile), &stale);
    if (lock.ok()) {
      if (stale > 0)
        fprintf(stderr, "coffer: cleared a stale lock of `%s` left by pid %d (no longer running)\n",
                dir.c_str(), stale);
      return lock;
    }
    if (lock.status().code() != Code::kUnavailable || std::chrono::steady_clock::now() >= deadline)
      return lock.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Result<std::unique_ptr<Repository>> RepositoryImpl::Open(const std::string& dir,
                                                         std::string_view secret,
                                                         const OpenOptions& opts) {
  Env* env = opts.env ? opts.env : Env::Default();
  std::unique_ptr<RepositoryImpl> r(new RepositoryImpl(dir, env, opts));
  RETURN_IF_ERROR(ReadConfig(env, dir, &r->cfg_));
  // Unlock before locking: a wrong passphrase must not touch anything.
  ASSIGN_OR_RETURN(SecretBytes master, KeyEnvelope::Unlock(HeaderPath(dir, opts), secret));
  if (!opts.read_only) {
    ASSIGN_OR_RETURN(r->lock_, TakeLock(env, dir, opts.lock_wait_ms));
  }
  r->keys_ = std::make_unique<RepoKeys>(master, r->cfg_.id);
  ChunkerParams cp{r->cfg_.params.chunk_min, r->cfg_.params.chunk_avg, r->cfg_.params.chunk_max};
  r->cdc_ = std::make_unique<FastCdc>(cp, r->keys_->gear);
  RETURN_IF_ERROR(r->OpenIndexAndReconcile());
  r->reader_ =
      std::make_unique<ChunkReader>(env, dir, r->index_.get(), &r->keys_->data, opts.cache_bytes);
  if (!opts.read_only)
    r->writer_ = std::make_unique<ChunkWriter>(env, dir, r->index_.get(), r->keys_.get(),
                                               r->cfg_.params, opts.threads);
  return std::unique_ptr<Repository>(std::move(r));
}

// A writer cleans up after a crash: unfinished packs in tmp/ were never indexed
// and are removed; finished packs the index lacks (crash between rename and index
// write) are indexed; index entries of packs that are gone are dropped.
Status RepositoryImpl::OpenIndexAndReconcile() {
  std::string ipath = IndexPath(dir_, opts_);
  if (opts_.read_only) {
    auto idx = Index::Open(ipath, true, false);
    if (!idx.ok())
      return idx.status().Annotate(
          "the index is missing or unreadable; run `coffer repair "
          "--rebuild-index`");
    index_ = std::move(idx).value();
    return Status::OK();
  }
  ASSIGN_OR_RETURN(auto tmp, env_->GetChildren(JoinPath(dir_, kTmpDir)));
  for (const std::string& n : tmp) RETURN_IF_ERROR(env_->RemoveFile(JoinPath(dir_, "tmp/" + n)));
  bool fresh = !std::filesystem::exists(ipath);
  ASSIGN_OR_RETURN(index_, Index::Open(ipath, false, true));
  std::set<PackId> indexed;
  RETURN_IF_ERROR(
      index_->ForEachPack([&](const PackId& id, const PackEntry&) { indexed.insert(id); }));
  ASSIGN_OR_RETURN(auto files, ListPackFiles(env_, dir_));
  std::set<PackId> on_disk;
  size_t added = 0;
  for (const std::string& rel : files) {
    PackId id;
    if (!ParsePackName(rel.substr(rel.rfind('/') + 1), &id)) continue;
    on_disk.insert(id);
    if (indexed.count(id)) continue;
    std::vector<std::pair<ChunkId, ChunkLoc>> chunks;
    PackEntry e;
    Status st = ScanPack(
        env_, dir_, rel,
        [&](const ScannedRecord& r) {
          if (!r.status.ok() || !r.meta_ok) return;
          ++e.records;
          uint32_t off = 0;
          for (const ChunkRef& c : r.meta.chunks) {
            chunks.push_back({c.id, ChunkLoc{id, r.offset, static_cast<uint32_t>(r.bytes.size()),
                                             off, c.length, r.meta.header.kind}});
            off += c.length;
          }
        },
        &e.size);
    if (!st.ok()) {
      fprintf(stderr, "coffer: %s (pack not indexed; run `coffer check`)\n", st.ToString().c_str());
      continue;
    }
    e.chunks = static_cast<uint32_t>(chunks.size());
    RETURN_IF_ERROR(index_->AddPack(id, e, chunks));
    ++added;
  }
  if (added > 0 && !fresh)
    fprintf(stderr, "coffer: indexed %zu pack(s) written before an interruption\n", added);
  for (const PackId& id : indexed) {
    if (on_disk.count(id)) continue;
    fprintf(stderr,
            "coffer: pack %s is missing; its chunks are dropped from the index (run "
            "`coffer check --read-data` to see what is affected)\n",
            PackPath(id).c_str());
    std::vector<ChunkId> ids;
    RETURN_IF_ERROR(index_->ForEachChunk([&](const ChunkId& c, const ChunkLoc& l) {
      if (l.pack == id) ids.push_back(c);
    }));
    RETURN_IF_ERROR(index_->RemovePack(id, ids));
  }
  return Status::OK();
}

Status RepositoryImpl::RequireWriter() const {
  if (writer_ == nullptr)
    return Status::FailedPrecondition("repository `" + dir_ + "` is open read-only");
  return Status::OK();
}

// ---- keys ----------------------------------------------------------------------

static std::string HeaderOf(const std::string& dir) { return JoinPath(dir, "keys/luks2.hdr"); }

Result<int> Repository::AddKey(const std::string& dir, std::string_view secret,
                               std::string_view new_secret, std::string_view label,
                               const KeyCost& cost) {
  if (new_secret.empty()) return Status::InvalidArgument("the new passphrase is empty");
  return KeyEnvelope::AddKey(HeaderOf(dir), secret, new_secret,
                             KdfParams{cost.iterations, cost.memory_kib, cost.parallel}, label);
}
Status Repository::RemoveKey(const std::string& dir, std::string_view secret, int slot) {
  return KeyEnvelope::RemoveKey(HeaderOf(dir), secret, slot);
}
Result<std::vector<KeyInfo>> Repository::ListKeys(const std::string& dir) {
  ASSIGN_OR_RETURN(auto slots, KeyEnvelope::List(HeaderOf(dir)));
  std::vector<KeyInfo> out;
  for (const KeySlotInfo& s : slots) out.push_back({s.slot, s.label, s.kdf});
  return out;
}
Status Repository::ExportHeader(const std::string& dir, const std::string& dest) {
  return KeyEnvelope::ExportHeader(HeaderOf(dir), dest);
}
Status Repository::RestoreHeader(const std::string& dir, const std::string& backup) {
  return KeyEnvelope::RestoreHeader(HeaderOf(dir), backup);
}

// ---- roots -----------------------------------------------------------------------

std::string RepositoryImpl::BlobRootName(std::string_view digest) const {
  return std::string(kBlobRootsDir) + "/" + ToHex(keys_->name.Compute(digest));
}

Status RepositoryImpl::WriteRoot(RootKind kind, const std::string& rel, std::string_view plain) {
  std::lock_guard<std::mutex> l(roots_mu_);  // two writers of one root share its .tmp name
  return env_->WriteFileAtomic(JoinPath(dir_, rel), SealRoot(kind, rel, plain, keys_->roots));
}

Result<std::vector<BlobRoot>> RepositoryImpl::LoadBlobRoots() {
  ASSIGN_OR_RETURN(auto names, env_->GetChildren(JoinPath(dir_, kBlobRootsDir)));
  std::vector<BlobRoot> out;
  for (const std::string& n : names) {
    if (n.size() != 64) continue;  // *.tmp of an interrupted write
    std::string rel = std::string(kBlobRootsDir) + "/" + n, file, plain;
    RETURN_IF_ERROR(env_->ReadFileToString(JoinPath(dir_, rel), &file));
    RETURN_IF_ERROR(OpenRoot(file, rel, RootKind::kBlob, keys_->roots, &plain));
    BlobRoot r;
    RETURN_IF_ERROR(DecodeBlobRoot(plain, &r, rel));
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<SnapshotRoot>> RepositoryImpl::LoadSnapshotRoots() {
  ASSIGN_OR_RETURN(auto names, env_->GetChildren(JoinPath(dir_, kSnapshotRootsDir)));
  std::vector<SnapshotRoot> out;
  for (const std::string& n : names) {
    if (n.size() != 16) continue;
    std::string rel = std::string(kSnapshotRootsDir) + "/" + n, file, plain;
    RETURN_IF_ERROR(env_->ReadFileToString(JoinPath(dir_, rel), &file));
    RETURN_IF_ERROR(OpenRoot(file, rel, RootKind::kSnapshot, keys_->roots, &plain));
    SnapshotRoot r;
    RETURN_IF_ERROR(DecodeSnapshotRoot(plain, &r, rel));
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const SnapshotRoot& a, const SnapshotRoot& b) {
    return a.info.time_ns != b.info.time_ns ? a.info.time_ns < b.info.time_ns
                                            : a.info.id < b.info.id;
  });
  return out;
}

// ---- blobs -----------------------------------------------------------------------

Status ChunkStream(const FastCdc& cdc, const Repository::ReadFn& read,
                   const std::function<Status(std::string_view)>& emit) {
  const size_t max = cdc.params().max_size;
  // One buffer per thread, reused: allocating (and zeroing) megabytes for each of
  // thousands of small files cost more than chunking them.
  thread_local std::string buf;
  if (buf.size() < std::max<size_t>(4 * max, 4 << 20))
    buf.resize(std::max<size_t>(4 * max, 4 << 20));
  size_t start = 0, end = 0;
  bool eof = false;
  for (;;) {
    if (!eof && end - start < max) {
      if (start > 0) {  // compact
        std::memmove(buf.data(), buf.data() + start, end - start);
        end -= start;
        start = 0;
      }
      while (!eof && end < buf.size()) {
        ASSIGN_OR_RETURN(size_t n, read(buf.data() + end, buf.size() - end));
        if (n == 0) eof = true;
        end += n;
      }
    }
    if (start == end) return Status::OK();
    size_t cut =
        cdc.NextChunk(reinterpret_cast<const uint8_t*>(buf.data()) + start, end - start, eof);
    if (cut == 0) continue;  // cannot happen after a full refill; defensive
    RETURN_IF_ERROR(emit(std::string_view(buf.data() + start, cut)));
    start += cut;
  }
}

static std::string Digest(const Hash256& h) { return "sha256:" + ToHex(h); }

static bool ParseDigest(std::string_view d, Hash256* h) {
  return d.size() == 71 && d.substr(0, 7) == "sha256:" && FromHex(d.substr(7), h->data(), 32) &&
         d.substr(7).find_first_of("ABCDEF") == std::string_view::npos;
}

Result<BlobInfo> RepositoryImpl::PutBlob(const ReadFn& read, const ProgressFn& progress) {
  RETURN_IF_ERROR(RequireWriter());
  Sha256Stream sha;
  BlobRoot root;
  uint64_t before = writer_->new_bytes();
  Progress p{"put"};
  RETURN_IF_ERROR(ChunkStream(*cdc_, read, [&](std::string_view c) -> Status {
    sha.Update(c);
    ASSIGN_OR_RETURN(ChunkRef ref, writer_->Add(RecordKind::kData, c));
    root.chunks.push_back(ref);
    root.size += c.size();
    p.bytes_done = root.size;
    if (progress) progress(p);
    return Status::OK();
  }));
  root.digest = Digest(sha.Finish());
  RETURN_IF_ERROR(writer_->Flush());  // chunks durable and indexed before the root
  std::string plain;
  EncodeBlobRoot(root, &plain);
  RETURN_IF_ERROR(WriteRoot(RootKind::kBlob, BlobRootName(root.digest), plain));
  return BlobInfo{root.digest, root.size, writer_->new_bytes() - before};
}

void RepositoryImpl::ReadAhead(std::span<const ChunkRef> chunks, std::span<const uint64_t> starts,
                               uint64_t end) {
  if (chunks.empty()) return;
  uint64_t size = starts.back() + chunks.back().length;
  auto chunk_at = [&](uint64_t pos) -> const ChunkId& {
    return chunks[std::upper_bound(starts.begin(), starts.end(), pos) - starts.begin() - 1].id;
  };
  for (uint64_t mib = 1; mib <= 4; ++mib) {
    uint64_t pos = end + (mib << 20);
    if (pos >= size) return;
    reader_->Prefetch(chunk_at(pos));
  }
}

Result<size_t> BlobReader::ReadPieces(uint64_t offset, size_t n, std::vector<ReadPiece>* out) {
  std::shared_ptr<char[]> buf(new char[n]);  // not zero-filled: ReadAt writes it
  ASSIGN_OR_RETURN(size_t got, ReadAt(offset, n, buf.get()));
  const char* data = buf.get();
  out->push_back(ReadPiece{std::move(buf), data, got});
  return got;
}

namespace {

class BlobReaderImpl : public BlobReader {
 public:
  BlobReaderImpl(BlobRoot root, Repository* repo) : root_(std::move(root)), repo_(repo) {
    uint64_t off = 0;
    for (const ChunkRef& c : root_.chunks) {
      starts_.push_back(off);
      off += c.length;
    }
  }
  uint64_t size() const override { return root_.size; }
  Result<size_t> ReadAt(uint64_t offset, size_t n, char* buf) override {
    return ForEachSlice(offset, n, [&](const ChunkId& id, uint32_t in, size_t take, size_t done) {
      return repo_->ReadChunkAt(id, in, take, buf + done);
    });
  }
  Result<size_t> ReadPieces(uint64_t offset, size_t n, std::vector<ReadPiece>* out) override {
    return ForEachSlice(offset, n, [&](const ChunkId& id, uint32_t in, size_t take, size_t) {
      ASSIGN_OR_RETURN(ReadPiece piece, repo_->ReadChunkPiece(id, in, take));
      out->push_back(std::move(piece));
      return Status::OK();
    });
  }

 private:
  // Calls fn(chunk, offset in it, length, bytes done before) for each chunk slice
  // of [offset, offset+n) clipped to the blob, after asking for read-ahead.
  template <class Fn>
  Result<size_t> ForEachSlice(uint64_t offset, size_t n, Fn fn) {
    if (offset >= root_.size) return size_t{0};
    n = static_cast<size_t>(std::min<uint64_t>(n, root_.size - offset));
    size_t i = std::upper_bound(starts_.begin(), starts_.end(), offset) - starts_.begin() - 1;
    repo_->ReadAhead(root_.chunks, starts_, offset + n);
    size_t done = 0;
    while (done < n) {
      uint64_t in = offset + done - starts_[i];
      size_t take = std::min<size_t>(n - done, root_.chunks[i].length - in);
      RETURN_IF_ERROR(fn(root_.chunks[i].id, static_cast<uint32_t>(in), take, done)
                          .Annotate("read blob " + root_.digest));
      done += take;
      ++i;
    }
    return done;
  }

  BlobRoot root_;
  Repository* repo_;
  std::vector<uint64_t> starts_;
};

}  // namespace

namespace {
BlobDecoderFn& Decoder() {
  static BlobDecoderFn fn;
  return fn;
}
}  // namespace

void SetBlobDecoder(BlobDecoderFn fn) { Decoder() = std::move(fn); }

namespace {
BlobEncodingKindFn& EncodingKind() {
  static BlobEncodingKindFn fn;
  return fn;
}
}  // namespace

void SetBlobEncodingKind(BlobEncodingKindFn fn) { EncodingKind() = std::move(fn); }

Result<BlobRoot> RepositoryImpl::LoadBlobRoot(std::string_view digest) {
  Hash256 h;
  if (!ParseDigest(digest, &h))
    return Status::InvalidArgument("`" + std::string(digest) +
                                   "` is not a digest (want "
                                   "sha256:<64 lowercase hex digits>)");
  std::string rel = BlobRootName(digest), file, plain;
  Status st = env_->ReadFileToString(JoinPath(dir_, rel), &file);
  if (st.IsNotFound()) return Status::NotFound("blob " + std::string(digest) + " not found");
  RETURN_IF_ERROR(st);
  RETURN_IF_ERROR(OpenRoot(file, rel, RootKind::kBlob, keys_->roots, &plain));
  BlobRoot root;
  RETURN_IF_ERROR(DecodeBlobRoot(plain, &root, rel));
  if (root.digest != digest) return Status::Corruption(rel + ": names a different blob");
  return root;
}

Result<std::unique_ptr<BlobReader>> RepositoryImpl::OpenBlob(std::string_view digest) {
  ASSIGN_OR_RETURN(BlobRoot root, LoadBlobRoot(digest));
  if (root.encoding.empty())
    return std::unique_ptr<BlobReader>(new BlobReaderImpl(std::move(root), this));
  if (!Decoder())
    return Status::FailedPrecondition("blob " + root.digest +
                                      " is stored encoded (a layer) and this program has no "
                                      "decoder for it");
  BlobRoot form = root;  // the stored form, read as a plain stream
  form.encoding.clear();
  form.size = form.stored_size();
  auto stored = std::unique_ptr<BlobReader>(new BlobReaderImpl(std::move(form), this));
  return Decoder()(root.digest, root.size, root.encoding, std::move(stored));
}

Result<BlobLayout> RepositoryImpl::GetBlobLayout(std::string_view digest) {
  ASSIGN_OR_RETURN(BlobRoot root, LoadBlobRoot(digest));
  uint64_t stored = root.stored_size();
  return BlobLayout{root.digest, root.size, std::move(root.encoding), std::move(root.chunks),
                    stored};
}

Result<std::vector<BlobInfo>> RepositoryImpl::ListBlobs() {
  ASSIGN_OR_RETURN(auto roots, LoadBlobRoots());
  std::vector<BlobInfo> out;
  for (const BlobRoot& r : roots) out.push_back({r.digest, r.size, 0});
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.digest < b.digest; });
  return out;
}

Status RepositoryImpl::DeleteBlob(std::string_view digest) {
  RETURN_IF_ERROR(RequireWriter());
  Hash256 h;
  if (!ParseDigest(digest, &h))
    return Status::InvalidArgument("`" + std::string(digest) + "` is not a digest");
  std::string path = JoinPath(dir_, BlobRootName(digest));
  Status st = env_->RemoveFile(path);
  if (st.IsNotFound()) return Status::NotFound("blob " + std::string(digest) + " not found");
  RETURN_IF_ERROR(st);
  return env_->SyncDir(DirName(path));
}

// ---- snapshots -----------------------------------------------------------------------

Result<std::vector<SnapshotInfo>> RepositoryImpl::ListSnapshots(std::string_view set) {
  ASSIGN_OR_RETURN(auto roots, LoadSnapshotRoots());
  std::vector<SnapshotInfo> out;
  for (SnapshotRoot& r : roots)
    if (set.empty() || r.info.set == set) out.push_back(std::move(r.info));
  return out;
}

Result<SnapshotRoot> RepositoryImpl::FindSnapshotRoot(std::string_view ref) {
  size_t at = ref.find('@');
  std::string set(ref.substr(0, at));
  std::string id = at == std::string_view::npos ? "latest" : std::string(ref.substr(at + 1));
  if (set.empty())
    return Status::InvalidArgument("`" + std::string(ref) + "`: no set name (want SET[@ID])");
  if (id.empty())
    return Status::InvalidArgument("`" + std::string(ref) + "`: no snapshot id after '@'");
  ASSIGN_OR_RETURN(auto roots, LoadSnapshotRoots());
  std::vector<SnapshotRoot*> match;
  for (SnapshotRoot& r : roots) {
    if (r.info.set != set) continue;
    if (id == "latest" || r.info.id.rfind(id, 0) == 0 || (!r.info.tag.empty() && r.info.tag == id))
      match.push_back(&r);
  }
  if (match.empty()) return Status::NotFound("snapshot `" + std::string(ref) + "` not found");
  for (SnapshotRoot* m : match)  // an exact id or tag beats a prefix
    if (m->info.id == id || m->info.tag == id) return std::move(*m);
  if (id != "latest" && match.size() > 1)
    return Status::InvalidArgument("snapshot id prefix `" + id + "` is ambiguous in set " + set);
  return std::move(*match.back());
}

Result<SnapshotInfo> RepositoryImpl::FindSnapshot(std::string_view ref) {
  ASSIGN_OR_RETURN(SnapshotRoot r, FindSnapshotRoot(ref));
  return r.info;
}

Status RepositoryImpl::Forget(std::string_view ref) {
  RETURN_IF_ERROR(RequireWriter());
  if (ref.find('@') == std::string_view::npos)
    return Status::InvalidArgument("forget `" + std::string(ref) +
                                   "`: name one snapshot as SET@ID");
  ASSIGN_OR_RETURN(SnapshotRoot r, FindSnapshotRoot(ref));
  std::string path = JoinPath(dir_, std::string(kSnapshotRootsDir) + "/" + r.info.id);
  RETURN_IF_ERROR(env_->RemoveFile(path));
  return env_->SyncDir(DirName(path));
}

Status RepositoryImpl::ForEachEntry(const SnapshotRoot& root,
                                    const std::function<Status(TreeEntry&)>& fn) {
  std::string buf;
  size_t pos = 0;
  std::string what = "tree of snapshot " + root.info.set + "@" + root.info.id;
  for (size_t i = 0; i <= root.tree.size(); ++i) {
    if (i < root.tree.size()) {
      RETURN_IF_ERROR(ReadChunk(root.tree[i].id, &buf).Annotate("read " + what));
      // Decode only once enough is buffered that no entry can be cut short, except
      // at the end; entries are bounded by their xattrs and chunk lists.
      if (buf.size() - pos < (4u << 20)) continue;
    }
    std::string_view in(buf.data() + pos, buf.size() - pos);
    while (!in.empty()) {
      std::string_view save = in;
      TreeEntry e;
      Status st = DecodeEntry(&in, &e);
      if (!st.ok()) {
        if (i < root.tree.size()) {  // maybe cut at the buffer end: read more
          in = save;
          break;
        }
        return st.Annotate(what);
      }
      RETURN_IF_ERROR(fn(e));
    }
    pos = buf.size() - in.size();
    if (pos > (8u << 20)) {
      buf.erase(0, pos);
      pos = 0;
    }
  }
  return Status::OK();
}

// ---- stats -----------------------------------------------------------------------

static uint64_t DirBytes(Env* env, const std::string& path) {
  auto kids = env->GetChildren(path);
  if (!kids.ok()) {
    auto sz = env->GetFileSize(path);
    return sz.ok() ? *sz : 0;
  }
  uint64_t sum = 0;
  for (const std::string& k : *kids) sum += DirBytes(env, JoinPath(path, k));
  return sum;
}

Result<Stats> RepositoryImpl::GetStats() {
  Stats s;
  RETURN_IF_ERROR(index_->ForEachChunk([&](const ChunkId&, const ChunkLoc& l) {
    ++s.chunks;
    s.unique_bytes += l.length;
  }));
  RETURN_IF_ERROR(index_->ForEachPack([&](const PackId&, const PackEntry& e) {
    ++s.packs;
    s.stored_bytes += e.size;
  }));
  ASSIGN_OR_RETURN(auto blobs, LoadBlobRoots());
  for (const BlobRoot& b : blobs) {
    s.logical_bytes += b.size;
    if (b.encoding.empty()) continue;
    ++s.encoded_blobs;
    s.encoded_blob_bytes += b.size;
    const BlobEncodingKindFn& kind = EncodingKind();
    Stats::EncodedKind& k = s.encoded_by_kind[kind ? kind(b.encoding) : "encoded"];
    ++k.blobs;
    k.bytes += b.size;
  }
  s.blobs = blobs.size();
  ASSIGN_OR_RETURN(auto snaps, LoadSnapshotRoots());
  for (const SnapshotRoot& r : snaps) s.logical_bytes += r.info.bytes;
  s.snapshots = snaps.size();
  s.repo_bytes = DirBytes(env_, dir_);
  return s;
}

}  // namespace chunkstore
