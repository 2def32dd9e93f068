// RunMount: session set-up, the low-level op table, the commit thread, the idle
// timer and the control socket. Everything else lives in Fs.
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "audit.h"
#include "control.h"
#include "fs.h"
#include "ingest.h"
#include "layer_blob.h"
#include "segment_cache.h"

namespace cofferfs {

namespace {
constexpr int kMaxReadahead = 1 << 20;  // bytes the kernel reads ahead of a sequential reader
}  // namespace

namespace {

using chunkstore::Status;

Fs* F(fuse_req_t req) { return static_cast<Fs*>(fuse_req_userdata(req)); }

const struct fuse_lowlevel_ops kOps = [] {
  struct fuse_lowlevel_ops o;
  std::memset(&o, 0, sizeof o);
  o.init = [](void* ud, struct fuse_conn_info* c) { static_cast<Fs*>(ud)->Init(c); };
  o.lookup = [](fuse_req_t r, fuse_ino_t p, const char* n) { F(r)->Lookup(r, p, n); };
  o.getattr = [](fuse_req_t r, fuse_ino_t i, struct fuse_file_info*) { F(r)->Getattr(r, i); };
  o.setattr = [](fuse_req_t r, fuse_ino_t i, struct stat* a, int s, struct fuse_file_info*) {
    F(r)->Setattr(r, i, a, s);
  };
  o.readlink = [](fuse_req_t r, fuse_ino_t i) { F(r)->Readlink(r, i); };
  o.mknod = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m, dev_t d) {
    F(r)->Mknod(r, p, n, m, d);
  };
  o.mkdir = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m) { F(r)->Mkdir(r, p, n, m); };
  o.unlink = [](fuse_req_t r, fuse_ino_t p, const char* n) { F(r)->Unlink(r, p, n, false); };
  o.rmdir = [](fuse_req_t r, fuse_ino_t p, const char* n) { F(r)->Unlink(r, p, n, true); };
  o.symlink = [](fuse_req_t r, const char* l, fuse_ino_t p, const char* n) {
    F(r)->Symlink(r, l, p, n);
  };
  o.rename = [](fuse_req_t r, fuse_ino_t p, const char* n, fuse_ino_t np, const char* nn,
                unsigned f) { F(r)->Rename(r, p, n, np, nn, f); };
  o.link = [](fuse_req_t r, fuse_ino_t i, fuse_ino_t p, const char* n) { F(r)->Link(r, i, p, n); };
  o.open = [](fuse_req_t r, fuse_ino_t i, struct fuse_file_info* fi) { F(r)->Open(r, i, fi); };
  o.create = [](fuse_req_t r, fuse_ino_t p, const char* n, mode_t m, struct fuse_file_info* fi) {
    F(r)->Create(r, p, n, m, fi);
  };
  o.read = [](fuse_req_t r, fuse_ino_t i, size_t s, off_t off, struct fuse_file_info* fi) {
    F(r)->Read(r, i, s, off, fi);
  };
  o.write = [](fuse_req_t r, fuse_ino_t i, const char* b, size_t s, off_t off,
               struct fuse_file_info* fi) { F(r)->Write(r, i, b, s, off, fi); };
  o.flush = [](fuse_req_t r, fuse_ino_t i, struct fuse_file_info* fi) { F(r)->Flush(r, i, fi); };
  o.release = [](fuse_req_t r, fuse_ino_t i, struct fuse_file_info* fi) {
    F(r)->Release(r, i, fi);
  };
  o.fsync = [](fuse_req_t r, fuse_ino_t i, int, struct fuse_file_info*) { F(r)->Fsync(r, i); };
  o.opendir = [](fuse_req_t r, fuse_ino_t i, struct fuse_file_info* fi) {
    F(r)->Opendir(r, i, fi);
  };
  o.readdir = [](fuse_req_t r, fuse_ino_t i, size_t s, off_t off, struct fuse_file_info* fi) {
    F(r)->Readdir(r, i, s, off, fi);
  };
  o.releasedir = [](fuse_req_t r, fuse_ino_t, struct fuse_file_info* fi) {
    F(r)->Releasedir(r, fi);
  };
  o.fsyncdir = [](fuse_req_t r, fuse_ino_t i, int, struct fuse_file_info*) { F(r)->Fsync(r, i); };
  o.statfs = [](fuse_req_t r, fuse_ino_t) { F(r)->Statfs(r); };
  o.setxattr = [](fuse_req_t r, fuse_ino_t i, const char* n, const char* v, size_t s, int f) {
    F(r)->Setxattr(r, i, n, v, s, f);
  };
  o.getxattr = [](fuse_req_t r, fuse_ino_t i, const char* n, size_t s) {
    F(r)->Getxattr(r, i, n, s);
  };
  o.listxattr = [](fuse_req_t r, fuse_ino_t i, size_t s) { F(r)->Listxattr(r, i, s); };
  o.removexattr = [](fuse_req_t r, fuse_ino_t i, const char* n) { F(r)->Removexattr(r, i, n); };
  return o;
}();

// Answers control-socket requests with the daemon's Fs.
std::string HandleControl(Fs* fs, const MountOptions& opts, const std::string& line) {
  auto req = nlohmann::json::parse(line, nullptr, false);
  auto fail = [](const Status& st) {
    return nlohmann::json(
               {{"ok", false}, {"error", st.message()}, {"code", chunkstore::CodeName(st.code())}})
        .dump();
  };
  if (req.is_discarded() || !req.is_object() || !req.contains("verb") || !req["verb"].is_string())
    return fail(Status::InvalidArgument("control request is not {\"verb\": ...}"));
  std::string verb = req["verb"];
  if (verb == "ping") return R"({"ok":true})";
  if (verb == "snapshot") {
    auto s = fs->Snapshot(req.value("set", ""), req.value("name", ""));
    if (!s.ok()) return fail(s.status());
    return nlohmann::json({{"ok", true},
                           {"id", s->id},
                           {"set", s->set},
                           {"tag", s->tag},
                           {"files", s->files},
                           {"bytes", s->bytes}})
        .dump();
  }
  if (verb == "gc") {
    nlohmann::json out = {{"ok", true}};
    if (opts.before_gc) {
      int64_t grace = req.value("grace_s", int64_t{3600});
      auto pre = opts.before_gc(grace < 0 ? 0 : grace);
      if (!pre.ok()) return fail(pre.status());
      for (const auto& [k, v] : *pre) out[k] = v;
    }
    auto r = fs->Gc();
    if (!r.ok()) return fail(r.status());
    out.update({{"live_chunks", r->live_chunks},
                {"dead_chunks", r->dead_chunks},
                {"packs_deleted", r->packs_deleted},
                {"packs_repacked", r->packs_repacked},
                {"bytes_freed", r->bytes_freed}});
    return out.dump();
  }
  if (verb == "layers") {  // counters; with "restore": queue every stored blob first
    LayerIngester* ing = fs->ingester();
    if (ing == nullptr)
      return fail(Status::FailedPrecondition("this daemon runs without --dedup-layers"));
    uint64_t queued = 0;
    if (req.value("restore", false)) {
      auto q = fs->QueueStoredLayers();
      if (!q.ok()) return fail(q.status());
      queued = *q;
    }
    auto c = ing->counters();
    return nlohmann::json({{"ok", true},
                           {"queued", queued},
                           {"pending", c.pending},
                           {"stored", c.stored},
                           {"kept_as_pushed", c.kept},
                           {"not_layers", c.not_layers},
                           {"failed", c.failed}})
        .dump();
  }
  if (verb == "stats") {
    auto s = fs->repo()->GetStats();
    if (!s.ok()) return fail(s.status());
    nlohmann::json j = StatsObject(*s);
    j["ok"] = true;
    return j.dump();
  }
  if (verb == "check") {
    Status saved = fs->SaveHeads(true);
    if (!saved.ok()) return fail(saved);
    auto r = fs->repo()->CheckData(nullptr);
    if (!r.ok()) return fail(r.status());
    return nlohmann::json({{"ok", true},
                           {"clean", r->ok()},
                           {"packs", r->packs},
                           {"records", r->records},
                           {"chunks", r->chunks},
                           {"bytes_read", r->bytes_read},
                           {"problems", r->problems}})
        .dump();
  }
  return fail(Status::InvalidArgument("unknown control verb `" + verb + "`"));
}

}  // namespace

void Fs::Init(struct fuse_conn_info* conn) {
  conn->max_write = 1 << 20;  // 1 MiB writes: fewer round trips for cp and tar
  conn->max_readahead = kMaxReadahead;
  conn->time_gran = 1;
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  // The kernel enforces POSIX ACLs from the system.posix_acl_* xattrs we store
  // (with default_permissions), as ext4 does.
  if (conn->capable & FUSE_CAP_POSIX_ACL) conn->want |= FUSE_CAP_POSIX_ACL;
  if (conn->capable & FUSE_CAP_DONT_MASK) conn->want |= FUSE_CAP_DONT_MASK;
}

// The kernel caps a FUSE mount's read-ahead at its backing device's default
// (128 KiB) whatever max_readahead says; a sequential reader of a blob (a pull)
// then waits on the daemon every 128 KiB. The device's read_ahead_kb raises it
// to what Init asked for. Best effort: needs root, and /sys.
void RaiseReadahead(const std::string& mountpoint) {
  struct stat st;
  if (::stat(mountpoint.c_str(), &st) != 0) return;  // a GETATTR: the loop is serving
  std::string path = "/sys/class/bdi/" + std::to_string(major(st.st_dev)) + ":" +
                     std::to_string(minor(st.st_dev)) + "/read_ahead_kb";
  if (FILE* f = std::fopen(path.c_str(), "w")) {
    std::fprintf(f, "%d\n", kMaxReadahead >> 10);
    std::fclose(f);
  }
}

void EnableLayerBlobs() {
  chunkstore::SetBlobDecoder(cofferlayer::DecodeLayerBlob);
  chunkstore::SetBlobEncodingKind(cofferlayer::LayerEncodingKind);
}

Status RunMount(std::unique_ptr<chunkstore::Repository> repo, const MountOptions& opts) {
  EnableLayerBlobs();
  cofferlayer::SegmentCache::Global().SetCapacity(opts.layer_cache_bytes);
  std::unique_ptr<AuditLog> audit;
  if (!opts.audit_log.empty()) {
    auto a = AuditLog::Open(opts.audit_log);
    if (!a.ok()) return a.status();
    audit = std::move(a).value();
    audit->Note("unlock", {{"repository", repo->dir()}});
  }
  Fs fs(repo.get(), opts, audit.get());
  std::string o = "default_permissions,fsname=coffer,subtype=coffer";
  if (opts.allow_other) o += ",allow_other";
  const char* argv[] = {"coffer", "-o", o.c_str()};
  struct fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
  struct fuse_session* se = fuse_session_new(&args, &kOps, sizeof kOps, &fs);
  if (se == nullptr) return Status::IOError("create FUSE session (see the message above)");
  if (opts.handle_signals && fuse_set_signal_handlers(se) != 0) {
    fuse_session_destroy(se);
    return Status::IOError("install signal handlers");
  }
  if (fuse_session_mount(se, opts.mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return Status::IOError("mount FUSE at `" + opts.mountpoint +
                           "` (is /dev/fuse there, and are you root?)");
  }
  ControlServer control;
  std::string sock =
      opts.control_socket.empty() ? ControlSocketPath(repo->dir()) : opts.control_socket;
  Status st = control.Start(
      sock, [&fs, &opts](const std::string& r) { return HandleControl(&fs, opts, r); });
  if (!st.ok())
    fprintf(stderr, "coffer: %s (administrative verbs unavailable)\n", st.message().c_str());
  if (audit) audit->Note("mount", {{"mountpoint", opts.mountpoint}});

  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::atomic<bool> idle_exit{false}, stop_exit{false};
  // Heads changed by close() are saved within commit_interval_ms; fsync saves at once.
  std::thread committer([&] {
    std::unique_lock<std::mutex> l(mu);
    while (
        !cv.wait_for(l, std::chrono::milliseconds(opts.commit_interval_ms), [&] { return stop; })) {
      l.unlock();
      Status s = fs.SaveHeads(false);
      if (!s.ok()) fprintf(stderr, "coffer: %s\n", s.ToString().c_str());
      bool idle = opts.idle_timeout_ms && fs.open_files() == 0 &&
                  NowNs() - fs.last_access_ns() > int64_t(opts.idle_timeout_ms) * 1000000;
      bool asked = opts.stop != nullptr && opts.stop->load();
      if ((idle || asked) && !idle_exit && !stop_exit) {
        (asked ? stop_exit : idle_exit) = true;
        fuse_session_exit(se);
        umount2(opts.mountpoint.c_str(), MNT_DETACH);  // wakes the workers blocked in read
      }
      l.lock();
    }
  });
  // on_mounted may use the mount (the registry stats it): run it beside the loop,
  // which must be serving by then.
  std::thread announcer([&opts] {
    RaiseReadahead(opts.mountpoint);
    if (opts.on_mounted) opts.on_mounted();
  });

  struct fuse_loop_config* cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, static_cast<unsigned>(opts.threads));
  int rc = fuse_session_loop_mt(se, cfg);
  fuse_loop_cfg_destroy(cfg);

  if (announcer.joinable()) announcer.join();
  {
    std::lock_guard<std::mutex> l(mu);
    stop = true;
  }
  cv.notify_all();
  committer.join();
  Status saved = fs.SaveHeads(true, /*final=*/true);
  control.Stop();
  if (audit)
    audit->Note("unmount",
                {{"mountpoint", opts.mountpoint}, {"reason", idle_exit ? "idle" : "request"}});
  if (opts.handle_signals) fuse_remove_signal_handlers(se);
  fuse_session_unmount(se);
  fuse_session_destroy(se);
  if (!saved.ok()) return saved;
  if (rc != 0 && !idle_exit && !stop_exit && rc != SIGINT && rc != SIGTERM && rc != SIGHUP)
    return Status::IOError("FUSE session ended with error " + std::to_string(rc));
  return Status::OK();
}

}  // namespace cofferfs
