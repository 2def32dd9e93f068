// Storage: every file operation the registry makes, on the coffer mount or on a
// plain directory laid out the same way (tests, development).
//
//   <root>/blobs/sha256/<hex>   blobs, read with pread
//   <root>/uploads/<id>         append-only staging; Publish() renames into /blobs
//   <root>/repos/...            small files: links, types, tags (see docs/registry.md)
//
// On the mount the daemon checks the digest on rename (EBADMSG on mismatch) and
// fsync(fd) of any /repos file makes the whole tree durable. On a plain directory
// (verify mode) Publish() hashes the upload itself and writes are fsynced one by
// one. Callers pass only validated names, so paths never escape the root.
// Thread-safe: no state beyond the root.
#ifndef COFFER_REGISTRY_STORAGE_H_
#define COFFER_REGISTRY_STORAGE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "chunkstore/status.h"

namespace cofferregistry {

using chunkstore::Result;
using chunkstore::Status;

// An open upload, appended to at increasing offsets. Not thread-safe.
class UploadWriter {
 public:
  virtual ~UploadWriter() = default;
  // Appends at the current offset. InvalidArgument when the store refuses the
  // offset (someone else appended meanwhile).
  virtual Status Append(const char* data, size_t n) = 0;
  virtual uint64_t offset() const = 0;
};

class Storage {
 public:
  virtual ~Storage() = default;

  // --- blobs (hex: 64 lower-case hex digits of a sha256) ---
  virtual Result<uint64_t> BlobSize(const std::string& hex) = 0;  // NotFound
  // An fd open for reading (caller closes) and the blob's size.
  virtual Result<std::pair<int, uint64_t>> OpenBlob(const std::string& hex) = 0;
  // The whole blob when it is at most `max` bytes (FailedPrecondition if larger).
  virtual Result<std::string> ReadBlob(const std::string& hex, uint64_t max) = 0;
  // Deletes the blob (garbage collection). NotFound when absent.
  virtual Status RemoveBlob(const std::string& hex) = 0;

  // --- uploads (id: a validated upload id) ---
  virtual Status CreateUpload(const std::string& id) = 0;
  virtual Result<uint64_t> UploadSize(const std::string& id) = 0;  // NotFound
  // Opens for appending; InvalidArgument unless the upload's size is `offset`.
  virtual Result<std::unique_ptr<UploadWriter>> OpenUpload(const std::string& id,
                                                           uint64_t offset) = 0;
  // Publishes the upload as blob `hex`. InvalidArgument (and the upload stays)
  // when its sha256 is not `hex`.
  virtual Status Publish(const std::string& id, const std::string& hex) = 0;
  virtual Status RemoveUpload(const std::string& id) = 0;  // NotFound

  // --- the /repos tree (rel: a path below /repos built from validated names) ---
  virtual Result<std::string> ReadFile(const std::string& rel, uint64_t max) = 0;
  virtual bool Exists(const std::string& rel) = 0;
  // Replaces rel atomically (temp file + rename), creating parent directories.
  virtual Status WriteFile(const std::string& rel, const std::string& content) = 0;
  // Makes every WriteFile/Remove so far durable (on the mount: fsync of /repos
  // saves the whole tree).
  virtual Status Sync() = 0;
  // Removes a file or a whole directory tree. NotFound when absent.
  virtual Status Remove(const std::string& rel) = 0;
  // Entry names of a directory, sorted. NotFound when absent.
  virtual Result<std::vector<std::string>> List(const std::string& rel) = 0;
  virtual bool IsDir(const std::string& rel) = 0;
  // Last modification, seconds since the epoch. NotFound when absent.
  virtual Result<int64_t> ModifiedAt(const std::string& rel) = 0;
};

// `verify`: hash uploads before publishing and fsync each write (plain
// directory); false: rely on the coffer mount.
std::unique_ptr<Storage> NewPosixStorage(const std::string& root, bool verify);
// True when `root` looks like a coffer mount (a FUSE filesystem with /.coffer).
bool IsCofferMount(const std::string& root);

}  // namespace cofferregistry

#endif  // COFFER_REGISTRY_STORAGE_H_
