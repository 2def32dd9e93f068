// FsTree: an in-memory tree of inodes backed by chunks in the repository. The
// writable head of a backup set (/backups/<set>/current) is one; every snapshot
// browsed through the mount is a read-only one.
//
// File content is the "base" (a chunk list in the repository) plus, while a file
// is being written, either a streaming ContentWriter (writes that arrive in order
// from offset 0, the cp/rsync/tar case: chunked as they stream in, memory bounded
// by one max-size chunk) or an overlay of dirty 64 KiB blocks (random writes).
// Materialize() folds the overlay into a new base by re-chunking the file; the
// dedup makes the unchanged parts free to store again.
//
// Thread safety: every method requires mu() held by the caller; FsTree never
// calls back into the FUSE layer.
#ifndef COFFER_FS_TREE_H_
#define COFFER_FS_TREE_H_

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "chunkstore/store.h"

namespace cofferfs {

using chunkstore::ChunkRef;
using chunkstore::EntryType;
using chunkstore::Result;
using chunkstore::Status;

struct FileData {
  std::vector<ChunkRef> chunks;  // the base content
  std::vector<uint64_t> starts;  // offset of each base chunk
  uint64_t base_size = 0;        // bytes in the base; beyond it the file reads zeros
  uint64_t size = 0;             // logical size (>= base_size)
  std::unique_ptr<chunkstore::ContentWriter> stream;  // sequential writes in progress
  std::map<uint64_t, std::string> dirty;              // block number -> kBlock bytes
  bool Clean() const { return !stream && dirty.empty() && size == base_size; }
};

struct TreeInode {
  uint64_t ino = 0;
  EntryType type = EntryType::kFile;  // never kHardlink: links share one inode
  uint32_t mode = 0;                  // permission bits only
  uint32_t uid = 0, gid = 0;
  int64_t atime_ns = 0, mtime_ns = 0, ctime_ns = 0;
  uint64_t rdev = 0;
  uint32_t nlink = 1;
  std::string link;  // symlink target
  std::map<std::string, std::string> xattrs;
  std::map<std::string, std::shared_ptr<TreeInode>> children;  // directories
  FileData data;                                               // regular files
  int writers = 0;                                             // open file handles that may write

  mode_t StatMode() const;
  void FillStat(struct stat* st) const;
};

class FsTree {
 public:
  // `register_inode` assigns a FUSE inode number to a new inode and makes it
  // reachable by that number; it is called with mu() held.
  using RegisterFn = std::function<void(const std::shared_ptr<TreeInode>&)>;
  FsTree(chunkstore::Repository* repo, std::string set, bool read_only, RegisterFn reg);

  std::mutex& mu() { return mu_; }
  const std::string& set() const { return set_; }
  bool read_only() const { return read_only_; }
  const std::shared_ptr<TreeInode>& root() const { return root_; }

  // Builds the tree from entries in pre-order (a head or a snapshot).
  Status Load(
      const std::function<Status(const std::function<Status(chunkstore::TreeEntry&)>&)>& each);
  // Saves the tree as the set's head. Files not open for writing are
  // materialized first; open ones are saved as of their last close.
  // `final` (unmount): open files are materialized too — no more writes can come,
  // and their release may still be queued in the kernel when the session ends.
  Status Save(bool final = false);
  bool dirty() const { return dirty_; }
  void MarkDirty() { dirty_ = true; }

  std::shared_ptr<TreeInode> NewInode(EntryType type, uint32_t mode, uint32_t uid, uint32_t gid);

  // REQUIRES mu() held, except on read-only trees (immutable after Load).
  Result<size_t> Read(TreeInode& f, uint64_t off, size_t n, char* buf);
  Status Write(TreeInode& f, uint64_t off, std::string_view data);
  Status Truncate(TreeInode& f, uint64_t size);
  Status Materialize(TreeInode& f);

 private:
  Status FinishStream(FileData& d);
  Status ReadBase(const FileData& d, uint64_t off, size_t n, char* buf);
  Status LoadBlock(const FileData& d, uint64_t block, std::string* out);
  void SetBase(FileData& d, std::vector<ChunkRef> chunks, uint64_t size);
  Status Emit(const std::string& path, TreeInode& n, std::map<const TreeInode*, std::string>& seen,
              const chunkstore::Repository::EmitFn& emit, bool final);

  chunkstore::Repository* const repo_;
  const std::string set_;
  const bool read_only_;
  RegisterFn register_;
  std::mutex mu_;
  std::shared_ptr<TreeInode> root_;
  bool dirty_ = false;
};

int64_t NowNs();

}  // namespace cofferfs

#endif  // COFFER_FS_TREE_H_
