// ChunkReader: the read path. Index lookup (cached) -> pread of the record ->
// decrypt (GCM authenticates it; the XXH3 checksum is consulted only to name a
// failure) -> decompress, with an LRU cache of decompressed frames (a restore or
// a sequential blob read touches each frame once per 1 MiB, not once per chunk),
// a small cache of open pack files, and read-ahead: frames decoded on two
// threads, records further on queued on the disk with fadvise.
//
// Thread-safe. Frames are shared_ptr so a reader keeps its frame alive while the
// cache evicts it.
#ifndef CHUNKSTORE_CHUNK_READER_H_
#define CHUNKSTORE_CHUNK_READER_H_

#include <future>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "chunkstore/env.h"
#include "format.h"
#include "index.h"
#include "worker_pool.h"

namespace chunkstore {

class ChunkReader {
 public:
  ChunkReader(Env* env, std::string repo_dir, const Index* index, const Aead* aead,
              size_t cache_bytes);

  // Appends the chunk's bytes to *out. NotFound if the index lacks it.
  Status Read(const ChunkId& id, std::string* out);
  Status ReadAt(const ChunkLoc& loc, std::string* out);
  // Bytes [offset, offset+n) of the chunk, as a piece of its cached frame.
  Result<ReadPiece> Piece(const ChunkId& id, uint32_t offset, size_t n);
  // Reads the raw bytes [offset, offset+n) of a pack.
  Status ReadPackBytes(const PackId& pack, uint64_t offset, size_t n, std::string* out);
  // Forgets cached file handles of a pack (before it is deleted).
  void Evict(const PackId& pack);
  // Starts reading and decoding the frame of `id` in the background (a hint;
  // errors ignored). Records are read with direct I/O (no OS read-ahead), so
  // this is also what keeps the disk busy ahead of a sequential reader.
  void Prefetch(const ChunkId& id);

 private:
  using FramePtr = std::shared_ptr<const ByteBuffer>;
  // The index entry of `id`, from a cache of recent lookups (a sequential reader
  // asks for every chunk twice, once to prefetch; the index is a RocksDB Get).
  Result<std::optional<ChunkLoc>> Locate(const ChunkId& id);
  Result<FramePtr> LoadFrame(const ChunkLoc& loc);
  Result<FramePtr> Decode(const ChunkLoc& loc);
  static constexpr int kMaxPrefetch = 4;
  Result<std::shared_ptr<RandomAccessFile>> OpenPack(const PackId& pack);

  Env* const env_;
  const std::string dir_;
  const Index* const index_;
  const Aead* const aead_;
  const size_t cache_bytes_;

  std::mutex mu_;  // guards everything below
  using Key = std::pair<PackId, uint64_t>;
  std::list<std::pair<Key, FramePtr>> lru_;  // front = most recent
  std::map<Key, std::list<std::pair<Key, FramePtr>>::iterator> frames_;
  size_t cached_bytes_ = 0;
  static constexpr size_t kMaxSpare = 8;
  std::vector<std::shared_ptr<ByteBuffer>> spare_;  // evicted frames' buffers, for reuse
  std::map<PackId, std::shared_ptr<RandomAccessFile>> files_;
  std::map<Key, std::shared_future<Result<FramePtr>>> loading_;  // frames being decoded
  // Locate's cache; cleared when full, entries of a pack dropped by Evict.
  static constexpr size_t kMaxCachedLocs = 1 << 16;
  std::unordered_map<ChunkId, ChunkLoc, ChunkIdHash> locs_;
  uint64_t evictions_ = 0;  // Evict calls: a lookup that raced one is not cached
  int prefetching_ = 0;
  WorkerPool prefetch_pool_{2};  // last: joined first, while the rest is alive
};

}  // namespace chunkstore

#endif  // CHUNKSTORE_CHUNK_READER_H_
