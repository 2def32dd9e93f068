// The building blocks the FUSE layer uses: streaming content writers, chunk reads
// that see not-yet-durable chunks, blob commits, and heads (the durable state of
// a writable tree, saved whole and sealed into snapshots on demand).
#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "repo_impl.h"
#include "tree_sink.h"

namespace chunkstore {
namespace {

// Buffers appended bytes and cuts chunks once at least max_size bytes are ahead of
// the cut point, so the boundaries are exactly those of a one-shot chunking.
class ContentWriterImpl : public ContentWriter {
 public:
  ContentWriterImpl(const FastCdc* cdc, ChunkWriter* w) : cdc_(cdc), w_(w) {}

  // The bytes are always taken; an error (a failed pack write, ENOSPC) is
  // reported, but the chunks cut so far are kept by the writer and the next call
  // carries on where this one stopped.
  Status Append(std::string_view data) override {
    buf_.append(data);
    size_ += data.size();
    return Cut(false);
  }

  Status Boundary() override { return Cut(true); }

  Result<std::vector<ChunkRef>> Finish() override {
    RETURN_IF_ERROR(Cut(true));
    return std::move(chunks_);
  }

  uint64_t size() const override { return size_; }
  const std::vector<ChunkRef>& chunks() const override { return chunks_; }

 private:
  Status Cut(bool eof) {
    const size_t max = cdc_->params().max_size;
    while (buf_.size() - pos_ >= max || (eof && pos_ < buf_.size())) {
      size_t n = cdc_->NextChunk(reinterpret_cast<const uint8_t*>(buf_.data()) + pos_,
                                 buf_.size() - pos_, eof);
      if (n == 0) break;
      ChunkRef ref;
      Status st = w_->AddRef(RecordKind::kData, std::string_view(buf_).substr(pos_, n), &ref);
      chunks_.push_back(ref);  // kept by the writer even when st failed
      pos_ += n;
      RETURN_IF_ERROR(st);
    }
    if (pos_ > (1u << 20)) {  // compact now and then, not on every chunk
      buf_.erase(0, pos_);
      pos_ = 0;
    }
    return Status::OK();
  }

  const FastCdc* cdc_;
  ChunkWriter* w_;
  std::string buf_;
  size_t pos_ = 0;
  uint64_t size_ = 0;
  std::vector<ChunkRef> chunks_;
};

}  // namespace

std::unique_ptr<ContentWriter> RepositoryImpl::NewContentWriter() {
  return std::make_unique<ContentWriterImpl>(cdc_.get(), writer_.get());
}

Status RepositoryImpl::ReadChunk(const ChunkId& id, std::string* out) {
  // Pending first: a chunk moves from pending to the index, never back, so this
  // order cannot miss one that is in flight between the two.
  if (writer_ != nullptr && writer_->ReadPending(id, out)) return Status::OK();
  return reader_->Read(id, out);
}

Status RepositoryImpl::ReadChunkAt(const ChunkId& id, uint32_t offset, size_t n, char* dst) {
  ASSIGN_OR_RETURN(ReadPiece piece, ReadChunkPiece(id, offset, n));
  std::memcpy(dst, piece.data, n);
  return Status::OK();
}

Result<ReadPiece> RepositoryImpl::ReadChunkPiece(const ChunkId& id, uint32_t offset, size_t n) {
  std::string pending;
  if (writer_ != nullptr && writer_->ReadPending(id, &pending)) {
    if (uint64_t(offset) + n > pending.size())
      return Status::InvalidArgument("read past the end of chunk " + ToHex(id));
    auto owner = std::make_shared<std::string>(std::move(pending));
    const char* data = owner->data() + offset;
    return ReadPiece{std::move(owner), data, n};
  }
  return reader_->Piece(id, offset, n);
}

Status RepositoryImpl::Sync() {
  RETURN_IF_ERROR(RequireWriter());
  return writer_->Flush();
}

uint64_t RepositoryImpl::DiscardPending(const std::vector<ChunkId>& live) {
  if (writer_ == nullptr) return 0;
  std::unordered_set<ChunkId, ChunkIdHash> keep(live.begin(), live.end());
  return writer_->DiscardPending([&](const ChunkId& id) { return keep.count(id) > 0; });
}

Result<BlobInfo> RepositoryImpl::CommitBlob(std::string_view digest,
                                            const std::vector<ChunkRef>& chunks) {
  RETURN_IF_ERROR(RequireWriter());
  BlobRoot root;
  root.digest = std::string(digest);
  root.chunks = chunks;
  for (const ChunkRef& c : chunks) root.size += c.length;
  RETURN_IF_ERROR(writer_->Flush());  // chunks durable and indexed before the root
  std::string plain;
  EncodeBlobRoot(root, &plain);
  RETURN_IF_ERROR(WriteRoot(RootKind::kBlob, BlobRootName(root.digest), plain));
  return BlobInfo{root.digest, root.size, 0};
}

Status RepositoryImpl::ReplaceBlob(std::string_view digest, uint64_t size,
                                   std::string_view encoding, const std::vector<ChunkRef>& chunks) {
  RETURN_IF_ERROR(RequireWriter());
  ASSIGN_OR_RETURN(BlobRoot old, LoadBlobRoot(digest));
  if (old.size != size)
    return Status::InvalidArgument("replace blob " + old.digest + ": size " + std::to_string(size) +
                                   ", the blob has " + std::to_string(old.size));
  BlobRoot root{old.digest, size, chunks, std::string(encoding)};
  if (root.encoding.empty() && root.stored_size() != size)
    return Status::InvalidArgument("replace blob " + old.digest + ": the chunks hold " +
                                   std::to_string(root.stored_size()) + " bytes, not " +
                                   std::to_string(size));
  RETURN_IF_ERROR(writer_->Flush());  // the new form durable before the root names it
  std::string plain;
  EncodeBlobRoot(root, &plain);
  return WriteRoot(RootKind::kBlob, BlobRootName(root.digest), plain);
}

std::string RepositoryImpl::HeadRootName(std::string_view set) const {
  return std::string(kHeadRootsDir) + "/" + ToHex(keys_->name.Compute("head:" + std::string(set)));
}

Status RepositoryImpl::SaveHead(std::string_view set,
                                const std::function<Status(const EmitFn&)>& produce) {
  RETURN_IF_ERROR(RequireWriter());
  TreeSink sink(cdc_.get(), writer_.get());
  SnapshotRoot root;
  root.info.set = std::string(set);
  root.info.time_ns = static_cast<int64_t>(env_->NowMicros()) * 1000;
  RETURN_IF_ERROR(produce([&](const TreeEntry& e) -> Status {
    if (!(e.path.empty() && e.type == EntryType::kDir) && !IsSafeRelativePath(e.path))
      return Status::InvalidArgument("head " + std::string(set) + ": unsafe path `" + e.path + "`");
    if (e.type == EntryType::kFile) {
      ++root.info.files;
      root.info.bytes += e.size;
    } else if (e.type == EntryType::kDir) {
      ++root.info.dirs;
    }
    return sink.Add(e);
  }));
  RETURN_IF_ERROR(sink.Finish());
  RETURN_IF_ERROR(writer_->Flush());  // file and tree chunks durable before the root
  root.tree_len = sink.length();
  root.tree = std::move(sink.chunks());
  std::string plain;
  EncodeSnapshotRoot(root, &plain);
  RETURN_IF_ERROR(env_->CreateDirs(JoinPath(dir_, kHeadRootsDir)));
  return WriteRoot(RootKind::kHead, HeadRootName(set), plain);
}

Result<SnapshotRoot> RepositoryImpl::LoadHeadRoot(std::string_view set) {
  std::string rel = HeadRootName(set), file, plain;
  Status st = env_->ReadFileToString(JoinPath(dir_, rel), &file);
  if (st.IsNotFound()) return Status::NotFound("set `" + std::string(set) + "` has no head");
  RETURN_IF_ERROR(st);
  RETURN_IF_ERROR(OpenRoot(file, rel, RootKind::kHead, keys_->roots, &plain));
  SnapshotRoot root;
  RETURN_IF_ERROR(DecodeSnapshotRoot(plain, &root, rel));
  if (root.info.set != set) return Status::Corruption(rel + ": names a different set");
  return root;
}

Result<std::vector<SnapshotRoot>> RepositoryImpl::LoadHeadRoots() {
  std::vector<SnapshotRoot> out;
  auto names = env_->GetChildren(JoinPath(dir_, kHeadRootsDir));
  if (!names.ok()) {
    if (names.status().IsNotFound()) return out;
    return names.status();
  }
  for (const std::string& n : *names) {
    if (n.size() != 64) continue;
    std::string rel = std::string(kHeadRootsDir) + "/" + n, file, plain;
    RETURN_IF_ERROR(env_->ReadFileToString(JoinPath(dir_, rel), &file));
    RETURN_IF_ERROR(OpenRoot(file, rel, RootKind::kHead, keys_->roots, &plain));
    SnapshotRoot r;
    RETURN_IF_ERROR(DecodeSnapshotRoot(plain, &r, rel));
    out.push_back(std::move(r));
  }
  return out;
}

Status RepositoryImpl::LoadHead(std::string_view set, const std::function<Status(TreeEntry&)>& fn) {
  ASSIGN_OR_RETURN(SnapshotRoot root, LoadHeadRoot(set));
  return ForEachEntry(root, fn);
}

Result<std::vector<std::string>> RepositoryImpl::ListHeads() {
  ASSIGN_OR_RETURN(auto roots, LoadHeadRoots());
  std::vector<std::string> out;
  for (const SnapshotRoot& r : roots) out.push_back(r.info.set);
  std::sort(out.begin(), out.end());
  return out;
}

Status RepositoryImpl::DeleteHead(std::string_view set) {
  RETURN_IF_ERROR(RequireWriter());
  std::string path = JoinPath(dir_, HeadRootName(set));
  RETURN_IF_ERROR(env_->RemoveFile(path));
  return env_->SyncDir(DirName(path));
}

Status RepositoryImpl::WriteSnapshotRoot(const SnapshotRoot& root) {
  std::string plain;
  EncodeSnapshotRoot(root, &plain);
  return WriteRoot(RootKind::kSnapshot, std::string(kSnapshotRootsDir) + "/" + root.info.id, plain);
}

Result<SnapshotInfo> RepositoryImpl::SnapshotHead(std::string_view set, std::string_view tag) {
  RETURN_IF_ERROR(RequireWriter());
  std::lock_guard<std::mutex> l(snap_mu_);
  if (!tag.empty()) {
    if (tag.find_first_of("@/\n") != std::string_view::npos || tag == "." || tag == ".." ||
        tag == "latest" || tag == "current")
      return Status::InvalidArgument("snapshot name `" + std::string(tag) + "` is invalid");
    ASSIGN_OR_RETURN(auto existing, ListSnapshots(set));
    for (const SnapshotInfo& s : existing)
      if (s.tag == tag || s.id == tag)
        return Status::AlreadyExists("set " + std::string(set) + " already has a snapshot named `" +
                                     std::string(tag) + "`");
  }
  ASSIGN_OR_RETURN(SnapshotRoot root, LoadHeadRoot(set));
  uint8_t id[8];
  RandomBytes(id, sizeof id);
  root.info.id = ToHex(id, sizeof id);
  root.info.tag = std::string(tag);
  root.info.time_ns = static_cast<int64_t>(env_->NowMicros()) * 1000;
  root.info.paths = {"/backups/" + std::string(set) + "/current"};
  root.info.new_bytes = 0;
  root.info.files_read = 0;
  RETURN_IF_ERROR(WriteSnapshotRoot(root));
  return root.info;
}

Status RepositoryImpl::ForEachSnapshotEntry(std::string_view ref,
                                            const std::function<Status(TreeEntry&)>& fn) {
  ASSIGN_OR_RETURN(SnapshotRoot root, FindSnapshotRoot(ref));
  return ForEachEntry(root, fn);
}

}  // namespace chunkstore
