// MemEnv: an in-memory file system that remembers what a crash would keep.
//
// Model. Every file node has `data` (what reads see) and `synced_data` (what the
// last WritableFile::Sync() made durable). Every directory has `live` entries
// (what lookups see) and `durable` entries (what the last SyncDir() made
// durable); both map a name to a shared node, so a renamed file is one node
// reachable under its new live name and, until the directory is synced, its old
// durable name. SimulateCrash() walks the tree from the root setting live :=
// durable and data := synced_data, which is the worst case a POSIX file system
// with ordered data may leave after power loss: no unsynced byte and no
// unsynced directory entry survives.
//
// Deliberately less durable than ext4 in one respect: CreateDirs() makes only the
// new directories' own entries durable in their parents, not every other pending
// entry of those parents (which the posix fsync would incidentally persist).
// Code must not lean on that side effect.
//
// Paths may be absolute or relative; both are resolved from the one root, with
// "." and empty components ignored and ".." taken lexically.
//
// Thread safety: one mutex, mu_, guards the whole tree, the crash generation and
// the lock table. File objects take it for every call. The MemEnv must outlive
// every file and lock object it returned.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "chunkstore/env.h"

namespace chunkstore {
namespace {

struct Node {
  explicit Node(bool dir) : is_dir(dir) {}
  const bool is_dir;
  // Files only.
  std::string data;
  std::string synced_data;
  // Directories only.
  std::map<std::string, std::shared_ptr<Node>> live;
  std::map<std::string, std::shared_ptr<Node>> durable;
};
using NodePtr = std::shared_ptr<Node>;

std::string Quote(const std::string& path) { return "`" + path + "`"; }

Status MemError(std::string_view op, const std::string& path, int err) {
  return Status::FromErrno(std::string(op) + " " + Quote(path), err);
}

// "a/./b//c/../d" -> {"a", "b", "d"}.
std::vector<std::string> SplitPath(const std::string& path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    std::string part = path.substr(i, j - i);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(std::move(part));
    }
    i = j + 1;
  }
  return parts;
}

std::string LockKey(const std::vector<std::string>& parts) {
  std::string key;
  for (const auto& p : parts) key += "/" + p;
  return key.empty() ? "/" : key;
}

class MemEnvImpl;

class MemWritableFile final : public WritableFile {
 public:
  MemWritableFile(MemEnvImpl* env, NodePtr node, std::string path, uint64_t generation)
      : env_(env), node_(std::move(node)), path_(std::move(path)), generation_(generation) {}
  Status Append(std::string_view data) override;
  Status Sync() override;
  Status Close() override;
  uint64_t Size() const override { return size_; }

 private:
  // REQUIRES: env_->mu_ held.
  Status CheckUsable(const char* op) const;

  MemEnvImpl* const env_;
  const NodePtr node_;
  const std::string path_;
  const uint64_t generation_;  // env generation at open; a crash bumps it
  uint64_t size_ = 0;
  bool closed_ = false;
};

class MemRandomAccessFile final : public RandomAccessFile {
 public:
  MemRandomAccessFile(MemEnvImpl* env, NodePtr node, std::string path, uint64_t generation)
      : env_(env), node_(std::move(node)), path_(std::move(path)), generation_(generation) {}
  Result<size_t> Read(uint64_t offset, size_t n, char* buf) const override;
  Result<uint64_t> Size() const override;

 private:
  MemEnvImpl* const env_;
  const NodePtr node_;
  const std::string path_;
  const uint64_t generation_;
};

class MemFileLock final : public FileLock {
 public:
  MemFileLock(MemEnvImpl* env, std::string key, uint64_t token)
      : env_(env), key_(std::move(key)), token_(token) {}
  ~MemFileLock() override;

 private:
  MemEnvImpl* const env_;
  const std::string key_;
  const uint64_t token_;
};

class MemEnvImpl final : public MemEnv {
 public:
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override;
  Status RenameFile(const std::string& from, const std::string& to) override;
  Status RemoveFile(const std::string& path) override;
  Status CreateDirs(const std::string& path) override;
  Status RemoveDir(const std::string& path) override;
  Status SyncDir(const std::string& path) override;
  Result<std::vector<std::string>> GetChildren(const std::string& dir) override;
  bool FileExists(const std::string& path) override;
  Result<uint64_t> GetFileSize(const std::string& path) override;
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path, int* stale_pid) override;
  uint64_t NowMicros() override;
  void SimulateCrash() override;

 private:
  friend class MemWritableFile;
  friend class MemRandomAccessFile;
  friend class MemFileLock;

  // The node at `path` (live entries), or ENOENT/ENOTDIR under `op`.
  // REQUIRES: mu_ held.
  Result<NodePtr> Lookup(const std::string& path, std::string_view op) const;
  // The directory that holds (or would hold) the last component of `path`;
  // sets *name to that component. EINVAL for the root itself.
  // REQUIRES: mu_ held.
  Result<NodePtr> LookupParent(const std::string& path, std::string_view op,
                               std::string* name) const;
  // REQUIRES: mu_ held.
  void Revert(Node* node, std::set<Node*>* visited);
  void Unlock(const std::string& key, uint64_t token);

  mutable std::mutex mu_;
  // The root is durable by definition: it has no parent entry to lose.
  const NodePtr root_ = std::make_shared<Node>(/*dir=*/true);
  // Bumped by SimulateCrash(); file objects from an older generation are dead.
  uint64_t generation_ = 0;  // guarded by mu_
  // Lock key -> token of the live FileLock object holding it. Guarded by mu_.
  std::map<std::string, uint64_t> locks_;
  uint64_t next_lock_token_ = 1;  // guarded by mu_
};

// ---- MemWritableFile / MemRandomAccessFile / MemFileLock ----

Status MemWritableFile::CheckUsable(const char* op) const {
  if (generation_ != env_->generation_) {
    return Status::IOError(std::string(op) + " " + Quote(path_) +
                           ": file invalidated by simulated crash");
  }
  if (closed_) return MemError(op, path_, EBADF);
  return Status::OK();
}

Status MemWritableFile::Append(std::string_view data) {
  std::lock_guard<std::mutex> l(env_->mu_);
  RETURN_IF_ERROR(CheckUsable("write"));
  node_->data.append(data);
  size_ += data.size();
  return Status::OK();
}

Status MemWritableFile::Sync() {
  std::lock_guard<std::mutex> l(env_->mu_);
  RETURN_IF_ERROR(CheckUsable("sync"));
  node_->synced_data = node_->data;
  return Status::OK();
}

Status MemWritableFile::Close() {
  std::lock_guard<std::mutex> l(env_->mu_);
  if (closed_) return Status::OK();
  RETURN_IF_ERROR(CheckUsable("close"));
  closed_ = true;
  return Status::OK();
}

Result<size_t> MemRandomAccessFile::Read(uint64_t offset, size_t n, char* buf) const {
  std::lock_guard<std::mutex> l(env_->mu_);
  if (generation_ != env_->generation_) {
    return Status::IOError("read " + Quote(path_) + ": file invalidated by simulated crash");
  }
  const std::string& data = node_->data;
  if (offset >= data.size()) return size_t{0};
  size_t count = std::min<uint64_t>(n, data.size() - offset);
  data.copy(buf, count, offset);
  return count;
}

Result<uint64_t> MemRandomAccessFile::Size() const {
  std::lock_guard<std::mutex> l(env_->mu_);
  if (generation_ != env_->generation_) {
    return Status::IOError("stat " + Quote(path_) + ": file invalidated by simulated crash");
  }
  return static_cast<uint64_t>(node_->data.size());
}

MemFileLock::~MemFileLock() { env_->Unlock(key_, token_); }

// ---- MemEnvImpl ----

Result<NodePtr> MemEnvImpl::Lookup(const std::string& path, std::string_view op) const {
  if (path.empty()) return MemError(op, path, ENOENT);
  NodePtr node = root_;
  for (const std::string& part : SplitPath(path)) {
    if (!node->is_dir) return MemError(op, path, ENOTDIR);
    auto it = node->live.find(part);
    if (it == node->live.end()) return MemError(op, path, ENOENT);
    node = it->second;
  }
  return node;
}

Result<NodePtr> MemEnvImpl::LookupParent(const std::string& path, std::string_view op,
                                         std::string* name) const {
  if (path.empty()) return MemError(op, path, ENOENT);
  std::vector<std::string> parts = SplitPath(path);
  if (parts.empty()) return MemError(op, path, EINVAL);  // the root has no parent
  *name = parts.back();
  NodePtr node = root_;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    auto it = node->live.find(parts[i]);
    if (it == node->live.end()) return MemError(op, path, ENOENT);
    node = it->second;
    if (!node->is_dir) return MemError(op, path, ENOTDIR);
  }
  return node;
}

Result<std::unique_ptr<WritableFile>> MemEnvImpl::NewWritableFile(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  const std::string op = "open " + Quote(path) + " for writing";
  std::string name;
  auto parent = LookupParent(path, "open", &name);
  if (!parent.ok()) return Status::FromErrno(op, parent.status().sys_errno());
  NodePtr& slot = (*parent)->live[name];
  if (slot == nullptr) {
    slot = std::make_shared<Node>(/*dir=*/false);
  } else if (slot->is_dir) {
    return Status::FromErrno(op, EISDIR);
  } else {
    // O_TRUNC: the same node, emptied. The truncation is not durable until a
    // Sync(), so a crash brings the old synced contents back.
    slot->data.clear();
  }
  std::unique_ptr<WritableFile> file =
      std::make_unique<MemWritableFile>(this, slot, path, generation_);
  return file;
}

Result<std::unique_ptr<RandomAccessFile>> MemEnvImpl::NewRandomAccessFile(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  const std::string op = "open " + Quote(path) + " for reading";
  auto node = Lookup(path, "open");
  if (!node.ok()) return Status::FromErrno(op, node.status().sys_errno());
  if ((*node)->is_dir) return Status::FromErrno(op, EISDIR);
  std::unique_ptr<RandomAccessFile> file =
      std::make_unique<MemRandomAccessFile>(this, *node, path, generation_);
  return file;
}

Status MemEnvImpl::RenameFile(const std::string& from, const std::string& to) {
  std::lock_guard<std::mutex> l(mu_);
  const std::string op = "rename " + Quote(from) + " to " + Quote(to);
  auto fail = [&op](const Status& s) { return Status::FromErrno(op, s.sys_errno()); };
  std::string from_name, to_name;
  auto from_parent = LookupParent(from, op, &from_name);
  if (!from_parent.ok()) return fail(from_parent.status());
  auto to_parent = LookupParent(to, op, &to_name);
  if (!to_parent.ok()) return fail(to_parent.status());
  auto from_it = (*from_parent)->live.find(from_name);
  if (from_it == (*from_parent)->live.end()) return Status::FromErrno(op, ENOENT);
  NodePtr node = from_it->second;
  auto to_it = (*to_parent)->live.find(to_name);
  if (to_it != (*to_parent)->live.end()) {
    const NodePtr& target = to_it->second;
    if (target == node) return Status::OK();  // rename(2): same file, no-op
    if (!node->is_dir && target->is_dir) return Status::FromErrno(op, EISDIR);
    if (node->is_dir && !target->is_dir) return Status::FromErrno(op, ENOTDIR);
    if (target->is_dir && !target->live.empty()) return Status::FromErrno(op, ENOTEMPTY);
  }
  if (node->is_dir) {
    // A directory cannot move into its own subtree.
    std::vector<std::string> f = SplitPath(from), t = SplitPath(to);
    if (t.size() > f.size() && std::equal(f.begin(), f.end(), t.begin())) {
      return Status::FromErrno(op, EINVAL);
    }
  }
  // Live maps only: until SyncDir() of both directories a crash undoes this.
  (*from_parent)->live.erase(from_it);
  (*to_parent)->live[to_name] = std::move(node);
  return Status::OK();
}

Status MemEnvImpl::RemoveFile(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  std::string name;
  auto parent = LookupParent(path, "remove", &name);
  if (!parent.ok()) return parent.status();
  auto it = (*parent)->live.find(name);
  if (it == (*parent)->live.end()) return MemError("remove", path, ENOENT);
  if (it->second->is_dir) return MemError("remove", path, EISDIR);
  (*parent)->live.erase(it);
  return Status::OK();
}

Status MemEnvImpl::CreateDirs(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  if (path.empty()) return MemError("create directory", path, ENOENT);
  NodePtr node = root_;
  for (const std::string& part : SplitPath(path)) {
    NodePtr& slot = node->live[part];
    if (slot == nullptr) {
      slot = std::make_shared<Node>(/*dir=*/true);
      // As the posix version fsyncs the parent of each directory it creates.
      node->durable[part] = slot;
    } else if (!slot->is_dir) {
      return MemError("create directory", path, ENOTDIR);
    }
    node = slot;
  }
  return Status::OK();
}

Status MemEnvImpl::RemoveDir(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  std::string name;
  auto parent = LookupParent(path, "remove directory", &name);
  if (!parent.ok()) return parent.status();
  auto it = (*parent)->live.find(name);
  if (it == (*parent)->live.end()) return MemError("remove directory", path, ENOENT);
  if (!it->second->is_dir) return MemError("remove directory", path, ENOTDIR);
  if (!it->second->live.empty()) return MemError("remove directory", path, ENOTEMPTY);
  (*parent)->live.erase(it);
  return Status::OK();
}

Status MemEnvImpl::SyncDir(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  ASSIGN_OR_RETURN(NodePtr dir, Lookup(path, "sync directory"));
  if (!dir->is_dir) return MemError("sync directory", path, ENOTDIR);
  dir->durable = dir->live;
  return Status::OK();
}

Result<std::vector<std::string>> MemEnvImpl::GetChildren(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  ASSIGN_OR_RETURN(NodePtr dir, Lookup(path, "list directory"));
  if (!dir->is_dir) return MemError("list directory", path, ENOTDIR);
  std::vector<std::string> names;
  names.reserve(dir->live.size());
  for (const auto& [name, child] : dir->live) names.push_back(name);
  return names;
}

bool MemEnvImpl::FileExists(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  return Lookup(path, "stat").ok();
}

Result<uint64_t> MemEnvImpl::GetFileSize(const std::string& path) {
  std::lock_guard<std::mutex> l(mu_);
  ASSIGN_OR_RETURN(NodePtr node, Lookup(path, "stat"));
  if (node->is_dir) return MemError("stat", path, EISDIR);
  return static_cast<uint64_t>(node->data.size());
}

Result<std::unique_ptr<FileLock>> MemEnvImpl::LockFile(const std::string& path, int* stale_pid) {
  std::lock_guard<std::mutex> l(mu_);
  *stale_pid = 0;
  std::string name;
  auto parent = LookupParent(path, "open lock file", &name);
  if (!parent.ok()) return parent.status();
  NodePtr& slot = (*parent)->live[name];
  if (slot == nullptr) {
    slot = std::make_shared<Node>(/*dir=*/false);  // O_CREAT; entry not synced
  } else if (slot->is_dir) {
    return MemError("open lock file", path, EISDIR);
  }
  const std::string key = LockKey(SplitPath(path));
  const int pid = static_cast<int>(::getpid());
  if (locks_.count(key) != 0) {
    return Status::Unavailable(Quote(path) + ": repository busy (held by pid " +
                               std::to_string(pid) + ")");
  }
  // A clean release empties the file; a pid left in it means its holder died
  // (here: was lost in SimulateCrash(), which drops every lock).
  if (!slot->data.empty()) *stale_pid = std::atoi(slot->data.c_str());
  slot->data = std::to_string(pid) + "\n";
  slot->synced_data = slot->data;  // the posix version fsyncs the pid
  const uint64_t token = next_lock_token_++;
  locks_[key] = token;
  std::unique_ptr<FileLock> lock = std::make_unique<MemFileLock>(this, key, token);
  return lock;
}

void MemEnvImpl::Unlock(const std::string& key, uint64_t token) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = locks_.find(key);
  // A lock from before a crash no longer owns the entry (or the file).
  if (it == locks_.end() || it->second != token) return;
  locks_.erase(it);
  // Empty the file, unsynced, as the posix version does.
  auto node = Lookup(key, "unlock");
  if (node.ok() && !(*node)->is_dir) (*node)->data.clear();
}

uint64_t MemEnvImpl::NowMicros() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

void MemEnvImpl::Revert(Node* node, std::set<Node*>* visited) {
  // A node can be durable under two names (moved between directories and both
  // synced), so visit each once.
  if (!visited->insert(node).second) return;
  if (!node->is_dir) {
    node->data = node->synced_data;
    return;
  }
  node->live = node->durable;
  for (const auto& [name, child] : node->live) Revert(child.get(), visited);
}

void MemEnvImpl::SimulateCrash() {
  std::lock_guard<std::mutex> l(mu_);
  std::set<Node*> visited;
  Revert(root_.get(), &visited);
  ++generation_;
  // The crashed process's locks die with it, as the kernel drops flocks.
  locks_.clear();
}

}  // namespace

std::unique_ptr<MemEnv> NewMemEnv() { return std::make_unique<MemEnvImpl>(); }

}  // namespace chunkstore
