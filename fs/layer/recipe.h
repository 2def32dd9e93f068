// A layer recipe: what, besides the uncompressed tar, reproduces a compressed
// layer byte for byte. Per gzip member or zstd frame: the bytes kept raw
// (gzip header and trailer), the encoder and its parameters, and how many
// uncompressed bytes the member holds; then any raw bytes after the last member.
//
// Serialization (docs/layers.md, "Recipe format"), all integers LEB128 varints
// unless noted, minimal encodings only, so a recipe has exactly one encoding:
//   "CLRC" | version u8 = 1 | compression u8 (1 gzip, 2 zstd) | count
//   count x { header_len header | encoder u8 | zigzag(level) | window_bits u8
//             | mem_level u8 | strategy u8 | block_size | flags u8 (1 checksum,
//             2 content_size, 4 multithread,
//             8 independent) | window_log u8 | plain_size | trailer_len trailer }
//   tail_len tail | crc32 (zlib CRC-32 of all bytes before it, u32 little-endian)
// Version 2 (written only when some member has checkpoints) appends to each
// member, after its trailer:
//   cp_count, cp_count x { plain_delta | bit_delta | window_back | flags u8
//             (1 byte_pending) | if byte_pending: match_length match_distance }
// deltas from the previous checkpoint (the first from 0), plain offsets within
// the member's uncompressed bytes, bit offsets within its DEFLATE stream,
// window_back = plain_offset - window_base.
// Version 3 (written only when some member has search hints) appends to each
// member, after its checkpoints:
//   hint_after u8 | hint_count (0, or cp_count + 1) | hint_count x hint_size
// hint_size: bytes of segment i's search hints (goflate.h) as one zstd frame.
// The hints themselves are not in the recipe: they follow the uncompressed
// stream in the blob's stored form, member after member, segment after
// segment, so they are chunks of the repository like the tar.
// Version 4 (written only when some member has encoder 6, deflate tokens):
// as 3; such a member has no checkpoints, hint_after 0, and hint_count >= 1
// sizes of its token frames (tokens.h, each one zstd frame), stored where
// hints are.
// Version 5 (written only when some member has segment checks) appends to
// each member, after its hints:
//   check_count (0, or cp_count + 1) | check_count x 16 bytes (XXH3-128,
//   canonical big-endian) | if check_count: cp_count seam bytes
// Check i is the hash of the blob's bytes from segment i's first byte to
// segment i+1's (SegmentedReconstructor::SegmentStart), recorded from a
// re-creation that gave the layer's digest. Seam i is the blob byte that
// checkpoint i splits (0 when it is byte aligned): with it, a segment's
// bytes are known without its predecessor's.
#ifndef COFFERLAYER_RECIPE_H_
#define COFFERLAYER_RECIPE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "decode.h"
#include "encoders.h"
#include "goflate.h"

namespace cofferlayer {

inline constexpr uint8_t kRecipeVersion = 1;
inline constexpr uint8_t kRecipeVersionCheckpoints = 2;
inline constexpr uint8_t kRecipeVersionHints = 3;
inline constexpr uint8_t kRecipeVersionTokens = 4;
inline constexpr uint8_t kRecipeVersionChecks = 5;
inline constexpr size_t kMaxMemberCheckpoints = 1 << 20;
inline constexpr size_t kMaxRecipeMembers = 1 << 20;

// XXH3-128 of one segment's bytes (recipe version 5).
struct SegmentCheck {
  uint64_t high = 0, low = 0;
  static SegmentCheck Of(std::string_view bytes);
  bool operator==(const SegmentCheck&) const = default;
};

struct MemberRecipe {
  std::string header;   // gzip member header as pushed; empty for zstd
  EncoderSpec encoder;  // for zstd, encoder.source_size == plain_size when content_size
  uint64_t plain_size = 0;
  std::string trailer;  // gzip CRC-32 + ISIZE as pushed; empty for zstd
  // kGoFlate at a level with checkpoints: where the member's DEFLATE stream
  // can be re-created from the middle (increasing plain_offset). Optional.
  std::vector<GoFlateCheckpoint> checkpoints;
  // Search hints of each segment (checkpoints.size() + 1 of them, or none):
  // their zstd-compressed sizes, recorded with kGoFlateHintAfter = hint_after.
  // For EncoderId::kTokens: the sizes of its token frames.
  uint8_t hint_after = 0;
  std::vector<uint64_t> hint_sizes;
  // Segment checks (checkpoints.size() + 1 of them, or none) and, with them,
  // one seam byte per checkpoint (version 5).
  std::vector<SegmentCheck> segment_checks;
  std::string seams;
  uint64_t HintBytes() const;
  bool operator==(const MemberRecipe&) const = default;
};

struct LayerRecipe {
  LayerCompression compression = LayerCompression::kGzip;
  std::vector<MemberRecipe> members;
  std::string tail;  // bytes after the last member (zero padding, garbage)
  bool operator==(const LayerRecipe&) const = default;

  uint64_t PlainSize() const;
  // Bytes of search hints after the uncompressed stream in the stored form.
  uint64_t HintBytes() const;
  std::string Encode() const;
  // Corruption naming the field for anything that is not a canonical encoding.
  static Result<LayerRecipe> Decode(std::string_view bytes);
};

}  // namespace cofferlayer

#endif  // COFFERLAYER_RECIPE_H_
