// Token recipes: any DEFLATE stream re-created from its plain data plus the
// stream's own decisions, for gzip members no known encoder reproduces (pgzip
// as podman, skopeo and buildah write it; pigz -i at odd block sizes; ...).
// docs/layers.md, "Token recipes (any DEFLATE stream)".
//
// Analysis parses the stream (RFC 1951) and writes one frame per group of
// whole blocks covering at least kTokenFramePlain plain bytes: each block's
// header as found (a dynamic block's Huffman header as its raw bits, the pad
// bits before a stored block's length, the pad bits after the final block),
// and its tokens. Literals cost nothing: they are the plain data. A match
// costs, instead of its distance, the rank of the position it copies from
// among the records of the 3-byte hash chain at its position (nearest first,
// the candidates whose match is longer than every nearer one's: encoders take
// the nearest or the longest candidate they know of, so the rank is small),
// and, instead of its length, 0 when it is the longest match at that
// distance (as encoders extend them). Both are measured on at most 258 bytes
// past the position (fewer at the end of the member), so a match is decided
// only once they are decoded. preflate's idea, simplified. A candidate that
// is no record is named by its rank among all candidates with a match; a
// distance not within the first kTokenMaxWalk chain steps is written out. The writer runs the same
// chains over the plain data, turns ranks back into distances, and writes the tokens with each
// block's own Huffman codes.
//
// Frame (before its zstd compression), all integers LEB128 varints unless
// noted:
//   ops_len lits_len lens_len ranks_len dists_len | ops | lits | lens | ranks | dists
//   ops:   per block: kind u8 (bit 0 BFINAL, bits 1-2 BTYPE), then
//            stored:  pad u8 (value of the bits before LEN) | len
//            fixed:   match_count
//            dynamic: header_bits | ceil(header_bits / 8) bytes, LSB first | match_count
//          and after a final block: pad u8 (value of the bits up to the byte boundary)
//   lits:  per block match_count + 1 literal run lengths (before each match, then before
//          the end of block)
//   ranks: per match: 0 = the distance is in dists; 2r + 1 = record r; 2m + 2 = the
//          m-th candidate with a match of at least 3 bytes, when it is no record
//   lens:  per match: 0 = the longest match at its distance, else length - 2
//   dists: per match with rank 0: distance - 1, u16 little-endian
#ifndef COFFERLAYER_TOKENS_H_
#define COFFERLAYER_TOKENS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "encoders.h"

namespace cofferlayer {

inline constexpr uint64_t kTokenFramePlain = 1 << 20;  // plain bytes a frame covers at least
inline constexpr int kTokenMaxWalk = 256;              // chain steps a rank may take
inline constexpr uint64_t kMaxTokenFrame = 64 << 20;   // bytes of a frame, uncompressed

// Fed one member's DEFLATE stream, in pieces of any size.
class TokenAnalyzer {
 public:
  TokenAnalyzer();
  ~TokenAnalyzer();
  TokenAnalyzer(const TokenAnalyzer&) = delete;
  TokenAnalyzer& operator=(const TokenAnalyzer&) = delete;

  // Corruption naming the bit offset for what is not DEFLATE, or is DEFLATE
  // in a form the writer does not produce (a length of 258 as code 284).
  Status Feed(std::string_view deflate);
  // Corruption unless the stream ended exactly with its final block.
  Status Finish();
  // The frames completed since the last call, uncompressed.
  std::vector<std::string> TakeFrames();
  uint64_t plain_size() const;
  // Where frames 1, 2, ... start: plain offset and DEFLATE bit offset, with a
  // window_base at least 32 KiB before (a multiple of it), so that a frame
  // can be written on its own (TokenSegment).
  const std::vector<GoFlateCheckpoint>& frame_starts() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Frame i of a member (0, 1, ...), uncompressed.
using TokenFrameSource = std::function<Result<std::string>(size_t i)>;

// The writer: fed the member's plain data, it writes the DEFLATE stream the
// `frames` frames describe. Corruption (naming the frame) when they do not
// fit the plain data.
std::unique_ptr<Encoder> NewTokenEncoder(size_t frames, TokenFrameSource source);

// One frame written on its own, as GoFlateSegment does for goflate: the
// stream's bytes floor(from.bit_offset / 8) .. ceil(to.bit_offset / 8), bits
// outside the range zero (consecutive segments OR the byte they share).
// `from` null: the first frame; `to` null: the last. `plain` holds the plain
// data from from.window_base (0 without `from`) to to.plain_offset + 258, or
// to the member's end.
Result<std::string> TokenSegment(std::string frame, const GoFlateCheckpoint* from,
                                 const GoFlateCheckpoint* to, std::string_view plain);

}  // namespace cofferlayer

#endif  // COFFERLAYER_TOKENS_H_
