// Fs: mutations and I/O — heads (create, write, rename, links, xattrs, setattr),
// uploads (append-only, digest-checked publish), blob and stats reads.
#include <openssl/evp.h>
#include <sys/uio.h>
#include <sys/xattr.h>

#include <cstring>

#include "acl.h"
#include "audit.h"
#include "fs.h"
#include "ingest.h"

namespace cofferfs {
namespace {

bool ValidName(const char* s) {
  return *s && std::strcmp(s, ".") != 0 && std::strcmp(s, "..") != 0 && std::strlen(s) <= 255 &&
         !std::strchr(s, '/');
}

bool ValidSetName(const char* s) {
  return ValidName(s) && !std::strchr(s, '@') && !std::strchr(s, '\n');
}

EntryType TypeOfMode(mode_t m) {
  if (S_ISDIR(m)) return EntryType::kDir;
  if (S_ISLNK(m)) return EntryType::kSymlink;
  if (S_ISCHR(m)) return EntryType::kCharDev;
  if (S_ISBLK(m)) return EntryType::kBlockDev;
  if (S_ISFIFO(m)) return EntryType::kFifo;
  if (S_ISSOCK(m)) return EntryType::kSocket;
  return EntryType::kFile;
}

// File handles: which kind of open file, and whether it may write.
struct Handle {
  bool write = false;
  std::string stats;  // /.coffer/stats: rendered at open
  // A blob's reader, one per open: a layer re-created from its tar streams per
  // reader, and a blob re-stored meanwhile is read in its current form.
  std::shared_ptr<chunkstore::BlobReader> blob;
};

}  // namespace

// ---- heads: creating entries ------------------------------------------------------

void Fs::TreeCreate(fuse_req_t req, const std::shared_ptr<Node>& parent, const char* name,
                    EntryType type, mode_t mode, dev_t rdev, const char* link,
                    struct fuse_file_info* fi) {
  if (parent->tree->read_only()) return (void)fuse_reply_err(req, EROFS);
  if (!ValidName(name)) return (void)fuse_reply_err(req, EINVAL);
  const struct fuse_ctx* ctx = fuse_req_ctx(req);
  std::shared_ptr<TreeInode> n;
  {
    std::lock_guard<std::mutex> l(parent->tree->mu());
    TreeInode& dir = *parent->inode;
    if (dir.type != EntryType::kDir) return (void)fuse_reply_err(req, ENOTDIR);
    if (dir.children.count(name)) return (void)fuse_reply_err(req, EEXIST);
    // With a default ACL on the parent the new entry inherits it and the umask is
    // ignored; otherwise the umask applies (the kernel leaves both to us:
    // FUSE_CAP_DONT_MASK and FUSE_CAP_POSIX_ACL).
    mode_t m = mode & 07777;
    std::map<std::string, std::string> acls;
    if (type == EntryType::kSymlink ||
        !AclInherit(dir.xattrs, type == EntryType::kDir, m, &acls, &m))
      m &= ~(ctx->umask & 0777);
    n = parent->tree->NewInode(type, m, ctx->uid, ctx->gid);
    n->xattrs = std::move(acls);
    n->rdev = rdev;
    if (link) n->link = link;
    // A new entry in a setgid directory takes the directory's group, as on ext4.
    if (dir.mode & S_ISGID) {
      n->gid = dir.gid;
      if (type == EntryType::kDir) n->mode |= S_ISGID;
    }
    if (fi && (fi->flags & O_ACCMODE) != O_RDONLY) ++n->writers;
    dir.children[name] = n;
    dir.mtime_ns = dir.ctime_ns = NowNs();
    parent->tree->MarkDirty();
  }
  auto node = TreeNode(parent->tree, n);
  if (!fi) return ReplyEntry(req, node);
  struct fuse_entry_param e;
  std::memset(&e, 0, sizeof e);
  e.ino = node->ino;
  e.generation = 1;
  Attr(*node, &e.attr);
  e.attr_timeout = e.entry_timeout = Timeout(*node);
  auto* h = new Handle{(fi->flags & O_ACCMODE) != O_RDONLY, {}};
  fi->fh = reinterpret_cast<uint64_t>(h);
  ++open_files_;
  fuse_reply_create(req, &e, fi);
}

void Fs::Mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  auto p = Get(parent);
  if (!p) return (void)fuse_reply_err(req, ESTALE);
  if (p->kind != Kind::kTree)
    return (void)fuse_reply_err(req, p->kind == Kind::kUploadsDir ? EPERM : EROFS);
  TreeCreate(req, p, name, TypeOfMode(mode), mode, rdev, nullptr, nullptr);
}

void Fs::Symlink(fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
  auto p = Get(parent);
  if (!p) return (void)fuse_reply_err(req, ESTALE);
  if (p->kind != Kind::kTree) return (void)fuse_reply_err(req, EROFS);
  TreeCreate(req, p, name, EntryType::kSymlink, 0777, 0, link, nullptr);
}

void Fs::Mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  auto p = Get(parent);
  if (!p) return (void)fuse_reply_err(req, ESTALE);
  if (p->kind == Kind::kTree)
    return TreeCreate(req, p, name, EntryType::kDir, mode, 0, nullptr, nullptr);
  if (p->kind == Kind::kBackupsDir) {  // a new backup set with an empty head
    if (!ValidSetName(name)) return (void)fuse_reply_err(req, EINVAL);
    auto sets = ListSets();
    if (sets.ok() && std::binary_search(sets->begin(), sets->end(), std::string(name)))
      return (void)fuse_reply_err(req, EEXIST);
    auto t = HeadTree(name, true);
    if (!t.ok()) return (void)fuse_reply_err(req, Errno(t.status()));
    if (audit_) audit_->Note("set-create", {{"set", name}});
    int err;
    auto n = Child(p, name, &err);
    return n ? ReplyEntry(req, n) : (void)fuse_reply_err(req, err);
  }
  if (p->kind == Kind::kSnapsDir) {  // seal the head as a snapshot named `name`
    if (!ValidSetName(name)) return (void)fuse_reply_err(req, EINVAL);
    auto s = Snapshot(p->name, name);
    if (!s.ok()) return (void)fuse_reply_err(req, Errno(s.status()));
    int err;
    auto n = Child(p, name, &err);
    return n ? ReplyEntry(req, n) : (void)fuse_reply_err(req, err);
  }
  fuse_reply_err(req, p->kind == Kind::kUploadsDir ? EPERM : EROFS);
}

void Fs::Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
                struct fuse_file_info* fi) {
  auto p = Get(parent);
  if (!p) return (void)fuse_reply_err(req, ESTALE);
  if (p->kind == Kind::kTree)
    return TreeCreate(req, p, name, EntryType::kFile, mode, 0, nullptr, fi);
  if (p->kind != Kind::kUploadsDir) return (void)fuse_reply_err(req, EROFS);
  if (!ValidName(name)) return (void)fuse_reply_err(req, EINVAL);
  auto u = std::make_shared<Upload>();
  u->writer = repo_->NewContentWriter();
  u->sha = EVP_MD_CTX_new();
  EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(u->sha), EVP_sha256(), nullptr);
  u->mtime_ns = NowNs();
  {
    std::lock_guard<std::mutex> l(mu_);
    if (uploads_.count(name) && (fi->flags & O_EXCL)) return (void)fuse_reply_err(req, EEXIST);
    uploads_[name] = u;  // O_CREAT without O_EXCL over an upload starts it afresh
  }
  int err;
  auto n = Child(p, name, &err);
  if (!n) return (void)fuse_reply_err(req, err);
  struct fuse_entry_param e;
  std::memset(&e, 0, sizeof e);
  e.ino = n->ino;
  e.generation = 1;
  Attr(*n, &e.attr);
  fi->fh = reinterpret_cast<uint64_t>(new Handle{true, {}});
  fi->direct_io = 1;
  ++open_files_;
  fuse_reply_create(req, &e, fi);
}

// ---- heads: removing, renaming, linking -------------------------------------------

void Fs::Unlink(fuse_req_t req, fuse_ino_t parent, const char* name, bool dir) {
  auto p = Get(parent);
  if (!p) return (void)fuse_reply_err(req, ESTALE);
  if (p->kind == Kind::kUploadsDir && !dir) {
    std::lock_guard<std::mutex> l(mu_);
    return (void)fuse_reply_err(req, uploads_.erase(name) ? 0 : ENOENT);
  }
  if (p->kind == Kind::kShaDir && !dir) return UnlinkBlob(req, name);
  if (p->kind != Kind::kTree) return (void)fuse_reply_err(req, EROFS);
  if (p->tree->read_only()) return (void)fuse_reply_err(req, EROFS);
  std::lock_guard<std::mutex> l(p->tree->mu());
  TreeInode& d = *p->inode;
  auto it = d.children.find(name);
  if (it == d.children.end()) return (void)fuse_reply_err(req, ENOENT);
  TreeInode& c = *it->second;
  if (dir && c.type != EntryType::kDir) return (void)fuse_reply_err(req, ENOTDIR);
  if (!dir && c.type == EntryType::kDir) return (void)fuse_reply_err(req, EISDIR);
  if (dir && !c.children.empty()) return (void)fuse_reply_err(req, ENOTEMPTY);
  if (c.nlink > 0) --c.nlink;
  c.ctime_ns = d.mtime_ns = d.ctime_ns = NowNs();
  d.children.erase(it);
  p->tree->MarkDirty();
  fuse_reply_err(req, 0);
}

static bool Contains(const TreeInode& dir, const TreeInode* target) {
  if (&dir == target) return true;
  for (const auto& [n, c] : dir.children)
    if (c->type == EntryType::kDir && Contains(*c, target)) return true;
  return false;
}

void Fs::Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
                const char* newname, unsigned flags) {
  auto from = Get(parent), to = Get(newparent);
  if (!from || !to) return (void)fuse_reply_err(req, ESTALE);
  if (from->kind == Kind::kUploadsDir) return RenameUpload(req, from, name, to, newname);
  if (from->kind != Kind::kTree || to->kind != Kind::kTree) return (void)fuse_reply_err(req, EROFS);
  if (from->tree != to->tree) return (void)fuse_reply_err(req, EXDEV);
  if (from->tree->read_only()) return (void)fuse_reply_err(req, EROFS);
  if (flags & RENAME_EXCHANGE) return (void)fuse_reply_err(req, EINVAL);
  if (!ValidName(newname)) return (void)fuse_reply_err(req, EINVAL);
  std::lock_guard<std::mutex> l(from->tree->mu());
  TreeInode &src = *from->inode, &dst = *to->inode;
  auto it = src.children.find(name);
  if (it == src.children.end()) return (void)fuse_reply_err(req, ENOENT);
  std::shared_ptr<TreeInode> moving = it->second;
  if (moving->type == EntryType::kDir && Contains(*moving, &dst))
    return (void)fuse_reply_err(req, EINVAL);  // into its own subtree
  auto old = dst.children.find(newname);
  if (old != dst.children.end()) {
    if (old->second == moving) return (void)fuse_reply_err(req, 0);  // same inode: no-op
    if (flags & RENAME_NOREPLACE) return (void)fuse_reply_err(req, EEXIST);
    TreeInode& victim = *old->second;
    if (victim.type == EntryType::kDir) {
      if (moving->type != EntryType::kDir) return (void)fuse_reply_err(req, EISDIR);
      if (!victim.children.empty()) return (void)fuse_reply_err(req, ENOTEMPTY);
    } else if (moving->type == EntryType::kDir) {
      return (void)fuse_reply_err(req, ENOTDIR);
    }
    if (victim.nlink > 0) --victim.nlink;
  }
  src.children.erase(it);
  dst.children[newname] = moving;
  int64_t now = NowNs();
  src.mtime_ns = src.ctime_ns = dst.mtime_ns = dst.ctime_ns = moving->ctime_ns = now;
  from->tree->MarkDirty();
  fuse_reply_err(req, 0);
}

void Fs::Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
  auto n = Get(ino), p = Get(newparent);
  if (!n || !p) return (void)fuse_reply_err(req, ESTALE);
  if (n->kind != Kind::kTree || p->kind != Kind::kTree) return (void)fuse_reply_err(req, EROFS);
  if (n->tree != p->tree) return (void)fuse_reply_err(req, EXDEV);
  if (p->tree->read_only()) return (void)fuse_reply_err(req, EROFS);
  if (!ValidName(newname)) return (void)fuse_reply_err(req, EINVAL);
  {
    std::lock_guard<std::mutex> l(p->tree->mu());
    if (n->inode->type == EntryType::kDir) return (void)fuse_reply_err(req, EPERM);
    if (p->inode->children.count(newname)) return (void)fuse_reply_err(req, EEXIST);
    p->inode->children[newname] = n->inode;
    ++n->inode->nlink;
    n->inode->ctime_ns = p->inode->mtime_ns = p->inode->ctime_ns = NowNs();
    p->tree->MarkDirty();
  }
  ReplyEntry(req, n);
}

// ---- uploads -------------------------------------------------------------------------

// rename(/uploads/x, /blobs/sha256/<hex>) publishes the upload if and only if its
// sha256 is <hex> (EBADMSG otherwise, and the upload stays for another try);
// rename within /uploads renames the upload.
void Fs::RenameUpload(fuse_req_t req, const std::shared_ptr<Node>& from, const std::string& name,
                      const std::shared_ptr<Node>& to, const std::string& newname) {
  std::shared_ptr<Upload> u;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = uploads_.find(name);
    if (it == uploads_.end()) return (void)fuse_reply_err(req, ENOENT);
    u = it->second;
    if (to->kind == Kind::kUploadsDir) {
      if (!ValidName(newname.c_str())) return (void)fuse_reply_err(req, EINVAL);
      uploads_.erase(it);
      uploads_[newname] = u;
      return (void)fuse_reply_err(req, 0);
    }
  }
  if (to->kind != Kind::kShaDir) return (void)fuse_reply_err(req, EXDEV);
  std::unique_lock<std::mutex> ul(u->mu);  // released before mu_ is taken (lock order)
  // Digest of what was written so far, without ending the stream (the context is
  // copied), so a failed rename leaves the upload appendable.
  unsigned char md[32];
  unsigned int mdlen = 0;
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  EVP_MD_CTX_copy_ex(copy, static_cast<EVP_MD_CTX*>(u->sha));
  EVP_DigestFinal_ex(copy, md, &mdlen);
  EVP_MD_CTX_free(copy);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned i = 0; i < mdlen; ++i) {
    hex.push_back(kHex[md[i] >> 4]);
    hex.push_back(kHex[md[i] & 15]);
  }
  if (hex != newname) return (void)fuse_reply_err(req, EBADMSG);
  auto chunks = u->writer->Finish();
  if (!chunks.ok()) return (void)fuse_reply_err(req, Errno(chunks.status()));
  auto info = repo_->CommitBlob("sha256:" + hex, *chunks);
  ul.unlock();
  if (!info.ok()) {
    // The stream was finished to commit it, so the upload cannot take more data:
    // drop it; the client uploads again.
    std::lock_guard<std::mutex> l(mu_);
    uploads_.erase(name);
    return (void)fuse_reply_err(req, Errno(info.status()));
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = uploads_.find(name);
    if (it != uploads_.end() && it->second == u) uploads_.erase(it);
    named_.erase({to->ino, newname});  // the blob node is looked up afresh
    if (ingest_) ingest_->Add("sha256:" + hex, info->size);
  }
  fuse_reply_err(req, 0);
}

// ---- attributes ------------------------------------------------------------------------

void Fs::Setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set) {
  auto n = Get(ino);
  if (!n) return (void)fuse_reply_err(req, ESTALE);
  if (n->kind == Kind::kUpload) {
    // Only truncation to zero (start over) is meaningful for an append-only upload.
    if (to_set & FUSE_SET_ATTR_SIZE) {
      std::lock_guard<std::mutex> l(n->upload->mu);
      if (attr->st_size != 0 && static_cast<uint64_t>(attr->st_size) != n->upload->size)
        return (void)fuse_reply_err(req, EINVAL);
      if (attr->st_size == 0 && n->upload->size != 0) {
        n->upload->writer = repo_->NewContentWriter();
        EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(n->upload->sha), EVP_sha256(), nullptr);
        n->upload->size = 0;
      }
    }
    return Getattr(req, ino);
  }
  if (n->kind != Kind::kTree) return (void)fuse_reply_err(req, EROFS);
  if (n->tree->read_only()) return (void)fuse_reply_err(req, EROFS);
  {
    std::lock_guard<std::mutex> l(n->tree->mu());
    TreeInode& i = *n->inode;
    int64_t now = NowNs();
    if (to_set & FUSE_SET_ATTR_SIZE) {
      if (i.type != EntryType::kFile) return (void)fuse_reply_err(req, EISDIR);
      Status st = n->tree->Truncate(i, static_cast<uint64_t>(attr->st_size));
      if (!st.ok()) return (void)fuse_reply_err(req, Errno(st));
      i.mtime_ns = now;
    }
    if (to_set & FUSE_SET_ATTR_MODE) {
      i.mode = attr->st_mode & 07777;
      AclChmod(&i.xattrs, i.mode);  // chmod rewrites the ACL's mask, as on ext4
    }
    if (to_set & FUSE_SET_ATTR_UID) i.uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID) i.gid = attr->st_gid;
    // chown by anyone but root clears setuid/setgid, as the kernel does on ext4.
    if ((to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) && !(to_set & FUSE_SET_ATTR_MODE) &&
        fuse_req_ctx(req)->uid != 0 && i.type != EntryType::kDir)
      i.mode &= ~(S_ISUID | S_ISGID);
    if (to_set & FUSE_SET_ATTR_ATIME_NOW)
      i.atime_ns = now;
    else if (to_set & FUSE_SET_ATTR_ATIME)
      i.atime_ns = int64_t(attr->st_atim.tv_sec) * 1000000000 + attr->st_atim.tv_nsec;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW)
      i.mtime_ns = now;
    else if (to_set & FUSE_SET_ATTR_MTIME)
      i.mtime_ns = int64_t(attr->st_mtim.tv_sec) * 1000000000 + attr->st_mtim.tv_nsec;
    i.ctime_ns = now;
    n->tree->MarkDirty();
  }
  Getattr(req, ino);
}

// ---- xattrs -------------------------------------------------------------------------------

void Fs::Setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
                  int flags) {
  auto n = Get(ino);
  if (!n) return (void)fuse_reply_err(req, ESTALE);
  if (n->kind != Kind::kTree || n->tree->read_only()) return (void)fuse_reply_err(req, EROFS);
  if (std::strlen(name) > 255 || size > 65536) return (void)fuse_reply_err(req, ERANGE);
  std::lock_guard<std::mutex> l(n->tree->mu());
  auto& x = n->inode->xattrs;
  bool exists = x.count(name);
  if ((flags & XATTR_CREATE) && exists) return (void)fuse_reply_err(req, EEXIST);
  if ((flags & XATTR_REPLACE) && !exists) return (void)fuse_reply_err(req, ENODATA);
  std::string v(value, size);
  if (v.size() > 0 && std::strcmp(name, kAclDefault) == 0 && n->inode->type != EntryType::kDir)
    return (void)fuse_reply_err(req, EACCES);  // default ACLs exist on directories only
  if (std::strcmp(name, kAclAccess) == 0) {
    // As ext4: the ACL sets the mode, and one that says no more than the mode is
    // not kept (cp and tar rely on this to restore modes).
    bool keep = true;
    if (!AclSetAccess(v, &n->inode->mode, &keep)) return (void)fuse_reply_err(req, EINVAL);
    if (!keep) {
      x.erase(name);
      n->inode->ctime_ns = NowNs();
      n->tree->MarkDirty();
      return (void)fuse_reply_err(req, 0);
    }
  }
  x[name] = std::move(v);
  n->inode->ctime_ns = NowNs();
  n->tree->MarkDirty();
  fuse_reply_err(req, 0);
}

void Fs::Getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  auto n = Get(ino);
  if (!n) return (void)fuse_reply_err(req, ESTALE);
  if (n->kind != Kind::kTree) return (void)fuse_reply_err(req, ENODATA);
  std::string v;
  {
    std::lock_guard<std::mutex> l(n->tree->mu());
    auto it = n->inode->xattrs.find(name);
    if (it == n->inode->xattrs.end()) return (void)fuse_reply_err(req, ENODATA);
    v = it->second;
  }
  if (size == 0) return (void)fuse_reply_xattr(req, v.size());
  if (size < v.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, v.data(), v.size());
}

void Fs::Listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto n = Get(ino);
  if (!n) return (void)fuse_reply_err(req, ESTALE);
  std::string names;
  if (n->kind == Kind::kTree) {
    std::lock_guard<std::mutex> l(n->tree->mu());
    for (const auto& [k, v] : n->inode->xattrs) names.append(k).push_back('\0');
  }
  if (size == 0) return (void)fuse_reply_xattr(req, names.size());
  if (size < names.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, names.data(), names.size());
}

void Fs::Removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  auto n = Get(ino);
  if (!n) return (void)fuse_reply_err(req, ESTALE);
  if (n->kind != Kind::kTree || n->tree->read_only()) return (void)fuse_reply_err(req, EROFS);
  std::lock_guard<std::mutex> l(n->tree->mu());
  if (!n->inode->xattrs.erase(name)) return (void)fuse_reply_err(req, ENODATA);
  n->inode->ctime_ns = NowNs();
  n->tree->MarkDirty();
  fuse_reply_err(req, 0);
}

// ---- open, read, write, release --------------------------------------------------------------

std::shared_ptr<chunkstore::BlobReader> Fs::ShareSequential(
    const std::string& hex, std::shared_ptr<chunkstore::BlobReader> fresh) {
  if (!fresh->Sequential()) return fresh;  // random access is cheap: one per open
  std::lock_guard<std::mutex> l(shared_mu_);
  std::erase_if(shared_readers_, [](const auto& e) { return e.second.expired(); });
  auto& slot = shared_readers_[hex];
  if (auto live = slot.lock()) return live;
  slot = fresh;
  return fresh;
}

void Fs::Open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  auto n = Get(ino);
  if (!n) return (void)fuse_reply_err(req, ESTALE);
  bool write = (fi->flags & O_ACCMODE) != O_RDONLY;
  auto h = std::make_unique<Handle>();
  h->write = write;
  switch (n->kind) {
    case Kind::kBlob: {
      if (write) return (void)fuse_reply_err(req, EROFS);
      auto b = repo_->OpenBlob("sha256:" + n->name);
      if (!b.ok()) return (void)fuse_reply_err(req, Errno(b.status()));
      h->blob = ShareSequential(n->name, std::move(b).value());
      fi->keep_cache = 1;  // immutable: the page cache stays valid across opens
      break;
    }
    case Kind::kStats:
      if (write) return (void)fuse_reply_err(req, EROFS);
      h->stats = StatsJson();
      fi->direct_io = 1;
      break;
    case Kind::kUpload:
      if (!write) return (void)fuse_reply_err(req, EACCES);  // staging is write-only
      if (fi->flags & O_TRUNC) {
        std::lock_guard<std::mutex> l(n->upload->mu);
        n->upload->writer = repo_->NewContentWriter();
        EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(n->upload->sha), EVP_sha256(), nullptr);
        n->upload->size = 0;
      }
      fi->direct_io = 1;
      break;
    case Kind::kTree: {
      std::lock_guard<std::mutex> l(n->tree->mu());
      if (n->inode->type == EntryType::kDir) return (void)fuse_reply_err(req, EISDIR);
      if (write && n->tree->read_only()) return (void)fuse_reply_err(req, EROFS);
      if (write) {
        ++n->inode->writers;
        if (fi->flags & O_TRUNC) {
          Status st = n->tree->Truncate(*n->inode, 0);
          if (!st.ok()) {
            --n->inode->writers;
            return (void)fuse_reply_err(req, Errno(st));
          }
          n->inode->mtime_ns = n->inode->ctime_ns = NowNs();
          n->tree->MarkDirty();
        }
      }
      if (n->tree->read_only()) fi->keep_cache = 1;
      break;
    }
    default:
      return (void)fuse_reply_err(req, EISDIR);
  }
  ++open_files_;
  fi->fh = reinterpret_cast<uint64_t>(h.release());
  fuse_reply_open(req, fi);
}

// A blob read is answered from the frame cache: the kernel copies the pieces
// into the page cache itself (writev), with no copy into a reply buffer.
// Neighbouring chunks of one frame are one piece; a read of more pieces than
// writev takes (a layer's tar re-chunked file by file: a 512-byte header and a
// tiny file are a chunk each) is copied into a buffer instead.
static void ReplyBlob(fuse_req_t req, chunkstore::BlobReader* blob, size_t size, off_t off) {
  constexpr size_t kMaxIov = 1000;  // under IOV_MAX (1024), with room for the FUSE header
  thread_local std::vector<chunkstore::ReadPiece> pieces;
  thread_local std::vector<struct iovec> iov;
  thread_local std::vector<char> flat;
  pieces.clear();
  Result<size_t> got = blob->ReadPieces(static_cast<uint64_t>(off), size, &pieces);
  if (!got.ok()) {
    pieces.clear();
    return (void)fuse_reply_err(req, Errno(got.status()));
  }
  iov.clear();
  for (const auto& p : pieces) {
    if (!iov.empty() && static_cast<char*>(iov.back().iov_base) + iov.back().iov_len == p.data)
      iov.back().iov_len += p.len;
    else
      iov.push_back({const_cast<char*>(p.data), p.len});
  }
  if (iov.size() <= kMaxIov) {
    fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size()));
  } else {
    flat.resize(*got);
    size_t at = 0;
    for (const auto& v : iov) {
      std::memcpy(flat.data() + at, v.iov_base, v.iov_len);
      at += v.iov_len;
    }
    fuse_reply_buf(req, flat.data(), at);
  }
  pieces.clear();  // the frames may go now
}

void Fs::Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi) {
  auto n = Get(ino);
  if (!n) return (void)fuse_reply_err(req, ESTALE);
  if (n->kind == Kind::kBlob)
    return ReplyBlob(req, reinterpret_cast<Handle*>(fi->fh)->blob.get(), size, off);
  // Per thread and reused: a fresh 1 MiB buffer per read costs page faults.
  thread_local std::vector<char> reply;
  if (reply.size() < size) reply.resize(size);
  char* const buf = reply.data();
  Result<size_t> got = size_t{0};
  switch (n->kind) {
    case Kind::kStats: {
      const std::string& s = reinterpret_cast<Handle*>(fi->fh)->stats;
      size_t k = off < static_cast<off_t>(s.size()) ? std::min(size, s.size() - off) : 0;
      return (void)fuse_reply_buf(req, s.data() + (k ? off : 0), k);
    }
    case Kind::kTree: {
      // Snapshot trees never change after loading: read them without the lock so
      // concurrent readers (kernel read-ahead, parallel tar) overlap.
      std::unique_lock<std::mutex> l(n->tree->mu(), std::defer_lock);
      if (!n->tree->read_only()) l.lock();
      got = n->tree->Read(*n->inode, static_cast<uint64_t>(off), size, buf);
      break;
    }
    default:
      return (void)fuse_reply_err(req, EACCES);
  }
  if (!got.ok()) return (void)fuse_reply_err(req, Errno(got.status()));
  fuse_reply_buf(req, buf, *got);
}

void Fs::Write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
               struct fuse_file_info* fi) {
  auto n = Get(ino);
  if (!n) return (void)fuse_reply_err(req, ESTALE);
  Status st;
  if (n->kind == Kind::kUpload) {
    std::lock_guard<std::mutex> l(n->upload->mu);
    Upload& u = *n->upload;
    if (static_cast<uint64_t>(off) != u.size)
      return (void)fuse_reply_err(req, EINVAL);  // append-only
    st = u.writer->Append(std::string_view(buf, size));
    if (st.ok()) {
      EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(u.sha), buf, size);
      u.size += size;
      u.mtime_ns = NowNs();
    }
  } else if (n->kind == Kind::kTree && !n->tree->read_only()) {
    std::lock_guard<std::mutex> l(n->tree->mu());
    st = n->tree->Write(*n->inode, static_cast<uint64_t>(off), std::string_view(buf, size));
    if (st.ok()) {
      n->inode->mtime_ns = n->inode->ctime_ns = NowNs();
      // Writing by a non-root user clears setuid/setgid, as the kernel does.
      if (fuse_req_ctx(req)->uid != 0) n->inode->mode &= ~(S_ISUID | S_ISGID);
      n->tree->MarkDirty();
    }
  } else {
    return (void)fuse_reply_err(req, EROFS);
  }
  if (!st.ok()) return (void)fuse_reply_err(req, Errno(st));
  fuse_reply_write(req, size);
}

// close(2) sends FLUSH and waits for it; RELEASE comes later, asynchronously,
// possibly after the caller's next request. So the data a close() ends is folded
// here: a fsync of the directory that follows the close (the registry's "write,
// rename, close, fsync /repos") then saves the file's content, not the state of
// its last fold (empty for a new file).
void Fs::Flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  auto* h = reinterpret_cast<Handle*>(fi->fh);
  auto n = Get(ino);
  Status st;
  if (n && n->kind == Kind::kTree && h && h->write && n->inode->type == EntryType::kFile) {
    std::lock_guard<std::mutex> l(n->tree->mu());
    if (!n->inode->data.Clean()) {
      st = n->tree->Materialize(*n->inode);
      n->tree->MarkDirty();
    }
  }
  fuse_reply_err(req, st.ok() ? 0 : Errno(st));
}

void Fs::Release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  std::unique_ptr<Handle> h(reinterpret_cast<Handle*>(fi->fh));
  --open_files_;
  auto n = Get(ino);
  Status st;
  if (n && n->kind == Kind::kTree && h && h->write) {
    std::lock_guard<std::mutex> l(n->tree->mu());
    if (--n->inode->writers == 0) {
      // Closing folds the written data into the file's chunks; the commit thread
      // saves the head shortly after.
      st = n->tree->Materialize(*n->inode);
      n->tree->MarkDirty();
    }
  }
  fuse_reply_err(req, st.ok() ? 0 : Errno(st));
}

void Fs::Fsync(fuse_req_t req, fuse_ino_t ino) {
  auto n = Get(ino);
  if (!n) return (void)fuse_reply_err(req, ESTALE);
  Status st;
  if (n->kind == Kind::kTree && !n->tree->read_only()) {
    auto save = [&] {
      std::lock_guard<std::mutex> l(n->tree->mu());
      Status s;
      if (n->inode->type == EntryType::kFile) s = n->tree->Materialize(*n->inode);
      return s.ok() ? n->tree->Save() : s;  // durable before fsync returns
    };
    st = save();
    if (st.sys_errno() == ENOSPC) {  // maybe only deleted data is in the way
      Reclaim();
      st = save();
    }
  }
  fuse_reply_err(req, st.ok() ? 0 : Errno(st));
}

// ---- heads: saving, snapshots, gc -------------------------------------------------------------

// Every chunk named by an in-memory tree: files' bases and open streams.
static void CollectLive(const TreeInode& n, std::vector<chunkstore::ChunkId>* out) {
  for (const ChunkRef& c : n.data.chunks) out->push_back(c.id);
  if (n.data.stream)
    for (const ChunkRef& c : n.data.stream->chunks()) out->push_back(c.id);
  for (const auto& [name, c] : n.children) CollectLive(*c, out);
}

// Runs fn with the world stopped (the table, every head and every upload locked)
// and with every chunk that only memory knows about: heads' files, open streams,
// uploads. Used by gc and by the disk-full reclaim.
template <typename Fn>
auto Fs::WithWorldStopped(Fn fn) {
  // First: a layer being re-stored holds chunks no root names yet (ingest.h).
  std::unique_lock<std::shared_mutex> layers;
  if (ingest_) layers = ingest_->Pause();
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::unique_lock<std::mutex>> held;
  std::vector<chunkstore::ChunkId> live;
  for (auto& [name, t] : heads_) {
    held.emplace_back(t->mu());
    CollectLive(*t->root(), &live);
  }
  for (auto& [name, u] : uploads_) {
    held.emplace_back(u->mu);
    for (const ChunkRef& c : u->writer->chunks()) live.push_back(c.id);
  }
  return fn(live);
}

// After ENOSPC: drop pending chunks nothing references any more (data written and
// deleted while the disk was full).
void Fs::Reclaim() {
  uint64_t dropped = WithWorldStopped(
      [&](const std::vector<chunkstore::ChunkId>& live) { return repo_->DiscardPending(live); });
  if (dropped)
    fprintf(stderr, "coffer: disk full: dropped %llu bytes of deleted, unsaved data\n",
            (unsigned long long)dropped);
}

Status Fs::SaveHeads(bool all, bool final) {
  Status st = SaveHeadsOnce(all, final);
  if (st.sys_errno() == ENOSPC) {
    Reclaim();
    st = SaveHeadsOnce(all, final);
  }
  return st;
}

Status Fs::SaveHeadsOnce(bool all, bool final) {
  std::vector<std::shared_ptr<FsTree>> trees;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& [name, t] : heads_) trees.push_back(t);
  }
  Status first;
  for (const auto& t : trees) {
    std::lock_guard<std::mutex> l(t->mu());
    if (!all && !t->dirty()) continue;
    Status st = t->Save(final);
    if (!st.ok() && first.ok()) first = st.Annotate("save head of set " + t->set());
  }
  return first;
}

Result<chunkstore::SnapshotInfo> Fs::Snapshot(const std::string& set, const std::string& tag) {
  ASSIGN_OR_RETURN(auto t, HeadTree(set, false));
  {
    std::lock_guard<std::mutex> l(t->mu());
    RETURN_IF_ERROR(t->Save());
  }
  ASSIGN_OR_RETURN(auto info, repo_->SnapshotHead(set, tag));
  if (audit_) audit_->Note("snapshot", {{"set", set}, {"id", info.id}, {"tag", tag}});
  return info;
}

// Stop-the-world gc: every head is saved and held, every upload held, and the
// chunks only they know about are passed to the repository as live.
Result<chunkstore::GcReport> Fs::Gc() {
  RETURN_IF_ERROR(SaveHeads(true));
  auto r = WithWorldStopped(
      [&](const std::vector<chunkstore::ChunkId>& live) { return repo_->Gc(nullptr, live); });
  if (r.ok() && audit_)
    audit_->Note("gc", {{"packs_deleted", std::to_string(r->packs_deleted)},
                        {"bytes_freed", std::to_string(r->bytes_freed)}});
  return r;
}

}  // namespace cofferfs
