// gzip (RFC 1952) members: header parsing and a streaming decoder (zlib raw
// inflate) that checks each member's CRC-32 and ISIZE.
#ifndef COFFERLAYER_GZIP_H_
#define COFFERLAYER_GZIP_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "decode.h"

namespace cofferlayer {

struct GzipHeader {
  uint8_t flags = 0;  // FLG: FTEXT 1, FHCRC 2, FEXTRA 4, FNAME 8, FCOMMENT 16
  uint32_t mtime = 0;
  uint8_t xfl = 0;  // 2: slowest/best, 4: fastest (a level hint)
  uint8_t os = 255;
  std::string extra, name, comment;
  size_t length = 0;  // bytes of the header, FHCRC included
};

inline constexpr size_t kMaxGzipHeader = 1 << 20;

// Parses the member header at the start of data. nullopt: more bytes needed.
// Corruption for a wrong magic or method, reserved flag bits, a bad FHCRC, or a
// header longer than kMaxGzipHeader.
Result<std::optional<GzipHeader>> ParseGzipHeader(std::string_view data);

// Decoder for gzip streams (see decode.h for the events).
std::unique_ptr<Decoder> NewGzipDecoder(DecodeSink* sink);

}  // namespace cofferlayer

#endif  // COFFERLAYER_GZIP_H_
