// Env: every file-system call and clock read the repository makes goes through here.
//
// Three implementations: PosixEnv (Env::Default()), an in-memory Env that models
// what survives a crash (NewMemEnv), and a fault-injecting wrapper that fails the
// Nth call or every call matching a path (NewFaultEnv). Crash tests run a workload
// on a MemEnv, call SimulateCrash(), and reopen: only fsync'd data and
// directory entries made durable by SyncDir() survive, exactly as on ext4 with
// data=ordered and no luck.
//
// Paths are plain strings with '/' separators. Env objects are thread-safe; file
// objects are not (one owner at a time).
#ifndef CHUNKSTORE_ENV_H_
#define CHUNKSTORE_ENV_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "chunkstore/status.h"

namespace chunkstore {

// A file opened for appending. Data is durable only after Sync() returns OK.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual Status Append(std::string_view data) = 0;
  virtual Status Sync() = 0;  // fdatasync: data durable, not the directory entry
  virtual Status Close() = 0;
  virtual uint64_t Size() const = 0;  // bytes appended so far
};

// A file opened for positional reads. Thread-safe for concurrent Read().
class RandomAccessFile {
 public:
  virtual ~RandomAccessFile() = default;
  // Reads up to n bytes at offset into buf; returns the count (short only at EOF).
  virtual Result<size_t> Read(uint64_t offset, size_t n, char* buf) const = 0;
  virtual Result<uint64_t> Size() const = 0;
  // Read() that bypasses the OS page cache where the file system allows it
  // (O_DIRECT), for a caller that caches what it decodes itself: the pack
  // reader, whose plaintext the FUSE page cache and the frame cache hold, so
  // caching the ciphertext as well would cost a copy and a second set of pages
  // for nothing. buf, offset and n must be multiples of kDirectAlign. Falls back
  // to Read() (the default) where direct I/O is not available.
  static constexpr size_t kDirectAlign = 4096;
  virtual Result<size_t> ReadDirect(uint64_t offset, size_t n, char* buf) const {
    return Read(offset, n, buf);
  }
};

// An exclusive lock on a path held by this process; released by the destructor.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

class Env {
 public:
  virtual ~Env() = default;

  // The process-wide POSIX Env. Never deleted.
  static Env* Default();

  // Creates or truncates.
  virtual Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) = 0;
  virtual Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(
      const std::string& path) = 0;
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;
  virtual Status RemoveFile(const std::string& path) = 0;
  // mkdir -p; OK if it exists. New directories are made durable (parents synced).
  virtual Status CreateDirs(const std::string& path) = 0;
  virtual Status RemoveDir(const std::string& path) = 0;  // must be empty
  // Makes the entries of directory `path` (creates, renames, unlinks) durable.
  virtual Status SyncDir(const std::string& path) = 0;
  // Names (not paths) of the entries of `dir`, without "." and "..", unsorted.
  virtual Result<std::vector<std::string>> GetChildren(const std::string& dir) = 0;
  virtual bool FileExists(const std::string& path) = 0;
  virtual Result<uint64_t> GetFileSize(const std::string& path) = 0;

  // Exclusive, non-blocking lock for the one-writer rule. When another live
  // process holds it, fails with Unavailable("... busy (held by pid N)"). A lock
  // left by a process that died is taken over (the kernel dropped it); `*stale_pid`
  // then names the dead holder (0 if there was none).
  virtual Result<std::unique_ptr<FileLock>> LockFile(const std::string& path, int* stale_pid) = 0;

  virtual uint64_t NowMicros() = 0;  // wall clock, microseconds since the epoch

  // Helpers built on the virtual calls above.
  Status ReadFileToString(const std::string& path, std::string* out);
  // Write `data` to path.tmp, fsync, rename over `path`, fsync the directory.
  Status WriteFileAtomic(const std::string& path, std::string_view data);
};

// The in-memory Env. Directory entries and file contents are "durable" only after
// SyncDir()/Sync(); SimulateCrash() throws away everything that was not.
class MemEnv : public Env {
 public:
  // Reverts every file to its last synced contents and every directory to its last
  // synced entries. Open file objects become invalid (their calls fail).
  virtual void SimulateCrash() = 0;
};
std::unique_ptr<MemEnv> NewMemEnv();

// Wraps `base` (not owned). Counts mutating calls (Append, Sync, Rename, Remove,
// CreateDirs, SyncDir, NewWritableFile); the call numbered `fail_at` (1-based) and,
// if `sticky`, every one after it fails with IOError(errno_to_inject).
class FaultEnv : public Env {
 public:
  virtual void FailAt(uint64_t nth_mutation, int errno_to_inject, bool sticky) = 0;
  // Fails reads (RandomAccessFile::Read) of paths containing `substr` with EIO.
  virtual void FailReadsOf(std::string substr) = 0;
  virtual void ClearFaults() = 0;
  virtual uint64_t mutation_count() const = 0;
};
std::unique_ptr<FaultEnv> NewFaultEnv(Env* base);

// Joins with exactly one '/'.
std::string JoinPath(std::string_view a, std::string_view b);
// Directory part of a path ("a/b/c" -> "a/b"; "c" -> ".").
std::string DirName(std::string_view path);

}  // namespace chunkstore

#endif  // CHUNKSTORE_ENV_H_
