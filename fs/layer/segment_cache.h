// The segment cache: re-created compressed bytes of re-stored layers, kept in
// memory so that readers of the same layer share one re-creation.
//
// Re-creating a layer costs CPU on every pull (~2 CPU s for a 90 MB Go layer):
// 32 hosts pulling a new image at once would otherwise encode it 32 times, and
// a layer pulled right after its push (CI pushes, deploy pulls) would be
// encoded twice, once by the verification at ingestion and once for the pull.
// Segments (SegmentedReconstructor) are cached by (blob digest, bit range):
// the bits of a range of a blob are the same whatever recipe made them.
//
// Single flight: while one caller makes a segment, others asking for it wait
// for its result instead of encoding it too. Least recently used segments go
// first once the bytes held pass the capacity; a segment larger than the
// capacity is made but not kept. Memory only: nothing reaches the disk.
//
// Entries are not verified on their own (only a whole stream has a digest):
// every reader hashes what it delivers, as without the cache, and a reader
// whose stream does not give the digest drops the layer's entries (Drop), so
// a wrong segment fails one transfer and is then made again from the stored
// form. docs/layers.md, "Segment cache".
#ifndef COFFERLAYER_SEGMENT_CACHE_H_
#define COFFERLAYER_SEGMENT_CACHE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "chunkstore/status.h"

namespace cofferlayer {

inline constexpr uint64_t kDefaultSegmentCacheBytes = uint64_t{256} << 20;

class SegmentCache {
 public:
  struct Counters {
    uint64_t hits = 0;       // segments served from the cache (or from a wait)
    uint64_t made = 0;       // segments made through the cache
    uint64_t hit_bytes = 0;  // bytes of those hits
    uint64_t bytes = 0;      // bytes held now
    uint64_t entries = 0;    // segments held now
    uint64_t capacity = 0;
  };

  explicit SegmentCache(uint64_t capacity_bytes);
  ~SegmentCache();
  SegmentCache(const SegmentCache&) = delete;
  SegmentCache& operator=(const SegmentCache&) = delete;

  // The process's cache: off (capacity 0) until SetCapacity, so that a
  // command that reads a layer once (coffer cat, check --read-data) holds
  // nothing; the mount daemon sets MountOptions::layer_cache_bytes.
  static SegmentCache& Global();

  // 0 turns the cache off: Get calls `make` every time, nothing is shared.
  // Lowering it evicts at once.
  void SetCapacity(uint64_t bytes);

  // Segment [begin, end) of blob `digest`, in bits (a segment's bytes hold
  // the bits of the range, the others zero): from the cache, from another
  // caller making them now, or from `make` (kept if it succeeds). A failed
  // make is not kept; a caller that waited for it makes the segment itself.
  chunkstore::Result<std::string> Get(std::string_view digest, uint64_t begin, uint64_t end,
                                      const std::function<chunkstore::Result<std::string>()>& make);

  // Keeps a segment made without Get (one that must be made, not looked up:
  // the verification of a new form). Replaces what the cache held for it.
  void Put(std::string_view digest, uint64_t begin, uint64_t end, const std::string& bytes);

  // Forgets every segment of `digest` (its stream did not give the digest).
  void Drop(std::string_view digest);

  Counters counters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cofferlayer

#endif  // COFFERLAYER_SEGMENT_CACHE_H_
