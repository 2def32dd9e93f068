// Backup: walk the given paths depth-first, store each file's content as chunks
// (unless the parent snapshot shows it unchanged), and store the tree as a stream
// of entries that is itself chunked, so an unchanged subtree dedups too.
//
// The files cache is the parent snapshot (the latest of the same set): a file
// whose inode, size, mtime and ctime all match its entry there is not read; its
// chunk list is copied. ctime catches a content change that restored the mtime.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <set>
#include <unordered_map>

#include "coding.h"
#include "repo_impl.h"
#include "tree_sink.h"
#include "worker_pool.h"

namespace chunkstore {
namespace {

std::string HostName() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

int OpenForBackup(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
  if (fd < 0 && errno == EPERM)  // O_NOATIME needs ownership or CAP_FOWNER
    fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  return fd;
}

struct FileKey {
  uint64_t inode, size;
  int64_t mtime, ctime;
};

class BackupRun {
 public:
  BackupRun(const FastCdc* cdc, ChunkWriter* w, const ProgressFn& progress)
      : cdc_(cdc), w_(w), tree_(cdc, w), progress_(progress) {}

  std::unordered_map<std::string, std::pair<FileKey, std::vector<ChunkRef>>> parent;
  SnapshotInfo info;
  TreeSink& tree() { return tree_; }

  // Records the directories above a backed-up path (their metadata too).
  Status AddParents(const std::string& abs) {
    std::string rel;
    for (size_t pos = 1; (pos = abs.find('/', pos)) != std::string::npos; ++pos) {
      rel = abs.substr(1, pos - 1);
      if (!emitted_dirs_.insert(rel).second) continue;
      TreeEntry e;
      RETURN_IF_ERROR(ReadEntryMetadata(abs.substr(0, pos), &e));
      e.path = rel;
      RETURN_IF_ERROR(Emit(std::move(e)));
    }
    return Status::OK();
  }

  // Waits for every file still being read and adds the remaining entries.
  Status Finish() {
    RETURN_IF_ERROR(Drain(0));
    return tree_.Finish();
  }

  Status Walk(const std::string& abs, const std::string& rel) {
    TreeEntry e;
    Status st = ReadEntryMetadata(abs, &e);
    if (st.IsNotFound()) return Status::OK();  // vanished since readdir
    RETURN_IF_ERROR(st);
    e.path = rel;
    if (e.type == EntryType::kDir) return WalkDir(abs, std::move(e));
    if (e.type == EntryType::kFile) return File(abs, std::move(e));
    return Emit(std::move(e));
  }

 private:
  Status WalkDir(const std::string& abs, TreeEntry e) {
    if (!emitted_dirs_.insert(e.path).second) return Status::OK();  // given twice
    ++info.dirs;
    std::string path = e.path;
    RETURN_IF_ERROR(Emit(std::move(e)));
    DIR* d = opendir(abs.c_str());
    if (d == nullptr) return Status::FromErrno("open directory `" + abs + "`", errno);
    std::vector<std::string> names;
    while (struct dirent* de = readdir(d)) {
      std::string n = de->d_name;
      if (n != "." && n != "..") names.push_back(std::move(n));
    }
    closedir(d);
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) RETURN_IF_ERROR(Walk(abs + "/" + n, path + "/" + n));
    return Status::OK();
  }

  Status File(const std::string& abs, TreeEntry e) {
    struct stat st;
    if (lstat(abs.c_str(), &st) == 0 && st.st_nlink > 1) {
      auto [it, first] = links_.try_emplace({e.dev, e.inode}, e.path);
      if (!first) {
        e.type = EntryType::kHardlink;
        e.link = it->second;
        return Emit(std::move(e));
      }
    }
    ++info.files;
    info.bytes += e.size;
    Report(abs);
    auto p = parent.find(e.path);
    if (p != parent.end() && p->second.first.inode == e.inode && p->second.first.size == e.size &&
        p->second.first.mtime == e.mtime_ns && p->second.first.ctime == e.ctime_ns) {
      e.chunks = p->second.second;
      done_bytes_ += e.size;
      return Emit(std::move(e));
    }
    ++info.files_read;
    // Read and chunk on the pool; the entry waits in the queue, in order.
    auto entry = std::make_shared<TreeEntry>(std::move(e));
    auto fut = pool_.Submit([this, abs, entry] { return ReadContent(abs, entry.get()); });
    queue_.push_back({entry, std::move(fut)});
    return Drain(kMaxQueued);
  }

  Status Emit(TreeEntry e) {
    queue_.push_back({std::make_shared<TreeEntry>(std::move(e)), {}});
    return Drain(kMaxQueued);
  }

  // Adds queued entries to the tree, in order, while the front one is complete or
  // more than `keep` are queued.
  Status Drain(size_t keep) {
    while (!queue_.empty()) {
      Queued& q = queue_.front();
      if (q.content.valid()) {
        bool ready = q.content.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
        if (!ready && queue_.size() <= keep) return Status::OK();
        RETURN_IF_ERROR(q.content.get());
      }
      RETURN_IF_ERROR(tree_.Add(*q.entry));
      queue_.pop_front();
    }
    return Status::OK();
  }

  Status ReadContent(const std::string& abs, TreeEntry* e) {
    FdCloser fd(OpenForBackup(abs));
    if (fd.get() < 0) return Status::FromErrno("open `" + abs + "` for reading", errno);
    uint64_t total = 0;
    auto read = [&](char* buf, size_t n) -> Result<size_t> {
      ssize_t r;
      do r = ::read(fd.get(), buf, n);
      while (r < 0 && errno == EINTR);
      if (r < 0) return Status::FromErrno("read `" + abs + "`", errno);
      return static_cast<size_t>(r);
    };
    RETURN_IF_ERROR(ChunkStream(*cdc_, read, [&](std::string_view c) -> Status {
      ASSIGN_OR_RETURN(ChunkRef ref, w_->Add(RecordKind::kData, c));
      e->chunks.push_back(ref);
      total += c.size();
      done_bytes_ += c.size();  // atomic: several files are read at once
      return Status::OK();
    }));
    // A file that changed size while being read is stored as read; its entry
    // records the size of what was stored so a restore is self-consistent.
    e->size = total;
    return Status::OK();
  }

  void Report(const std::string& current) {
    if (!progress_) return;
    Progress p{"backup", info.files, 0, done_bytes_, 0, current};
    progress_(p);
  }

  struct Queued {
    std::shared_ptr<TreeEntry> entry;
    std::future<Status> content;  // valid while the file is being read
  };
  static constexpr size_t kMaxQueued = 256;
  static constexpr int kReaders = 4;  // more than the cores: reads of a cold tree wait on the disk

  const FastCdc* cdc_;
  ChunkWriter* w_;
  TreeSink tree_;
  ProgressFn progress_;
  std::atomic<uint64_t> done_bytes_{0};
  std::deque<Queued> queue_;
  std::set<std::string> emitted_dirs_;
  std::map<std::pair<uint64_t, uint64_t>, std::string> links_;
  WorkerPool pool_{kReaders};  // last: destroyed (joined) first, while the rest is alive
};

Result<std::string> Absolute(const std::string& p) {
  char* r = realpath(p.c_str(), nullptr);
  if (r == nullptr) return Status::FromErrno("back up `" + p + "`", errno);
  std::string s(r);
  free(r);
  if (s == "/")
    return Status::InvalidArgument("back up `/`: name the directories under it instead");
  return s;
}

}  // namespace

Result<SnapshotInfo> RepositoryImpl::Backup(const std::vector<std::string>& paths,
                                            std::string_view set, const ProgressFn& progress) {
  RETURN_IF_ERROR(RequireWriter());
  if (set.empty() || set.find_first_of("@/\n") != std::string_view::npos)
    return Status::InvalidArgument("set name `" + std::string(set) +
                                   "` is invalid (non-empty, no '@', '/' or newline)");
  if (paths.empty()) return Status::InvalidArgument("backup: no paths given");
  std::vector<std::string> abs;
  for (const std::string& p : paths) {
    ASSIGN_OR_RETURN(std::string a, Absolute(p));
    abs.push_back(a);
  }
  // A path given twice, or inside another given directory, is backed up once.
  std::sort(abs.begin(), abs.end());
  std::vector<std::string> roots;
  for (const std::string& a : abs) {
    bool inside = false;  // sorted order does not put a/f right after a ("a-x" sorts between)
    for (const std::string& r : roots) inside = inside || a == r || a.rfind(r + "/", 0) == 0;
    if (!inside) roots.push_back(a);
  }
  abs = std::move(roots);
  BackupRun run(cdc_.get(), writer_.get(), progress);
  auto parent = FindSnapshotRoot(std::string(set) + "@latest");
  if (parent.ok()) {
    RETURN_IF_ERROR(ForEachEntry(*parent, [&](TreeEntry& e) {
      if (e.type == EntryType::kFile)
        run.parent[e.path] = {FileKey{e.inode, e.size, e.mtime_ns, e.ctime_ns},
                              std::move(e.chunks)};
      return Status::OK();
    }));
  } else if (!parent.status().IsNotFound()) {
    return parent.status();
  }
  uint64_t before = writer_->new_bytes();
  SnapshotInfo& info = run.info;
  info.time_ns = static_cast<int64_t>(env_->NowMicros()) * 1000;
  for (const std::string& a : abs) {
    RETURN_IF_ERROR(run.AddParents(a));
    RETURN_IF_ERROR(run.Walk(a, a.substr(1)));
  }
  RETURN_IF_ERROR(run.Finish());
  RETURN_IF_ERROR(writer_->Flush());  // every chunk durable and indexed before the root
  uint8_t id[8];
  RandomBytes(id, sizeof id);
  info.id = ToHex(id, sizeof id);
  info.set = std::string(set);
  info.host = HostName();
  info.paths = abs;
  info.new_bytes = writer_->new_bytes() - before;
  SnapshotRoot root{info, run.tree().length(), std::move(run.tree().chunks())};
  std::string plain;
  EncodeSnapshotRoot(root, &plain);
  RETURN_IF_ERROR(
      WriteRoot(RootKind::kSnapshot, std::string(kSnapshotRootsDir) + "/" + info.id, plain));
  return info;
}

}  // namespace chunkstore
