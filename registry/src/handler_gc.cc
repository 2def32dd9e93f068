// Garbage collection of registry blobs: mark every blob a manifest references,
// sweep the blobs the registry linked that nothing references any more.
//
// Mark: every revision of every repository (tagged or not) keeps its manifest
// blob and the config, layers and index entries it names. If any manifest cannot
// be read or parsed, nothing is deleted: a partial mark would delete live blobs.
// Sweep: a blob linked by some repository (/repos/<name>/_layers/sha256/<hex>)
// that is not marked and whose newest link is older than the grace period is
// deleted from /blobs, then its links go. Blob first: a crash in between
// leaves links to a missing blob, which manifest pushes refuse (they check the
// blob itself) and the next collection removes.
#include <map>
#include <set>

#include "handler.h"
#include "manifest.h"
#include "names.h"

namespace cofferregistry {

namespace {

// The manifest digests (hex) stored as revisions of `repo`.
std::vector<std::string> Revisions(Storage* s, const std::string& repo) {
  std::vector<std::string> out;
  auto revs = s->List(repo + "/_manifests/revisions/sha256");
  if (!revs.ok()) return out;
  for (auto& hex : *revs)
    if (CheckDigest("sha256:" + hex) == DigestCheck::kOk) out.push_back(std::move(hex));
  return out;
}

}  // namespace

chunkstore::Result<RegistryGcReport> Handler::CollectGarbage(int64_t grace_s, int64_t now_s) {
  std::unique_lock<std::shared_mutex> lock(gc_mu_);
  RegistryGcReport rep;
  std::set<std::string> keep;
  std::map<std::string, int64_t> newest_link;          // hex -> newest link mtime
  std::map<std::string, std::vector<std::string>> by;  // hex -> repositories linking it
  for (const std::string& repo : ListRepos()) {
    for (const std::string& hex : Revisions(storage_, repo)) {
      if (!RevisionExists(repo, hex)) continue;
      const std::string what = "gc: manifest sha256:" + hex + " of `" + repo + "`";
      auto type = storage_->ReadFile(RevisionDir(repo, hex) + "/type", 4096);
      auto body = storage_->ReadBlob(hex, opts_.max_manifest_bytes);
      if (!body.ok()) return body.status().Annotate(what + ": nothing deleted");
      auto m = ParseManifest(*body, type.ok() ? *type : "");
      if (!m.ok()) return m.status().Annotate(what + ": nothing deleted");
      ++rep.manifests;
      keep.insert(hex);
      for (const auto& d : m->blobs) keep.insert(DigestHex(d));
      for (const auto& d : m->manifests) keep.insert(DigestHex(d));
    }
    auto linked = storage_->List(repo + "/_layers/sha256");
    if (!linked.ok()) continue;
    for (const std::string& hex : *linked) {
      if (CheckDigest("sha256:" + hex) != DigestCheck::kOk) continue;
      auto t = storage_->ModifiedAt(LayerLinkPath(repo, hex));
      int64_t when = t.ok() ? *t : now_s;  // unreadable: treat as new, keep
      auto [it, fresh] = newest_link.emplace(hex, when);
      if (!fresh) it->second = std::max(it->second, when);
      by[hex].push_back(repo);
    }
  }
  for (const auto& [hex, when] : newest_link) {
    if (keep.count(hex)) {
      ++rep.blobs_kept;
      continue;
    }
    if (when > now_s - grace_s) {
      ++rep.blobs_recent;
      continue;
    }
    if (auto size = storage_->BlobSize(hex); size.ok()) {
      Status st = storage_->RemoveBlob(hex);
      if (!st.ok() && !st.IsNotFound()) return st.Annotate("gc: delete blob sha256:" + hex);
      ++rep.blobs_deleted;
      rep.bytes_deleted += *size;
    }
    for (const std::string& repo : by[hex]) {
      std::string dir = LayerLinkPath(repo, hex);
      dir.resize(dir.rfind('/'));
      if (storage_->Remove(dir).ok()) ++rep.links_removed;
    }
  }
  RETURN_IF_ERROR(storage_->Sync());
  return rep;
}

}  // namespace cofferregistry
