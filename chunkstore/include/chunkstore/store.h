// The repository: a deduplicating, compressed, encrypted store of blobs (addressed
// by sha256) and snapshots of directory trees. See docs/architecture.md for the
// layers and docs/format.md for every byte on disk.
//
// One writer process at a time (an flock'ed lock file); any number of read-only
// openers alongside it. A Repository object is used from one thread at a time
// unless a method says otherwise.
#ifndef CHUNKSTORE_STORE_H_
#define CHUNKSTORE_STORE_H_

#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "chunkstore/options.h"
#include "chunkstore/status.h"

namespace chunkstore {

// A chunk's identity: HMAC-SHA-256 of its plaintext under a repository key.
using ChunkId = std::array<uint8_t, 32>;

struct ChunkIdHash {
  size_t operator()(const ChunkId& id) const {
    size_t h;
    std::memcpy(&h, id.data(), sizeof h);  // ids are HMAC outputs: already uniform
    return h;
  }
};

struct ChunkRef {
  ChunkId id{};
  uint32_t length = 0;
  bool operator==(const ChunkRef&) const = default;
};

enum class EntryType : uint8_t {
  kFile = 1,
  kDir = 2,
  kSymlink = 3,
  kHardlink = 4,  // another name of an earlier kFile entry: `link` is its path
  kCharDev = 5,
  kBlockDev = 6,
  kFifo = 7,
  kSocket = 8,
};

// What a snapshot (or a head) records about one file, directory, link, device or
// fifo. docs/format.md §6.
struct TreeEntry {
  std::string path;  // relative, '/'-separated, no "." or ".." components
  EntryType type = EntryType::kFile;
  uint32_t mode = 0;  // permission bits incl. setuid/setgid/sticky (no S_IFMT)
  uint32_t uid = 0, gid = 0;
  int64_t mtime_ns = 0, atime_ns = 0, ctime_ns = 0;
  uint64_t size = 0;
  uint64_t inode = 0, dev = 0, rdev = 0;
  std::string link;  // symlink target, or hardlink's first path
  std::vector<std::pair<std::string, std::string>> xattrs;  // incl. system.posix_acl_*
  std::vector<ChunkRef> chunks;                             // kFile content
};

// Streams content into content-defined chunks. Append is sequential; not
// thread-safe (one owner). The chunks are readable through the repository at once
// and durable after Repository::Sync().
class ContentWriter {
 public:
  virtual ~ContentWriter() = default;
  virtual Status Append(std::string_view data) = 0;
  // Ends the current chunk here: the next byte starts a new one. A tar-aware
  // writer calls it at a file's first and after its last byte, so the same file
  // gives the same chunks whatever surrounds it.
  virtual Status Boundary() = 0;
  // Cuts the final chunk and returns the chunks of everything appended.
  virtual Result<std::vector<ChunkRef>> Finish() = 0;
  virtual uint64_t size() const = 0;
  // The chunks cut so far (gc must keep them while the writer is open).
  virtual const std::vector<ChunkRef>& chunks() const = 0;
};

// What long operations report; called from the operation's thread, often (callers
// rate-limit their own output).
struct Progress {
  std::string phase;         // "backup", "restore", "check", "gc", ...
  uint64_t items_done = 0;   // files, packs, ...
  uint64_t items_total = 0;  // 0 when unknown
  uint64_t bytes_done = 0;
  uint64_t bytes_total = 0;  // 0 when unknown
  std::string current;       // the object being worked on
};
using ProgressFn = std::function<void(const Progress&)>;

struct BlobInfo {
  std::string digest;  // "sha256:<64 hex>"
  uint64_t size = 0;
  uint64_t new_bytes = 0;  // plaintext bytes of chunks that were not stored before
};

// Random access into one blob. ReadAt may be called from several threads.
// `len` bytes at `data`, kept alive by `owner` (typically a cached frame): a
// read handed out where the bytes already are, so that the FUSE reply is
// written from the frame cache without a copy into a reply buffer.
struct ReadPiece {
  std::shared_ptr<const void> owner;
  const char* data = nullptr;
  size_t len = 0;
};

class BlobReader {
 public:
  virtual ~BlobReader() = default;
  virtual uint64_t size() const = 0;
  // Reads [offset, offset+n) clipped to the blob; returns the bytes read. Reads only
  // the chunks that overlap the range.
  virtual Result<size_t> ReadAt(uint64_t offset, size_t n, char* buf) = 0;
  // The same range as pieces appended to *out, in order (their lengths sum to the
  // result). This default copies with ReadAt into one owned piece.
  virtual Result<size_t> ReadPieces(uint64_t offset, size_t n, std::vector<ReadPiece>* out);
  // True when a read costs the bytes before it (a stream re-created from
  // another form): such a reader is best shared by the readers of one blob.
  virtual bool Sequential() const { return false; }
};

// Blobs stored in another form than their own bytes: a container layer kept as
// its uncompressed tar (chunked file by file) plus the few bytes that re-create
// the exact compressed stream. chunkstore stores the form (`chunks`) and the
// opaque `encoding`; a decoder registered by the layer that knows the encoding
// (fs/layer) turns them back into the blob's bytes. `stored` reads the form.
using BlobDecoderFn = std::function<Result<std::unique_ptr<BlobReader>>(
    std::string_view digest, uint64_t size, std::string_view encoding,
    std::unique_ptr<BlobReader> stored)>;
// Process-wide; set once at start-up, before any repository is opened.
void SetBlobDecoder(BlobDecoderFn fn);
// Names the method behind an `encoding` for Stats::encoded_by_kind ("go-flate",
// "deflate tokens", ...); set beside the decoder. Unset: every kind is "encoded".
using BlobEncodingKindFn = std::function<std::string(std::string_view encoding)>;
void SetBlobEncodingKind(BlobEncodingKindFn fn);

// Where a blob's bytes come from (for the layer that re-encodes blobs).
struct BlobLayout {
  std::string digest;
  uint64_t size = 0;             // the blob's bytes
  std::string encoding;          // empty: `chunks` are the blob's bytes
  std::vector<ChunkRef> chunks;  // the stored form
  uint64_t stored_size = 0;      // bytes of `chunks`
};

struct SnapshotInfo {
  std::string id;  // 16 hex digits
  std::string set;
  std::string tag;      // optional name given by the user (unique within the set)
  int64_t time_ns = 0;  // when the backup started
  std::string host;
  std::vector<std::string> paths;
  uint64_t files = 0;  // regular files
  uint64_t dirs = 0;
  uint64_t bytes = 0;       // logical bytes of regular files (hardlinks once)
  uint64_t new_bytes = 0;   // plaintext bytes of chunks this backup added
  uint64_t files_read = 0;  // files whose content was read (not found unchanged)
};

struct RestoreOptions {
  bool restore_owner = true;  // lchown; only effective as root
};

struct Stats {
  uint64_t logical_bytes = 0;  // blobs + files of every snapshot, as if stored whole
  uint64_t unique_bytes = 0;   // plaintext bytes of distinct chunks
  uint64_t stored_bytes = 0;   // bytes of all pack files
  uint64_t repo_bytes = 0;     // everything under the repository directory
  uint64_t chunks = 0;
  uint64_t packs = 0;
  uint64_t blobs = 0;
  uint64_t encoded_blobs = 0;       // blobs stored in another form (layers: tar + recipe)
  uint64_t encoded_blob_bytes = 0;  // their size as blobs
  struct EncodedKind {
    uint64_t blobs = 0, bytes = 0;
  };
  std::map<std::string, EncodedKind> encoded_by_kind;  // the encoded blobs by method
  uint64_t snapshots = 0;
  double dedup_ratio() const { return unique_bytes ? double(logical_bytes) / unique_bytes : 1; }
  double compression_ratio() const {
    return stored_bytes ? double(unique_bytes) / stored_bytes : 1;
  }
};

struct CheckReport {
  uint64_t packs = 0, records = 0, chunks = 0;
  uint64_t bytes_read = 0;
  std::vector<std::string> problems;  // one readable line per damaged object
  bool ok() const { return problems.empty(); }
};

struct GcReport {
  uint64_t live_chunks = 0, dead_chunks = 0;
  uint64_t packs_deleted = 0, packs_repacked = 0;
  uint64_t bytes_freed = 0;
};

struct RepairReport {
  uint64_t packs = 0, chunks = 0;
  std::vector<std::string> problems;  // packs that could not be read (skipped)
};

struct KeyInfo {
  int slot = -1;
  std::string label;
  std::string kdf;
};

class Repository {
 public:
  virtual ~Repository() = default;

  // Creates a repository in `dir` (must be absent or empty) protected by `secret`
  // (a passphrase or a key file's contents) labelled `label`.
  static Status Init(const std::string& dir, std::string_view secret, std::string_view label,
                     const RepoParams& params, const KeyCost& cost, const OpenOptions& opts);

  // Unlocks and opens. Wrong secret: PermissionDenied. Another writer: Unavailable.
  static Result<std::unique_ptr<Repository>> Open(const std::string& dir, std::string_view secret,
                                                  const OpenOptions& opts);

  // Key management on the envelope; every call is authorised by `secret`.
  static Result<int> AddKey(const std::string& dir, std::string_view secret,
                            std::string_view new_secret, std::string_view label,
                            const KeyCost& cost);
  static Status RemoveKey(const std::string& dir, std::string_view secret, int slot);
  static Result<std::vector<KeyInfo>> ListKeys(const std::string& dir);
  static Status ExportHeader(const std::string& dir, const std::string& dest);
  static Status RestoreHeader(const std::string& dir, const std::string& backup);

  // Structure check without the key: every pack's magic, record checksums and
  // trailer, and the index against the packs. Takes no lock.
  static Result<CheckReport> CheckStructure(const std::string& dir, const OpenOptions& opts,
                                            const ProgressFn& progress);
  // Rebuilds the index from the packs alone (no key needed). Takes the writer lock.
  static Result<RepairReport> RebuildIndex(const std::string& dir, const OpenOptions& opts,
                                           const ProgressFn& progress);

  // Blobs. `read` fills up to n bytes and returns the count, 0 at the end.
  using ReadFn = std::function<Result<size_t>(char* buf, size_t n)>;
  virtual Result<BlobInfo> PutBlob(const ReadFn& read, const ProgressFn& progress) = 0;
  virtual Result<std::unique_ptr<BlobReader>> OpenBlob(std::string_view digest) = 0;
  virtual Result<std::vector<BlobInfo>> ListBlobs() = 0;
  virtual Status DeleteBlob(std::string_view digest) = 0;

  // Snapshots of directory trees.
  virtual Result<SnapshotInfo> Backup(const std::vector<std::string>& paths, std::string_view set,
                                      const ProgressFn& progress) = 0;
  // All snapshots (of `set` if not empty), oldest first.
  virtual Result<std::vector<SnapshotInfo>> ListSnapshots(std::string_view set) = 0;
  // `ref` is "SET", "SET@latest" or "SET@<id or unique id prefix>".
  virtual Result<SnapshotInfo> FindSnapshot(std::string_view ref) = 0;
  virtual Status Restore(std::string_view ref, const std::string& target,
                         const RestoreOptions& opts, const ProgressFn& progress) = 0;
  virtual Status Forget(std::string_view ref) = 0;

  virtual Result<Stats> GetStats() = 0;
  // CheckStructure plus: every record decrypted, every chunk id recomputed, every
  // blob and snapshot walked; names each damaged blob, snapshot and file.
  virtual Result<CheckReport> CheckData(const ProgressFn& progress) = 0;
  // Removes chunks no blob, snapshot or head references; repacks packs that are
  // mostly dead. `also_live` names chunks held only in memory (open uploads and
  // files being written through the mount).
  virtual Result<GcReport> Gc(const ProgressFn& progress,
                              const std::vector<ChunkId>& also_live = {}) = 0;

  // ---- Building blocks for the FUSE layer. Thread-safe, unlike the rest. ----

  virtual std::unique_ptr<ContentWriter> NewContentWriter() = 0;
  // Appends a chunk's bytes to *out (also chunks not yet durable).
  virtual Status ReadChunk(const ChunkId& id, std::string* out) = 0;
  // Copies bytes [offset, offset+n) of a chunk to dst (the hot path of reads
  // through the mount: straight from the cached frame, no intermediate copy).
  virtual Status ReadChunkAt(const ChunkId& id, uint32_t offset, size_t n, char* dst) = 0;
  // The same bytes without the copy: a piece of the cached frame.
  virtual Result<ReadPiece> ReadChunkPiece(const ChunkId& id, uint32_t offset, size_t n) = 0;
  // Read-ahead for a sequential reader of content made of `chunks` (chunk i
  // starting at starts[i]) that has just read up to byte `end`: the frames ~1
  // and ~2 MiB further on are decoded in the background, and the records up to
  // ~8 MiB on are queued on the disk. A hint: errors are left to the reads.
  virtual void ReadAhead(std::span<const ChunkRef> chunks, std::span<const uint64_t> starts,
                         uint64_t end) = 0;
  // Makes every chunk stored so far durable and indexed.
  virtual Status Sync() = 0;
  // Drops stored-but-not-yet-durable chunks that are not in `live` (a mount whose
  // writes failed with ENOSPC and whose data was then deleted; without this the
  // dead data would be retried, and fail, forever). Returns the bytes dropped.
  virtual uint64_t DiscardPending(const std::vector<ChunkId>& live) = 0;
  // Publishes stored chunks as the blob `digest` ("sha256:<hex>"); the caller has
  // verified the digest. Syncs first.
  virtual Result<BlobInfo> CommitBlob(std::string_view digest,
                                      const std::vector<ChunkRef>& chunks) = 0;
  // The stored form of a blob (NotFound when absent).
  virtual Result<BlobLayout> GetBlobLayout(std::string_view digest) = 0;
  // Replaces blob `digest`'s stored form: its bytes are now what the registered
  // decoder makes of `encoding` and `chunks` (empty encoding: the chunks are the
  // bytes, e.g. re-chunked at file boundaries). The caller has verified that
  // they reproduce the digest. Syncs the chunks first; the root is replaced
  // atomically, so a crash leaves the old form or the new one.
  virtual Status ReplaceBlob(std::string_view digest, uint64_t size, std::string_view encoding,
                             const std::vector<ChunkRef>& chunks) = 0;

  // Heads: the durable state of a writable tree (/backups/<set>/current). A head
  // is a tree stream like a snapshot's, replaced as a whole on every save.
  using EmitFn = std::function<Status(const TreeEntry&)>;
  // Syncs chunks, then stores the entries `produce` emits (pre-order) as the head.
  // An entry with an empty path (a directory) records the root's own metadata.
  virtual Status SaveHead(std::string_view set,
                          const std::function<Status(const EmitFn&)>& produce) = 0;
  // NotFound when the set has no head.
  virtual Status LoadHead(std::string_view set, const std::function<Status(TreeEntry&)>& fn) = 0;
  virtual Result<std::vector<std::string>> ListHeads() = 0;
  virtual Status DeleteHead(std::string_view set) = 0;
  // Seals the saved head of `set` as a new snapshot sharing all its chunks.
  virtual Result<SnapshotInfo> SnapshotHead(std::string_view set, std::string_view tag) = 0;
  // Calls fn for each entry of a snapshot ("SET@ID"), in stream order.
  virtual Status ForEachSnapshotEntry(std::string_view ref,
                                      const std::function<Status(TreeEntry&)>& fn) = 0;

  const std::string& dir() const { return dir_; }

 protected:
  explicit Repository(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace chunkstore

#endif  // CHUNKSTORE_STORE_H_
