#include "tree.h"

#include <algorithm>
#include <cstring>
#include <ctime>

namespace cofferfs {
namespace {

constexpr uint64_t kBlock = 64 * 1024;
// Dirty overlay blocks beyond this are folded into the base at once, so random
// writes to a huge file keep memory bounded.
constexpr size_t kDirtyLimit = 64u << 20;

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

}  // namespace

int64_t NowNs() {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return int64_t(t.tv_sec) * 1000000000 + t.tv_nsec;
}

mode_t TreeInode::StatMode() const {
  mode_t t = S_IFREG;
  switch (type) {
    case EntryType::kDir:
      t = S_IFDIR;
      break;
    case EntryType::kSymlink:
      t = S_IFLNK;
      break;
    case EntryType::kCharDev:
      t = S_IFCHR;
      break;
    case EntryType::kBlockDev:
      t = S_IFBLK;
      break;
    case EntryType::kFifo:
      t = S_IFIFO;
      break;
    case EntryType::kSocket:
      t = S_IFSOCK;
      break;
    default:
      break;
  }
  return t | mode;
}

void TreeInode::FillStat(struct stat* st) const {
  std::memset(st, 0, sizeof *st);
  st->st_ino = ino;
  st->st_mode = StatMode();
  st->st_uid = uid;
  st->st_gid = gid;
  st->st_rdev = rdev;
  st->st_atim = Ts(atime_ns);
  st->st_mtim = Ts(mtime_ns);
  st->st_ctim = Ts(ctime_ns);
  st->st_blksize = 4096;
  if (type == EntryType::kDir) {
    nlink_t n = 2;
    for (const auto& [name, c] : children) n += c->type == EntryType::kDir;
    st->st_nlink = n;
    st->st_size = 4096;
  } else {
    st->st_nlink = nlink;
    st->st_size = type == EntryType::kSymlink ? link.size() : data.size;
  }
  st->st_blocks = (st->st_size + 511) / 512;
}

FsTree::FsTree(chunkstore::Repository* repo, std::string set, bool read_only, RegisterFn reg)
    : repo_(repo), set_(std::move(set)), read_only_(read_only), register_(std::move(reg)) {
  root_ = NewInode(EntryType::kDir, 0755, 0, 0);
}

std::shared_ptr<TreeInode> FsTree::NewInode(EntryType type, uint32_t mode, uint32_t uid,
                                            uint32_t gid) {
  auto n = std::make_shared<TreeInode>();
  n->type = type;
  n->mode = mode & 07777;
  n->uid = uid;
  n->gid = gid;
  n->atime_ns = n->mtime_ns = n->ctime_ns = NowNs();
  register_(n);
  return n;
}

void FsTree::SetBase(FileData& d, std::vector<ChunkRef> chunks, uint64_t size) {
  d.chunks = std::move(chunks);
  d.starts.clear();
  uint64_t off = 0;
  for (const ChunkRef& c : d.chunks) {
    d.starts.push_back(off);
    off += c.length;
  }
  d.base_size = off;
  d.size = std::max(size, off);
}

Status FsTree::Load(
    const std::function<Status(const std::function<Status(chunkstore::TreeEntry&)>&)>& each) {
  std::map<std::string, std::shared_ptr<TreeInode>> by_path;
  by_path[""] = root_;
  return each([&](chunkstore::TreeEntry& e) -> Status {
    if (e.path.empty()) {  // the root's own metadata
      root_->mode = e.mode;
      root_->uid = e.uid;
      root_->gid = e.gid;
      root_->atime_ns = e.atime_ns;
      root_->mtime_ns = e.mtime_ns;
      root_->ctime_ns = e.ctime_ns;
      for (auto& [k, v] : e.xattrs) root_->xattrs[k] = v;
      return Status::OK();
    }
    size_t slash = e.path.rfind('/');
    std::string parent = slash == std::string::npos ? "" : e.path.substr(0, slash);
    std::string name = e.path.substr(slash == std::string::npos ? 0 : slash + 1);
    auto p = by_path.find(parent);
    if (p == by_path.end() || p->second->type != EntryType::kDir)
      return Status::Corruption("tree of " + set_ + ": `" + e.path + "` has no parent directory");
    std::shared_ptr<TreeInode> n;
    if (e.type == EntryType::kHardlink) {
      auto t = by_path.find(e.link);
      if (t == by_path.end())
        return Status::Corruption("tree of " + set_ + ": hardlink `" + e.path +
                                  "` to a missing file");
      n = t->second;
      ++n->nlink;
    } else {
      n = NewInode(e.type, e.mode, e.uid, e.gid);
      n->atime_ns = e.atime_ns;
      n->mtime_ns = e.mtime_ns;
      n->ctime_ns = e.ctime_ns;
      n->rdev = e.rdev;
      if (e.type == EntryType::kSymlink) n->link = e.link;
      for (auto& [k, v] : e.xattrs) n->xattrs[k] = v;
      if (e.type == EntryType::kFile) SetBase(n->data, std::move(e.chunks), e.size);
    }
    p->second->children[name] = n;
    by_path[e.path] = n;
    return Status::OK();
  });
}

Status FsTree::Emit(const std::string& path, TreeInode& n,
                    std::map<const TreeInode*, std::string>& seen,
                    const chunkstore::Repository::EmitFn& emit, bool final) {
  chunkstore::TreeEntry e;
  e.path = path;
  e.type = n.type;
  e.mode = n.mode;
  e.uid = n.uid;
  e.gid = n.gid;
  e.atime_ns = n.atime_ns;
  e.mtime_ns = n.mtime_ns;
  e.ctime_ns = n.ctime_ns;
  e.rdev = n.rdev;
  e.inode = n.ino;
  for (const auto& [k, v] : n.xattrs) e.xattrs.emplace_back(k, v);
  if (n.type == EntryType::kSymlink) e.link = n.link;
  if (n.type == EntryType::kFile) {
    if (n.nlink > 1) {
      auto [it, first] = seen.emplace(&n, path);
      if (!first) {
        e.type = EntryType::kHardlink;
        e.link = it->second;
        e.xattrs.clear();
        return emit(e);
      }
    }
    if (n.writers == 0 || final) RETURN_IF_ERROR(Materialize(n));
    e.size = n.data.base_size;
    e.chunks = n.data.chunks;
  }
  RETURN_IF_ERROR(emit(e));
  std::string prefix = path.empty() ? "" : path + "/";
  for (auto& [name, c] : n.children) RETURN_IF_ERROR(Emit(prefix + name, *c, seen, emit, final));
  return Status::OK();
}

Status FsTree::Save(bool final) {
  if (read_only_) return Status::FailedPrecondition("snapshot trees are read-only");
  std::map<const TreeInode*, std::string> seen;
  Status st = repo_->SaveHead(set_, [&](const chunkstore::Repository::EmitFn& emit) -> Status {
    return Emit("", *root_, seen, emit, final);  // the root first, with an empty path
  });
  if (st.ok()) dirty_ = false;
  return st;
}

Status FsTree::ReadBase(const FileData& d, uint64_t off, size_t n, char* buf) {
  size_t i = std::upper_bound(d.starts.begin(), d.starts.end(), off) - d.starts.begin() - 1;
  size_t done = 0;
  while (done < n && i < d.chunks.size()) {
    uint64_t in = off + done - d.starts[i];
    size_t take = std::min<size_t>(n - done, d.chunks[i].length - in);
    RETURN_IF_ERROR(
        repo_->ReadChunkAt(d.chunks[i].id, static_cast<uint32_t>(in), take, buf + done));
    done += take;
    ++i;
  }
  return Status::OK();
}

Status FsTree::LoadBlock(const FileData& d, uint64_t block, std::string* out) {
  out->assign(kBlock, '\0');
  uint64_t off = block * kBlock;
  if (off >= d.base_size) return Status::OK();
  size_t n = static_cast<size_t>(std::min<uint64_t>(kBlock, d.base_size - off));
  return ReadBase(d, off, n, out->data());
}

Status FsTree::FinishStream(FileData& d) {
  if (!d.stream) return Status::OK();
  uint64_t size = d.size;
  auto chunks = d.stream->Finish();
  if (!chunks.ok()) return chunks.status();  // the stream keeps everything: retry later
  d.stream.reset();
  SetBase(d, std::move(chunks).value(), size);
  return Status::OK();
}

Result<size_t> FsTree::Read(TreeInode& f, uint64_t off, size_t n, char* buf) {
  FileData& d = f.data;
  RETURN_IF_ERROR(FinishStream(d));
  if (off >= d.size) return size_t{0};
  n = static_cast<size_t>(std::min<uint64_t>(n, d.size - off));
  repo_->ReadAhead(d.chunks, d.starts, off + n);  // past what the kernel asked for
  for (size_t done = 0; done < n;) {
    uint64_t pos = off + done, block = pos / kBlock, in = pos % kBlock;
    size_t take = static_cast<size_t>(std::min<uint64_t>(n - done, kBlock - in));
    auto it = d.dirty.find(block);
    if (it != d.dirty.end()) {
      std::memcpy(buf + done, it->second.data() + in, take);
    } else {
      size_t from_base =
          pos < d.base_size ? static_cast<size_t>(std::min<uint64_t>(take, d.base_size - pos)) : 0;
      if (from_base) RETURN_IF_ERROR(ReadBase(d, pos, from_base, buf + done));
      std::memset(buf + done + from_base, 0, take - from_base);  // the tail past the base
    }
    done += take;
  }
  return n;
}

Status FsTree::Write(TreeInode& f, uint64_t off, std::string_view data) {
  FileData& d = f.data;
  // The stream takes the bytes even when it reports an error (ENOSPC): the size
  // follows what the file holds, and the error goes back to the writer.
  if (d.stream && off == d.size) {
    Status st = d.stream->Append(data);
    d.size += data.size();
    return st;
  }
  if (!d.stream && d.chunks.empty() && d.dirty.empty() && d.size == 0 && off == 0) {
    d.stream = repo_->NewContentWriter();
    Status st = d.stream->Append(data);
    d.size = data.size();
    return st;
  }
  RETURN_IF_ERROR(FinishStream(d));
  for (size_t done = 0; done < data.size();) {
    uint64_t pos = off + done, block = pos / kBlock, in = pos % kBlock;
    size_t take = static_cast<size_t>(std::min<uint64_t>(data.size() - done, kBlock - in));
    auto it = d.dirty.find(block);
    if (it == d.dirty.end()) {
      std::string b;
      RETURN_IF_ERROR(LoadBlock(d, block, &b));
      it = d.dirty.emplace(block, std::move(b)).first;
    }
    std::memcpy(it->second.data() + in, data.data() + done, take);
    done += take;
  }
  d.size = std::max<uint64_t>(d.size, off + data.size());
  if (d.dirty.size() * kBlock > kDirtyLimit) return Materialize(f);
  return Status::OK();
}

Status FsTree::Truncate(TreeInode& f, uint64_t size) {
  FileData& d = f.data;
  if (size == 0) {
    d = FileData();
    return Status::OK();
  }
  RETURN_IF_ERROR(FinishStream(d));
  if (size >= d.size) {
    d.size = size;  // the new tail reads as zeros: beyond base_size and not dirty
    return Status::OK();
  }
  // Shrinking: drop the overlay past the end, zero the rest of the last block, and
  // fold everything into a new base of the new size.
  uint64_t last = size / kBlock;
  for (auto it = d.dirty.upper_bound(last); it != d.dirty.end();) it = d.dirty.erase(it);
  if (auto it = d.dirty.find(last); it != d.dirty.end())
    std::memset(it->second.data() + size % kBlock, 0, kBlock - size % kBlock);
  d.size = size;
  return Materialize(f);
}

Status FsTree::Materialize(TreeInode& f) {
  FileData& d = f.data;
  RETURN_IF_ERROR(FinishStream(d));
  if (d.dirty.empty() && d.size == d.base_size) return Status::OK();
  auto w = repo_->NewContentWriter();
  std::string block;
  for (uint64_t off = 0; off < d.size; off += kBlock) {
    auto it = d.dirty.find(off / kBlock);
    if (it != d.dirty.end()) {
      block = it->second;
    } else {
      RETURN_IF_ERROR(LoadBlock(d, off / kBlock, &block));
    }
    block.resize(static_cast<size_t>(std::min<uint64_t>(kBlock, d.size - off)));
    RETURN_IF_ERROR(w->Append(block));
  }
  ASSIGN_OR_RETURN(auto chunks, w->Finish());
  uint64_t size = d.size;
  d.dirty.clear();
  SetBase(d, std::move(chunks), size);
  return Status::OK();
}

}  // namespace cofferfs
