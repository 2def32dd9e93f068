// The encoders a layer recipe can name, behind one streaming interface. The
// same factory serves identification (re-encode and compare) and
// reconstruction, so a recipe that was verified once reproduces the same bytes.
//
//  kZlib  raw DEFLATE from zlib's deflate() with the given level, windowBits,
//         memLevel and strategy, one stream, Z_NO_FLUSH then Z_FINISH.
//  kPigz  pigz's layout driven through zlib: the input cut into block_size
//         pieces, each compressed by a fresh deflate state primed with the
//         previous 32 KiB as dictionary; a piece that is not the last ends with
//         Z_BLOCK and is padded to a byte boundary (empty static blocks if an
//         even number of bits is pending, an empty stored block if odd).
//         independent (pigz -i): no dictionary, and a non-last piece ends
//         with Z_SYNC_FLUSH then Z_FULL_FLUSH (two empty stored blocks).
//  kZstd  one zstd frame from libzstd at the given level with the frame
//         parameters of the original (checksum, content size, window log),
//         single-threaded or in ZSTDMT mode with one worker.
//  kGoFlate  Go 1.19's compress/flate at the given level (goflate.h): what
//         docker's compress/gzip writes.
//  kGnuGzip  GNU gzip 1.12's gzip(1) at the given level 1-9 (gnuflate.h):
//         what `tar c ... | gzip` and `gzip file` write.
//  kTokens  any other DEFLATE stream, written back from its recorded tokens
//         (tokens.h); NewEncoder refuses it: the writer needs the member's
//         frames (Reconstructor::SetSideReader).
#ifndef COFFERLAYER_ENCODERS_H_
#define COFFERLAYER_ENCODERS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "chunkstore/status.h"
#include "goflate.h"

namespace cofferlayer {

using chunkstore::Result;
using chunkstore::Status;

enum class EncoderId : uint8_t {
  kZlib = 1,
  kPigz = 2,
  kZstd = 3,
  kGoFlate = 4,
  kGnuGzip = 5,
  kTokens = 6,  // no encoder: the stream's own tokens (tokens.h), in frames beside the tar
};

struct EncoderSpec {
  EncoderId id = EncoderId::kZlib;
  int32_t level = 6;
  // kZlib/kPigz: zlib parameters (window_bits is the positive raw value).
  uint8_t window_bits = 15, mem_level = 8, strategy = 0;
  uint32_t block_size = 0;   // kPigz: input bytes per block
  bool independent = false;  // kPigz: no dictionary from the previous block (pigz -i)
  // kZstd: frame parameters. window_log 0 = libzstd's choice for the level.
  bool checksum = false;
  bool content_size = false;  // pledge the source size (it is then written)
  uint8_t window_log = 0;
  // kZstd: libzstd's multithreaded mode (ZSTDMT, what the zstd CLI uses: it
  // cuts the input into jobs). Its output is the same for any worker count.
  bool multithread = false;
  // kZstd: long distance matching (the CLI's --long[=wlog]: with window_log).
  bool long_distance = false;
  uint64_t source_size = 0;  // the uncompressed size, pledged when content_size

  bool operator==(const EncoderSpec&) const = default;
  std::string ToString() const;  // "zlib level 6", "pigz level 6 block 131072", ...
};

// The encoder's name alone: "zlib", "pigz", "zstd", "go-flate", "gzip(1)",
// "deflate tokens" (ToString's first words; `coffer stats` groups layers by it).
std::string EncoderName(EncoderId id);

// A streaming encoder: Write appends any output produced so far to *out.
// Deterministic: the same input gives the same bytes however it is split.
class Encoder {
 public:
  virtual ~Encoder() = default;
  virtual Status Write(std::string_view in, std::string* out) = 0;
  virtual Status Finish(std::string* out) = 0;
};

// InvalidArgument for parameters the library would refuse.
Result<std::unique_ptr<Encoder>> NewEncoder(const EncoderSpec& spec);

// A goflate encoder that also appends its checkpoints, one every `interval`
// plain bytes, to *checkpoints (REQUIRES GoFlateWriter::SupportsCheckpoints),
// and with `hints` each segment's search hints to *hints (one more than
// checkpoints, complete after Finish).
std::unique_ptr<Encoder> NewCheckpointingGoFlate(int level, uint64_t interval,
                                                 std::vector<GoFlateCheckpoint>* checkpoints,
                                                 std::vector<std::string>* hints = nullptr);

}  // namespace cofferlayer

#endif  // COFFERLAYER_ENCODERS_H_
