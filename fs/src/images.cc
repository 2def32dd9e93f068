// /images/<repository>/<tag>/rootfs/: an image's root file system, merged from
// its layers' trees (/layers/sha256/<diff id>/) the way overlayfs merges lower
// directories. The registry's tree (/repos, the head "@registry") says which
// manifest a tag names; the manifest (or, for an index, its linux manifest for
// this machine's architecture) names the config, whose rootfs.diff_ids name
// the layers, bottom first. Read-only; built on first lookup and cached by
// manifest digest (a tag moved to another manifest gets a new tree).
#include <sys/utsname.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "fs.h"
#include "ingest.h"

namespace cofferfs {

namespace {

using chunkstore::TreeEntry;

constexpr uint64_t kMaxJson = 4 << 20;

// A child inode of `dir` by a '/'-separated path; null when absent.
std::shared_ptr<TreeInode> Walk(std::shared_ptr<TreeInode> dir, const std::string& path) {
  size_t i = 0;
  while (dir && i < path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    auto it = dir->children.find(path.substr(i, j - i));
    dir = it == dir->children.end() ? nullptr : it->second;
    i = j + 1;
  }
  return dir;
}

std::string GoArch() {
  struct utsname u;
  uname(&u);
  std::string m = u.machine;
  if (m == "x86_64") return "amd64";
  if (m == "aarch64") return "arm64";
  return m;
}

bool IsWhiteout(const TreeEntry& e) { return e.type == EntryType::kCharDev && e.rdev == 0; }

bool IsOpaque(const TreeEntry& e) {
  for (const auto& [k, v] : e.xattrs)
    if (k == "trusted.overlay.opaque" && v == "y") return true;
  return false;
}

// Drops `path` and everything below it.
void Erase(std::map<std::string, TreeEntry>* m, const std::string& path) {
  m->erase(path);
  for (auto it = m->lower_bound(path + "/"); it != m->end() && it->first.rfind(path + "/", 0) == 0;)
    it = m->erase(it);
}

// Applies one layer over the merged entries (overlayfs rules): whiteouts and
// opaque directories hide what lower layers had; a non-directory replaces a
// whole subtree; a directory over a directory replaces only its metadata.
void Apply(std::map<std::string, TreeEntry>* merged, std::vector<TreeEntry> layer) {
  for (const TreeEntry& e : layer) {
    if (e.path.empty()) continue;
    if (IsWhiteout(e)) Erase(merged, e.path);
    if (e.type == EntryType::kDir && IsOpaque(e)) Erase(merged, e.path);
  }
  for (TreeEntry& e : layer) {
    if (IsWhiteout(e)) continue;
    if (e.path.empty()) {
      (*merged)[""] = std::move(e);
      continue;
    }
    auto it = merged->find(e.path);
    if (it != merged->end() && !(it->second.type == EntryType::kDir && e.type == EntryType::kDir))
      Erase(merged, e.path);
    std::erase_if(e.xattrs, [](const auto& kv) { return kv.first == "trusted.overlay.opaque"; });
    std::string key = e.path;
    (*merged)[key] = std::move(e);
  }
}

}  // namespace

// The names and tags of the registry's repositories: "a/b" -> {"1", "latest"}.
chunkstore::Result<std::map<std::string, std::set<std::string>>> Fs::ImageTags() {
  ASSIGN_OR_RETURN(auto t, HeadTree(kRegistrySet, true));
  std::map<std::string, std::set<std::string>> out;
  std::lock_guard<std::mutex> l(t->mu());
  std::function<void(const std::shared_ptr<TreeInode>&, const std::string&, int)> walk =
      [&](const std::shared_ptr<TreeInode>& d, const std::string& rel, int depth) {
        if (depth > 64) return;
        if (auto tags = Walk(d, "_manifests/tags"); tags && !rel.empty())
          for (const auto& [tag, x] : tags->children)
            if (Walk(x, "current/link")) out[rel].insert(tag);
        for (const auto& [name, c] : d->children)
          if (c->type == EntryType::kDir && !name.empty() && name[0] != '_' && name[0] != '.')
            walk(c, rel.empty() ? name : rel + "/" + name, depth + 1);
      };
  walk(t->root(), "", 0);
  return out;
}

chunkstore::Result<std::string> Fs::ReadBlobSmall(const std::string& digest) {
  ASSIGN_OR_RETURN(auto b, repo_->OpenBlob(digest));
  if (b->size() > kMaxJson) return Status::InvalidArgument(digest + " is too large for a manifest");
  std::string out(b->size(), '\0');
  ASSIGN_OR_RETURN(size_t got, b->ReadAt(0, out.size(), out.data()));
  out.resize(got);
  return out;
}

// The diff ids of the image `repo`:`tag`, bottom layer first; *key = the digest
// of the image manifest they come from.
chunkstore::Result<std::vector<std::string>> Fs::ImageLayers(const std::string& repo,
                                                             const std::string& tag,
                                                             std::string* key) {
  std::string link;
  {
    ASSIGN_OR_RETURN(auto t, HeadTree(kRegistrySet, true));
    std::lock_guard<std::mutex> l(t->mu());
    auto f = Walk(t->root(), repo + "/_manifests/tags/" + tag + "/current/link");
    if (!f || f->type != EntryType::kFile) return Status::NotFound("image " + repo + ":" + tag);
    link.resize(f->data.size);
    ASSIGN_OR_RETURN(size_t got, t->Read(*f, 0, link.size(), link.data()));
    link.resize(got);
  }
  const std::string what = "image " + repo + ":" + tag;
  for (int depth = 0; depth < 4; ++depth) {  // an index names manifests
    ASSIGN_OR_RETURN(std::string body, ReadBlobSmall(link));
    auto m = nlohmann::json::parse(body, nullptr, false);
    if (m.is_discarded() || !m.is_object()) return Status::Corruption(what + ": manifest " + link);
    if (m.contains("manifests") && m["manifests"].is_array()) {
      std::string pick;
      for (const auto& d : m["manifests"]) {
        auto p = d.value("platform", nlohmann::json::object());
        if (p.value("os", "") == "linux" && p.value("architecture", "") == GoArch())
          pick = d.value("digest", "");
      }
      if (pick.empty()) return Status::NotFound(what + ": no linux/" + GoArch() + " manifest");
      link = pick;
      continue;
    }
    *key = link;
    std::string config = m.value("config", nlohmann::json::object()).value("digest", "");
    ASSIGN_OR_RETURN(std::string cbody, ReadBlobSmall(config));
    auto c = nlohmann::json::parse(cbody, nullptr, false);
    if (c.is_discarded() || !c.is_object() || !c.contains("rootfs"))
      return Status::Corruption(what + ": config " + config);
    std::vector<std::string> out;
    for (const auto& d : c["rootfs"].value("diff_ids", nlohmann::json::array()))
      if (d.is_string()) out.push_back(d.get<std::string>());
    return out;
  }
  return Status::Corruption(what + ": indexes nested too deep");
}

chunkstore::Result<std::shared_ptr<FsTree>> Fs::ImageTree(const std::string& repo,
                                                          const std::string& tag) {
  std::string key;
  ASSIGN_OR_RETURN(auto diffs, ImageLayers(repo, tag, &key));
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = images_.find(key);
    if (it != images_.end()) return it->second;
  }
  ASSIGN_OR_RETURN(auto heads, repo_->ListHeads());
  std::map<std::string, TreeEntry> merged;
  for (const std::string& diff : diffs) {
    std::string set;
    for (const std::string& h : heads)
      if (diff.size() == 71 && LayerTreeDiffId(h) == diff.substr(7)) set = h;
    if (set.empty())
      return Status::NotFound("image " + repo + ":" + tag + ": layer " + diff +
                              " has no file tree (pushed without --dedup-layers?)");
    std::vector<TreeEntry> layer;
    RETURN_IF_ERROR(repo_->LoadHead(set, [&](TreeEntry& e) {
      layer.push_back(std::move(e));
      return Status::OK();
    }));
    Apply(&merged, std::move(layer));
  }
  auto reg = [this](const std::shared_ptr<TreeInode>& i) { i->ino = NextIno(); };
  auto t = std::make_shared<FsTree>(repo_, "image " + repo + ":" + tag, true, reg);
  {
    std::lock_guard<std::mutex> tl(t->mu());
    RETURN_IF_ERROR(t->Load([&](const std::function<Status(TreeEntry&)>& fn) -> Status {
      for (auto pass : {false, true})  // hardlinks after every file they may name
        for (auto& [path, e] : merged) {
          if ((e.type == EntryType::kHardlink) != pass) continue;
          if (pass) {  // its target may have been hidden by a later layer
            auto t = merged.find(e.link);
            if (t == merged.end() || t->second.type != EntryType::kFile) continue;
          }
          RETURN_IF_ERROR(fn(e));
        }
      return Status::OK();
    }));
  }
  std::lock_guard<std::mutex> l(mu_);
  auto [it, fresh] = images_.emplace(key, t);
  return it->second;
}

// /images/<a>/<b>/...: a path component of a repository name, a tag of the
// repository named so far, or (below a tag) "rootfs".
std::shared_ptr<Node> Fs::ImageChild(const std::shared_ptr<Node>& dir, const std::string& name,
                                     int* err) {
  *err = ENOENT;
  auto fail = [&](const Status& st) -> std::shared_ptr<Node> {
    *err = Errno(st);
    if (!st.IsNotFound()) std::fprintf(stderr, "coffer: /images: %s\n", st.ToString().c_str());
    return nullptr;
  };
  if (dir->kind == Kind::kImageTag) {
    if (name != "rootfs") return nullptr;
    size_t nl = dir->name.find('\n');
    auto t = ImageTree(dir->name.substr(0, nl), dir->name.substr(nl + 1));
    if (!t.ok()) return fail(t.status());
    return TreeNode(*t, (*t)->root());
  }
  auto tags = ImageTags();
  if (!tags.ok()) return fail(tags.status());
  const std::string prefix = dir->kind == Kind::kImagesDir ? std::string() : dir->name;
  const std::string path = prefix.empty() ? name : prefix + "/" + name;
  Kind kind;
  std::string key;
  auto below = tags->lower_bound(path + "/");
  bool is_prefix = below != tags->end() && below->first.rfind(path + "/", 0) == 0;
  if (tags->count(path) || is_prefix) {
    kind = Kind::kImagePath;
    key = path;
  } else if (auto it = tags->find(prefix); it != tags->end() && it->second.count(name)) {
    kind = Kind::kImageTag;
    key = prefix + "\n" + name;
  } else {
    return nullptr;
  }
  std::lock_guard<std::mutex> l(mu_);
  auto it = named_.find({dir->ino, name});
  if (it != named_.end())
    if (auto n = nodes_.find(it->second); n != nodes_.end() && n->second->kind == kind)
      return n->second;
  Node n;
  n.kind = kind;
  n.ino = NextIno();
  n.name = key;
  named_[{dir->ino, name}] = n.ino;
  return AddNode(std::move(n));
}

}  // namespace cofferfs
