// mount, umount, snapshot, audit: the FUSE daemon and the verbs that go through
// its control socket when it holds the repository.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "chunkstore/store.h"
#include "commands.h"
#include "fs/mount.h"
#include "progress.h"

namespace coffer {
namespace {

using chunkstore::Result;
using chunkstore::Status;

struct MountArgs {
  std::string mountpoint, idle, audit_log;
  bool foreground = false, allow_other = false, dedup_layers = false;
  uint64_t layer_cache = cofferfs::MountOptions().layer_cache_bytes;
};

// Without -f the daemon detaches, but only after the mount is live, so errors
// (wrong passphrase, busy repository, no /dev/fuse) still reach the caller with
// the right exit code. The fork happens before the repository is opened: RocksDB
// threads do not survive a fork.
int RunMountCmd(Globals& g, const MountArgs& a) {
  cofferfs::MountOptions o;
  o.mountpoint = a.mountpoint;
  o.allow_other = a.allow_other;
  o.layers = a.dedup_layers;
  o.layer_cache_bytes = a.layer_cache;
  o.audit_log = g.audit_log;
  if (o.audit_log.empty())
    if (const char* env = std::getenv("COFFER_AUDIT_LOG"); env) o.audit_log = env;
  if (!a.idle.empty()) {
    auto ms = ParseDuration(a.idle);
    if (!ms.ok()) return Fail(g, ms.status());
    o.idle_timeout_ms = *ms;
  }
  struct stat st;
  if (stat(a.mountpoint.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return FailMsg(g, "mount point `" + a.mountpoint + "` is not a directory");
  auto dir = RepoDir(g);
  if (!dir.ok()) return Fail(g, dir.status());
  auto secret = ReadSecret(g, false, nullptr);
  if (!secret.ok()) return Fail(g, secret.status());
  int pipefd[2] = {-1, -1};
  if (!a.foreground) {
    if (pipe(pipefd) != 0) return Fail(g, Status::FromErrno("pipe", errno));
    pid_t pid = fork();
    if (pid < 0) return Fail(g, Status::FromErrno("fork", errno));
    if (pid > 0) {  // parent: report what the daemon says
      close(pipefd[1]);
      std::string msg;
      char buf[512];
      ssize_t n;
      while ((n = read(pipefd[0], buf, sizeof buf)) > 0) msg.append(buf, static_cast<size_t>(n));
      if (msg.rfind("ok", 0) == 0) return kExitOk;
      int code = msg.size() > 2 && msg[1] == ':' ? msg[0] - '0' : kExitFail;
      return FailMsg(g, msg.size() > 2 ? msg.substr(2) : "the mount daemon exited", code);
    }
    close(pipefd[0]);
    setsid();
  }
  chunkstore::OpenOptions oo;
  oo.lock_wait_ms = static_cast<uint32_t>(g.lock_wait * 1000);
  auto repo = chunkstore::Repository::Open(*dir, *secret, oo);
  secret->assign(secret->size(), '\0');
  auto report = [&](int code, const std::string& m) {
    if (pipefd[1] < 0) return;
    std::string s = std::to_string(code) + ":" + m;
    (void)!write(pipefd[1], s.data(), s.size());
    close(pipefd[1]);
    pipefd[1] = -1;
  };
  if (!repo.ok()) {
    int code = Fail(g, repo.status());
    report(code, repo.status().message());
    return code;
  }
  o.on_mounted = [&] {
    if (pipefd[1] < 0) return;
    (void)!write(pipefd[1], "ok", 2);
    close(pipefd[1]);
    pipefd[1] = -1;
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0), dup2(null, 1), dup2(null, 2);
    close(null);
  };
  Status s = cofferfs::RunMount(std::move(repo).value(), o);
  if (!s.ok()) {
    report(kExitFail, s.message());
    return Fail(g, s);
  }
  return kExitOk;
}

int RunUmount(Globals& g, const std::string& mp) {
  if (umount2(mp.c_str(), 0) == 0) return kExitOk;
  int e = errno;
  // Unprivileged users unmount through fusermount3.
  std::string cmd = "fusermount3 -u '" + mp + "' 2>/dev/null";
  if (e == EPERM && system(cmd.c_str()) == 0) return kExitOk;
  return Fail(g, Status::FromErrno("unmount `" + mp + "`", e));
}

int RunSnapshot(Globals& g, const std::string& set, const std::string& name) {
  auto dir = RepoDir(g);
  if (!dir.ok()) return Fail(g, dir.status());
  nlohmann::json req = {{"verb", "snapshot"}, {"set", set}, {"name", name}};
  auto reply = cofferfs::ControlRequest(cofferfs::ControlSocketPath(*dir), req.dump());
  nlohmann::json j;
  if (reply.ok()) {
    j = nlohmann::json::parse(*reply, nullptr, false);
    if (j.is_discarded() || !j.value("ok", false))
      return FailMsg(g,
                     "snapshot " + set + ": " + (j.is_discarded() ? *reply : j.value("error", "")));
  } else {  // no daemon: seal the saved head offline
    auto repo = OpenRepo(g, false);
    if (!repo.ok()) return Fail(g, repo.status());
    auto info = (*repo)->SnapshotHead(set, name);
    if (!info.ok()) return Fail(g, info.status());
    j = {{"ok", true},       {"id", info->id},       {"set", info->set},
         {"tag", info->tag}, {"files", info->files}, {"bytes", info->bytes}};
  }
  if (!reply.ok()) Audit(g, "snapshot", {{"set", set}, {"id", j.value("id", "")}, {"tag", name}});
  if (g.json)
    PrintJson(j);
  else
    std::printf("snapshot %s@%s saved\n", set.c_str(), j.value("id", "").c_str());
  return kExitOk;
}

int RunAuditVerify(Globals& g, const std::string& file) {
  size_t lines = 0;
  Status st = cofferfs::VerifyAuditLog(file, &lines);
  if (!st.ok()) return Fail(g, st);
  if (g.json)
    PrintJson({{"ok", true}, {"lines", lines}});
  else
    std::printf("audit log %s: %zu lines, chain intact\n", file.c_str(), lines);
  return kExitOk;
}

// `coffer layers`: the daemon's re-storing of layer blobs (docs/layers.md);
// --restore queues every stored blob (those pushed before --dedup-layers was
// on), --wait returns when nothing is pending.
int RunLayers(Globals& g, bool restore, bool wait) {
  auto ask = [&](bool r) -> chunkstore::Result<nlohmann::json> {
    auto j = AskDaemon(g, {{"verb", "layers"}, {"restore", r}});
    if (!j)
      return Status::FailedPrecondition(
          "layers: no daemon holds the repository (layers are re-stored by `coffer serve "
          "--dedup-layers` or `coffer mount --dedup-layers`)");
    if (!j->value("ok", false))
      return Status::FailedPrecondition("layers: " + j->value("error", ""));
    return *j;
  };
  auto first = ask(restore);
  if (!first.ok()) return Fail(g, first.status());
  nlohmann::json j = *first;
  const uint64_t failed_before = j.value("failed", uint64_t{0});
  if (wait) {
    ProgressBar bar(!g.quiet && !g.json);
    const uint64_t queued = j.value("queued", uint64_t{0});
    const uint64_t total = std::max<uint64_t>(queued, j.value("pending", uint64_t{0}));
    while (j.value("pending", uint64_t{0}) > 0) {
      chunkstore::Progress p;
      p.phase = "layers";
      p.items_total = total;
      p.items_done = total - std::min<uint64_t>(total, j.value("pending", uint64_t{0}));
      bar.Update(p);
      usleep(200 * 1000);
      auto next = ask(false);
      if (!next.ok()) return Fail(g, next.status());
      (*next)["queued"] = queued;  // what this call queued, not the poll's 0
      j = *next;
    }
    bar.Finish();
  }
  if (g.json) {
    PrintJson(j);
  } else {
    if (restore) std::printf("queued %llu blobs\n", (unsigned long long)j.value("queued", 0ull));
    std::printf(
        "layers since the daemon started: %llu stored as tar + recipe, %llu kept as pushed, "
        "%llu not layers, %llu failed; %llu pending\n",
        (unsigned long long)j.value("stored", 0ull),
        (unsigned long long)j.value("kept_as_pushed", 0ull),
        (unsigned long long)j.value("not_layers", 0ull),
        (unsigned long long)j.value("failed", 0ull), (unsigned long long)j.value("pending", 0ull));
  }
  if (wait && j.value("failed", uint64_t{0}) > failed_before)
    return FailMsg(g, "layers: " + std::to_string(j.value("failed", uint64_t{0}) - failed_before) +
                          " blobs failed while waiting (the daemon's log names them)");
  return kExitOk;
}

}  // namespace

// The daemon's reply to a verb, when one holds the repository; nullopt otherwise.
std::optional<nlohmann::json> AskDaemon(const Globals& g, const nlohmann::json& req) {
  auto dir = RepoDir(g);
  if (!dir.ok()) return std::nullopt;
  auto reply = cofferfs::ControlRequest(cofferfs::ControlSocketPath(*dir), req.dump());
  if (!reply.ok()) return std::nullopt;
  auto j = nlohmann::json::parse(*reply, nullptr, false);
  if (j.is_discarded())
    return nlohmann::json({{"ok", false}, {"error", "malformed daemon reply: " + *reply}});
  return j;
}

void AddLayerCacheOption(CLI::App* cmd, uint64_t* bytes) {
  cmd->add_option("--layer-cache", *bytes,
                  "memory for re-created segments of re-stored layers, shared by pulls "
                  "(e.g. 512M, 0 = none; default 256M)")
      ->transform(CLI::AsSizeValue(false));
}

void AddFsCommands(CLI::App& app, Globals& g, int* rc) {
  auto a = std::make_shared<MountArgs>();
  auto* mount = app.add_subcommand("mount", "mount the repository as a filesystem (FUSE)");
  mount->add_option("mountpoint", a->mountpoint, "an existing directory")->required();
  mount->add_flag("-f,--foreground", a->foreground, "stay in the foreground");
  mount->add_option("--idle-timeout", a->idle, "unmount after no access this long (e.g. 10m)");
  mount->add_flag("--allow-other", a->allow_other, "let other users in (modes are enforced)");
  mount->add_flag(
      "--dedup-layers", a->dedup_layers,
      "re-store layer blobs as tar + recipe: file-level dedup, slower pulls (docs/layers.md)");
  AddLayerCacheOption(mount, &a->layer_cache);
  mount->callback([&g, a, rc] { *rc = RunMountCmd(g, *a); });

  auto mp = std::make_shared<std::string>();
  auto* um = app.add_subcommand("umount", "unmount (the daemon saves every head first)");
  um->add_option("mountpoint", *mp, "the mount point")->required();
  um->callback([&g, rc, mp] { *rc = RunUmount(g, *mp); });

  auto set = std::make_shared<std::string>(), name = std::make_shared<std::string>();
  auto* snap = app.add_subcommand("snapshot", "seal the writable head of a set as a snapshot");
  snap->add_option("set", *set, "the backup set")->required();
  snap->add_option("--name", *name, "a name for the snapshot (default: its id)");
  snap->callback([&g, rc, set, name] { *rc = RunSnapshot(g, *set, *name); });

  auto restore = std::make_shared<bool>(false), wait = std::make_shared<bool>(false);
  auto* layers = app.add_subcommand("layers", "the daemon's re-storing of layer blobs");
  layers->add_flag("--restore", *restore,
                   "queue every stored blob (those pushed before --dedup-layers was on)");
  layers->add_flag("--wait", *wait, "return when nothing is pending");
  layers->callback([&g, rc, restore, wait] { *rc = RunLayers(g, *restore, *wait); });

  auto file = std::make_shared<std::string>();
  auto* audit = app.add_subcommand("audit", "audit log tools");
  audit->require_subcommand(1);
  auto* verify = audit->add_subcommand("verify", "check the hash chain of an audit log");
  verify->add_option("file", *file, "the audit log")->required();
  verify->callback([&g, rc, file] { *rc = RunAuditVerify(g, *file); });
}

}  // namespace coffer
