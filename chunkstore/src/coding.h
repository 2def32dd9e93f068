// Little-endian fixed-width and LEB128 varint encoding (docs/format.md §1).
#ifndef CHUNKSTORE_CODING_H_
#define CHUNKSTORE_CODING_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace chunkstore {

inline void PutFixed16(std::string* d, uint16_t v) { d->append(reinterpret_cast<char*>(&v), 2); }
inline void PutFixed32(std::string* d, uint32_t v) { d->append(reinterpret_cast<char*>(&v), 4); }
inline void PutFixed64(std::string* d, uint64_t v) { d->append(reinterpret_cast<char*>(&v), 8); }
inline uint16_t DecodeFixed16(const char* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t DecodeFixed32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline uint64_t DecodeFixed64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "formats are little-endian");

inline void PutVarint64(std::string* d, uint64_t v) {
  while (v >= 0x80) {
    d->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  d->push_back(static_cast<char>(v));
}
inline void PutVarsint64(std::string* d, int64_t v) {  // zigzag
  PutVarint64(d, (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63));
}
inline void PutLengthPrefixed(std::string* d, std::string_view s) {
  PutVarint64(d, s.size());
  d->append(s);
}

// Readers consume from the front of *in; false on truncation or overlong input.
inline bool GetVarint64(std::string_view* in, uint64_t* v) {
  uint64_t r = 0;
  for (int shift = 0; shift <= 63 && !in->empty(); shift += 7) {
    uint8_t b = static_cast<uint8_t>((*in)[0]);
    in->remove_prefix(1);
    r |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}
inline bool GetVarsint64(std::string_view* in, int64_t* v) {
  uint64_t u;
  if (!GetVarint64(in, &u)) return false;
  *v = static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1));
  return true;
}
inline bool GetLengthPrefixed(std::string_view* in, std::string_view* s) {
  uint64_t n;
  if (!GetVarint64(in, &n) || n > in->size()) return false;
  *s = in->substr(0, n);
  in->remove_prefix(n);
  return true;
}
inline bool GetBytes(std::string_view* in, size_t n, std::string_view* s) {
  if (n > in->size()) return false;
  *s = in->substr(0, n);
  in->remove_prefix(n);
  return true;
}

}  // namespace chunkstore

#endif  // CHUNKSTORE_CODING_H_
