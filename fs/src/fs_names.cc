// Fs: the namespace — inode table, lookups, attributes, directory listings, and
// the trees behind /backups.
#include <openssl/evp.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "audit.h"
#include "fs.h"
#include "ingest.h"
#include "layer_blob.h"
#include "reconstruct.h"
#include "segment_cache.h"

namespace cofferfs {

using chunkstore::Code;

namespace {

constexpr uint64_t kRootIno = FUSE_ROOT_ID;
constexpr uint64_t kBlobsIno = 2, kShaIno = 3, kUploadsIno = 4, kBackupsIno = 5, kMetaIno = 6,
                   kStatsIno = 7, kLayersIno = 8, kLayersShaIno = 9, kImagesIno = 10;
constexpr double kImmutable = 3600.0;  // blobs and snapshots never change
constexpr double kHead = 1.0;          // only this daemon changes heads

bool IsHexDigest(const char* s) {
  size_t n = std::strlen(s);
  if (n != 64) return false;
  for (size_t i = 0; i < n; ++i)
    if (!std::isxdigit(static_cast<unsigned char>(s[i])) ||
        std::isupper(static_cast<unsigned char>(s[i])))
      return false;
  return true;
}

}  // namespace

int Errno(const chunkstore::Status& st) {
  if (st.sys_errno() != 0) return st.sys_errno();
  switch (st.code()) {
    case Code::kOk:
      return 0;
    case Code::kNotFound:
      return ENOENT;
    case Code::kAlreadyExists:
      return EEXIST;
    case Code::kInvalidArgument:
      return EINVAL;
    case Code::kPermissionDenied:
      return EACCES;
    case Code::kUnavailable:
      return EBUSY;
    case Code::kFailedPrecondition:
      return EPERM;
    default:
      return EIO;
  }
}

Upload::~Upload() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(sha)); }

Fs::~Fs() = default;

Fs::Fs(chunkstore::Repository* repo, const MountOptions& opts, AuditLog* audit)
    : repo_(repo), opts_(opts), audit_(audit) {
  if (opts.layers) ingest_ = std::make_unique<LayerIngester>(repo);
  const std::pair<uint64_t, Kind> fixed[] = {{kRootIno, Kind::kRoot},
                                             {kBlobsIno, Kind::kBlobsDir},
                                             {kShaIno, Kind::kShaDir},
                                             {kUploadsIno, Kind::kUploadsDir},
                                             {kBackupsIno, Kind::kBackupsDir},
                                             {kMetaIno, Kind::kMetaDir},
                                             {kStatsIno, Kind::kStats},
                                             {kLayersIno, Kind::kLayersDir},
                                             {kLayersShaIno, Kind::kLayersShaDir},
                                             {kImagesIno, Kind::kImagesDir}};
  for (auto [ino, kind] : fixed) {
    auto n = std::make_shared<Node>();
    n->kind = kind;
    n->ino = ino;
    nodes_[ino] = n;
  }
  Touch();
}

void Fs::Touch() { last_access_ = NowNs(); }

std::shared_ptr<Node> Fs::Get(fuse_ino_t ino) {
  Touch();
  std::lock_guard<std::mutex> l(mu_);
  auto it = nodes_.find(ino);
  return it == nodes_.end() ? nullptr : it->second;
}

std::shared_ptr<Node> Fs::AddNode(Node n) {
  auto p = std::make_shared<Node>(std::move(n));
  nodes_[p->ino] = p;
  return p;
}

// Tree inodes carry their FUSE number from birth (FsTree's register callback), so
// this only wraps them.
std::shared_ptr<Node> Fs::TreeNode(const std::shared_ptr<FsTree>& t,
                                   const std::shared_ptr<TreeInode>& i) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = nodes_.find(i->ino);
  if (it != nodes_.end()) return it->second;
  Node n;
  n.kind = Kind::kTree;
  n.ino = i->ino;
  n.tree = t;
  n.inode = i;
  return AddNode(std::move(n));
}

double Fs::Timeout(const Node& n) const {
  switch (n.kind) {
    case Kind::kBlob:
      return kImmutable;
    case Kind::kTree:
      return n.tree->read_only() ? kImmutable : kHead;
    case Kind::kRoot:
    case Kind::kBlobsDir:
    case Kind::kMetaDir:
    case Kind::kLayersDir:
      return kImmutable;
    // Resolving these decrypts every head and snapshot root: let the kernel keep
    // them for a second rather than redo that on every path walk.
    case Kind::kSetDir:
    case Kind::kSnapsDir:
    case Kind::kImagesDir:
    case Kind::kImagePath:
    case Kind::kImageTag:
      return 1.0;
    default:
      return 0.0;  // listings that change under us
  }
}

bool Fs::Attr(const Node& n, struct stat* st) {
  std::memset(st, 0, sizeof *st);
  st->st_ino = n.ino;
  st->st_nlink = 1;
  st->st_blksize = 1 << 20;
  int64_t now = NowNs();
  st->st_mtim.tv_sec = st->st_atim.tv_sec = st->st_ctim.tv_sec = now / 1000000000;
  switch (n.kind) {
    case Kind::kRoot:
    case Kind::kBackupsDir:
    case Kind::kSetDir:
    case Kind::kSnapsDir:
    case Kind::kMetaDir:
      st->st_mode = S_IFDIR | 0755;
      st->st_nlink = 2;
      break;
    case Kind::kBlobsDir:
    case Kind::kShaDir:
    case Kind::kLayersDir:
    case Kind::kLayersShaDir:
    case Kind::kImagesDir:
    case Kind::kImagePath:
    case Kind::kImageTag:
      st->st_mode = S_IFDIR | 0555;
      st->st_nlink = 2;
      break;
    case Kind::kUploadsDir:
      st->st_mode = S_IFDIR | 0700;
      st->st_nlink = 2;
      break;
    case Kind::kBlob:
      st->st_mode = S_IFREG | 0444;
      st->st_size = static_cast<off_t>(n.blob->size());
      st->st_mtim.tv_sec = st->st_ctim.tv_sec = 0;
      break;
    case Kind::kUpload: {
      std::lock_guard<std::mutex> l(n.upload->mu);
      st->st_mode = S_IFREG | 0600;
      st->st_size = static_cast<off_t>(n.upload->size);
      break;
    }
    case Kind::kStats:
      st->st_mode = S_IFREG | 0444;
      st->st_size = 0;
      break;
    case Kind::kTree: {
      std::lock_guard<std::mutex> l(n.tree->mu());
      n.inode->FillStat(st);
      break;
    }
  }
  st->st_blocks = (st->st_size + 511) / 512;
  return true;
}

void Fs::ReplyEntry(fuse_req_t req, const std::shared_ptr<Node>& n) {
  struct fuse_entry_param e;
  std::memset(&e, 0, sizeof e);
  e.ino = n->ino;
  e.generation = 1;
  Attr(*n, &e.attr);
  e.attr_timeout = e.entry_timeout = Timeout(*n);
  fuse_reply_entry(req, &e);
}

chunkstore::Result<std::vector<std::string>> Fs::ListSets() {
  std::set<std::string> sets;
  ASSIGN_OR_RETURN(auto heads, repo_->ListHeads());
  for (const std::string& h : heads)
    if (h != kRegistrySet && h[0] != '@') sets.insert(h);  // '@': internal heads
  ASSIGN_OR_RETURN(auto snaps, repo_->ListSnapshots(""));
  for (const auto& s : snaps) sets.insert(s.set);
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& [name, t] : heads_)
    if (name != kRegistrySet) sets.insert(name);
  return std::vector<std::string>(sets.begin(), sets.end());
}

chunkstore::Result<std::shared_ptr<FsTree>> Fs::HeadTree(const std::string& set, bool create) {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = heads_.find(set);
    if (it != heads_.end()) return it->second;
  }
  auto reg = [this](const std::shared_ptr<TreeInode>& i) { i->ino = NextIno(); };
  auto t = std::make_shared<FsTree>(repo_, set, false, reg);
  std::lock_guard<std::mutex> tl(t->mu());
  Status st = t->Load([&](const std::function<Status(chunkstore::TreeEntry&)>& fn) {
    return repo_->LoadHead(set, fn);
  });
  if (st.IsNotFound()) {
    // A set with snapshots but no head yet, or a new set: start empty.
    auto snaps = repo_->ListSnapshots(set);
    if (!create && (!snaps.ok() || snaps->empty())) return st;
    st = t->Save();
  }
  RETURN_IF_ERROR(st);
  std::lock_guard<std::mutex> l(mu_);
  auto [it, fresh] = heads_.emplace(set, t);
  return it->second;
}

chunkstore::Result<std::shared_ptr<FsTree>> Fs::SnapshotTree(const std::string& set,
                                                             const std::string& name) {
  ASSIGN_OR_RETURN(auto info, repo_->FindSnapshot(set + "@" + name));
  if (info.id != name && info.tag != name)  // no prefixes in the tree: names are exact
    return Status::NotFound("snapshot " + set + "@" + name);
  std::string key = set + "@" + info.id;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = snaps_.find(key);
    if (it != snaps_.end()) return it->second;
  }
  auto reg = [this](const std::shared_ptr<TreeInode>& i) { i->ino = NextIno(); };
  auto t = std::make_shared<FsTree>(repo_, set, true, reg);
  {
    std::lock_guard<std::mutex> tl(t->mu());
    RETURN_IF_ERROR(t->Load([&](const std::function<Status(chunkstore::TreeEntry&)>& fn) {
      return repo_->ForEachSnapshotEntry(key, fn);
    }));
  }
  std::lock_guard<std::mutex> l(mu_);
  auto [it, fresh] = snaps_.emplace(key, t);
  return it->second;
}

chunkstore::Result<std::vector<std::string>> Fs::ListLayerTrees() {
  ASSIGN_OR_RETURN(auto heads, repo_->ListHeads());
  std::set<std::string> out;
  for (const std::string& h : heads)
    if (auto d = LayerTreeDiffId(h)) out.insert(*d);
  return std::vector<std::string>(out.begin(), out.end());
}

chunkstore::Result<std::shared_ptr<FsTree>> Fs::LayerTree(const std::string& diff_hex) {
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = layers_.find(diff_hex);
    if (it != layers_.end()) return it->second;
  }
  ASSIGN_OR_RETURN(auto heads, repo_->ListHeads());
  std::string set;
  for (const std::string& h : heads)
    if (LayerTreeDiffId(h) == diff_hex) set = h;
  if (set.empty()) return Status::NotFound("layer sha256:" + diff_hex);
  auto reg = [this](const std::shared_ptr<TreeInode>& i) { i->ino = NextIno(); };
  auto t = std::make_shared<FsTree>(repo_, set, true, reg);
  {
    std::lock_guard<std::mutex> tl(t->mu());
    RETURN_IF_ERROR(t->Load([&](const std::function<Status(chunkstore::TreeEntry&)>& fn) {
      return repo_->LoadHead(set, fn);
    }));
  }
  std::lock_guard<std::mutex> l(mu_);
  auto [it, fresh] = layers_.emplace(diff_hex, t);
  return it->second;
}

// Resolves `name` in directory `dir`; nullptr with *err set when it does not exist.
std::shared_ptr<Node> Fs::Child(const std::shared_ptr<Node>& dir, const std::string& name,
                                int* err) {
  *err = ENOENT;
  auto cached = [&](Kind kind, const std::string& key,
                    const std::function<void(Node&)>& fill) -> std::shared_ptr<Node> {
    std::lock_guard<std::mutex> l(mu_);
    auto it = named_.find({dir->ino, key});
    if (it != named_.end()) {
      auto n = nodes_.find(it->second);
      if (n != nodes_.end()) return n->second;
    }
    Node n;
    n.kind = kind;
    n.ino = NextIno();
    n.name = key;
    fill(n);
    named_[{dir->ino, key}] = n.ino;
    return AddNode(std::move(n));
  };
  switch (dir->kind) {
    case Kind::kRoot:
      if (name == "blobs") return Get(kBlobsIno);
      if (name == "uploads") return Get(kUploadsIno);
      if (name == "backups") return Get(kBackupsIno);
      if (name == "repos") {  // the registry's manifests and tags: an internal head
        auto t = HeadTree(kRegistrySet, true);
        if (!t.ok()) {
          *err = Errno(t.status());
          return nullptr;
        }
        return TreeNode(*t, (*t)->root());
      }
      if (name == ".coffer") return Get(kMetaIno);
      if (name == "layers") return Get(kLayersIno);
      if (name == "images") return Get(kImagesIno);
      return nullptr;
    case Kind::kImagesDir:
    case Kind::kImagePath:
    case Kind::kImageTag:
      return ImageChild(dir, name, err);
    case Kind::kLayersDir:
      return name == "sha256" ? Get(kLayersShaIno) : nullptr;
    case Kind::kLayersShaDir: {
      if (!IsHexDigest(name.c_str())) return nullptr;
      auto t = LayerTree(name);
      if (!t.ok()) {
        *err = Errno(t.status());
        return nullptr;
      }
      return TreeNode(*t, (*t)->root());
    }
    case Kind::kBlobsDir:
      return name == "sha256" ? Get(kShaIno) : nullptr;
    case Kind::kMetaDir:
      return name == "stats" ? Get(kStatsIno) : nullptr;
    case Kind::kShaDir: {
      if (!IsHexDigest(name.c_str())) return nullptr;
      auto blob = repo_->OpenBlob("sha256:" + name);
      if (!blob.ok()) {
        *err = Errno(blob.status());
        return nullptr;
      }
      std::shared_ptr<chunkstore::BlobReader> b(std::move(blob).value());
      return cached(Kind::kBlob, name, [&](Node& n) { n.blob = b; });
    }
    case Kind::kUploadsDir: {
      std::shared_ptr<Upload> u;
      {
        std::lock_guard<std::mutex> l(mu_);
        auto it = uploads_.find(name);
        if (it == uploads_.end()) return nullptr;
        u = it->second;
      }
      auto n = cached(Kind::kUpload, name, [&](Node& n) { n.upload = u; });
      if (n->upload != u) {  // a new upload under a reused name
        std::lock_guard<std::mutex> l(mu_);
        named_.erase({dir->ino, name});
      }
      return n->upload == u ? n : Child(dir, name, err);
    }
    case Kind::kBackupsDir: {
      auto sets = ListSets();
      if (!sets.ok()) {
        *err = Errno(sets.status());
        return nullptr;
      }
      if (!std::binary_search(sets->begin(), sets->end(), name)) return nullptr;
      return cached(Kind::kSetDir, name, [](Node&) {});
    }
    case Kind::kSetDir: {
      if (name == "snapshots") return cached(Kind::kSnapsDir, dir->name, [](Node&) {});
      if (name != "current") return nullptr;
      auto t = HeadTree(dir->name, true);
      if (!t.ok()) {
        *err = Errno(t.status());
        return nullptr;
      }
      return TreeNode(*t, (*t)->root());
    }
    case Kind::kSnapsDir: {
      auto t = SnapshotTree(dir->name, name);
      if (!t.ok()) {
        *err = Errno(t.status());
        return nullptr;
      }
      return TreeNode(*t, (*t)->root());
    }
    case Kind::kTree: {
      std::shared_ptr<TreeInode> c;
      {
        std::lock_guard<std::mutex> l(dir->tree->mu());
        if (dir->inode->type != EntryType::kDir) {
          *err = ENOTDIR;
          return nullptr;
        }
        auto it = dir->inode->children.find(name);
        if (it == dir->inode->children.end()) return nullptr;
        c = it->second;
      }
      return TreeNode(dir->tree, c);
    }
    default:
      *err = ENOTDIR;
      return nullptr;
  }
}

void Fs::Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto dir = Get(parent);
  if (!dir) return (void)fuse_reply_err(req, ESTALE);
  int err = 0;
  auto n = Child(dir, name, &err);
  if (!n) return (void)fuse_reply_err(req, err);
  ReplyEntry(req, n);
}

void Fs::Getattr(fuse_req_t req, fuse_ino_t ino) {
  auto n = Get(ino);
  if (!n) return (void)fuse_reply_err(req, ESTALE);
  struct stat st;
  Attr(*n, &st);
  fuse_reply_attr(req, &st, Timeout(*n));
}

void Fs::Readlink(fuse_req_t req, fuse_ino_t ino) {
  auto n = Get(ino);
  if (!n || n->kind != Kind::kTree) return (void)fuse_reply_err(req, EINVAL);
  std::lock_guard<std::mutex> l(n->tree->mu());
  if (n->inode->type != EntryType::kSymlink) return (void)fuse_reply_err(req, EINVAL);
  fuse_reply_readlink(req, n->inode->link.c_str());
}

// Directory listings are captured at opendir, as (name, ino, mode) triples.
struct DirList {
  std::vector<std::tuple<std::string, uint64_t, mode_t>> entries;
};

void Fs::Opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  auto n = Get(ino);
  if (!n) return (void)fuse_reply_err(req, ESTALE);
  auto list = std::make_unique<DirList>();
  auto add = [&](const std::string& name, uint64_t i, mode_t m) {
    list->entries.emplace_back(name, i, m);
  };
  add(".", n->ino, S_IFDIR);
  add("..", kRootIno, S_IFDIR);
  Status st;
  switch (n->kind) {
    case Kind::kRoot:
      add("blobs", kBlobsIno, S_IFDIR);
      add("uploads", kUploadsIno, S_IFDIR);
      add("backups", kBackupsIno, S_IFDIR);
      add("repos", 0, S_IFDIR);
      add("layers", kLayersIno, S_IFDIR);
      add("images", kImagesIno, S_IFDIR);
      add(".coffer", kMetaIno, S_IFDIR);
      break;
    case Kind::kImagesDir:
    case Kind::kImagePath: {
      auto tags = ImageTags();
      st = tags.status();
      if (!tags.ok()) break;
      const std::string& prefix = n->kind == Kind::kImagesDir ? std::string() : n->name;
      std::set<std::string> names;
      for (const auto& [repo, ts] : *tags) {
        if (!prefix.empty() && repo == prefix) names.insert(ts.begin(), ts.end());
        if (!prefix.empty() && repo.rfind(prefix + "/", 0) != 0) continue;
        std::string rest = prefix.empty() ? repo : repo.substr(prefix.size() + 1);
        if (!rest.empty()) names.insert(rest.substr(0, rest.find('/')));
      }
      for (const auto& name : names) add(name, 0, S_IFDIR);
      break;
    }
    case Kind::kImageTag:
      add("rootfs", 0, S_IFDIR);
      break;
    case Kind::kLayersDir:
      add("sha256", kLayersShaIno, S_IFDIR);
      break;
    case Kind::kLayersShaDir: {
      auto layers = ListLayerTrees();
      st = layers.status();
      if (layers.ok())
        for (const auto& d : *layers) add(d, 0, S_IFDIR);
      break;
    }
    case Kind::kBlobsDir:
      add("sha256", kShaIno, S_IFDIR);
      break;
    case Kind::kMetaDir:
      add("stats", kStatsIno, S_IFREG);
      break;
    case Kind::kShaDir: {
      auto blobs = repo_->ListBlobs();
      st = blobs.status();
      if (blobs.ok())
        for (const auto& b : *blobs) add(b.digest.substr(7), 0, S_IFREG);
      break;
    }
    case Kind::kUploadsDir: {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& [name, u] : uploads_) add(name, 0, S_IFREG);
      break;
    }
    case Kind::kBackupsDir: {
      auto sets = ListSets();
      st = sets.status();
      if (sets.ok())
        for (const auto& s : *sets) add(s, 0, S_IFDIR);
      break;
    }
    case Kind::kSetDir:
      add("current", 0, S_IFDIR);
      add("snapshots", 0, S_IFDIR);
      break;
    case Kind::kSnapsDir: {
      auto snaps = repo_->ListSnapshots(n->name);
      st = snaps.status();
      if (snaps.ok())
        for (const auto& s : *snaps) add(s.tag.empty() ? s.id : s.tag, 0, S_IFDIR);
      break;
    }
    case Kind::kTree: {
      std::lock_guard<std::mutex> l(n->tree->mu());
      if (n->inode->type != EntryType::kDir) return (void)fuse_reply_err(req, ENOTDIR);
      for (const auto& [name, c] : n->inode->children) add(name, c->ino, c->StatMode());
      break;
    }
    default:
      return (void)fuse_reply_err(req, ENOTDIR);
  }
  if (!st.ok()) return (void)fuse_reply_err(req, Errno(st));
  fi->fh = reinterpret_cast<uint64_t>(list.release());
  fi->cache_readdir = n->kind == Kind::kTree && n->tree->read_only();
  fuse_reply_open(req, fi);
}

void Fs::Readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                 struct fuse_file_info* fi) {
  Touch();
  auto* list = reinterpret_cast<DirList*>(fi->fh);
  std::string buf(size, '\0');
  size_t used = 0;
  for (size_t i = static_cast<size_t>(off); i < list->entries.size(); ++i) {
    const auto& [name, eino, mode] = list->entries[i];
    struct stat st;
    std::memset(&st, 0, sizeof st);
    st.st_ino = eino ? eino : 1;  // a real number comes with the lookup
    st.st_mode = mode;
    size_t need = fuse_add_direntry(req, buf.data() + used, size - used, name.c_str(), &st,
                                    static_cast<off_t>(i + 1));
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void Fs::Releasedir(fuse_req_t req, struct fuse_file_info* fi) {
  delete reinterpret_cast<DirList*>(fi->fh);
  fuse_reply_err(req, 0);
}

void Fs::Statfs(fuse_req_t req) {
  struct statvfs sv;
  if (statvfs(repo_->dir().c_str(), &sv) != 0) return (void)fuse_reply_err(req, errno);
  sv.f_namemax = 255;
  fuse_reply_statfs(req, &sv);
}

chunkstore::Result<uint64_t> Fs::QueueStoredLayers() {
  if (!ingest_)
    return chunkstore::Status::FailedPrecondition(
        "re-store layers: this daemon runs without --dedup-layers");
  // A re-stored layer (encoded, or a plain tar re-chunked by file) has its
  // file tree head: those are done.
  std::set<std::string> done;
  ASSIGN_OR_RETURN(auto heads, repo_->ListHeads());
  for (const std::string& h : heads)
    if (auto blob = LayerTreeBlob(h)) done.insert("sha256:" + *blob);
  ASSIGN_OR_RETURN(auto blobs, repo_->ListBlobs());
  uint64_t queued = 0;
  for (const chunkstore::BlobInfo& b : blobs) {
    if (b.size < LayerIngester::kMinBytes || done.count(b.digest)) continue;
    if (ingest_->Add(b.digest, b.size)) ++queued;
  }
  return queued;
}

// {"go-flate": {"layers": 3, "bytes": 123}, ...}: how the stored layers are
// re-created (cofferlayer::LayerEncodingKind).
static nlohmann::json LayersByMethod(const chunkstore::Stats& s) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [kind, k] : s.encoded_by_kind)
    j[kind] = {{"layers", k.blobs}, {"bytes", k.bytes}};
  return j;
}

nlohmann::json StatsObject(const chunkstore::Stats& s) {
  return {{"logical_bytes", s.logical_bytes},
          {"unique_bytes", s.unique_bytes},
          {"stored_bytes", s.stored_bytes},
          {"repo_bytes", s.repo_bytes},
          {"chunks", s.chunks},
          {"packs", s.packs},
          {"blobs", s.blobs},
          {"layers_stored", s.encoded_blobs},
          {"layers_stored_bytes", s.encoded_blob_bytes},
          {"layers_by_method", LayersByMethod(s)},
          {"snapshots", s.snapshots},
          {"dedup_ratio", s.dedup_ratio()},
          {"compression_ratio", s.compression_ratio()}};
}

std::string StatsJsonLine(const chunkstore::Stats& s) { return StatsObject(s).dump(); }

std::string Fs::StatsJson() {
  auto s = repo_->GetStats();
  if (!s.ok()) return nlohmann::json({{"error", s.status().message()}}).dump() + "\n";
  nlohmann::json j = StatsObject(*s);
  if (ingest_) {
    auto c = ingest_->counters();
    j["layers_pending"] = c.pending;
    j["layers_kept_as_pushed"] = c.kept;  // since the mount started
    j["layers_failed"] = c.failed;
  }
  // Encodings of re-stored layers started for reads (pulls) since the start.
  j["layer_rebuilds"] = cofferlayer::LayerRebuildsStarted();
  j["layer_bytes_rebuilt"] = cofferlayer::LayerBytesRebuilt();  // cache hits included
  const cofferlayer::SegmentCache::Counters lc = cofferlayer::SegmentCache::Global().counters();
  j["layer_cache_bytes"] = lc.bytes;
  j["layer_cache_capacity"] = lc.capacity;
  j["layer_cache_hits"] = lc.hits;
  j["layer_cache_hit_bytes"] = lc.hit_bytes;
  j["layer_segments_made"] = lc.made;
  // Segments that failed their check (recipe version 5) and were not served.
  j["layer_segment_check_failures"] = cofferlayer::SegmentedReconstructor::check_failures();
  std::lock_guard<std::mutex> l(mu_);
  j["uploads_open"] = uploads_.size();
  j["heads_loaded"] = heads_.size();
  j["open_files"] = open_files_.load();
  return j.dump(2) + "\n";
}

// Deleting a blob drops its root; its chunks go at the next gc unless something
// else holds them. Only a thread of this daemon, or one MountOptions::
// may_delete_blobs names (serve's registry process: its garbage collector),
// may. For everyone else the
// blobs are read-only (EROFS), so `rm -rf` on the mount cannot empty a registry.
// Readers that have the blob open keep reading until that gc.
void Fs::UnlinkBlob(fuse_req_t req, const char* name) {
  const struct fuse_ctx* ctx = fuse_req_ctx(req);
  std::string task = "/proc/self/task/" + std::to_string(ctx->pid);
  bool allowed = ctx->pid > 0 && (::access(task.c_str(), F_OK) == 0 ||
                                  (opts_.may_delete_blobs && opts_.may_delete_blobs(ctx->pid)));
  if (!allowed) return (void)fuse_reply_err(req, EROFS);
  if (!IsHexDigest(name)) return (void)fuse_reply_err(req, ENOENT);
  chunkstore::Status st = repo_->DeleteBlob(std::string("sha256:") + name);
  if (!st.ok()) return (void)fuse_reply_err(req, Errno(st));
  // Its file tree under /layers goes with it (else the tree would keep the
  // layer's chunks alive). A failure only leaves the tree for a later delete.
  if (auto heads = repo_->ListHeads(); heads.ok())
    for (const std::string& h : *heads)
      if (LayerTreeBlob(h) == std::string(name)) {
        (void)repo_->DeleteHead(h);
        std::lock_guard<std::mutex> l(mu_);
        layers_.erase(*LayerTreeDiffId(h));
      }
  {
    std::lock_guard<std::mutex> l(mu_);
    named_.erase({kShaIno, name});
  }
  {
    // Open handles keep their reader; the next open of a blob pushed again
    // under this digest gets a reader of its new form.
    std::lock_guard<std::mutex> l(shared_mu_);
    shared_readers_.erase(name);
  }
  if (audit_) audit_->Note("blob_delete", {{"digest", std::string("sha256:") + name}});
  fuse_reply_err(req, 0);
}

}  // namespace cofferfs
