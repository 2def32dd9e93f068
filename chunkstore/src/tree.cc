#include "tree.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>

#include "coding.h"

namespace chunkstore {
namespace {

int64_t Ns(const struct timespec& t) { return int64_t(t.tv_sec) * 1000000000 + t.tv_nsec; }
struct timespec Ts(int64_t ns) {
  struct timespec t;
  t.tv_sec = ns / 1000000000;
  t.tv_nsec = ns % 1000000000;
  if (t.tv_nsec < 0) {
    t.tv_nsec += 1000000000;
    t.tv_sec -= 1;
  }
  return t;
}

EntryType TypeOf(mode_t m) {
  if (S_ISREG(m)) return EntryType::kFile;
  if (S_ISDIR(m)) return EntryType::kDir;
  if (S_ISLNK(m)) return EntryType::kSymlink;
  if (S_ISCHR(m)) return EntryType::kCharDev;
  if (S_ISBLK(m)) return EntryType::kBlockDev;
  if (S_ISFIFO(m)) return EntryType::kFifo;
  return EntryType::kSocket;
}

Status ReadXattrs(const std::string& path, TreeEntry* e) {
  e->xattrs.clear();
  ssize_t n = llistxattr(path.c_str(), nullptr, 0);
  if (n < 0) {
    if (errno == ENOTSUP) return Status::OK();
    return Status::FromErrno("list xattrs of `" + path + "`", errno);
  }
  std::string names(static_cast<size_t>(n), '\0');
  n = llistxattr(path.c_str(), names.data(), names.size());
  if (n < 0) return Status::FromErrno("list xattrs of `" + path + "`", errno);
  names.resize(static_cast<size_t>(n));
  for (size_t pos = 0; pos < names.size();) {
    std::string name(names.c_str() + pos);
    pos += name.size() + 1;
    ssize_t v = lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (v < 0) {
      if (errno == ENODATA) continue;  // removed between list and get
      return Status::FromErrno("read xattr " + name + " of `" + path + "`", errno);
    }
    std::string value(static_cast<size_t>(v), '\0');
    v = lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    if (v < 0) return Status::FromErrno("read xattr " + name + " of `" + path + "`", errno);
    value.resize(static_cast<size_t>(v));
    e->xattrs.emplace_back(std::move(name), std::move(value));
  }
  return Status::OK();
}

}  // namespace

void EncodeEntry(const TreeEntry& e, std::string* out) {
  PutLengthPrefixed(out, e.path);
  out->push_back(static_cast<char>(e.type));
  PutVarint64(out, e.mode);
  PutVarint64(out, e.uid);
  PutVarint64(out, e.gid);
  PutVarsint64(out, e.mtime_ns);
  PutVarsint64(out, e.atime_ns);
  PutVarsint64(out, e.ctime_ns);
  PutVarint64(out, e.size);
  PutVarint64(out, e.inode);
  PutVarint64(out, e.dev);
  PutVarint64(out, e.rdev);
  PutLengthPrefixed(out, e.link);
  PutVarint64(out, e.xattrs.size());
  for (const auto& [k, v] : e.xattrs) {
    PutLengthPrefixed(out, k);
    PutLengthPrefixed(out, v);
  }
  PutVarint64(out, e.chunks.size());
  for (const ChunkRef& c : e.chunks) {
    out->append(reinterpret_cast<const char*>(c.id.data()), 32);
    PutVarint64(out, c.length);
  }
}

Status DecodeEntry(std::string_view* in, TreeEntry* e) {
  auto bad = [](const char* why) { return Status::Corruption(std::string("tree entry: ") + why); };
  std::string_view path, link, type;
  uint64_t mode, uid, gid, nx, nc;
  if (!GetLengthPrefixed(in, &path) || !GetBytes(in, 1, &type) || !GetVarint64(in, &mode) ||
      !GetVarint64(in, &uid) || !GetVarint64(in, &gid) || !GetVarsint64(in, &e->mtime_ns) ||
      !GetVarsint64(in, &e->atime_ns) || !GetVarsint64(in, &e->ctime_ns) ||
      !GetVarint64(in, &e->size) || !GetVarint64(in, &e->inode) || !GetVarint64(in, &e->dev) ||
      !GetVarint64(in, &e->rdev) || !GetLengthPrefixed(in, &link) || !GetVarint64(in, &nx) ||
      nx > in->size())
    return bad("truncated");
  uint8_t t = static_cast<uint8_t>(type[0]);
  if (t < 1 || t > 8) return bad("unknown type");
  e->type = static_cast<EntryType>(t);
  e->path.assign(path);
  // An empty path names the root directory itself (heads record its metadata).
  if (!(e->path.empty() && e->type == EntryType::kDir) && !IsSafeRelativePath(e->path))
    return bad("unsafe path");
  e->mode = static_cast<uint32_t>(mode & 07777);
  e->uid = static_cast<uint32_t>(uid);
  e->gid = static_cast<uint32_t>(gid);
  e->link.assign(link);
  e->xattrs.resize(nx);
  for (auto& [k, v] : e->xattrs) {
    std::string_view ks, vs;
    if (!GetLengthPrefixed(in, &ks) || !GetLengthPrefixed(in, &vs)) return bad("truncated xattr");
    k.assign(ks);
    v.assign(vs);
  }
  if (!GetVarint64(in, &nc) || nc > in->size() / 33 + 1) return bad("truncated chunk list");
  e->chunks.resize(nc);
  for (ChunkRef& c : e->chunks) {
    std::string_view id;
    uint64_t len;
    if (!GetBytes(in, 32, &id) || !GetVarint64(in, &len) || len > UINT32_MAX)
      return bad("truncated chunk");
    std::memcpy(c.id.data(), id.data(), 32);
    c.length = static_cast<uint32_t>(len);
  }
  return Status::OK();
}

bool IsSafeRelativePath(std::string_view p) {
  if (p.empty() || p[0] == '/' || p.find('\0') != std::string_view::npos) return false;
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    std::string_view c = p.substr(start, end - start);
    if (c.empty() || c == "." || c == "..") return false;
    start = end + 1;
  }
  return true;
}

Status ReadEntryMetadata(const std::string& abs_path, TreeEntry* e) {
  struct stat st;
  if (lstat(abs_path.c_str(), &st) != 0)
    return Status::FromErrno("lstat `" + abs_path + "`", errno);
  e->type = TypeOf(st.st_mode);
  e->mode = st.st_mode & 07777;
  e->uid = st.st_uid;
  e->gid = st.st_gid;
  e->mtime_ns = Ns(st.st_mtim);
  // atime is not recorded: merely reading a tree would change its next snapshot
  // (borg made the same choice). Restore leaves atime at the time of restore.
  e->atime_ns = 0;
  e->ctime_ns = Ns(st.st_ctim);
  e->size = S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size) : 0;
  e->inode = st.st_ino;
  e->dev = st.st_dev;
  e->rdev = (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) ? st.st_rdev : 0;
  if (S_ISLNK(st.st_mode)) {
    std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
    ssize_t n = readlink(abs_path.c_str(), target.data(), target.size());
    if (n < 0) return Status::FromErrno("readlink `" + abs_path + "`", errno);
    target.resize(static_cast<size_t>(n));
    e->link = std::move(target);
  }
  return ReadXattrs(abs_path, e);
}

Status CreateSpecial(const std::string& abs_path, const TreeEntry& e) {
  int rc = 0;
  switch (e.type) {
    case EntryType::kSymlink:
      rc = symlink(e.link.c_str(), abs_path.c_str());
      break;
    case EntryType::kCharDev:
      rc = mknod(abs_path.c_str(), S_IFCHR | (e.mode & 0777), static_cast<dev_t>(e.rdev));
      break;
    case EntryType::kBlockDev:
      rc = mknod(abs_path.c_str(), S_IFBLK | (e.mode & 0777), static_cast<dev_t>(e.rdev));
      break;
    case EntryType::kFifo:
      rc = mkfifo(abs_path.c_str(), e.mode & 0777);
      break;
    case EntryType::kSocket:
      rc = mknod(abs_path.c_str(), S_IFSOCK | (e.mode & 0777), 0);
      break;
    default:
      return Status::InvalidArgument("CreateSpecial on a file or directory");
  }
  if (rc != 0) return Status::FromErrno("create `" + abs_path + "`", errno);
  return Status::OK();
}

Status ApplyMetadata(const std::string& abs_path, const TreeEntry& e, bool owner) {
  const char* p = abs_path.c_str();
  if (owner && lchown(p, e.uid, e.gid) != 0)
    return Status::FromErrno("chown `" + abs_path + "`", errno);
  for (const auto& [k, v] : e.xattrs) {
    if (lsetxattr(p, k.c_str(), v.data(), v.size(), 0) != 0) {
      // trusted.* and security.* need privileges: skip when they are refused
      // rather than fail the whole restore; user.* and ACLs must succeed.
      if ((errno == EPERM || errno == ENOTSUP) && k.rfind("user.", 0) != 0) continue;
      return Status::FromErrno("set xattr " + k + " on `" + abs_path + "`", errno);
    }
  }
  if (e.type != EntryType::kSymlink && chmod(p, e.mode) != 0)
    return Status::FromErrno("chmod `" + abs_path + "`", errno);
  struct timespec ts[2] = {Ts(e.atime_ns), Ts(e.mtime_ns)};
  if (e.atime_ns == 0) ts[0].tv_nsec = UTIME_OMIT;
  if (utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW) != 0)
    return Status::FromErrno("set times of `" + abs_path + "`", errno);
  return Status::OK();
}

}  // namespace chunkstore
