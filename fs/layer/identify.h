// Encoder identification: decode a compressed layer once, and find for each
// gzip member / zstd frame an encoder whose output on the decoded data is the
// member's compressed bytes exactly. The result is a LayerRecipe, or the fact
// that nothing reproduced the stream (the layer is then kept as pushed).
//
// Method. Candidates are tried in waves of a few, best first (the gzip XFL
// byte and the zstd frame header say which levels are likely). Each candidate
// re-encodes the plain data as it is decoded and is compared byte by byte with
// the pushed stream; at the first differing byte it is dropped. Wrong
// candidates differ at their first block, so a wave normally dies within a few
// hundred KiB. While the member's first kReplayBytes of plain data are still
// buffered (kZstdReplayBytes for zstd), a dead wave is followed by the
// next, replayed from the buffer;
// past that only the running wave can still win. Single pass over the blob,
// memory bounded by the buffers below plus the live encoders' states.
#ifndef COFFERLAYER_IDENTIFY_H_
#define COFFERLAYER_IDENTIFY_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "decode.h"
#include "recipe.h"

namespace cofferlayer {

inline constexpr size_t kReplayBytes = 16 << 20;  // plain bytes kept for later waves
// zstd: a ZSTDMT candidate shows its first bytes only after a job of up to
// 4 << window_log plain bytes (32 MiB at level 19), so more is kept.
inline constexpr size_t kZstdReplayBytes = 64 << 20;
inline constexpr size_t kMaxLagBytes = 64 << 20;  // compressed bytes a candidate may trail
inline constexpr size_t kMaxTailBytes = 1 << 20;  // raw bytes after the last member

// What the winning go-flate candidate of a member recorded on its way through
// the member (LayerAnalyzer::RecordSegments): checkpoints and, per segment,
// its search hints (uncompressed; one more than checkpoints). The recipe's
// own checkpoint list stays empty: it is version 1 until the segments are
// verified (layer_blob.cc).
struct RecordedSegments {
  std::vector<GoFlateCheckpoint> checkpoints;
  std::vector<std::string> hints;
};

struct Analysis {
  LayerCompression compression = LayerCompression::kTar;
  std::optional<LayerRecipe> recipe;  // set when every member was reproduced
  // With RecordSegments, one per member of recipe (empty for a member whose
  // encoder has no checkpoints).
  std::vector<RecordedSegments> segments;
  std::string why_not;  // when not: which member, what was tried
  uint64_t compressed_bytes = 0, plain_bytes = 0;
};

// Feed the compressed blob in pieces; the decoded plain stream goes to `plain`
// as it is produced (e.g. a TarScanner). Decoding errors (Corruption) are
// returned by Feed/Finish; "not reproducible" is not an error but an Analysis
// without a recipe. A plain tar gives compression kTar and no recipe.
class LayerAnalyzer {
 public:
  using PlainSink = std::function<Status(std::string_view)>;
  explicit LayerAnalyzer(PlainSink plain);
  ~LayerAnalyzer();
  LayerAnalyzer(const LayerAnalyzer&) = delete;
  LayerAnalyzer& operator=(const LayerAnalyzer&) = delete;

  // Before the first Feed: go-flate candidates at levels with checkpoints
  // record them every `interval` plain bytes, with search hints, so that the
  // winner's arrive in Analysis::segments and need no second encoding pass.
  void RecordSegments(uint64_t interval);

  Status Feed(std::string_view compressed);
  Result<Analysis> Finish();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Convenience over a whole blob in memory (tests, tools).
Result<Analysis> AnalyzeLayer(std::string_view blob, const LayerAnalyzer::PlainSink& plain = {});

}  // namespace cofferlayer

#endif  // COFFERLAYER_IDENTIFY_H_
