// Reconstruction: recipe + uncompressed tar stream -> the compressed layer as
// pushed. Streaming; memory is one encoder state plus one block of output.
//
// VerifyingReconstructor is the only form a server should use: it hashes what
// it emits and its Finish fails with Corruption naming the layer digest when
// the bytes are not the layer. Bytes reach the sink before the digest can be
// known, so a caller that forwards them (an HTTP response) must treat a
// failed Finish as "abort the transfer", never as a complete body; a caller
// that must not expose unverified bytes at all runs it once into a discarding
// sink first (as ingestion does before dropping the compressed copy).
#ifndef COFFERLAYER_RECONSTRUCT_H_
#define COFFERLAYER_RECONSTRUCT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "recipe.h"

namespace cofferlayer {

// Receives the reconstructed bytes in order (not goflate.h's ByteSink).
using LayerSink = std::function<Status(std::string_view)>;

// Reads the stored form at any offset: the uncompressed stream, then the
// search hints and token frames (recipe.h); called from several threads at
// once. Returns the bytes copied (fewer only at the end).
using PlainReader = std::function<Result<size_t>(uint64_t offset, size_t n, char* out)>;

class Reconstructor {
 public:
  // REQUIRES: recipe and sink outlive the reconstructor.
  Reconstructor(const LayerRecipe& recipe, LayerSink sink);
  ~Reconstructor();
  Reconstructor(const Reconstructor&) = delete;
  Reconstructor& operator=(const Reconstructor&) = delete;

  // The uncompressed stream, in pieces of any size. InvalidArgument when it
  // is longer than the recipe says; Corruption when a gzip member's CRC-32 or
  // size does not match the recipe's trailer (a wrong tar is caught early).
  Status Feed(std::string_view plain);
  // InvalidArgument when the stream was shorter than the recipe says.
  Status Finish();
  uint64_t bytes_out() const { return out_bytes_; }

  // Before the first Feed: where deflate-token members read their frames
  // (the stored form; without it such a member fails).
  void SetSideReader(PlainReader side) { side_ = std::move(side); }

  // Before the first Feed: goflate members at a level with checkpoints are
  // encoded with an observer that records them about `interval` plain bytes
  // apart (member-relative); checkpoints(i) has member i's once it ended.
  // Each segment's search hints too (uncompressed, checkpoints + 1 of them).
  void RecordCheckpoints(uint64_t interval) { cp_interval_ = interval; }
  const std::vector<GoFlateCheckpoint>& checkpoints(size_t member) const {
    return checkpoints_[member];
  }
  const std::vector<std::string>& hints(size_t member) const { return hints_[member]; }

 private:
  Status BeginMember();
  Status EndMember();
  Status Emit(std::string_view b);

  Result<std::unique_ptr<Encoder>> NewTokenMember();

  const LayerRecipe& recipe_;
  LayerSink sink_;
  PlainReader side_;
  size_t member_ = 0;
  bool in_member_ = false;
  uint64_t member_in_ = 0, total_in_ = 0, out_bytes_ = 0;
  uint32_t crc_ = 0;
  std::unique_ptr<Encoder> enc_;
  std::string buf_;
  Status error_;
  uint64_t cp_interval_ = 0;  // 0: no checkpoints recorded
  std::vector<std::vector<GoFlateCheckpoint>> checkpoints_;
  std::vector<std::vector<std::string>> hints_;
};

// expected_digest: "sha256:<64 hex>", the layer's digest in the manifest.
class VerifyingReconstructor {
 public:
  VerifyingReconstructor(const LayerRecipe& recipe, std::string expected_digest, LayerSink sink);
  ~VerifyingReconstructor();
  Status Feed(std::string_view plain);
  // OK only if the emitted bytes have the expected digest.
  Status Finish();
  void RecordCheckpoints(uint64_t interval) { inner_.RecordCheckpoints(interval); }
  void SetSideReader(PlainReader side) { inner_.SetSideReader(std::move(side)); }
  const std::vector<GoFlateCheckpoint>& checkpoints(size_t member) const {
    return inner_.checkpoints(member);
  }
  const std::vector<std::string>& hints(size_t member) const { return inner_.hints(member); }

 private:
  std::string expected_;
  struct Hash;
  std::unique_ptr<Hash> hash_;
  LayerSink downstream_;
  Reconstructor inner_;
};

// Re-creates a layer in segments that worker threads make ahead of the reader,
// each from a checkpoint alone (docs/layers.md, "Parallel reconstruction").
// With segment checks in the recipe (version 5) every segment is checked on
// its own before Next returns it: no wrong byte is delivered, and any segment
// is a restart point. Without them output is hashed as a whole: the read that
// ends the blob fails with Corruption unless it has the expected digest.
// Memory: `ahead` segments of output plus each worker's input (~ one segment
// of plain bytes).
class SegmentedReconstructor {
 public:
  // One gzip member encoded by goflate, with checkpoints.
  static bool Supports(const LayerRecipe& recipe);

  // REQUIRES: Supports(recipe); threads >= 1; ahead >= threads.
  SegmentedReconstructor(LayerRecipe recipe, std::string expected_digest, PlainReader read,
                         int threads, int ahead);
  ~SegmentedReconstructor();
  SegmentedReconstructor(const SegmentedReconstructor&) = delete;
  SegmentedReconstructor& operator=(const SegmentedReconstructor&) = delete;

  // How segments use the process's SegmentCache: readers share them (the
  // default); a verification of a new form makes every segment and keeps
  // what it made (kFill); kOff neither looks up nor keeps. Before Next.
  enum class CacheUse { kShare, kFill, kOff };
  void SetCacheUse(CacheUse use) { cache_use_ = use; }

  size_t segments() const { return starts_.size(); }
  // The recipe's segment checks are used (see above).
  bool checked() const { return checked_; }
  // Blob offset of segment i's first byte.
  uint64_t SegmentStart(size_t i) const { return starts_[i]; }
  // The last segment that starts at or before `offset` and can be restarted
  // from: one delivered before, or the first.
  size_t RestartPoint(uint64_t offset) const;
  // Makes the next Next() deliver segment i (again). REQUIRES: checked(), or
  // i <= delivered so far.
  void Restart(size_t i);
  // The next segment's bytes, from SegmentStart; an empty string after the
  // last. Checked: Corruption for a segment that fails its check. Else the
  // one that ends the blob fails unless the digest matched.
  Result<std::string> Next();

  // Segments, in the whole process, that failed their check (each one made
  // again once when it came from the cache).
  static uint64_t check_failures();

 private:
  struct Shared;
  void Start();
  void Work();
  Result<std::string> Make(size_t i);
  Status Trim(size_t i, std::string* seg) const;
  Result<std::string> Checked(size_t i, Result<std::string> made,
                              const std::function<Result<std::string>()>& make);
  uint64_t BitStart(size_t i) const;
  uint64_t BitEnd(size_t i) const;

  const LayerRecipe recipe_;
  const std::string expected_;
  PlainReader read_;
  std::vector<uint64_t> starts_;
  std::vector<uint64_t> hint_starts_;  // stored-form offset of each segment's hints
  CacheUse cache_use_ = CacheUse::kShare;
  bool checked_ = false;
  std::unique_ptr<Shared> sh_;
};

// Segment hints as stored: one zstd frame (level 9, reconstruct.cc says
// why); and back, Corruption if they are not a frame of at most `max`
// bytes.
std::string CompressHints(std::string_view hints);
Result<std::string> DecompressHints(std::string_view frame, uint64_t max);

// "sha256:<hex>" of data (tests, tools).
std::string Sha256Digest(std::string_view data);

}  // namespace cofferlayer

#endif  // COFFERLAYER_RECONSTRUCT_H_
