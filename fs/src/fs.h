// Fs: the mounted tree (docs/fs.md) and the FUSE low-level operations on it.
//
//   /blobs/sha256/<hex>                 read-only blobs
//   /uploads/<name>                     append-only staging; rename into
//                                       /blobs/sha256/<hex> checks the sha256
//   /backups/<set>/current/             writable head (FsTree), saved to the repo
//   /backups/<set>/snapshots/<name>/    read-only snapshots (FsTree, read_only)
//   /repos/                             writable tree for the registry's manifests
//                                       and tags (the head of the internal set
//                                       "@registry", which no user set can name)
//   /.coffer/stats                      JSON statistics
//
// Every operation replies exactly once (fuse_reply_*), from the thread that got
// the request. Lock order: table mu_ before any FsTree::mu() before Upload::mu;
// a thread holds at most one FsTree lock.
#ifndef COFFER_FS_FS_H_
#define COFFER_FS_FS_H_

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "chunkstore/store.h"
#include "fs/mount.h"
#include "tree.h"

namespace cofferfs {

class AuditLog;
class LayerIngester;

// The set whose head is /repos ('@' is not allowed in user set names).
inline constexpr char kRegistrySet[] = "@registry";

struct Upload {
  std::mutex mu;  // guards everything below
  std::unique_ptr<chunkstore::ContentWriter> writer;
  void* sha = nullptr;  // EVP_MD_CTX*, owned
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  ~Upload();
};

enum class Kind {
  kRoot,
  kBlobsDir,
  kShaDir,
  kBlob,
  kUploadsDir,
  kUpload,
  kBackupsDir,
  kSetDir,
  kSnapsDir,
  kTree,
  kMetaDir,
  kStats,
  kLayersDir,     // /layers
  kLayersShaDir,  // /layers/sha256: one read-only tree per re-stored layer
  kImagesDir,     // /images
  kImagePath,     // /images/<part of a repository name>: name = the path so far
  kImageTag,      // /images/<repository>/<tag>: name = "<repository>\n<tag>"
};

struct Node {
  Kind kind = Kind::kRoot;
  uint64_t ino = 0;
  std::string name;                              // blob digest, upload name, set name
  std::shared_ptr<FsTree> tree;                  // kTree
  std::shared_ptr<TreeInode> inode;              // kTree
  std::shared_ptr<Upload> upload;                // kUpload
  std::shared_ptr<chunkstore::BlobReader> blob;  // kBlob
};

class Fs {
 public:
  Fs(chunkstore::Repository* repo, const MountOptions& opts, AuditLog* audit);
  ~Fs();
  LayerIngester* ingester() { return ingest_.get(); }

  void Init(struct fuse_conn_info* conn);
  void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  void Getattr(fuse_req_t req, fuse_ino_t ino);
  void Setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set);
  void Readlink(fuse_req_t req, fuse_ino_t ino);
  void Mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev);
  void Mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode);
  void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name, bool dir);
  void Symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name);
  void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
              const char* newname, unsigned flags);
  void Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname);
  void Open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
  void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
              struct fuse_file_info* fi);
  void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi);
  void Write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
             struct fuse_file_info* fi);
  void Flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
  void Release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
  void Fsync(fuse_req_t req, fuse_ino_t ino);
  void Opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi);
  void Readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi);
  void Releasedir(fuse_req_t req, struct fuse_file_info* fi);
  void Statfs(fuse_req_t req);
  void Setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                int flags);
  void Getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size);
  void Listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
  void Removexattr(fuse_req_t req, fuse_ino_t ino, const char* name);

  // Saves every head that changed (or all, with `all`). Called by the commit
  // thread, fsync, snapshot and unmount.
  chunkstore::Status SaveHeads(bool all, bool final = false);
  void Reclaim();
  template <typename Fn>
  auto WithWorldStopped(Fn fn);
  // Control verbs (the control socket and the CLI use these).
  chunkstore::Result<chunkstore::SnapshotInfo> Snapshot(const std::string& set,
                                                        const std::string& tag);
  chunkstore::Result<chunkstore::GcReport> Gc();
  // Queues every blob big enough to be a layer for re-storing (`coffer layers
  // --restore`: blobs pushed before --dedup-layers, or still queued at a stop).
  // Those already re-stored, or not layers, are settled quickly by the job.
  chunkstore::Result<uint64_t> QueueStoredLayers();
  void UnlinkBlob(fuse_req_t req, const char* name);
  chunkstore::Repository* repo() { return repo_; }
  // Nanoseconds since the epoch of the last request (for the idle timeout).
  int64_t last_access_ns() const { return last_access_.load(); }
  int open_files() const { return open_files_.load(); }

 private:
  std::shared_ptr<Node> Get(fuse_ino_t ino);
  std::shared_ptr<Node> AddNode(Node n);  // REQUIRES mu_
  uint64_t NextIno() { return next_ino_++; }
  std::shared_ptr<Node> TreeNode(const std::shared_ptr<FsTree>& t,
                                 const std::shared_ptr<TreeInode>& i);
  void ReplyEntry(fuse_req_t req, const std::shared_ptr<Node>& n);
  bool Attr(const Node& n, struct stat* st);
  double Timeout(const Node& n) const;
  void Touch();

  chunkstore::Status SaveHeadsOnce(bool all, bool final);
  chunkstore::Result<std::shared_ptr<FsTree>> HeadTree(const std::string& set, bool create);
  // The files of re-stored layer `diff_hex` (ingest.h), read-only, cached.
  chunkstore::Result<std::shared_ptr<FsTree>> LayerTree(const std::string& diff_hex);
  chunkstore::Result<std::vector<std::string>> ListLayerTrees();  // diff ids (hex)
  // /images (images.cc): the registry's repositories and tags, and an image's
  // root file system merged from its layer trees.
  chunkstore::Result<std::map<std::string, std::set<std::string>>> ImageTags();
  chunkstore::Result<std::string> ReadBlobSmall(const std::string& digest);
  chunkstore::Result<std::vector<std::string>> ImageLayers(const std::string& repo,
                                                           const std::string& tag,
                                                           std::string* key);
  chunkstore::Result<std::shared_ptr<FsTree>> ImageTree(const std::string& repo,
                                                        const std::string& tag);
  std::shared_ptr<Node> ImageChild(const std::shared_ptr<Node>& dir, const std::string& name,
                                   int* err);
  chunkstore::Result<std::shared_ptr<FsTree>> SnapshotTree(const std::string& set,
                                                           const std::string& name);
  chunkstore::Result<std::vector<std::string>> ListSets();
  std::shared_ptr<Node> Child(const std::shared_ptr<Node>& dir, const std::string& name, int* err);
  void TreeCreate(fuse_req_t req, const std::shared_ptr<Node>& parent, const char* name,
                  EntryType type, mode_t mode, dev_t rdev, const char* link,
                  struct fuse_file_info* fi);
  void RenameUpload(fuse_req_t req, const std::shared_ptr<Node>& from, const std::string& name,
                    const std::shared_ptr<Node>& to, const std::string& newname);
  std::string StatsJson();

  chunkstore::Repository* const repo_;
  const MountOptions opts_;
  AuditLog* const audit_;
  std::atomic<uint64_t> next_ino_{100};
  std::atomic<int64_t> last_access_{0};
  std::atomic<int> open_files_{0};

  // Readers of blobs whose reads cost every byte before them (layers re-created
  // from their tar) are shared by the opens of one blob, so that N concurrent
  // pulls of a layer make it once, not N times (the readers behind the first
  // find its pages in the page cache). Weak: the last release frees it.
  std::shared_ptr<chunkstore::BlobReader> ShareSequential(
      const std::string& hex, std::shared_ptr<chunkstore::BlobReader> fresh);
  std::mutex shared_mu_;  // guards shared_readers_
  std::map<std::string, std::weak_ptr<chunkstore::BlobReader>> shared_readers_;

  std::mutex mu_;  // guards the maps below
  std::unordered_map<uint64_t, std::shared_ptr<Node>> nodes_;
  std::map<std::pair<uint64_t, std::string>, uint64_t> named_;  // (parent, name) -> ino
  std::map<std::string, std::shared_ptr<FsTree>> heads_;
  std::map<std::string, std::shared_ptr<FsTree>> snaps_;   // "set@id"
  std::map<std::string, std::shared_ptr<FsTree>> layers_;  // diff id hex
  std::map<std::string, std::shared_ptr<FsTree>> images_;  // image manifest digest
  std::map<std::string, std::shared_ptr<Upload>> uploads_;
  std::unique_ptr<LayerIngester> ingest_;  // null unless MountOptions::layers; last: stops first
};

// The repository statistics as /.coffer/stats and the control verb `stats`
// render them (docs/cli.md, stats).
nlohmann::json StatsObject(const chunkstore::Stats& s);

// The errno for a Status (ENOSPC stays ENOSPC; corruption is EIO).
int Errno(const chunkstore::Status& st);

}  // namespace cofferfs

#endif  // COFFER_FS_FS_H_
