// zstd layers: the frame header fields that select encoder parameters, and a
// streaming decoder that reports frame boundaries (see decode.h).
#ifndef COFFERLAYER_ZSTD_LAYER_H_
#define COFFERLAYER_ZSTD_LAYER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "decode.h"

namespace cofferlayer {

struct ZstdFrameHeader {
  bool single_segment = false;
  bool checksum = false;
  bool has_content_size = false;
  uint64_t content_size = 0;
  uint8_t window_log = 0;  // 0 when single_segment (the window is the content)
  uint32_t dict_id = 0;
  size_t length = 0;  // bytes of magic + frame header
};

// Parses the frame header at the start of data (RFC 8878 3.1.1). nullopt: more
// bytes needed. Corruption for another magic or a reserved bit set.
Result<std::optional<ZstdFrameHeader>> ParseZstdFrameHeader(std::string_view data);

std::unique_ptr<Decoder> NewZstdDecoder(DecodeSink* sink);

}  // namespace cofferlayer

#endif  // COFFERLAYER_ZSTD_LAYER_H_
