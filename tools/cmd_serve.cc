// serve: unlock, mount, and run the registry over the mount until SIGINT/SIGTERM.
//
// With no repository named (no --repo, no COFFER_REPO) it runs on an embedded
// default: ./var/repo, created on first run with a generated key file
// ./var/coffer.key, mounted at ./var/mnt, registry on 127.0.0.1:5000.
//
// Shutdown order matters: the registry stops first (its open files would keep the
// mount busy, and its threads may be inside FUSE calls that only the mount's
// workers can answer), then the mount ends and saves every head.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <thread>

#include "commands.h"
#include "fs/mount.h"
#include "registry/server.h"
#include "registry_child.h"

namespace coffer {
namespace {

using chunkstore::Status;

struct ServeArgs {
  std::string mount = "var/mnt", registry = "127.0.0.1:5000", config;
  std::string htpasswd, access;
  bool read_only = false;
  bool token = false, dedup_layers = false;
  uint64_t layer_cache = cofferfs::MountOptions().layer_cache_bytes;
  std::string token_realm, token_certs, token_service, token_issuer, tls_cert, tls_key;
};

// Reads --config FILE (JSON): {"registry": {"listen", "htpasswd", "access",
// "read_only", "delete_enabled", "token", "token_realm", "token_certs",
// "token_service", "token_issuer", "tls_cert", "tls_key"}, "mount": "DIR",
// "dedup_layers": BOOL, "layer_cache": SIZE (bytes, or a string such as "512M")};
// flags given on the command line win.
Status ApplyConfig(const std::string& path, ServeArgs* a, cofferregistry::RegistryOptions* r) {
  std::ifstream in(path);
  if (!in) return Status::FromErrno("read config `" + path + "`", errno);
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Status::InvalidArgument("config `" + path + "` is not a JSON object");
  try {
    if (j.contains("mount")) a->mount = j["mount"].get<std::string>();
    if (j.contains("dedup_layers")) a->dedup_layers = j["dedup_layers"].get<bool>();
    if (j.contains("layer_cache")) {
      const nlohmann::json& v = j["layer_cache"];
      if (v.is_number_unsigned()) {
        a->layer_cache = v.get<uint64_t>();
      } else {
        std::string s = v.get<std::string>();  // as --layer-cache takes it
        std::string err;
        try {
          err = CLI::AsSizeValue(false)(s);
        } catch (const std::exception& e) {
          err = e.what();
        }
        if (!err.empty())
          return Status::InvalidArgument("config `" + path + "`: layer_cache \"" +
                                         v.get<std::string>() + "\": " + err);
        a->layer_cache = std::stoull(s);
      }
    }
    if (auto reg = j.value("registry", nlohmann::json::object()); reg.is_object()) {
      if (reg.contains("listen")) a->registry = reg["listen"].get<std::string>();
      if (reg.contains("htpasswd")) r->htpasswd = reg["htpasswd"].get<std::string>();
      if (reg.contains("access")) r->access = reg["access"].get<std::string>();
      if (reg.contains("read_only")) r->read_only = reg["read_only"].get<bool>();
      if (reg.contains("delete_enabled")) r->delete_enabled = reg["delete_enabled"].get<bool>();
      if (reg.contains("token")) r->token = reg["token"].get<bool>();
      for (auto [key, field] : {std::pair{"token_realm", &r->token_realm},
                                {"token_certs", &r->token_certs},
                                {"token_service", &r->token_service},
                                {"token_issuer", &r->token_issuer},
                                {"tls_cert", &r->tls_cert},
                                {"tls_key", &r->tls_key}})
        if (reg.contains(key)) *field = reg[key].get<std::string>();
    }
  } catch (const std::exception& e) {
    return Status::InvalidArgument("config `" + path + "`: " + e.what());
  }
  return Status::OK();
}

// The embedded default: ./var/repo with a generated key file, created on first run.
int EmbeddedDefault(Globals& g) {
  if (!g.repo.empty() || getenv("COFFER_REPO")) return kExitOk;
  g.repo = "var/repo";
  if (g.key_file.empty() && g.passphrase_file.empty() && !getenv("COFFER_PASSPHRASE"))
    g.key_file = "var/coffer.key";
  mkdir("var", 0700);
  if (access("var/repo/config", F_OK) == 0) return kExitOk;
  std::fprintf(stderr, "coffer: creating the default repository var/repo (key file %s)\n",
               g.key_file.empty() ? "-" : g.key_file.c_str());
  return RunInitDefault(g);
}

int RunServe(Globals& g, ServeArgs a, const std::vector<std::string>& given) {
  cofferregistry::RegistryOptions ro;
  if (!a.config.empty()) {
    ServeArgs from_file = a;
    Status st = ApplyConfig(a.config, &from_file, &ro);
    if (!st.ok()) return Fail(g, st);
    auto flag_given = [&given](const char* f) {
      return std::find(given.begin(), given.end(), f) != given.end();
    };
    if (!flag_given("--mount")) a.mount = from_file.mount;  // the command line wins
    if (!flag_given("--registry")) a.registry = from_file.registry;
    if (!flag_given("--layer-cache")) a.layer_cache = from_file.layer_cache;
    a.dedup_layers = a.dedup_layers || from_file.dedup_layers;
  }
  if (!a.htpasswd.empty()) ro.htpasswd = a.htpasswd;
  if (!a.access.empty()) ro.access = a.access;
  if (a.read_only) ro.read_only = true;
  if (a.token) ro.token = true;
  for (auto [flag, field] : {std::pair{&a.token_realm, &ro.token_realm},
                             {&a.token_certs, &ro.token_certs},
                             {&a.token_service, &ro.token_service},
                             {&a.token_issuer, &ro.token_issuer},
                             {&a.tls_cert, &ro.tls_cert},
                             {&a.tls_key, &ro.tls_key}})
    if (!flag->empty()) *field = *flag;
  // Signals are taken by one thread with sigwait; every other thread blocks them.
  // Blocked before anything starts threads (the embedded init opens RocksDB).
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  if (int rc = EmbeddedDefault(g); rc != kExitOk) return rc;
  mkdir(a.mount.c_str(), 0755);
  char* abs = realpath(a.mount.c_str(), nullptr);
  if (!abs) return Fail(g, Status::FromErrno("mount point `" + a.mount + "`", errno));
  std::string mountpoint = abs;
  free(abs);

  ro.root = mountpoint;
  ro.listen = a.registry;
  // The registry's process, forked before the repository is unlocked (it never
  // holds a key) and started once the mount is live (registry_child.h).
  auto child = RegistryChild::Fork(ro);
  if (!child.ok()) return Fail(g, child.status());
  RegistryChild* reg = child->get();

  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  const std::string repo_dir = (*repo)->dir();  // the repository moves into RunMount
  std::atomic<bool> stop{false}, done{false};
  std::mutex reg_mu;
  Status reg_err;

  cofferfs::MountOptions mo;
  mo.mountpoint = mountpoint;
  mo.layers = a.dedup_layers;
  mo.layer_cache_bytes = a.layer_cache;
  mo.handle_signals = false;
  mo.stop = &stop;
  mo.audit_log = g.audit_log;
  if (mo.audit_log.empty())
    if (const char* env = getenv("COFFER_AUDIT_LOG"); env) mo.audit_log = env;
  // Only the registry's process may delete blobs (its garbage collector).
  const pid_t reg_pid = reg->pid();
  mo.may_delete_blobs = [reg_pid](pid_t tid) {
    std::string task = "/proc/" + std::to_string(reg_pid) + "/task/" + std::to_string(tid);
    return access(task.c_str(), F_OK) == 0;
  };
  mo.on_mounted = [&] {
    auto addr = reg->Start();
    std::lock_guard<std::mutex> l(reg_mu);
    if (!addr.ok()) {
      reg_err = addr.status();
      stop = true;
      return;
    }
    std::fprintf(stderr, "coffer: serving %s: mounted at %s, registry on %s://%s (Ctrl-C stops)\n",
                 repo_dir.c_str(), mountpoint.c_str(), ro.tls_cert.empty() ? "http" : "https",
                 addr->c_str());
  };
  // `coffer gc` against this daemon first collects the registry's unreferenced
  // blobs (through the mount), then the chunks nothing holds any more.
  mo.before_gc = [&](int64_t grace_s) { return reg->CollectGarbage(grace_s); };
  std::thread waiter([&] {
    struct timespec tick = {0, 200 * 1000 * 1000};
    while (!done) {
      std::string how;
      if (!stop && reg->Exited(&how)) {  // the registry died: so does the service
        std::fprintf(stderr, "coffer: the registry process ended (%s); stopping\n", how.c_str());
        std::lock_guard<std::mutex> l(reg_mu);
        if (reg_err.ok()) reg_err = Status::Unavailable("the registry process ended (" + how + ")");
        stop = true;
      }
      if (sigtimedwait(&sigs, nullptr, &tick) < 0) continue;
      reg->Stop();  // first: its open files keep the mount busy
      stop = true;
    }
  });
  Status st = cofferfs::RunMount(std::move(repo).value(), mo);
  done = true;
  waiter.join();
  reg->Stop();
  if (!reg_err.ok()) return Fail(g, reg_err.Annotate("start the registry on " + a.registry));
  if (!st.ok()) return Fail(g, st);
  std::fprintf(stderr, "coffer: stopped; every head saved, the mount is gone\n");
  return kExitOk;
}

}  // namespace

void AddServeCommand(CLI::App& app, Globals& g, int* rc) {
  auto a = std::make_shared<ServeArgs>();
  auto* s = app.add_subcommand("serve", "unlock, mount, and serve the OCI registry over the mount");
  s->add_option("--mount", a->mount, "mount point (default: var/mnt)");
  s->add_option("--registry", a->registry, "registry listen address (default: 127.0.0.1:5000)");
  s->add_option("--config", a->config, "JSON config file (docs/registry.md)");
  s->add_option("--htpasswd", a->htpasswd, "bcrypt htpasswd file: require Basic auth");
  s->add_option("--access", a->access, "per-repository permissions file (docs/registry.md)");
  s->add_flag("--read-only", a->read_only, "refuse pushes and deletes");
  s->add_flag("--token", a->token,
              "Bearer token auth: issue tokens at /token (users: --htpasswd, rights: --access)");
  s->add_option("--token-realm", a->token_realm, "URL of an external token server");
  s->add_option("--token-certs", a->token_certs,
                "PEM certificates/public keys of the external token server (with --token-realm)");
  s->add_option("--token-service", a->token_service, "token service/audience (default: coffer)");
  s->add_option("--token-issuer", a->token_issuer, "token issuer (default: coffer)");
  s->add_option("--tls-cert", a->tls_cert, "PEM certificate chain: serve HTTPS");
  s->add_option("--tls-key", a->tls_key, "PEM private key of --tls-cert");
  s->add_flag(
      "--dedup-layers", a->dedup_layers,
      "re-store pushed layers as tar + recipe: file-level dedup, slower pulls (docs/layers.md)");
  AddLayerCacheOption(s, &a->layer_cache);
  s->callback([&g, a, rc, s] {
    std::vector<std::string> given;
    for (const char* f : {"--mount", "--registry", "--layer-cache"})
      if (s->count(f)) given.push_back(f);
    *rc = RunServe(g, *a, given);
  });
}

}  // namespace coffer
