// init, key, stats, check, repair, gc.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "chunkstore/env.h"
#include "commands.h"
#include "fs/mount.h"
#include "progress.h"

namespace coffer {
namespace {

using chunkstore::Repository;
using chunkstore::Status;

struct InitArgs {
  chunkstore::RepoParams params;
  chunkstore::KeyCost cost;
};

// A key file that does not exist yet is generated: 64 random bytes, mode 0400.
Status GenerateKeyFile(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
  if (fd < 0) return Status::FromErrno("create key file `" + path + "`", errno);
  unsigned char key[64];
  int rnd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  bool ok = rnd >= 0 && read(rnd, key, sizeof key) == sizeof key;
  if (rnd >= 0) close(rnd);
  ok = ok && write(fd, key, sizeof key) == sizeof key && fsync(fd) == 0;
  close(fd);
  if (!ok) {
    unlink(path.c_str());
    return Status::IOError("write key file `" + path + "`");
  }
  return Status::OK();
}

int RunInit(Globals& g, const InitArgs& a) {
  auto dir = RepoDir(g);
  if (!dir.ok()) return Fail(g, dir.status());
  bool generated = false;
  if (!g.key_file.empty() && access(g.key_file.c_str(), F_OK) != 0) {
    Status st = GenerateKeyFile(g.key_file);
    if (!st.ok()) return Fail(g, st);
    generated = true;
  }
  std::string label;
  auto secret = ReadSecret(g, true, &label);
  if (!secret.ok()) return Fail(g, secret.status());
  Status st = Repository::Init(*dir, *secret, label, a.params, a.cost, {});
  if (!st.ok()) {
    if (generated) unlink(g.key_file.c_str());
    return Fail(g, st);
  }
  Audit(g, "init", {{"label", label}});
  if (g.json)
    PrintJson({{"repository", *dir}, {"key_file_generated", generated ? g.key_file : ""}});
  else
    std::printf("created repository %s%s\n", dir->c_str(),
                generated ? (" with new key file " + g.key_file).c_str() : "");
  return kExitOk;
}

void AddInit(CLI::App& app, Globals& g, int* rc) {
  auto a = std::make_shared<InitArgs>();
  auto* c = app.add_subcommand("init", "create a repository");
  c->add_option("--chunk-min", a->params.chunk_min, "minimum chunk size (bytes)");
  c->add_option("--chunk-avg", a->params.chunk_avg, "average chunk size (power of two)");
  c->add_option("--chunk-max", a->params.chunk_max, "maximum chunk size (bytes)");
  c->add_option("--compression-level", a->params.compression_level, "zstd level, 0 = off")
      ->check(CLI::Range(0, 19));
  c->add_option("--pack-size", a->params.pack_size, "pack size in bytes");
  c->add_option("--kdf-memory", a->cost.memory_kib, "argon2id memory (KiB) per keyslot");
  c->add_option("--kdf-iterations", a->cost.iterations, "argon2id iterations per keyslot");
  c->callback([&g, a, rc] { *rc = RunInit(g, *a); });
}

struct KeyArgs {
  std::string new_passphrase_file, new_key_file, label, file;
  int slot = -1;
  chunkstore::KeyCost cost;
};

int RunKeyAdd(Globals& g, const KeyArgs& a) {
  auto dir = RepoDir(g);
  if (!dir.ok()) return Fail(g, dir.status());
  auto secret = ReadSecret(g, false, nullptr);
  if (!secret.ok()) return Fail(g, secret.status());
  std::string label = a.label;
  chunkstore::Result<std::string> fresh =
      Status::InvalidArgument("key add: give --new-passphrase-file F or --new-key-file F");
  if (!a.new_key_file.empty()) {
    if (access(a.new_key_file.c_str(), F_OK) != 0) {
      Status st = GenerateKeyFile(a.new_key_file);
      if (!st.ok()) return Fail(g, st);
    }
    fresh = ReadSecretFile(a.new_key_file, false);
    if (label.empty()) label = "key-file";
  } else if (!a.new_passphrase_file.empty()) {
    fresh = ReadSecretFile(a.new_passphrase_file, true);
    if (label.empty()) label = "passphrase";
  }
  if (!fresh.ok()) return Fail(g, fresh.status());
  auto slot = Repository::AddKey(*dir, *secret, *fresh, label, a.cost);
  if (!slot.ok()) return Fail(g, slot.status());
  Audit(g, "key-add", {{"slot", std::to_string(*slot)}, {"label", label}});
  if (g.json)
    PrintJson({{"slot", *slot}, {"label", label}});
  else
    std::printf("added key in slot %d (%s)\n", *slot, label.c_str());
  return kExitOk;
}

int RunKeyRemove(Globals& g, const KeyArgs& a) {
  auto dir = RepoDir(g);
  if (!dir.ok()) return Fail(g, dir.status());
  auto secret = ReadSecret(g, false, nullptr);
  if (!secret.ok()) return Fail(g, secret.status());
  Status st = Repository::RemoveKey(*dir, *secret, a.slot);
  if (!st.ok()) return Fail(g, st);
  Audit(g, "key-remove", {{"slot", std::to_string(a.slot)}});
  if (g.json)
    PrintJson({{"removed_slot", a.slot}});
  else
    std::printf("removed keyslot %d\n", a.slot);
  return kExitOk;
}

int RunKeyList(Globals& g) {
  auto dir = RepoDir(g);
  if (!dir.ok()) return Fail(g, dir.status());
  auto keys = Repository::ListKeys(*dir);
  if (!keys.ok()) return Fail(g, keys.status());
  nlohmann::json j = nlohmann::json::array();
  for (const auto& k : *keys) {
    j.push_back({{"slot", k.slot}, {"label", k.label}, {"kdf", k.kdf}});
    if (!g.json) std::printf("%-4d %-12s %s\n", k.slot, k.kdf.c_str(), k.label.c_str());
  }
  if (g.json) PrintJson(j);
  return kExitOk;
}

int RunHeader(Globals& g, const KeyArgs& a, bool restore) {
  auto dir = RepoDir(g);
  if (!dir.ok()) return Fail(g, dir.status());
  Status st =
      restore ? Repository::RestoreHeader(*dir, a.file) : Repository::ExportHeader(*dir, a.file);
  if (!st.ok()) return Fail(g, st);
  Audit(g, restore ? "key-restore-header" : "key-export-header", {{"file", a.file}});
  if (g.json)
    PrintJson({{restore ? "restored_from" : "exported_to", a.file}});
  else
    std::printf("%s %s\n", restore ? "restored the key header from" : "wrote the key header to",
                a.file.c_str());
  return kExitOk;
}

void AddKey(CLI::App& app, Globals& g, int* rc) {
  auto a = std::make_shared<KeyArgs>();
  auto* key = app.add_subcommand("key", "manage the passphrases and key files (keyslots)");
  key->require_subcommand(1);
  auto* add = key->add_subcommand("add", "add a passphrase or key file");
  add->add_option("--new-passphrase-file", a->new_passphrase_file, "the new passphrase");
  add->add_option("--new-key-file", a->new_key_file, "the new key file (generated if missing)");
  add->add_option("--label", a->label, "a label shown by `key list`");
  add->add_option("--kdf-memory", a->cost.memory_kib, "argon2id memory (KiB)");
  add->add_option("--kdf-iterations", a->cost.iterations, "argon2id iterations");
  add->callback([&g, a, rc] { *rc = RunKeyAdd(g, *a); });
  auto* rm = key->add_subcommand("remove", "remove a keyslot (never the last one)");
  rm->add_option("slot", a->slot, "keyslot number (see `key list`)")->required();
  rm->callback([&g, a, rc] { *rc = RunKeyRemove(g, *a); });
  key->add_subcommand("list", "list keyslots")->callback([&g, rc] { *rc = RunKeyList(g); });
  auto* ex = key->add_subcommand("export-header", "write a backup of the key header");
  ex->add_option("file", a->file, "destination (must not exist)")->required();
  ex->callback([&g, a, rc] { *rc = RunHeader(g, *a, false); });
  auto* re = key->add_subcommand("restore-header", "restore the key header from a backup");
  re->add_option("file", a->file, "a file made by export-header")->required();
  re->callback([&g, a, rc] { *rc = RunHeader(g, *a, true); });
}

int RunStats(Globals& g) {
  auto repo = OpenRepo(g, true);
  if (!repo.ok()) return Fail(g, repo.status());
  auto s = (*repo)->GetStats();
  if (!s.ok()) return Fail(g, s.status());
  if (g.json) {
    std::printf("%s\n", cofferfs::StatsJsonLine(*s).c_str());
    return kExitOk;
  }
  std::printf("repository:        %s\n", (*repo)->dir().c_str());
  std::printf("blobs, snapshots:  %llu, %llu\n", (unsigned long long)s->blobs,
              (unsigned long long)s->snapshots);
  std::printf(
      "layers:            %llu of the blobs (%s) stored as tar + recipe, the rest as "
      "pushed\n",
      (unsigned long long)s->encoded_blobs, HumanBytes(s->encoded_blob_bytes).c_str());
  for (const auto& [kind, k] : s->encoded_by_kind)
    std::printf("  as %-15s %llu (%s)\n", (kind + ":").c_str(), (unsigned long long)k.blobs,
                HumanBytes(k.bytes).c_str());
  std::printf("logical bytes:     %s (%llu)\n", HumanBytes(s->logical_bytes).c_str(),
              (unsigned long long)s->logical_bytes);
  std::printf("unique bytes:      %s in %llu chunks\n", HumanBytes(s->unique_bytes).c_str(),
              (unsigned long long)s->chunks);
  std::printf("stored bytes:      %s in %llu packs (%s on disk in all)\n",
              HumanBytes(s->stored_bytes).c_str(), (unsigned long long)s->packs,
              HumanBytes(s->repo_bytes).c_str());
  std::printf("dedup ratio:       %.2fx\n", s->dedup_ratio());
  std::printf("compression ratio: %.2fx\n", s->compression_ratio());
  return kExitOk;
}

int ReportCheck(Globals& g, const chunkstore::CheckReport& r, bool data) {
  if (g.json) {
    PrintJson({{"ok", r.ok()},
               {"packs", r.packs},
               {"records", r.records},
               {"chunks", r.chunks},
               {"bytes_read", r.bytes_read},
               {"read_data", data},
               {"problems", r.problems}});
  } else {
    for (const std::string& p : r.problems) std::printf("damaged: %s\n", p.c_str());
    std::printf("%s: %llu packs, %llu records, %llu chunks, %s read%s\n",
                r.ok() ? "no errors" : "ERRORS FOUND", (unsigned long long)r.packs,
                (unsigned long long)r.records, (unsigned long long)r.chunks,
                HumanBytes(r.bytes_read).c_str(), data ? ", all data decrypted and verified" : "");
  }
  return r.ok() ? kExitOk : kExitFail;
}

int RunCheck(Globals& g, bool read_data) {
  ProgressBar bar(!g.quiet && !g.json);
  if (!read_data) {
    auto dir = RepoDir(g);
    if (!dir.ok()) return Fail(g, dir.status());
    auto r = Repository::CheckStructure(*dir, {}, bar.Fn());
    bar.Finish();
    if (!r.ok()) return Fail(g, r.status());
    return ReportCheck(g, *r, false);
  }
  auto repo = OpenRepo(g, true);
  if (!repo.ok()) return Fail(g, repo.status());
  auto r = (*repo)->CheckData(bar.Fn());
  bar.Finish();
  if (!r.ok()) return Fail(g, r.status());
  return ReportCheck(g, *r, true);
}

int RunRepair(Globals& g) {
  auto dir = RepoDir(g);
  if (!dir.ok()) return Fail(g, dir.status());
  ProgressBar bar(!g.quiet && !g.json);
  auto r = Repository::RebuildIndex(*dir, {}, bar.Fn());
  bar.Finish();
  if (!r.ok()) return Fail(g, r.status());
  if (g.json)
    PrintJson({{"packs", r->packs}, {"chunks", r->chunks}, {"problems", r->problems}});
  else {
    for (const auto& p : r->problems) std::printf("skipped: %s\n", p.c_str());
    std::printf("rebuilt the index: %llu packs, %llu chunks\n", (unsigned long long)r->packs,
                (unsigned long long)r->chunks);
  }
  return r->problems.empty() ? kExitOk : kExitFail;
}

int RunGc(Globals& g, const std::string& grace) {
  auto grace_ms = ParseDuration(grace);
  if (!grace_ms.ok()) return FailMsg(g, "gc --grace: " + grace_ms.status().message(), kExitUsage);
  nlohmann::json req = {{"verb", "gc"}, {"grace_s", *grace_ms / 1000}};
  if (auto d = AskDaemon(g, req)) {  // the daemon holds the repository
    if (!d->value("ok", false)) return FailMsg(g, "gc: " + d->value("error", ""));
    if (g.json) {
      PrintJson(*d);
      return kExitOk;
    }
    if (d->contains("registry_blobs_deleted"))
      std::printf(
          "gc (registry): %llu manifests, %llu blobs referenced, %llu recent kept, "
          "%llu unreferenced deleted (%s)\n",
          (unsigned long long)d->value("registry_manifests", 0ull),
          (unsigned long long)d->value("registry_blobs_kept", 0ull),
          (unsigned long long)d->value("registry_blobs_recent", 0ull),
          (unsigned long long)d->value("registry_blobs_deleted", 0ull),
          HumanBytes(d->value("registry_bytes_deleted", 0ull)).c_str());
    std::printf("gc (by the mount daemon): %s freed, %llu packs deleted\n",
                HumanBytes(d->value("bytes_freed", 0ull)).c_str(),
                (unsigned long long)d->value("packs_deleted", 0ull));
    return kExitOk;
  }
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  ProgressBar bar(!g.quiet && !g.json);
  auto r = (*repo)->Gc(bar.Fn());
  bar.Finish();
  if (!r.ok()) return Fail(g, r.status());
  Audit(g, "gc",
        {{"packs_deleted", std::to_string(r->packs_deleted)},
         {"bytes_freed", std::to_string(r->bytes_freed)}});
  if (g.json)
    PrintJson({{"live_chunks", r->live_chunks},
               {"dead_chunks", r->dead_chunks},
               {"packs_deleted", r->packs_deleted},
               {"packs_repacked", r->packs_repacked},
               {"bytes_freed", r->bytes_freed}});
  else
    std::printf("gc: %llu live chunks, %llu dead; %llu packs deleted (%llu repacked), %s freed\n",
                (unsigned long long)r->live_chunks, (unsigned long long)r->dead_chunks,
                (unsigned long long)r->packs_deleted, (unsigned long long)r->packs_repacked,
                HumanBytes(r->bytes_freed).c_str());
  return kExitOk;
}

}  // namespace

int RunInitDefault(Globals& g) { return RunInit(g, InitArgs{}); }

void AddRepoCommands(CLI::App& app, Globals& g, int* rc) {
  AddInit(app, g, rc);
  AddKey(app, g, rc);
  app.add_subcommand("stats", "sizes, dedup and compression ratios")->callback([&g, rc] {
    *rc = RunStats(g);
  });
  auto read_data = std::make_shared<bool>(false);
  auto* check =
      app.add_subcommand("check", "verify the repository (no key needed without --read-data)");
  check->add_flag("--read-data", *read_data, "decrypt and verify every record; name damaged files");
  check->callback([&g, rc, read_data] { *rc = RunCheck(g, *read_data); });
  auto rebuild = std::make_shared<bool>(false);
  auto* repair = app.add_subcommand("repair", "repair the repository");
  repair->add_flag("--rebuild-index", *rebuild, "rebuild the index from the packs")->required();
  repair->callback([&g, rc, rebuild] { *rc = RunRepair(g); });
  auto grace = std::make_shared<std::string>("1h");
  auto* gc = app.add_subcommand("gc", "remove chunks nothing references; repack");
  gc->add_option("--grace", *grace,
                 "with `coffer serve` running: keep unreferenced registry blobs linked this "
                 "recently (default 1h)");
  gc->callback([&g, rc, grace] { *rc = RunGc(g, *grace); });
}

}  // namespace coffer
