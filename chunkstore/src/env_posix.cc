// PosixEnv: the Env of a real process on a real file system (Env::Default()).
//
// Every failure is Status::FromErrno("<operation> `<path>`", errno), so the
// message names the object and the operation and the errno survives to the FUSE
// layer. Every fd is opened O_CLOEXEC: the runtime forks and execs container
// processes, which must not inherit repository files or, worse, the repository
// lock (flock locks live as long as any copy of the open file description).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>

#include "chunkstore/env.h"

namespace chunkstore {
namespace {

// Appends are collected here and written with one write() loop per MiB: pack
// files are written in small record-sized pieces.
constexpr size_t kWritableFileBufferSize = 1 << 20;

std::string Quote(const std::string& path) { return "`" + path + "`"; }

Status PosixError(std::string_view op, const std::string& path, int err) {
  return Status::FromErrno(std::string(op) + " " + Quote(path), err);
}

// open(2) retried on EINTR (possible for FIFOs and some network file systems).
int OpenRetrying(const std::string& path, int flags, mode_t mode = 0) {
  int fd;
  do {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

// Writes all of [data, data+n); on error sets *written to what did reach the fd.
int WriteFully(int fd, const char* data, size_t n, size_t* written) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::write(fd, data + done, n - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      *written = done;
      return errno;
    }
    done += static_cast<size_t>(r);  // a short write just loops
  }
  *written = done;
  return 0;
}

// Reads until n bytes or EOF; returns the count, or -errno.
ssize_t PreadFully(int fd, uint64_t offset, size_t n, char* buf) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, buf + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) break;  // EOF
    done += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(done);
}

class PosixWritableFile final : public WritableFile {
 public:
  PosixWritableFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixWritableFile() override {
    // Like fclose(): buffered data is not thrown away, but nobody is left to
    // hear about an error. Callers that care call Close() themselves.
    if (fd_ >= 0) static_cast<void>(Close());
  }
  PosixWritableFile(const PosixWritableFile&) = delete;
  PosixWritableFile& operator=(const PosixWritableFile&) = delete;

  Status Append(std::string_view data) override {
    if (fd_ < 0) return PosixError("write", path_, EBADF);
    if (data.size() <= kWritableFileBufferSize - buffer_.size()) {
      buffer_.append(data);
      size_ += data.size();
      return Status::OK();
    }
    RETURN_IF_ERROR(Flush());
    if (data.size() < kWritableFileBufferSize) {
      buffer_.append(data);
    } else {
      // Large appends bypass the buffer rather than being copied through it.
      size_t written = 0;
      if (int err = WriteFully(fd_, data.data(), data.size(), &written); err != 0) {
        return PosixError("write", path_, err);
      }
    }
    size_ += data.size();
    return Status::OK();
  }

  Status Sync() override {
    if (fd_ < 0) return PosixError("sync", path_, EBADF);
    RETURN_IF_ERROR(Flush());
    // fdatasync suffices: it also flushes the size change, which later reads
    // need; the timestamps it skips are of no interest. Durability of the
    // directory entry is SyncDir()'s job.
    int r;
    do {
      r = ::fdatasync(fd_);
    } while (r < 0 && errno == EINTR);
    if (r < 0) return PosixError("sync", path_, errno);
    return Status::OK();
  }

  Status Close() override {
    if (fd_ < 0) return Status::OK();
    Status s = Flush();
    // Never retry close(): on Linux the fd is gone even when it reports EINTR.
    if (::close(fd_) < 0 && s.ok()) s = PosixError("close", path_, errno);
    fd_ = -1;
    return s;
  }

  uint64_t Size() const override { return size_; }

 private:
  Status Flush() {
    if (buffer_.empty()) return Status::OK();
    size_t written = 0;
    int err = WriteFully(fd_, buffer_.data(), buffer_.size(), &written);
    buffer_.erase(0, written);  // keep only what did not reach the kernel
    if (err != 0) return PosixError("write", path_, err);
    return Status::OK();
  }

  const std::string path_;
  int fd_;  // -1 once closed
  std::string buffer_;
  uint64_t size_ = 0;
};

class PosixRandomAccessFile final : public RandomAccessFile {
 public:
  PosixRandomAccessFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixRandomAccessFile() override {
    ::close(fd_);
    if (direct_fd_ >= 0) ::close(direct_fd_);
  }
  PosixRandomAccessFile(const PosixRandomAccessFile&) = delete;
  PosixRandomAccessFile& operator=(const PosixRandomAccessFile&) = delete;

  // pread does not move a shared offset, so concurrent reads need no lock.
  Result<size_t> Read(uint64_t offset, size_t n, char* buf) const override {
    ssize_t r = PreadFully(fd_, offset, n, buf);
    if (r < 0) return PosixError("read", path_, static_cast<int>(-r));
    return static_cast<size_t>(r);
  }

  Result<size_t> ReadDirect(uint64_t offset, size_t n, char* buf) const override {
    std::call_once(direct_once_, [this] { direct_fd_ = OpenDirect(); });
    if (direct_fd_ >= 0 && !direct_failed_.load(std::memory_order_relaxed)) {
      size_t done = 0;
      int err = 0;
      while (done < n) {
        ssize_t r = ::pread(direct_fd_, buf + done, n - done, static_cast<off_t>(offset + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
          err = errno;
          break;
        }
        done += static_cast<size_t>(r);
        // EOF, or a short read at it: asking again from an unaligned offset
        // would be EINVAL, not 0.
        if (r == 0 || done % kDirectAlign != 0) break;
      }
      if (err == 0) return done;
      // EINVAL: the file system or device wants another alignment; read through
      // the page cache from now on rather than fail.
      if (err != EINVAL) return PosixError("read", path_, err);
      direct_failed_.store(true, std::memory_order_relaxed);
    }
    return Read(offset, n, buf);
  }

  Result<uint64_t> Size() const override {
    struct stat st;
    if (::fstat(fd_, &st) < 0) return PosixError("stat", path_, errno);
    return static_cast<uint64_t>(st.st_size);
  }

 private:
  // A second descriptor of the same file, with O_DIRECT; -1 where the file
  // system refuses it (tmpfs before 6.6, some FUSE file systems) or the path
  // now names another file.
  int OpenDirect() const {
    int fd = ::open(path_.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat a, b;
    if (::fstat(fd_, &a) != 0 || ::fstat(fd, &b) != 0 || a.st_dev != b.st_dev ||
        a.st_ino != b.st_ino) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  const std::string path_;
  const int fd_;
  mutable std::once_flag direct_once_;
  mutable int direct_fd_ = -1;
  mutable std::atomic<bool> direct_failed_{false};
};

// Holds the flock through the open file description of fd_.
class PosixFileLock final : public FileLock {
 public:
  explicit PosixFileLock(int fd) : fd_(fd) {}
  ~PosixFileLock() override {
    // Empty the file while still holding the lock, so a clean exit leaves no pid
    // and the next holder does not report a stale lock. Not synced: after a
    // machine crash the worst outcome is a harmless stale-pid report.
    static_cast<void>(::ftruncate(fd_, 0));
    ::close(fd_);  // releases the flock
  }
  PosixFileLock(const PosixFileLock&) = delete;
  PosixFileLock& operator=(const PosixFileLock&) = delete;

 private:
  const int fd_;
};

// The pid recorded in a lock file, or 0 if there is none (empty, or written by
// something else).
int ReadPid(int fd) {
  char buf[32];
  ssize_t n = PreadFully(fd, 0, sizeof(buf), buf);
  if (n <= 0) return 0;
  int pid = 0;
  auto [end, ec] = std::from_chars(buf, buf + n, pid);
  if (ec != std::errc() || pid <= 0) return 0;
  return pid;
}

class PosixEnv final : public Env {
 public:
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    int fd = OpenRetrying(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return OpenError(path, "writing", errno);
    std::unique_ptr<WritableFile> file = std::make_unique<PosixWritableFile>(path, fd);
    return file;
  }

  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override {
    int fd = OpenRetrying(path, O_RDONLY);
    if (fd < 0) return OpenError(path, "reading", errno);
    // Opening a directory read-only succeeds; fail here rather than at the
    // first read, with the name of the operation the caller attempted.
    struct stat st;
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
      ::close(fd);
      return Status::FromErrno("open " + Quote(path) + " for reading", EISDIR);
    }
    std::unique_ptr<RandomAccessFile> file = std::make_unique<PosixRandomAccessFile>(path, fd);
    return file;
  }

  Status RenameFile(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) < 0) {
      return Status::FromErrno("rename " + Quote(from) + " to " + Quote(to), errno);
    }
    return Status::OK();
  }

  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) < 0) return PosixError("remove", path, errno);
    return Status::OK();
  }

  Status CreateDirs(const std::string& path) override;

  Status RemoveDir(const std::string& path) override {
    if (::rmdir(path.c_str()) < 0) return PosixError("remove directory", path, errno);
    return Status::OK();
  }

  Status SyncDir(const std::string& path) override {
    int fd = OpenRetrying(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return PosixError("sync directory", path, errno);
    int r;
    do {
      r = ::fsync(fd);
    } while (r < 0 && errno == EINTR);
    int err = errno;
    ::close(fd);
    if (r < 0) return PosixError("sync directory", path, err);
    return Status::OK();
  }

  Result<std::vector<std::string>> GetChildren(const std::string& dir) override {
    int fd = OpenRetrying(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return PosixError("list directory", dir, errno);
    DIR* d = ::fdopendir(fd);  // takes ownership of fd
    if (d == nullptr) {
      int err = errno;
      ::close(fd);
      return PosixError("list directory", dir, err);
    }
    std::vector<std::string> names;
    for (;;) {
      errno = 0;
      struct dirent* e = ::readdir(d);
      if (e == nullptr) break;
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      names.emplace_back(e->d_name);
    }
    int err = errno;
    ::closedir(d);
    if (err != 0) return PosixError("list directory", dir, err);
    return names;
  }

  bool FileExists(const std::string& path) override { return ::access(path.c_str(), F_OK) == 0; }

  Result<uint64_t> GetFileSize(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) < 0) return PosixError("stat", path, errno);
    if (S_ISDIR(st.st_mode)) return PosixError("stat", path, EISDIR);
    return static_cast<uint64_t>(st.st_size);
  }

  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path, int* stale_pid) override;

  uint64_t NowMicros() override {
    struct timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
  }

 private:
  static Status OpenError(const std::string& path, const char* purpose, int err) {
    return Status::FromErrno("open " + Quote(path) + " for " + purpose, err);
  }
};

Status PosixEnv::CreateDirs(const std::string& path) {
  if (path.empty()) return PosixError("create directory", path, ENOENT);
  // Every proper prefix ending before a '/', then the path itself.
  std::vector<std::string> prefixes;
  for (size_t i = 1; i < path.size(); ++i) {
    if (path[i] == '/' && path[i - 1] != '/') prefixes.push_back(path.substr(0, i));
  }
  prefixes.push_back(path);

  std::vector<std::string> changed_parents;
  for (const std::string& dir : prefixes) {
    struct stat st;
    // stat first: mkdir of an existing ancestor we may not write (/, /tmp on a
    // read-only mount) may report EACCES or EROFS instead of EEXIST.
    if (::stat(dir.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) return PosixError("create directory", dir, ENOTDIR);
      continue;
    }
    if (::mkdir(dir.c_str(), 0755) == 0) {
      changed_parents.push_back(DirName(dir));
      continue;
    }
    int err = errno;
    // Lost a race with another creator: fine if it made a directory.
    if (err == EEXIST && ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;
    return PosixError("create directory", dir, err == EEXIST ? ENOTDIR : err);
  }
  // A new directory's entry lives in its parent; only fsync of the parent makes
  // it survive a crash. Each parent here gained exactly one entry.
  for (const std::string& parent : changed_parents) {
    Status s = SyncDir(parent);
    if (!s.ok()) return s.Annotate("create directory " + Quote(path));
  }
  return Status::OK();
}

Result<std::unique_ptr<FileLock>> PosixEnv::LockFile(const std::string& path, int* stale_pid) {
  *stale_pid = 0;
  int fd = OpenRetrying(path, O_RDWR | O_CREAT, 0600);
  if (fd < 0) return PosixError("open lock file", path, errno);
  int r;
  do {
    r = ::flock(fd, LOCK_EX | LOCK_NB);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    int err = errno;
    if (err == EWOULDBLOCK) {
      // The holder may be between flock() and writing its pid; then we have
      // no pid to show.
      int holder = ReadPid(fd);
      ::close(fd);
      return Status::Unavailable(
          Quote(path) + ": repository busy (held by " +
          (holder > 0 ? "pid " + std::to_string(holder) : std::string("another process")) + ")");
    }
    ::close(fd);
    return PosixError("lock", path, err);
  }
  // We hold the lock. A pid still in the file means the previous holder did not
  // release it cleanly; if that process is gone, it died holding the lock.
  int previous = ReadPid(fd);
  if (previous > 0 && previous != ::getpid() && ::kill(previous, 0) < 0 && errno == ESRCH) {
    *stale_pid = previous;
  }
  std::string content = std::to_string(::getpid()) + "\n";
  size_t written = 0;
  int err = 0;
  if (::ftruncate(fd, 0) < 0) {
    err = errno;
  } else if (::lseek(fd, 0, SEEK_SET) < 0) {
    err = errno;
  } else if ((err = WriteFully(fd, content.data(), content.size(), &written)) == 0 &&
             ::fsync(fd) < 0) {
    err = errno;
  }
  if (err != 0) {
    ::close(fd);
    *stale_pid = 0;
    return PosixError("write pid to lock file", path, err);
  }
  std::unique_ptr<FileLock> lock = std::make_unique<PosixFileLock>(fd);
  return lock;
}

}  // namespace

Env* Env::Default() {
  // Leaked on purpose: Env::Default() must stay usable from other static
  // destructors and from threads still running at exit.
  static Env* const env = new PosixEnv();
  return env;
}

}  // namespace chunkstore
