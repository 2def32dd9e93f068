// put, cat, blobs, backup, snapshots, restore, forget.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>

#include "commands.h"
#include "progress.h"

namespace coffer {
namespace {

using chunkstore::Result;
using chunkstore::Status;

Result<size_t> ReadFd(int fd, char* buf, size_t n, const std::string& name) {
  ssize_t r;
  do r = read(fd, buf, n);
  while (r < 0 && errno == EINTR);
  if (r < 0) return Status::FromErrno("read `" + name + "`", errno);
  return static_cast<size_t>(r);
}

int RunPut(Globals& g, const std::string& file) {
  int fd = file == "-" ? STDIN_FILENO : open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(g, Status::FromErrno("open `" + file + "` for reading", errno));
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  ProgressBar bar(!g.quiet && !g.json);
  auto info = (*repo)->PutBlob(
      [&](char* b, size_t n) { return ReadFd(fd, b, n, file == "-" ? "stdin" : file); }, bar.Fn());
  bar.Finish();
  if (fd != STDIN_FILENO) close(fd);
  if (!info.ok()) return Fail(g, info.status());
  if (g.json)
    PrintJson({{"digest", info->digest}, {"size", info->size}, {"new_bytes", info->new_bytes}});
  else
    std::printf("%s\n", info->digest.c_str());
  return kExitOk;
}

struct CatArgs {
  std::string digest;
  uint64_t offset = 0;
  int64_t length = -1;
};

int RunCat(Globals& g, const CatArgs& a) {
  auto repo = OpenRepo(g, true);
  if (!repo.ok()) return Fail(g, repo.status());
  auto blob = (*repo)->OpenBlob(a.digest);
  if (!blob.ok()) return Fail(g, blob.status());
  uint64_t size = (*blob)->size();
  uint64_t end = a.length < 0 ? size : std::min<uint64_t>(size, a.offset + uint64_t(a.length));
  std::string buf(1 << 20, '\0');
  for (uint64_t off = a.offset; off < end;) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), end - off));
    auto n = (*blob)->ReadAt(off, want, buf.data());
    if (!n.ok()) return Fail(g, n.status());
    if (*n == 0) break;
    if (fwrite(buf.data(), 1, *n, stdout) != *n)
      return Fail(g, Status::FromErrno("write to stdout", errno));
    off += *n;
  }
  if (fflush(stdout) != 0) return Fail(g, Status::FromErrno("write to stdout", errno));
  return kExitOk;
}

int RunBlobs(Globals& g) {
  auto repo = OpenRepo(g, true);
  if (!repo.ok()) return Fail(g, repo.status());
  auto list = (*repo)->ListBlobs();
  if (!list.ok()) return Fail(g, list.status());
  nlohmann::json j = nlohmann::json::array();
  for (const auto& b : *list) {
    if (g.json)
      j.push_back({{"digest", b.digest}, {"size", b.size}});
    else
      std::printf("%s %12llu\n", b.digest.c_str(), (unsigned long long)b.size);
  }
  if (g.json) PrintJson(j);
  return kExitOk;
}

std::string TimeString(int64_t ns) {
  time_t t = static_cast<time_t>(ns / 1000000000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

nlohmann::json SnapshotJson(const chunkstore::SnapshotInfo& s) {
  return {{"id", s.id},
          {"set", s.set},
          {"tag", s.tag},
          {"time", TimeString(s.time_ns)},
          {"time_ns", s.time_ns},
          {"host", s.host},
          {"paths", s.paths},
          {"files", s.files},
          {"dirs", s.dirs},
          {"bytes", s.bytes},
          {"new_bytes", s.new_bytes},
          {"files_read", s.files_read}};
}

int RunBackup(Globals& g, const std::vector<std::string>& paths, const std::string& set) {
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  ProgressBar bar(!g.quiet && !g.json);
  auto info = (*repo)->Backup(paths, set, bar.Fn());
  bar.Finish();
  if (!info.ok()) return Fail(g, info.status());
  if (g.json)
    PrintJson(SnapshotJson(*info));
  else
    std::printf("snapshot %s@%s saved: %llu files (%llu read, rest unchanged), %s, %s new\n",
                info->set.c_str(), info->id.c_str(), (unsigned long long)info->files,
                (unsigned long long)info->files_read, HumanBytes(info->bytes).c_str(),
                HumanBytes(info->new_bytes).c_str());
  return kExitOk;
}

int RunSnapshots(Globals& g, const std::string& set) {
  auto repo = OpenRepo(g, true);
  if (!repo.ok()) return Fail(g, repo.status());
  auto list = (*repo)->ListSnapshots(set);
  if (!list.ok()) return Fail(g, list.status());
  nlohmann::json j = nlohmann::json::array();
  if (!g.json)
    std::printf("%-16s %-20s %-16s %10s %12s  %s\n", "ID", "TIME", "SET", "FILES", "SIZE", "PATHS");
  for (const auto& s : *list) {
    if (g.json) {
      j.push_back(SnapshotJson(s));
      continue;
    }
    std::string paths;
    for (const auto& p : s.paths) paths += (paths.empty() ? "" : " ") + p;
    std::printf("%-16s %-20s %-16s %10llu %12s  %s\n", s.id.c_str(), TimeString(s.time_ns).c_str(),
                s.set.c_str(), (unsigned long long)s.files, HumanBytes(s.bytes).c_str(),
                paths.c_str());
  }
  if (g.json) PrintJson(j);
  return kExitOk;
}

int RunRestore(Globals& g, const std::string& ref, const std::string& target, bool no_owner) {
  auto repo = OpenRepo(g, true);
  if (!repo.ok()) return Fail(g, repo.status());
  ProgressBar bar(!g.quiet && !g.json);
  chunkstore::RestoreOptions o;
  o.restore_owner = !no_owner;
  auto snap = (*repo)->FindSnapshot(ref);
  if (!snap.ok()) return Fail(g, snap.status());
  Status st = (*repo)->Restore(snap->set + "@" + snap->id, target, o, bar.Fn());
  bar.Finish();
  if (!st.ok()) return Fail(g, st);
  if (g.json)
    PrintJson({{"restored", snap->set + "@" + snap->id},
               {"target", target},
               {"files", snap->files},
               {"bytes", snap->bytes}});
  else
    std::printf("restored %s@%s to %s: %llu files, %s\n", snap->set.c_str(), snap->id.c_str(),
                target.c_str(), (unsigned long long)snap->files, HumanBytes(snap->bytes).c_str());
  return kExitOk;
}

int RunForget(Globals& g, const std::string& ref) {
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  auto snap = (*repo)->FindSnapshot(ref);
  Status st = snap.ok() ? (*repo)->Forget(ref) : snap.status();
  if (!st.ok()) return Fail(g, st);
  Audit(g, "forget", {{"snapshot", snap->set + "@" + snap->id}});
  if (g.json)
    PrintJson({{"forgotten", snap->set + "@" + snap->id}});
  else
    std::printf("forgot snapshot %s@%s (run `coffer gc` to free its space)\n", snap->set.c_str(),
                snap->id.c_str());
  return kExitOk;
}

}  // namespace

void AddDataCommands(CLI::App& app, Globals& g, int* rc) {
  auto file = std::make_shared<std::string>();
  auto* put = app.add_subcommand("put", "store a blob; prints sha256:<hex>");
  put->add_option("file", *file, "a file, or - for stdin")->required();
  put->callback([&g, rc, file] { *rc = RunPut(g, *file); });

  auto ca = std::make_shared<CatArgs>();
  auto* cat = app.add_subcommand("cat", "write a blob (or a range of it) to stdout");
  cat->add_option("digest", ca->digest, "sha256:<hex>")->required();
  cat->add_option("--offset", ca->offset, "first byte")->check(CLI::NonNegativeNumber);
  cat->add_option("--length", ca->length, "number of bytes (default: to the end)")
      ->check(CLI::NonNegativeNumber);
  cat->callback([&g, rc, ca] { *rc = RunCat(g, *ca); });

  app.add_subcommand("blobs", "list blobs")->callback([&g, rc] { *rc = RunBlobs(g); });

  auto paths = std::make_shared<std::vector<std::string>>();
  auto set = std::make_shared<std::string>();
  auto* backup = app.add_subcommand("backup", "snapshot directory trees into a set");
  backup->add_option("paths", *paths, "files and directories")->required();
  backup->add_option("--set", *set, "the snapshot set (e.g. a host or volume name)")->required();
  backup->callback([&g, rc, paths, set] { *rc = RunBackup(g, *paths, *set); });

  auto sset = std::make_shared<std::string>();
  auto* snaps = app.add_subcommand("snapshots", "list snapshots, oldest first");
  snaps->add_option("--set", *sset, "only this set");
  snaps->callback([&g, rc, sset] { *rc = RunSnapshots(g, *sset); });

  auto ref = std::make_shared<std::string>();
  auto target = std::make_shared<std::string>();
  auto no_owner = std::make_shared<bool>(false);
  auto* restore = app.add_subcommand("restore", "restore SET[@ID] into DIR");
  restore->add_option("snapshot", *ref, "SET, SET@latest or SET@ID (a unique prefix will do)")
      ->required();
  restore->add_option("target", *target, "directory to restore into")->required();
  restore->add_flag("--no-owner", *no_owner, "do not restore owners (default: restore as root)");
  restore->callback(
      [&g, rc, ref, target, no_owner] { *rc = RunRestore(g, *ref, *target, *no_owner); });

  auto fref = std::make_shared<std::string>();
  auto* forget = app.add_subcommand("forget", "remove one snapshot (gc frees its space)");
  forget->add_option("snapshot", *fref, "SET@ID")->required();
  forget->callback([&g, rc, fref] { *rc = RunForget(g, *fref); });
}

}  // namespace coffer
