#include "ingest.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "layer_blob.h"
#include "tree.h"

namespace cofferfs {

namespace {
constexpr char kLayerPrefix[] = "@layer:";
constexpr size_t kHex = 64;

// Saves the layer's files as the head LayerTreeSet(diff, blob), through an
// FsTree like any other head (its files' chunks are the ones the tar was
// stored as: nothing is written again but the tree itself).
chunkstore::Status SaveLayerTree(chunkstore::Repository* repo, const std::string& blob_digest,
                                 cofferlayer::IngestReport& rep) {
  uint64_t next = 1;
  auto reg = [&next](const std::shared_ptr<TreeInode>& i) { i->ino = next++; };
  FsTree t(repo, LayerTreeSet(rep.diff_id.substr(7), blob_digest.substr(7)), false, reg);
  std::lock_guard<std::mutex> l(t.mu());
  RETURN_IF_ERROR(t.Load([&](const std::function<chunkstore::Status(chunkstore::TreeEntry&)>& fn) {
    for (auto& e : rep.entries) RETURN_IF_ERROR(fn(e));
    return chunkstore::Status::OK();
  }));
  return t.Save(true);
}
}  // namespace

std::string LayerTreeSet(const std::string& diff_hex, const std::string& blob_hex) {
  return kLayerPrefix + diff_hex + ":" + blob_hex;
}

std::optional<std::string> LayerTreeDiffId(const std::string& set) {
  if (set.size() != sizeof kLayerPrefix - 1 + kHex + 1 + kHex || set.rfind(kLayerPrefix, 0) != 0)
    return std::nullopt;
  return set.substr(sizeof kLayerPrefix - 1, kHex);
}

std::optional<std::string> LayerTreeBlob(const std::string& set) {
  if (!LayerTreeDiffId(set)) return std::nullopt;
  return set.substr(set.size() - kHex);
}

LayerIngester::LayerIngester(chunkstore::Repository* repo)
    : repo_(repo), thread_([this] { Run(); }) {}

LayerIngester::~LayerIngester() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool LayerIngester::Add(const std::string& digest, uint64_t size) {
  if (size < kMinBytes) return false;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (std::find(queue_.begin(), queue_.end(), digest) != queue_.end()) return false;
    queue_.push_back(digest);
  }
  cv_.notify_all();
  return true;
}

std::unique_lock<std::shared_mutex> LayerIngester::Pause() {
  ++pausers_;  // the running job sees it at its next piece and gives up
  std::unique_lock<std::shared_mutex> l(rw_);
  --pausers_;
  return l;
}

void LayerIngester::Drain() {
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return stop_ || (queue_.empty() && !busy_); });
}

LayerIngester::Counters LayerIngester::counters() const {
  std::lock_guard<std::mutex> l(mu_);
  Counters c = counters_;
  c.pending = queue_.size() + (busy_ ? 1 : 0);
  return c;
}

void LayerIngester::Run() {
  // Pushes and pulls come first: this work only saves space.
  setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 10);
  for (;;) {
    std::string digest;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      digest = queue_.front();
      queue_.pop_front();
      busy_ = true;
    }
    Job(digest);
    {
      std::lock_guard<std::mutex> l(mu_);
      busy_ = false;
    }
    cv_.notify_all();
  }
}

void LayerIngester::Job(const std::string& digest) {
  while (pausers_ > 0 && !stop_) usleep(10000);  // let a waiting gc have the lock first
  std::shared_lock<std::shared_mutex> running(rw_);
  auto rep = cofferlayer::IngestLayer(repo_, digest, [this] { return stop_ || pausers_ > 0; });
  Status tree;
  if (rep.ok() && rep->outcome == cofferlayer::IngestReport::Outcome::kReplaced)
    tree = SaveLayerTree(repo_, digest, *rep);
  std::lock_guard<std::mutex> l(mu_);
  if (!rep.ok()) {
    if (stop_) return;
    if (pausers_ > 0) {  // a gc wanted the world: do it again afterwards
      queue_.push_front(digest);
      return;
    }
    ++counters_.failed;
    std::fprintf(stderr, "coffer: layer %s kept as pushed: %s\n", digest.c_str(),
                 rep.status().ToString().c_str());
    return;
  }
  using O = cofferlayer::IngestReport::Outcome;
  if (rep->outcome == O::kReplaced) ++counters_.stored;
  if (!tree.ok())
    std::fprintf(stderr, "coffer: layer %s: its files are not browsable under /layers: %s\n",
                 digest.c_str(), tree.ToString().c_str());
  if (rep->outcome == O::kKeptAsPushed) ++counters_.kept;
  if (rep->outcome == O::kNotALayer) ++counters_.not_layers;
  if (rep->outcome == O::kReplaced || rep->outcome == O::kKeptAsPushed)
    std::fprintf(stderr, "coffer: layer %s (%s, %llu bytes, %llu files): %s%s%s\n", digest.c_str(),
                 cofferlayer::CompressionName(rep->compression),
                 (unsigned long long)rep->blob_bytes, (unsigned long long)rep->members,
                 cofferlayer::OutcomeName(rep->outcome), rep->why.empty() ? "" : ": ",
                 rep->why.c_str());
}

}  // namespace cofferfs
