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

// Whole-buffer convenience for tests and small blobs: gzip.NewWriterLevel +
// Write + Close in Go. InvalidArgument for an unsupported level.
chunkstore::Result<std::string> GoGzip(std::string_view data, int level);

// The raw DEFLATE stream alone (flate.NewWriter + Write + Close in Go).
chunkstore::Result<std::string> GoDeflate(std::string_view data, int level);

}  // namespace cofferlayer

#endif  // COFFER_FS_LAYER_GOFLATE_H_
