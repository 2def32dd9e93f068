// GoFlateWriter: a DEFLATE (RFC 1951) encoder whose output is bit-identical to
// Go 1.19's compress/flate, and GoGzip, the gzip framing Go's compress/gzip
// puts around it.
//
// Why: docker pushes layers compressed by Go's gzip.NewWriter at the default
// level; the manifest names the sha256 of those exact bytes. coffer stores the
// uncompressed tar deduplicated and re-creates the compressed blob on pull by
// running the same deterministic encoder again. Any single-bit difference
// changes the digest, so this encoder is tested byte for byte against Go.
//
// Supported levels: all of Go's: 0 (stored), 1 (BestSpeed, a different
// algorithm, in goflate_fast.cc), 2..9, -1 (= 6, Go's default), -2 (Huffman
// only). The rules this reproduces were inferred from Go's output; see
// goflate.cc and docs/layers.md ("Go compress/flate, observed").
#ifndef COFFER_FS_LAYER_GOFLATE_H_
#define COFFER_FS_LAYER_GOFLATE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "chunkstore/status.h"

namespace cofferlayer {

// Receives compressed bytes in order. A non-OK Status stops the writer: it is
// returned from the Write/Close that produced the bytes and from every later
// call.
using ByteSink = std::function<chunkstore::Status(const uint8_t* data, size_t size)>;

namespace goflate_internal {
class Compressor;
}

// A block boundary inside a goflate stream from which the rest of the stream
// can be re-created without encoding what came before (levels 4-9 and -1, the
// lazy matchers; docs/layers.md, "Parallel reconstruction"). Everything else
// the encoder's future output depends on is a function of the input bytes
// [window_base, plain_offset): the 64 KiB buffer holds them and, because these
// levels hash every position in order, so do the hash chains.
struct GoFlateCheckpoint {
  uint64_t plain_offset = 0;  // input offset where the next block's data begins
  uint64_t bit_offset = 0;    // DEFLATE bits written before the next block
  uint64_t window_base = 0;   // input offset of the encoder's buffer start (k * 32 KiB)
  // The lazy matcher's state: with byte_pending, the byte at plain_offset was
  // searched already (its best match is match_length/match_distance, length
  // 3 = none) and waits to become a literal or be superseded by that match.
  bool byte_pending = false;
  uint16_t match_length = 3;
  uint16_t match_distance = 0;
  bool operator==(const GoFlateCheckpoint&) const = default;
};

// Input bytes a segment needs after its end checkpoint's plain_offset: the
// encoder only tokenizes a position with this much input ahead of it.
inline constexpr uint64_t kGoFlateSegmentLookahead = 4 + 258 + 1;

// Search hints (docs/layers.md, "Search hints"): most of the encoder's time
// goes into walking hash chains of up to 128 candidates for the longest
// match. An encoder that records hints writes one for every search that
// examined more than kGoFlateHintAfter candidates: 0 when the result was
// decided among the first kGoFlateHintAfter, else 1 + the winner's step
// beyond them. An encoder following them examines at most kGoFlateHintAfter
// candidates and jumps to the hinted one: the same stream, 1.7-1.8x faster
// on the corpus' tools.tar, for hints stored in 8.4 % of the DEFLATE
// stream's size (zstd -9; with -19, 7.2 %, against which a cut-off of 4 gave
// 1.67x for 5.5 %, 8 1.6x for 4.0 %, 1 1.8x for 8.8 %; bench/goflate_bench.cc).
// Part of the recipe format: changing it changes what stored hints mean.
inline constexpr int kGoFlateHintAfter = 2;

// Streams one raw DEFLATE stream. Memory is bounded (~1 MiB) whatever the input
// size. Not thread-safe; one writer per stream. The output does not depend on
// how the input is split into Write calls (Go's does not either).
class GoFlateWriter {
 public:
  // REQUIRES: IsSupportedLevel(level).
  GoFlateWriter(int level, ByteSink sink);
  ~GoFlateWriter();
  GoFlateWriter(const GoFlateWriter&) = delete;
  GoFlateWriter& operator=(const GoFlateWriter&) = delete;

  static bool IsSupportedLevel(int level);
  static bool SupportsCheckpoints(int level) { return level == -1 || (level >= 4 && level <= 9); }

  // Before the first Write: report a checkpoint at the first block boundary
  // at least `interval` input bytes after the previous one (or the start).
  // Boundaries that Close produces are not reported. No-op for levels without
  // checkpoints.
  void SetCheckpointObserver(uint64_t interval,
                             std::function<void(const GoFlateCheckpoint&)> observer);
  // Before the first Write: append search hints to *out as the stream is
  // encoded (the observer may take *out's contents at each checkpoint: the
  // hints after it belong to the next segment). Levels with checkpoints only.
  void RecordHints(std::string* out);

  chunkstore::Status Write(const uint8_t* data, size_t size);
  // Compresses what is buffered, ends the stream (Go ends it with an empty
  // final stored block) and flushes it to the sink. Write or Close after Close
  // fail (FailedPrecondition, or the sink's error if it failed).
  chunkstore::Status Close();

 private:
  std::unique_ptr<goflate_internal::Compressor> c_;
};

// Streams a gzip member exactly as Go's gzip.NewWriterLevel writes it with no
// Header fields set: mtime 0, no name, XFL 2 at level 9, 4 at level 1 (else
// 0), OS 255; then the DEFLATE stream, CRC-32 and ISIZE.
class GoGzipWriter {
 public:
  // REQUIRES: GoFlateWriter::IsSupportedLevel(level).
  GoGzipWriter(int level, ByteSink sink);
  chunkstore::Status Write(const uint8_t* data, size_t size);
  // Writes the rest of the stream and the trailer. Write or Close after Close
  // fail with FailedPrecondition and write nothing.
  chunkstore::Status Close();

 private:
  ByteSink sink_;
  GoFlateWriter flate_;
  uint32_t crc_ = 0;
  uint32_t size_ = 0;  // mod 2^32, as gzip's ISIZE
  bool header_written_ = false;
  int level_;
};

// One segment of a DEFLATE stream, re-created from a checkpoint alone:
// the bits [from.bit_offset, to.bit_offset) as bytes floor(from.bit_offset/8)
// .. ceil(to.bit_offset/8). Bits of the first and last byte outside the range
// are zero, so consecutive segments concatenate to the stream by OR-ing the
// byte they share when a boundary is not byte aligned. `from` null: the
// stream's start; `to` null: its end (Close). `plain` holds the input from
// from.window_base (0 without `from`) to the end of the input, or at least to
// to.plain_offset + kGoFlateSegmentLookahead. `hints`: the search hints
// recorded for this segment (empty: search in full). Corruption when a hint
// names no possible match. REQUIRES: SupportsCheckpoints.
chunkstore::Result<std::string> GoFlateSegment(int level, const GoFlateCheckpoint* from,
                                               const GoFlateCheckpoint* to, std::string_view plain,
                                               std::string_view hints = {});

// Whole-buffer convenience for tests and small blobs: gzip.NewWriterLevel +
// Write + Close in Go. InvalidArgument for an unsupported level.
chunkstore::Result<std::string> GoGzip(std::string_view data, int level);

// The raw DEFLATE stream alone (flate.NewWriter + Write + Close in Go).
chunkstore::Result<std::string> GoDeflate(std::string_view data, int level);

}  // namespace cofferlayer

#endif  // COFFER_FS_LAYER_GOFLATE_H_
