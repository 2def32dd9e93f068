#include "storage.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <utility>

#include "names.h"

namespace cofferregistry {
namespace {

constexpr long kFuseSuperMagic = 0x65735546;

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

Status Errno(const std::string& what) { return Status::FromErrno(what, errno); }

Status WriteAll(int fd, const char* p, size_t n, uint64_t off, const std::string& what) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EINVAL) return Status::InvalidArgument(what + ": offset refused");
      return Errno(what);
    }
    p += w;
    n -= static_cast<size_t>(w);
    off += static_cast<uint64_t>(w);
  }
  return Status::OK();
}

Status MkdirAll(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST) return Status::OK();
  if (errno != ENOENT) return Errno("mkdir `" + path + "`");
  size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return Errno("mkdir `" + path + "`");
  RETURN_IF_ERROR(MkdirAll(path.substr(0, slash)));
  if (::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST) return Status::OK();
  return Errno("mkdir `" + path + "`");
}

Status FsyncDir(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0 || ::fsync(fd.get()) != 0) return Errno("fsync `" + dir + "`");
  return Status::OK();
}

Result<std::string> Sha256File(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return Errno("open `" + path + "` to hash");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  std::string buf(1 << 18, '\0');
  while (true) {
    ssize_t r = ::read(fd.get(), buf.data(), buf.size());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      EVP_MD_CTX_free(ctx);
      return Errno("read `" + path + "` to hash");
    }
    if (r == 0) break;
    EVP_DigestUpdate(ctx, buf.data(), static_cast<size_t>(r));
  }
  unsigned char md[32];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned i = 0; i < len; ++i) {
    hex.push_back(kHex[md[i] >> 4]);
    hex.push_back(kHex[md[i] & 15]);
  }
  return hex;
}

class PosixUploadWriter : public UploadWriter {
 public:
  PosixUploadWriter(int fd, uint64_t off, std::string path)
      : fd_(fd), off_(off), path_(std::move(path)) {}
  Status Append(const char* data, size_t n) override {
    RETURN_IF_ERROR(WriteAll(fd_.get(), data, n, off_, "write upload `" + path_ + "`"));
    off_ += n;
    return Status::OK();
  }
  uint64_t offset() const override { return off_; }

 private:
  Fd fd_;
  uint64_t off_;
  std::string path_;
};

class PosixStorage : public Storage {
 public:
  PosixStorage(std::string root, bool verify) : root_(std::move(root)), verify_(verify) {}

  Result<uint64_t> BlobSize(const std::string& hex) override {
    struct stat st;
    if (::stat(BlobPath(hex).c_str(), &st) != 0) return Errno("stat blob sha256:" + hex);
    return static_cast<uint64_t>(st.st_size);
  }

  Result<std::pair<int, uint64_t>> OpenBlob(const std::string& hex) override {
    Fd fd(::open(BlobPath(hex).c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return Errno("open blob sha256:" + hex);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return Errno("stat blob sha256:" + hex);
    return std::make_pair(fd.release(), static_cast<uint64_t>(st.st_size));
  }

  Result<std::string> ReadBlob(const std::string& hex, uint64_t max) override {
    return ReadPath(BlobPath(hex), max, "blob sha256:" + hex);
  }

  Status CreateUpload(const std::string& id) override {
    if (verify_) RETURN_IF_ERROR(MkdirAll(root_ + "/uploads"));
    Fd fd(::open(UploadPath(id).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (fd.get() < 0) return Errno("create upload `" + id + "`");
    return Status::OK();
  }

  Result<uint64_t> UploadSize(const std::string& id) override {
    struct stat st;
    if (::stat(UploadPath(id).c_str(), &st) != 0) return Errno("stat upload `" + id + "`");
    return static_cast<uint64_t>(st.st_size);
  }

  Result<std::unique_ptr<UploadWriter>> OpenUpload(const std::string& id,
                                                   uint64_t offset) override {
    std::string path = UploadPath(id);
    Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (fd.get() < 0) return Errno("open upload `" + id + "`");
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return Errno("stat upload `" + id + "`");
    if (static_cast<uint64_t>(st.st_size) != offset)
      return Status::InvalidArgument("upload `" + id + "` has " + std::to_string(st.st_size) +
                                     " bytes, not " + std::to_string(offset));
    return std::unique_ptr<UploadWriter>(new PosixUploadWriter(fd.release(), offset, id));
  }

  Status Publish(const std::string& id, const std::string& hex) override {
    std::string from = UploadPath(id), to = BlobPath(hex);
    if (verify_) {
      ASSIGN_OR_RETURN(std::string actual, Sha256File(from));
      if (actual != hex)
        return Status::InvalidArgument("upload `" + id + "` has digest sha256:" + actual);
      Fd fd(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
      if (fd.get() < 0 || ::fsync(fd.get()) != 0) return Errno("fsync upload `" + id + "`");
      RETURN_IF_ERROR(MkdirAll(root_ + "/blobs/sha256"));
    }
    if (::rename(from.c_str(), to.c_str()) != 0) {
      if (errno == EBADMSG)
        return Status::InvalidArgument("upload `" + id + "` does not have digest sha256:" + hex);
      return Errno("publish upload `" + id + "` as sha256:" + hex);
    }
    if (verify_) return FsyncDir(root_ + "/blobs/sha256");
    return Status::OK();
  }

  Status RemoveBlob(const std::string& hex) override {
    if (::unlink(BlobPath(hex).c_str()) != 0) return Errno("delete blob sha256:" + hex);
    if (verify_) return FsyncDir(root_ + "/blobs/sha256");
    return Status::OK();
  }

  Result<int64_t> ModifiedAt(const std::string& rel) override {
    struct stat st;
    if (::stat(RepoPath(rel).c_str(), &st) != 0) return Errno("stat `repos/" + rel + "`");
    return static_cast<int64_t>(st.st_mtime);
  }

  Status RemoveUpload(const std::string& id) override {
    if (::unlink(UploadPath(id).c_str()) != 0) return Errno("remove upload `" + id + "`");
    return Status::OK();
  }

  Result<std::string> ReadFile(const std::string& rel, uint64_t max) override {
    return ReadPath(RepoPath(rel), max, "`repos/" + rel + "`");
  }

  bool Exists(const std::string& rel) override {
    struct stat st;
    return ::stat(RepoPath(rel).c_str(), &st) == 0;
  }

  bool IsDir(const std::string& rel) override {
    struct stat st;
    return ::stat(RepoPath(rel).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  }

  Status WriteFile(const std::string& rel, const std::string& content) override {
    std::string path = RepoPath(rel);
    std::string dir = path.substr(0, path.rfind('/'));
    RETURN_IF_ERROR(MkdirAll(dir));
    // Dot names are never valid repository, tag or digest names, so a temp file
    // cannot be mistaken for an entry.
    std::string tmp = dir + "/.tmp-" + NewUploadId();
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (fd.get() < 0) return Errno("create `" + tmp + "`");
    Status st = WriteAll(fd.get(), content.data(), content.size(), 0, "write `" + tmp + "`");
    if (st.ok() && verify_ && ::fsync(fd.get()) != 0) st = Errno("fsync `" + tmp + "`");
    if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) st = Errno("rename to `" + path + "`");
    if (!st.ok()) {
      ::unlink(tmp.c_str());
      return st;
    }
    if (verify_) return FsyncDir(dir);
    return Status::OK();
  }

  Status Sync() override {
    if (verify_) return Status::OK();  // each write was already durable
    return FsyncDir(RepoPath(""));     // the mount saves the whole /repos tree
  }

  Status Remove(const std::string& rel) override {
    std::string path = RepoPath(rel);
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return Errno("remove `" + path + "`");
    RETURN_IF_ERROR(RemoveTree(path, st));
    if (verify_) return FsyncDir(path.substr(0, path.rfind('/')));
    return Status::OK();
  }

  Result<std::vector<std::string>> List(const std::string& rel) override {
    std::string path = RepoPath(rel);
    DIR* d = ::opendir(path.c_str());
    if (!d) return Errno("list `" + path + "`");
    std::vector<std::string> out;
    while (struct dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") out.push_back(std::move(n));
    }
    ::closedir(d);
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  std::string BlobPath(const std::string& hex) const { return root_ + "/blobs/sha256/" + hex; }
  std::string UploadPath(const std::string& id) const { return root_ + "/uploads/" + id; }
  std::string RepoPath(const std::string& rel) const {
    return rel.empty() ? root_ + "/repos" : root_ + "/repos/" + rel;
  }

  static Result<std::string> ReadPath(const std::string& path, uint64_t max,
                                      const std::string& what) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return Errno("open " + what);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return Errno("stat " + what);
    if (static_cast<uint64_t>(st.st_size) > max)
      return Status::FailedPrecondition(what + " is larger than " + std::to_string(max) + " bytes");
    std::string out(static_cast<size_t>(st.st_size), '\0');
    size_t got = 0;
    while (got < out.size()) {
      ssize_t r = ::pread(fd.get(), out.data() + got, out.size() - got, static_cast<off_t>(got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return Errno("read " + what);
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    out.resize(got);
    return out;
  }

  static Status RemoveTree(const std::string& path, const struct stat& st) {
    if (S_ISDIR(st.st_mode)) {
      DIR* d = ::opendir(path.c_str());
      if (!d) return Errno("open `" + path + "`");
      std::vector<std::string> names;
      while (struct dirent* e = ::readdir(d)) {
        std::string n = e->d_name;
        if (n != "." && n != "..") names.push_back(std::move(n));
      }
      ::closedir(d);
      for (const auto& n : names) {
        struct stat cst;
        std::string child = path + "/" + n;
        if (::lstat(child.c_str(), &cst) != 0) continue;  // removed meanwhile
        RETURN_IF_ERROR(RemoveTree(child, cst));
      }
      if (::rmdir(path.c_str()) != 0 && errno != ENOENT) return Errno("rmdir `" + path + "`");
      return Status::OK();
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Errno("unlink `" + path + "`");
    return Status::OK();
  }

  const std::string root_;
  const bool verify_;
};

}  // namespace

std::unique_ptr<Storage> NewPosixStorage(const std::string& root, bool verify) {
  return std::make_unique<PosixStorage>(root, verify);
}

bool IsCofferMount(const std::string& root) {
  struct statfs sfs;
  if (::statfs(root.c_str(), &sfs) != 0 || sfs.f_type != kFuseSuperMagic) return false;
  struct stat st;
  return ::stat((root + "/.coffer").c_str(), &st) == 0 &&
         ::stat((root + "/uploads").c_str(), &st) == 0;
}

}  // namespace cofferregistry
