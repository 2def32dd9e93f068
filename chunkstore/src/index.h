// The chunk index: RocksDB mapping chunk id -> where its record lives, and the set
// of packs it has absorbed. A cache of what the packs say (docs/format.md §5):
// Repository::RebuildIndex recreates it from the packs alone.
//
// Thread-safe (RocksDB is).
#ifndef CHUNKSTORE_INDEX_H_
#define CHUNKSTORE_INDEX_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "chunkstore/status.h"
#include "format.h"

namespace rocksdb {
class DB;
}

namespace chunkstore {

struct ChunkLoc {
  PackId pack{};
  uint64_t record_offset = 0;
  uint32_t record_len = 0;
  uint32_t offset_in_frame = 0;
  uint32_t length = 0;
  RecordKind kind = RecordKind::kData;
};

struct PackEntry {
  uint64_t size = 0;
  uint32_t records = 0;
  uint32_t chunks = 0;
};

class Index {
 public:
  // Opens (creating if `create`) the RocksDB at `path`.
  static Result<std::unique_ptr<Index>> Open(const std::string& path, bool read_only, bool create);
  ~Index();

  Result<std::optional<ChunkLoc>> Get(const ChunkId& id) const;
  // Records every chunk of a durable pack, atomically and synced.
  Status AddPack(const PackId& pack, const PackEntry& entry,
                 const std::vector<std::pair<ChunkId, ChunkLoc>>& chunks);
  // Forgets a pack and those of `chunks` whose location is in that pack.
  Status RemovePack(const PackId& pack, const std::vector<ChunkId>& chunks);
  Status ForEachPack(const std::function<void(const PackId&, const PackEntry&)>& fn) const;
  Status ForEachChunk(const std::function<void(const ChunkId&, const ChunkLoc&)>& fn) const;

 private:
  Index(std::unique_ptr<rocksdb::DB> db, std::string path);
  std::unique_ptr<rocksdb::DB> db_;
  std::string path_;
};

}  // namespace chunkstore

#endif  // CHUNKSTORE_INDEX_H_
