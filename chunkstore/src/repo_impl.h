// RepositoryImpl: the one implementation of Repository. Its methods are split by
// concern over repository.cc (open, keys, blobs, snapshots, stats), backup.cc,
// restore.cc, check.cc and gc.cc.
#ifndef CHUNKSTORE_REPO_IMPL_H_
#define CHUNKSTORE_REPO_IMPL_H_

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "chunk_reader.h"
#include "chunk_writer.h"
#include "chunkstore/env.h"
#include "chunkstore/store.h"
#include "fastcdc.h"
#include "index.h"
#include "keys.h"
#include "roots.h"
#include "tree.h"

namespace chunkstore {

// Repository layout relative to its directory (docs/format.md §0).
inline constexpr char kConfigFile[] = "config";
inline constexpr char kLockFile[] = "lock";
inline constexpr char kTmpDir[] = "tmp";
inline constexpr char kPacksDir[] = "packs";
inline constexpr char kBlobRootsDir[] = "roots/blobs";
inline constexpr char kSnapshotRootsDir[] = "roots/snapshots";
inline constexpr char kHeadRootsDir[] = "roots/heads";

struct RepoConfig {
  uint32_t version = 1;
  std::string id;  // 32 hex digits, random at init; the HKDF salt
  RepoParams params;
};
Status ValidateParams(const RepoParams& p, const std::string& what);
Status ReadConfig(Env* env, const std::string& dir, RepoConfig* cfg);
std::string EncodeConfig(const RepoConfig& cfg);

std::string IndexPath(const std::string& dir, const OpenOptions& o);
std::string HeaderPath(const std::string& dir, const OpenOptions& o);

// Feeds everything `read` returns through the chunker and calls `emit` per chunk.
Status ChunkStream(const FastCdc& cdc, const Repository::ReadFn& read,
                   const std::function<Status(std::string_view)>& emit);

// Every pack file on disk (relative paths "packs/xx/<hex>").
Result<std::vector<std::string>> ListPackFiles(Env* env, const std::string& dir);
bool ParsePackName(std::string_view name, PackId* id);

// One record found while scanning a pack.
struct ScannedRecord {
  uint64_t offset = 0;
  std::string_view bytes;  // whole record, valid during the callback
  RecordMeta meta;         // valid when status is OK or only the checksum failed
  bool meta_ok = false;
  Status status;  // OK, or what is wrong with this record
};
// Reads a whole pack and calls fn for each record (using the trailer, or a
// sequential walk when the trailer is damaged). Returns problems with the pack
// as a whole (unreadable, bad header, bad trailer); per-record problems go to fn.
Status ScanPack(Env* env, const std::string& dir, const std::string& rel_path,
                const std::function<void(const ScannedRecord&)>& fn, uint64_t* size);

class RepositoryImpl : public Repository {
 public:
  static Result<std::unique_ptr<Repository>> Open(const std::string& dir, std::string_view secret,
                                                  const OpenOptions& opts);
  ~RepositoryImpl() override;

  Result<BlobInfo> PutBlob(const ReadFn& read, const ProgressFn& progress) override;
  Result<std::unique_ptr<BlobReader>> OpenBlob(std::string_view digest) override;
  Result<std::vector<BlobInfo>> ListBlobs() override;
  Status DeleteBlob(std::string_view digest) override;
  Result<SnapshotInfo> Backup(const std::vector<std::string>& paths, std::string_view set,
                              const ProgressFn& progress) override;
  Result<std::vector<SnapshotInfo>> ListSnapshots(std::string_view set) override;
  Result<SnapshotInfo> FindSnapshot(std::string_view ref) override;
  Status Restore(std::string_view ref, const std::string& target, const RestoreOptions& opts,
                 const ProgressFn& progress) override;
  Status Forget(std::string_view ref) override;
  Result<Stats> GetStats() override;
  Result<CheckReport> CheckData(const ProgressFn& progress) override;
  Result<GcReport> Gc(const ProgressFn& progress, const std::vector<ChunkId>& also_live) override;

  std::unique_ptr<ContentWriter> NewContentWriter() override;
  Status ReadChunk(const ChunkId& id, std::string* out) override;
  Status ReadChunkAt(const ChunkId& id, uint32_t offset, size_t n, char* dst) override;
  Result<ReadPiece> ReadChunkPiece(const ChunkId& id, uint32_t offset, size_t n) override;
  Status Sync() override;
  void ReadAhead(std::span<const ChunkRef> chunks, std::span<const uint64_t> starts,
                 uint64_t end) override;
  uint64_t DiscardPending(const std::vector<ChunkId>& live) override;
  Result<BlobInfo> CommitBlob(std::string_view digest,
                              const std::vector<ChunkRef>& chunks) override;
  Result<BlobLayout> GetBlobLayout(std::string_view digest) override;
  Status ReplaceBlob(std::string_view digest, uint64_t size, std::string_view encoding,
                     const std::vector<ChunkRef>& chunks) override;
  Status SaveHead(std::string_view set,
                  const std::function<Status(const EmitFn&)>& produce) override;
  Status LoadHead(std::string_view set, const std::function<Status(TreeEntry&)>& fn) override;
  Result<std::vector<std::string>> ListHeads() override;
  Status DeleteHead(std::string_view set) override;
  Result<SnapshotInfo> SnapshotHead(std::string_view set, std::string_view tag) override;
  Status ForEachSnapshotEntry(std::string_view ref,
                              const std::function<Status(TreeEntry&)>& fn) override;

  // Used by backup and the content writer.
  const FastCdc& cdc() const { return *cdc_; }
  ChunkWriter* writer() { return writer_.get(); }

 private:
  friend class Repository;
  RepositoryImpl(std::string dir, Env* env, const OpenOptions& opts);

  Status OpenIndexAndReconcile();
  Status RequireWriter() const;
  std::string BlobRootName(std::string_view digest) const;
  Status WriteRoot(RootKind kind, const std::string& rel, std::string_view plain);
  Result<std::vector<BlobRoot>> LoadBlobRoots();
  Result<BlobRoot> LoadBlobRoot(std::string_view digest);
  Result<std::vector<SnapshotRoot>> LoadSnapshotRoots();
  Result<std::vector<SnapshotRoot>> LoadHeadRoots();
  Result<SnapshotRoot> LoadHeadRoot(std::string_view set);
  std::string HeadRootName(std::string_view set) const;
  Status WriteSnapshotRoot(const SnapshotRoot& root);
  Result<SnapshotRoot> FindSnapshotRoot(std::string_view ref);
  // Calls fn for each entry of a snapshot's tree, in stream order.
  Status ForEachEntry(const SnapshotRoot& root, const std::function<Status(TreeEntry&)>& fn);
  Status MarkLive(std::vector<std::string>* problems, bool strict,
                  std::function<void(const ChunkId&)> mark);

  Env* const env_;
  const OpenOptions opts_;
  RepoConfig cfg_;
  std::unique_ptr<FileLock> lock_;
  std::mutex roots_mu_;  // serialises root file writes
  std::mutex snap_mu_;   // SnapshotHead: tag check and write are one step
  std::unique_ptr<RepoKeys> keys_;
  std::unique_ptr<FastCdc> cdc_;
  std::unique_ptr<Index> index_;
  std::unique_ptr<ChunkWriter> writer_;  // null when read-only
  std::unique_ptr<ChunkReader> reader_;
};

}  // namespace chunkstore

#endif  // CHUNKSTORE_REPO_IMPL_H_
