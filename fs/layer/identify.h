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

#include "decode.h"
#include "recipe.h"

namespace cofferlayer {

inline constexpr size_t kReplayBytes = 16 << 20;  // plain bytes kept for later waves
// zstd: a ZSTDMT candidate shows its first bytes only after a job of up to
// 4 << window_log plain bytes (32 MiB at level 19), so more is kept.
inline constexpr size_t kZstdReplayBytes = 64 << 20;
inline constexpr size_t kMaxLagBytes = 64 << 20;  // compressed bytes a candidate may trail
inline constexpr size_t kMaxTailBytes = 1 << 20;  // raw bytes after the last member

struct Analysis {
  LayerCompression compression = LayerCompression::kTar;
  std::optional<LayerRecipe> recipe;  // set when every member was reproduced
  std::string why_not;                // when not: which member, what was tried
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
