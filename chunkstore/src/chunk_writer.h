// ChunkWriter: the write path. Deduplicates chunks against the index, gathers new
// ones into frames of up to RepoParams::frame_size (compressed together: a frame
// compresses 14-18 % better than its chunks one by one), seals frames on worker
// threads, appends records to a pack in stream order, and seals the pack.
//
// Crash-consistency order (docs/design.md): pack written to tmp/ -> fsync ->
// rename into packs/ -> fsync dir -> index batch (synced). A chunk is "stored"
// only when Flush() returns OK; callers write roots after that.
//
// Thread-safe: one mutex serialises the appends (ids are computed outside it).
// Chunks not yet indexed stay readable through ReadPending. After an I/O error
// (ENOSPC, EIO) the call fails and the pack in progress is abandoned, but its
// records are kept and written again, into a new pack, by the next call: a full
// disk loses nothing once space is freed.
#ifndef CHUNKSTORE_CHUNK_WRITER_H_
#define CHUNKSTORE_CHUNK_WRITER_H_

#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "chunkstore/env.h"
#include "chunkstore/options.h"
#include "format.h"
#include "index.h"
#include "keys.h"

namespace chunkstore {

class ChunkWriter {
 public:
  ChunkWriter(Env* env, std::string repo_dir, Index* index, const RepoKeys* keys,
              const RepoParams& params, int threads);
  ~ChunkWriter();

  // Stores `data` as one chunk unless a chunk with the same id exists.
  Result<ChunkRef> Add(RecordKind kind, std::string_view data, bool* is_new = nullptr);
  // Like Add, but fills *ref even when it fails: a failure here is a failed pack
  // write, and the chunk is kept (pending) all the same, to be written by the next
  // call. Streaming callers use it to stay consistent across ENOSPC.
  Status AddRef(RecordKind kind, std::string_view data, ChunkRef* ref);
  // Stores a chunk whose id is known, even if the index has it (repacking).
  Status AddForced(RecordKind kind, const ChunkId& id, std::string_view data);
  // Everything added so far is durable and indexed when this returns OK.
  Status Flush();

  // Appends the bytes of a chunk that was added but is not indexed yet; false if
  // there is no such chunk.
  bool ReadPending(const ChunkId& id, std::string* out);

  uint64_t new_bytes() const;

  // Forgets chunks that were added but are not indexed yet and for which
  // keep(id) is false; a record is dropped only when none of its chunks is kept.
  // For a writer stuck on a full disk with data that has since been deleted.
  // Returns the plaintext bytes dropped.
  uint64_t DiscardPending(const std::function<bool(const ChunkId&)>& keep);

 private:
  struct Frame {
    std::vector<ChunkRef> chunks;
    std::string plain;
  };
  struct Sealed {
    RecordKind kind;
    std::vector<ChunkRef> chunks;
    std::string bytes;
  };

  Status AddLocked(RecordKind kind, const ChunkId& id, std::string_view data, bool force,
                   bool* is_new);
  Status FlushLocked();
  Status Append(RecordKind kind, const ChunkId& id, std::string_view data);
  Status SealFrame(RecordKind kind);
  Status WriteOne();
  Status WriteRecord(Sealed s);
  Status AppendSealed(const Sealed& s);
  Status StartPack();
  void AbandonPack();
  Status FinishPack();

  Env* const env_;
  const std::string dir_;
  Index* const index_;
  const RepoKeys* const keys_;
  const RepoParams params_;
  const size_t max_inflight_;

  mutable std::mutex mu_;  // guards everything below
  Frame frames_[2];        // indexed by kind - 1
  std::deque<std::future<Sealed>> inflight_;
  // Added, not yet indexed: their bytes, so readers see them before Flush.
  std::unordered_map<ChunkId, std::string, ChunkIdHash> pending_;
  uint64_t new_bytes_ = 0;

  std::vector<Sealed> sealed_;  // records of the pack being built, until it is indexed
  std::unique_ptr<WritableFile> pack_;
  PackId pack_id_{};
  std::string tmp_path_;
  std::vector<PackRecordPos> positions_;
  std::vector<std::pair<ChunkId, ChunkLoc>> pack_chunks_;
  std::unordered_set<std::string> dirs_made_;
};

}  // namespace chunkstore

#endif  // CHUNKSTORE_CHUNK_WRITER_H_
