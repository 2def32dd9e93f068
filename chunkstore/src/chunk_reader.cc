#include "chunk_reader.h"

#include <atomic>
#include <cstring>
#include <future>

namespace chunkstore {
namespace {
constexpr size_t kMaxOpenPacks = 128;
}

ChunkReader::ChunkReader(Env* env, std::string repo_dir, const Index* index, const Aead* aead,
                         size_t cache_bytes)
    : env_(env), dir_(std::move(repo_dir)), index_(index), aead_(aead), cache_bytes_(cache_bytes) {}

Result<std::optional<ChunkLoc>> ChunkReader::Locate(const ChunkId& id) {
  uint64_t evictions;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = locs_.find(id);
    if (it != locs_.end()) return std::optional<ChunkLoc>(it->second);
    evictions = evictions_;
  }
  ASSIGN_OR_RETURN(auto loc, index_->Get(id));
  if (loc.has_value()) {
    std::lock_guard<std::mutex> l(mu_);
    // A pack evicted meanwhile (gc) may be the one this lookup found: not cached.
    if (evictions_ == evictions) {
      if (locs_.size() >= kMaxCachedLocs) locs_.clear();
      locs_.emplace(id, *loc);
    }
  }
  return loc;
}

Status ChunkReader::Read(const ChunkId& id, std::string* out) {
  ASSIGN_OR_RETURN(auto loc, Locate(id));
  if (!loc.has_value())
    return Status::NotFound("chunk " + ToHex(id) +
                            " is not in the index (missing from the "
                            "repository)");
  return ReadAt(*loc, out);
}

Result<ReadPiece> ChunkReader::Piece(const ChunkId& id, uint32_t offset, size_t n) {
  ASSIGN_OR_RETURN(auto loc, Locate(id));
  if (!loc.has_value())
    return Status::NotFound("chunk " + ToHex(id) +
                            " is not in the index (missing from the "
                            "repository)");
  if (uint64_t(offset) + n > loc->length)
    return Status::InvalidArgument("read past the end of chunk " + ToHex(id));
  ASSIGN_OR_RETURN(FramePtr frame, LoadFrame(*loc));
  if (uint64_t(loc->offset_in_frame) + loc->length > frame->size())
    return Status::Corruption("index entry points past the end of its frame in " +
                              PackPath(loc->pack));
  const char* data = frame->data() + loc->offset_in_frame + offset;
  return ReadPiece{std::move(frame), data, n};
}

Status ChunkReader::ReadAt(const ChunkLoc& loc, std::string* out) {
  ASSIGN_OR_RETURN(FramePtr frame, LoadFrame(loc));
  if (uint64_t(loc.offset_in_frame) + loc.length > frame->size())
    return Status::Corruption("index entry points past the end of its frame in " +
                              PackPath(loc.pack));
  out->append(frame->data() + loc.offset_in_frame, loc.length);
  return Status::OK();
}

Result<std::shared_ptr<RandomAccessFile>> ChunkReader::OpenPack(const PackId& pack) {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = files_.find(pack);
    if (it != files_.end()) return it->second;
  }
  ASSIGN_OR_RETURN(auto f, env_->NewRandomAccessFile(JoinPath(dir_, PackPath(pack))));
  std::shared_ptr<RandomAccessFile> sf(std::move(f));
  std::lock_guard<std::mutex> l(mu_);
  if (files_.size() >= kMaxOpenPacks) files_.erase(files_.begin());
  files_[pack] = sf;
  return sf;
}

Status ChunkReader::ReadPackBytes(const PackId& pack, uint64_t offset, size_t n, std::string* out) {
  ASSIGN_OR_RETURN(auto f, OpenPack(pack));
  out->resize(n);
  ASSIGN_OR_RETURN(size_t got, f->Read(offset, n, out->data()));
  if (got != n)
    return Status::Corruption("read " + PackPath(pack) + " at " + std::to_string(offset) +
                              ": pack is truncated");
  return Status::OK();
}

// One load per frame at a time: a reader that wants a frame another thread (or
// the prefetcher) is already loading waits for that load instead of repeating it.
Result<ChunkReader::FramePtr> ChunkReader::LoadFrame(const ChunkLoc& loc) {
  Key key{loc.pack, loc.record_offset};
  std::promise<Result<FramePtr>> promise;
  {
    std::unique_lock<std::mutex> l(mu_);
    auto it = frames_.find(key);
    if (it != frames_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
    auto busy = loading_.find(key);
    if (busy != loading_.end()) {
      auto f = busy->second;
      l.unlock();
      return f.get();
    }
    loading_.emplace(key, promise.get_future().share());
  }
  Result<FramePtr> r = Decode(loc);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (r.ok() && !frames_.count(key)) {
      lru_.emplace_front(key, *r);
      frames_[key] = lru_.begin();
      cached_bytes_ += (*r)->size();
      while (cached_bytes_ > cache_bytes_ && lru_.size() > 1) {
        const FramePtr& old = lru_.back().second;
        cached_bytes_ -= old->size();
        // Nobody else holds it (new holders come only through here, under mu_):
        // its memory serves the next load, without fresh pages to fault in.
        if (old.use_count() == 1 && spare_.size() < kMaxSpare) {
          // use_count is a relaxed load: order the last holder's reads first.
          std::atomic_thread_fence(std::memory_order_acquire);
          spare_.push_back(std::const_pointer_cast<ByteBuffer>(old));
        }
        frames_.erase(lru_.back().first);
        lru_.pop_back();
      }
    }
    loading_.erase(key);
  }
  promise.set_value(r);
  return r;
}

Result<ChunkReader::FramePtr> ChunkReader::Decode(const ChunkLoc& loc) {
  std::string what = "record at " + PackPath(loc.pack) + "+" + std::to_string(loc.record_offset);
  // Per thread, reused: a record is read, checked and decrypted from here.
  thread_local ByteBuffer rec, scratch;
  // Direct I/O, so the aligned span around the record; the slack is ignored.
  constexpr uint64_t kAlign = RandomAccessFile::kDirectAlign;
  uint64_t start = loc.record_offset / kAlign * kAlign;
  uint64_t end = (loc.record_offset + loc.record_len + kAlign - 1) / kAlign * kAlign;
  size_t skip = static_cast<size_t>(loc.record_offset - start);
  rec.Resize(static_cast<size_t>(end - start));
  ASSIGN_OR_RETURN(auto f, OpenPack(loc.pack));
  ASSIGN_OR_RETURN(size_t got, f->ReadDirect(start, rec.size(), rec.data()));
  if (got < skip + loc.record_len)
    return Status::Corruption("read " + PackPath(loc.pack) + " at " +
                              std::to_string(loc.record_offset) + ": pack is truncated");
  const std::string_view record(rec.data() + skip, loc.record_len);
  RecordMeta meta;
  RETURN_IF_ERROR(DecodeRecordMeta(record, &meta, what));
  if (meta.header.RecordSize() != record.size())
    return Status::Corruption(what + ": record length disagrees with the index");
  std::shared_ptr<ByteBuffer> plain;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!spare_.empty()) {
      plain = std::move(spare_.back());
      spare_.pop_back();
    }
  }
  if (!plain) plain = std::make_shared<ByteBuffer>();
  Status opened = OpenRecord(record, meta, *aead_, plain.get(), &scratch, what);
  if (!opened.ok()) {
    // GCM's tag already covers header, table and body: the XXH3 checksum runs
    // only now, to say "damaged bytes" rather than "damaged or wrong key".
    RETURN_IF_ERROR(VerifyRecordChecksum(record, meta, what));
    return opened;
  }
  return FramePtr(std::move(plain));
}

// Read-ahead: decode the frame holding `id` on the prefetch threads, so the
// next read of a sequential reader finds it decoded (two cores: one decodes
// while the other copies to the kernel).
void ChunkReader::Prefetch(const ChunkId& id) {
  auto loc = Locate(id);
  if (!loc.ok() || !loc->has_value()) return;
  Key key{(*loc)->pack, (*loc)->record_offset};
  {
    std::lock_guard<std::mutex> l(mu_);
    if (frames_.count(key) || loading_.count(key) || prefetching_ >= kMaxPrefetch) return;
    ++prefetching_;
  }
  ChunkLoc where = **loc;
  prefetch_pool_.Submit([this, where] {
    (void)LoadFrame(where);  // a failure is reported to the reader that needs it
    std::lock_guard<std::mutex> l(mu_);
    --prefetching_;
  });
}

void ChunkReader::Evict(const PackId& pack) {
  std::lock_guard<std::mutex> l(mu_);
  ++evictions_;
  files_.erase(pack);
  std::erase_if(locs_, [&](const auto& e) { return e.second.pack == pack; });
  for (auto it = lru_.begin(); it != lru_.end();) {
    if (it->first.first == pack) {
      cached_bytes_ -= it->second->size();
      frames_.erase(it->first);
      it = lru_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace chunkstore
