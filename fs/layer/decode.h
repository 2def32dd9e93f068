// Decoding a layer blob as it arrives: which compression it uses, and a
// streaming decoder that reports, for each gzip member or zstd frame, the bytes
// a recipe keeps raw, the bytes an encoder must reproduce, and the plain data.
#ifndef COFFERLAYER_DECODE_H_
#define COFFERLAYER_DECODE_H_

#include <memory>
#include <string>
#include <string_view>

#include "chunkstore/status.h"

namespace cofferlayer {

using chunkstore::Result;
using chunkstore::Status;

enum class LayerCompression : uint8_t { kTar = 0, kGzip = 1, kZstd = 2 };
const char* CompressionName(LayerCompression c);

// From the first bytes of a blob (4 are enough): gzip magic 1f 8b 08, zstd
// magic 28 b5 2f fd, anything else is taken as a plain tar.
LayerCompression DetectCompression(std::string_view head);

// Events of a decoder, in stream order. Per member (a gzip member, a zstd
// frame): OnMemberBegin(header kept raw; empty for zstd, whose frame header
// the encoder writes), then OnCompressed pieces (what an encoder must
// reproduce) interleaved with the OnPlain pieces decoded from them (compressed
// bytes always arrive before the plain bytes they decode to), then
// OnMemberEnd(trailer kept raw; empty for zstd). After the last member,
// OnTail with any bytes that do not start another member.
class DecodeSink {
 public:
  virtual ~DecodeSink() = default;
  virtual Status OnMemberBegin(std::string_view header) = 0;
  virtual Status OnCompressed(std::string_view bytes) = 0;
  virtual Status OnPlain(std::string_view bytes) = 0;
  virtual Status OnMemberEnd(std::string_view trailer) = 0;
  virtual Status OnTail(std::string_view bytes) = 0;
};

// A streaming decoder; Feed pieces of any size, then Finish. Errors are
// Corruption naming the member and the offset; they are sticky.
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual Status Feed(std::string_view in) = 0;
  virtual Status Finish() = 0;
};

namespace internal {
// The decoders' common loop: Feed hands the input to Step until it is all
// consumed, Finish calls End; the first error sticks.
class SteppingDecoder : public Decoder {
 public:
  Status Feed(std::string_view in) final;
  Status Finish() final;

 protected:
  virtual Status Step(std::string_view& in) = 0;  // consumes a prefix of in
  virtual Status End() = 0;

 private:
  Status error_;
};
}  // namespace internal

// For kGzip and kZstd. sink must outlive the decoder.
Result<std::unique_ptr<Decoder>> NewDecoder(LayerCompression c, DecodeSink* sink);

}  // namespace cofferlayer

#endif  // COFFERLAYER_DECODE_H_
