#include "decode.h"

#include "gzip.h"
#include "zstd_layer.h"

namespace cofferlayer {

const char* CompressionName(LayerCompression c) {
  switch (c) {
    case LayerCompression::kTar:
      return "tar";
    case LayerCompression::kGzip:
      return "gzip";
    case LayerCompression::kZstd:
      return "zstd";
  }
  return "unknown";
}

LayerCompression DetectCompression(std::string_view head) {
  if (head.size() >= 3 && head.substr(0, 3) == std::string_view("\x1f\x8b\x08", 3)) {
    return LayerCompression::kGzip;
  }
  if (head.size() >= 4 && head.substr(0, 4) == std::string_view("\x28\xb5\x2f\xfd", 4)) {
    return LayerCompression::kZstd;
  }
  return LayerCompression::kTar;
}

namespace internal {

Status SteppingDecoder::Feed(std::string_view in) {
  while (error_.ok() && !in.empty()) error_ = Step(in);
  return error_;
}

Status SteppingDecoder::Finish() {
  if (error_.ok()) error_ = End();
  return error_;
}

}  // namespace internal

Result<std::unique_ptr<Decoder>> NewDecoder(LayerCompression c, DecodeSink* sink) {
  switch (c) {
    case LayerCompression::kGzip:
      return NewGzipDecoder(sink);
    case LayerCompression::kZstd:
      return NewZstdDecoder(sink);
    case LayerCompression::kTar:
      break;
  }
  return Status::InvalidArgument(std::string("no decoder for a ") + CompressionName(c) + " layer");
}

}  // namespace cofferlayer
