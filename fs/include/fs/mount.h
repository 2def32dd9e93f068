// The coffer FUSE daemon: the one process that opens a repository and holds its
// key while the store is mounted. docs/fs.md describes the tree it presents.
#ifndef COFFER_FS_MOUNT_H_
#define COFFER_FS_MOUNT_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chunkstore/status.h"
#include "chunkstore/store.h"

namespace cofferfs {

struct MountOptions {
  std::string mountpoint;
  bool foreground = true;        // false: detach once mounted (mount.coffer, fstab)
  uint64_t idle_timeout_ms = 0;  // 0: never; else unmount after no access this long
  std::string audit_log;         // JSON-lines audit log; empty: none
  std::string control_socket;    // empty: <repo>/daemon.sock
  bool allow_other = false;      // let users other than the mounter in
  // Re-store committed layer blobs (tar, tar+gzip, tar+zstd) as their tar chunked
  // file by file plus a recipe that re-creates the pushed bytes (docs/layers.md).
  // Off by default: layers then take ~0.4x the space, but a pull re-encodes on
  // one core and takes ~2.4x as long as from the pushed bytes (docs/benchmarks.md).
  bool layers = false;
  // Memory for re-created segments of re-stored layers, shared by every
  // reader and kept from the verification at ingestion for the first pull
  // (fs/layer/segment_cache.h); 0: none. Plaintext of layers, memory only.
  uint64_t layer_cache_bytes = uint64_t{256} << 20;  // cofferlayer::kDefaultSegmentCacheBytes
  int threads = 8;                                   // FUSE worker threads
  uint32_t commit_interval_ms = 200;                 // heads changed by close() are saved this soon
  // Called once the mount is live (tests and `coffer serve` wait for it).
  std::function<void()> on_mounted;
  // SIGINT/SIGTERM/SIGHUP end the mount (libfuse's handlers). `coffer serve` turns
  // this off and ends the mount through `stop` once its registry has stopped.
  bool handle_signals = true;
  std::atomic<bool>* stop = nullptr;  // when set true, the mount ends within ~200 ms
  // Runs first on a `gc` control request, before the chunks are collected and
  // outside every fs lock, so it may use the mount (`coffer serve`: the registry
  // deletes blobs no manifest references). `grace_s` is the request's grace
  // period. Returns counters that join the reply, or an error that ends the gc.
  std::function<chunkstore::Result<std::vector<std::pair<std::string, uint64_t>>>(int64_t grace_s)>
      before_gc;
  // Whether the thread `tid` that asks may delete a blob (unlink in
  // /blobs/sha256): `coffer serve` allows its registry process (its garbage
  // collector). Threads of the daemon itself may too; everyone else gets EROFS.
  std::function<bool(pid_t tid)> may_delete_blobs;
};

// Lets this process read blobs stored in layer form (offline commands call it
// once at start; RunMount does it itself).
void EnableLayerBlobs();
// Repository statistics as one line of JSON, the object /.coffer/stats and
// `coffer stats --json` print (docs/cli.md, stats).
std::string StatsJsonLine(const chunkstore::Stats& s);

// Mounts `repo` and serves requests until unmounted (umount, SIGINT/SIGTERM, idle
// timeout). Saves every head before returning. Takes ownership of the repository;
// the key leaves memory when this returns.
chunkstore::Status RunMount(std::unique_ptr<chunkstore::Repository> repo, const MountOptions& opts);

// The path of the control socket of a repository directory.
std::string ControlSocketPath(const std::string& repo_dir);

// Sends one request to a running daemon's control socket and returns its JSON
// reply. Unavailable when no daemon listens.
chunkstore::Result<std::string> ControlRequest(const std::string& socket_path,
                                               const std::string& json_request);

// Appends one event to the audit log at `path` (see docs/fs.md).
chunkstore::Status AppendAudit(const std::string& path, const std::string& event,
                               const std::map<std::string, std::string>& fields);

// Checks the hash chain of an audit log; Corruption names the first bad line.
chunkstore::Status VerifyAuditLog(const std::string& path, size_t* lines);

}  // namespace cofferfs

#endif  // COFFER_FS_MOUNT_H_
