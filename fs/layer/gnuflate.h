// GnuFlateWriter: a DEFLATE (RFC 1951) encoder whose output is bit-identical
// to GNU gzip 1.12's (gzip(1), Debian 12's /usr/bin/gzip) at levels 1-9.
//
// Why: layers made by `tar c ... | gzip` are pushed as gzip(1) wrote them and
// their digest names those exact bytes; zlib, which shares gzip's algorithm
// family, does not produce the same bytes (different hashing, lookahead and
// block-cut rules). coffer stores the uncompressed tar and re-creates the blob
// by running this encoder again. Written from RFC 1951/1952 and gzip(1)'s
// observed output, tested byte for byte against /usr/bin/gzip
// (gnuflate_test.cc); docs/layers.md ("gzip(1), observed") has the rules.
//
// gzip(1) compresses a pipe and a regular file the same way (its whole-file
// "stored" method is never used), so one encoder serves `gzip file` and
// `... | gzip`; only the header differs, and recipes keep headers raw.
#ifndef COFFER_FS_LAYER_GNUFLATE_H_
#define COFFER_FS_LAYER_GNUFLATE_H_

#include <memory>
#include <string>
#include <string_view>

#include "chunkstore/status.h"

namespace cofferlayer {

namespace gnuflate_internal {
class Deflater;
}

// Streams one raw DEFLATE stream. Memory is bounded (~400 KiB) whatever the
// input size; output lags the input by up to 64 KiB (gzip(1) reads its window
// in full). The output does not depend on how the input is split into Write
// calls. Not thread-safe; one writer per stream.
class GnuFlateWriter {
 public:
  // REQUIRES: IsSupportedLevel(level).
  explicit GnuFlateWriter(int level);
  ~GnuFlateWriter();
  GnuFlateWriter(const GnuFlateWriter&) = delete;
  GnuFlateWriter& operator=(const GnuFlateWriter&) = delete;

  static bool IsSupportedLevel(int level) { return level >= 1 && level <= 9; }
  // The XFL byte gzip(1) writes in its header at `level`: 4 (fastest) at 1,
  // 2 (best) at 9, else 0. Its OS byte is 3 (Unix).
  static int HeaderXfl(int level) { return level == 1 ? 4 : level == 9 ? 2 : 0; }

  // Appends the compressed bytes produced so far to *out.
  chunkstore::Status Write(std::string_view in, std::string* out);
  // Compresses what is buffered and ends the stream (the last block is final
  // and the stream is padded to a byte). Write or Finish after Finish fail
  // with FailedPrecondition.
  chunkstore::Status Finish(std::string* out);

 private:
  std::unique_ptr<gnuflate_internal::Deflater> d_;
};

// Whole-buffer convenience: what `gzip -<level>` writes between its header and
// its trailer. InvalidArgument for an unsupported level.
chunkstore::Result<std::string> GnuDeflate(std::string_view data, int level);

}  // namespace cofferlayer

#endif  // COFFER_FS_LAYER_GNUFLATE_H_
