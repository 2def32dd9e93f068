#include "chunk_writer.h"

namespace chunkstore {

ChunkWriter::ChunkWriter(Env* env, std::string repo_dir, Index* index, const RepoKeys* keys,
                         const RepoParams& params, int threads)
    : env_(env),
      dir_(std::move(repo_dir)),
      index_(index),
      keys_(keys),
      params_(params),
      max_inflight_(static_cast<size_t>(std::max(1, threads)) * 2) {}

ChunkWriter::~ChunkWriter() {
  for (auto& f : inflight_) f.wait();
  AbandonPack();  // never indexed, so nothing durable refers to it
}

Result<ChunkRef> ChunkWriter::Add(RecordKind kind, std::string_view data, bool* is_new) {
  ChunkRef ref{keys_->chunk_id.Compute(data), static_cast<uint32_t>(data.size())};
  std::lock_guard<std::mutex> l(mu_);
  RETURN_IF_ERROR(AddLocked(kind, ref.id, data, false, is_new));
  return ref;
}

Status ChunkWriter::AddRef(RecordKind kind, std::string_view data, ChunkRef* ref) {
  *ref = ChunkRef{keys_->chunk_id.Compute(data), static_cast<uint32_t>(data.size())};
  std::lock_guard<std::mutex> l(mu_);
  return AddLocked(kind, ref->id, data, false, nullptr);
}

Status ChunkWriter::AddForced(RecordKind kind, const ChunkId& id, std::string_view data) {
  std::lock_guard<std::mutex> l(mu_);
  return AddLocked(kind, id, data, true, nullptr);
}

Status ChunkWriter::AddLocked(RecordKind kind, const ChunkId& id, std::string_view data, bool force,
                              bool* is_new) {
  if (is_new) *is_new = false;
  if (pending_.count(id)) return Status::OK();
  if (!force) {
    ASSIGN_OR_RETURN(auto loc, index_->Get(id));
    if (loc.has_value()) return Status::OK();
    new_bytes_ += data.size();
  }
  if (is_new) *is_new = true;
  return Append(kind, id, data);
}

bool ChunkWriter::ReadPending(const ChunkId& id, std::string* out) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = pending_.find(id);
  if (it == pending_.end()) return false;
  out->append(it->second);
  return true;
}

uint64_t ChunkWriter::DiscardPending(const std::function<bool(const ChunkId&)>& keep) {
  std::lock_guard<std::mutex> l(mu_);
  // Everything unindexed becomes a retained record (order kept), the pack in
  // progress is abandoned; the next flush rewrites what is left.
  while (!inflight_.empty()) {
    sealed_.push_back(inflight_.front().get());
    inflight_.pop_front();
  }
  AbandonPack();
  uint64_t dropped = 0;
  std::vector<Sealed> kept;
  for (Sealed& s : sealed_) {
    bool any = false;
    for (const ChunkRef& c : s.chunks) any = any || keep(c.id);
    if (any) {
      kept.push_back(std::move(s));
      continue;
    }
    for (const ChunkRef& c : s.chunks) {
      pending_.erase(c.id);
      dropped += c.length;
    }
  }
  sealed_ = std::move(kept);
  for (Frame& f : frames_) {
    Frame left;
    size_t off = 0;
    for (const ChunkRef& c : f.chunks) {
      if (keep(c.id)) {
        left.chunks.push_back(c);
        left.plain.append(f.plain, off, c.length);
      } else {
        pending_.erase(c.id);
        dropped += c.length;
      }
      off += c.length;
    }
    f = std::move(left);
  }
  return dropped;
}

uint64_t ChunkWriter::new_bytes() const {
  std::lock_guard<std::mutex> l(mu_);
  return new_bytes_;
}

Status ChunkWriter::Append(RecordKind kind, const ChunkId& id, std::string_view data) {
  pending_.emplace(id, std::string(data));
  Frame& f = frames_[static_cast<int>(kind) - 1];
  f.chunks.push_back({id, static_cast<uint32_t>(data.size())});
  f.plain.append(data);
  if (f.plain.size() >= params_.frame_size || f.chunks.size() >= RecordHeader::kMaxChunks)
    return SealFrame(kind);
  return Status::OK();
}

// Hands a frame to a worker thread. Records are written in submission order, so
// the pack keeps stream order for restore locality.
Status ChunkWriter::SealFrame(RecordKind kind) {
  Frame& f = frames_[static_cast<int>(kind) - 1];
  if (f.chunks.empty()) return Status::OK();
  while (inflight_.size() >= max_inflight_) RETURN_IF_ERROR(WriteOne());
  int level = params_.compression_level;
  const Aead* aead = &keys_->data;
  inflight_.push_back(std::async(std::launch::async, [kind, level, aead, fr = std::move(f)]() {
    Sealed s{kind, fr.chunks, {}};
    EncodeRecord(kind, fr.chunks, fr.plain, level, *aead, &s.bytes);
    return s;
  }));
  f = Frame();
  return Status::OK();
}

Status ChunkWriter::WriteOne() {
  Sealed s = inflight_.front().get();
  inflight_.pop_front();
  return WriteRecord(std::move(s));
}

// Records are kept until their pack is indexed, so a failed pack write (ENOSPC,
// EIO) is retried with a fresh pack on the next call instead of losing chunks
// that callers already hold references to.
Status ChunkWriter::WriteRecord(Sealed s) {
  sealed_.push_back(std::move(s));
  Status st = pack_ == nullptr ? StartPack() : AppendSealed(sealed_.back());
  if (st.ok() && pack_->Size() >= params_.pack_size) st = FinishPack();
  if (!st.ok()) AbandonPack();
  return st;
}

Status ChunkWriter::AppendSealed(const Sealed& s) {
  uint64_t offset = pack_->Size();
  RETURN_IF_ERROR(pack_->Append(s.bytes));
  positions_.push_back({offset, static_cast<uint32_t>(s.bytes.size())});
  uint32_t in_frame = 0;
  for (const ChunkRef& c : s.chunks) {
    pack_chunks_.push_back({c.id, ChunkLoc{pack_id_, offset, static_cast<uint32_t>(s.bytes.size()),
                                           in_frame, c.length, s.kind}});
    in_frame += c.length;
  }
  return Status::OK();
}

// Opens a new tmp pack and (re)writes every record not yet in an indexed pack.
Status ChunkWriter::StartPack() {
  RandomBytes(pack_id_.data(), pack_id_.size());
  tmp_path_ = JoinPath(dir_, "tmp/" + ToHex(pack_id_.data(), pack_id_.size()) + ".pack");
  ASSIGN_OR_RETURN(pack_, env_->NewWritableFile(tmp_path_));
  positions_.clear();
  pack_chunks_.clear();
  RETURN_IF_ERROR(pack_->Append(EncodePackHeader(pack_id_)));
  for (const Sealed& s : sealed_) RETURN_IF_ERROR(AppendSealed(s));
  return Status::OK();
}

void ChunkWriter::AbandonPack() {
  if (pack_ != nullptr) {
    (void)pack_->Close();
    (void)env_->RemoveFile(tmp_path_);  // best effort; the next open clears tmp/
    pack_.reset();
  }
  positions_.clear();
  pack_chunks_.clear();
}

// tmp -> fsync -> rename -> fsync dir -> index. Only then are the chunks "stored".
Status ChunkWriter::FinishPack() {
  RETURN_IF_ERROR(pack_->Append(EncodePackTrailer(positions_)));
  RETURN_IF_ERROR(pack_->Sync());
  uint64_t size = pack_->Size();
  RETURN_IF_ERROR(pack_->Close());
  std::string final_path = JoinPath(dir_, PackPath(pack_id_));
  std::string final_dir = DirName(final_path);
  if (!dirs_made_.count(final_dir)) {
    RETURN_IF_ERROR(env_->CreateDirs(final_dir));
    dirs_made_.insert(final_dir);
  }
  RETURN_IF_ERROR(env_->RenameFile(tmp_path_, final_path));
  pack_.reset();
  RETURN_IF_ERROR(env_->SyncDir(final_dir));
  PackEntry e{size, static_cast<uint32_t>(positions_.size()),
              static_cast<uint32_t>(pack_chunks_.size())};
  RETURN_IF_ERROR(index_->AddPack(pack_id_, e, pack_chunks_));
  for (const auto& [id, loc] : pack_chunks_) pending_.erase(id);
  pack_chunks_.clear();
  positions_.clear();
  sealed_.clear();
  return Status::OK();
}

Status ChunkWriter::Flush() {
  std::lock_guard<std::mutex> l(mu_);
  return FlushLocked();
}

Status ChunkWriter::FlushLocked() {
  Status st = SealFrame(RecordKind::kData);
  if (st.ok()) st = SealFrame(RecordKind::kTree);
  while (st.ok() && !inflight_.empty()) st = WriteOne();
  if (st.ok() && !sealed_.empty()) {
    if (pack_ == nullptr) st = StartPack();
    if (st.ok()) st = FinishPack();
    if (!st.ok()) AbandonPack();
  }
  return st;
}

}  // namespace chunkstore
