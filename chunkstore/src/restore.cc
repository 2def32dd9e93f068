// Restore: recreate a snapshot's tree under a target directory. Entries arrive in
// pre-order, so parents exist before children and a hardlink's target before the
// link. Directory metadata is applied last, deepest first, because creating the
// children would change the directories' mtimes again.
//
// All-zero chunks become holes (lseek instead of write), so sparse files come back
// sparse; the final ftruncate sets the size when the file ends in a hole.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <future>
#include <unordered_set>

#include "repo_impl.h"
#include "worker_pool.h"

namespace chunkstore {
namespace {

bool AllZero(const std::string& s) {
  static const char kZero[4096] = {};
  for (size_t i = 0; i < s.size(); i += sizeof kZero) {
    size_t n = std::min(sizeof kZero, s.size() - i);
    if (std::memcmp(s.data() + i, kZero, n) != 0) return false;
  }
  return true;
}

Status WriteAll(int fd, const std::string& data, uint64_t off, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("write `" + path + "`", errno);
    done += static_cast<size_t>(n);
  }
  return Status::OK();
}

// Creates one file, writes its content, then its metadata.
Status WriteFile(Repository* repo, const std::string& path, const TreeEntry& e, bool owner,
                 std::atomic<uint64_t>* bytes) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno("create `" + path + "`", errno);
  uint64_t off = 0;
  Status s;
  std::string chunk;
  for (const ChunkRef& c : e.chunks) {
    chunk.clear();
    s = repo->ReadChunk(c.id, &chunk).Annotate("restore `" + path + "`");
    if (!s.ok()) break;
    if (!AllZero(chunk)) s = WriteAll(fd, chunk, off, path);
    if (!s.ok()) break;
    off += chunk.size();
    *bytes += chunk.size();
  }
  if (s.ok() && ftruncate(fd, static_cast<off_t>(off)) != 0)
    s = Status::FromErrno("truncate `" + path + "`", errno);
  if (close(fd) != 0 && s.ok()) s = Status::FromErrno("close `" + path + "`", errno);
  RETURN_IF_ERROR(s);
  return ApplyMetadata(path, e, owner);
}

}  // namespace

Status RepositoryImpl::Restore(std::string_view ref, const std::string& target,
                               const RestoreOptions& opts, const ProgressFn& progress) {
  ASSIGN_OR_RETURN(SnapshotRoot root, FindSnapshotRoot(ref));
  if (mkdir(target.c_str(), 0700) != 0 && errno != EEXIST)
    return Status::FromErrno("create restore target `" + target + "`", errno);
  bool owner = opts.restore_owner && geteuid() == 0;
  std::vector<TreeEntry> dirs;
  Progress p{"restore", 0, root.info.files, 0, root.info.bytes};
  // Entries are created in order on this thread; file contents are written on
  // the pool, several at once (reads, decompression and writes overlap).
  std::atomic<uint64_t> bytes{0};
  std::deque<std::future<Status>> writes;
  std::vector<TreeEntry> links;  // made last: their targets are created on the pool
  WorkerPool pool(4);
  auto drain = [&](size_t keep) -> Status {
    while (writes.size() > keep) {
      Status s = writes.front().get();
      writes.pop_front();
      RETURN_IF_ERROR(s);
      ++p.items_done;
    }
    p.bytes_done = bytes;
    if (progress) progress(p);
    return Status::OK();
  };
  // Every entry's parent must be a directory this restore created: a tree that
  // puts an entry under a symlink (possible only with the key) cannot steer the
  // restore outside the target.
  std::unordered_set<std::string> made_dirs = {""};
  Status st = ForEachEntry(root, [&](TreeEntry& e) -> Status {
    if (e.path.empty()) return Status::OK();  // a head's root: the target itself
    std::string path = target + "/" + e.path;
    size_t slash = e.path.rfind('/');
    if (!made_dirs.count(slash == std::string::npos ? "" : e.path.substr(0, slash)))
      return Status::Corruption("restore: `" + e.path +
                                "` does not follow its parent directory "
                                "in the snapshot tree");
    if (e.type == EntryType::kDir) made_dirs.insert(e.path);
    switch (e.type) {
      case EntryType::kDir:
        if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
          return Status::FromErrno("create directory `" + path + "`", errno);
        dirs.push_back(std::move(e));
        return Status::OK();
      case EntryType::kHardlink:
        if (!IsSafeRelativePath(e.link))
          return Status::Corruption("restore: hardlink `" + e.path + "` has an unsafe target");
        links.push_back(std::move(e));
        return Status::OK();
      case EntryType::kFile: {
        auto entry = std::make_shared<TreeEntry>(std::move(e));
        writes.push_back(pool.Submit([this, path, entry, owner, &bytes] {
          return WriteFile(this, path, *entry, owner, &bytes);
        }));
        p.current = entry->path;
        return drain(64);
      }
      default:
        RETURN_IF_ERROR(CreateSpecial(path, e));
        return ApplyMetadata(path, e, owner);
    }
  });
  Status done = drain(0);
  RETURN_IF_ERROR(st);
  RETURN_IF_ERROR(done);
  for (const TreeEntry& e : links) {
    std::string path = target + "/" + e.path, to = target + "/" + e.link;
    if (link(to.c_str(), path.c_str()) != 0)
      return Status::FromErrno("hardlink `" + path + "` to `" + to + "`", errno);
  }
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it)
    RETURN_IF_ERROR(ApplyMetadata(target + "/" + it->path, *it, owner));
  return Status::OK();
}

}  // namespace chunkstore
