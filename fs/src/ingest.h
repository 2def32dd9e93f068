// LayerIngester: re-stores committed layer blobs in layer form (tar chunked
// file by file + recipe; fs/layer/layer_blob.h) on one background thread at low
// CPU priority, so a push returns as soon as its blob is committed.
//
// While a layer is being re-stored, its new chunks are named by no root yet: a
// gc or an ENOSPC reclaim would drop them. Pause() is how those wait: it makes
// the running job give up at its next piece (it is queued again) and returns a
// lock that keeps the ingester stopped until it is released.
//
// Blobs queued when the daemon stops stay as pushed (correct, only larger).
#ifndef COFFER_FS_INGEST_H_
#define COFFER_FS_INGEST_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>

#include "chunkstore/store.h"

namespace cofferfs {

// The internal head holding the files of a re-stored layer: its tree is what
// /layers/sha256/<diff id>/ shows. Named after both digests so that deleting
// the blob can delete the tree ('@' keeps it out of /backups).
std::string LayerTreeSet(const std::string& diff_hex, const std::string& blob_hex);
// The diff id (hex) of a LayerTreeSet name, or nullopt; and its blob (hex).
std::optional<std::string> LayerTreeDiffId(const std::string& set);
std::optional<std::string> LayerTreeBlob(const std::string& set);

class LayerIngester {
 public:
  // Blobs smaller than this are never layers worth the work (configs, manifests).
  static constexpr uint64_t kMinBytes = 64 << 10;

  explicit LayerIngester(chunkstore::Repository* repo);
  ~LayerIngester();  // abandons the queue, waits for the running job to stop
  LayerIngester(const LayerIngester&) = delete;
  LayerIngester& operator=(const LayerIngester&) = delete;

  // Queues a blob; false if it is too small or already queued.
  bool Add(const std::string& digest, uint64_t size);
  std::unique_lock<std::shared_mutex> Pause();
  // Waits until the queue is empty and nothing runs (tests, `coffer layers`).
  void Drain();

  struct Counters {
    uint64_t stored = 0, kept = 0, not_layers = 0, failed = 0;
    uint64_t pending = 0;  // queued or running
  };
  Counters counters() const;

 private:
  void Run();
  void Job(const std::string& digest);

  chunkstore::Repository* const repo_;
  std::shared_mutex rw_;         // shared while a job runs; Pause() takes it
  std::atomic<int> pausers_{0};  // Pause() calls waiting or holding
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;  // guards the members below
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  bool busy_ = false;
  Counters counters_;
  std::thread thread_;
};

}  // namespace cofferfs

#endif  // COFFER_FS_INGEST_H_
