// On-disk structures of packs and records, with EncodeTo/DecodeFrom.
// Byte-level grammar: docs/format.md §2 (record) and §3 (pack).
#ifndef CHUNKSTORE_FORMAT_H_
#define CHUNKSTORE_FORMAT_H_

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "byte_buffer.h"
#include "chunkstore/status.h"
#include "chunkstore/store.h"
#include "crypto.h"

namespace chunkstore {

static_assert(std::is_same_v<ChunkId, Hash256>);

enum class RecordKind : uint8_t { kData = 1, kTree = 2 };
constexpr uint8_t kRecordFlagZstd = 1;

// A record: one sealed frame of one or more consecutive chunks.
//   header (16) | chunk table (36 * n) | body = nonce | ciphertext | tag | xxh3 (8)
struct RecordHeader {
  static constexpr size_t kSize = 16;
  static constexpr size_t kTableEntrySize = 36;
  static constexpr size_t kMaxChunks = 4096;
  RecordKind kind = RecordKind::kData;
  uint8_t flags = 0;
  uint16_t n_chunks = 0;
  uint32_t plain_len = 0;  // sum of the chunk lengths
  uint32_t body_len = 0;   // sealed body length, nonce and tag included
  // Bytes from the start of the header to the end of the checksum.
  size_t RecordSize() const { return kSize + kTableEntrySize * n_chunks + body_len + 8; }
};

// Header and chunk table, decoded.
struct RecordMeta {
  RecordHeader header;
  std::vector<ChunkRef> chunks;
};

// Seals chunks (concatenated in `plain`, lengths in `chunks`) into a record appended
// to *out. Compresses with zstd at `level` unless that saves less than 1/32.
void EncodeRecord(RecordKind kind, const std::vector<ChunkRef>& chunks, std::string_view plain,
                  int zstd_level, const Aead& aead, std::string* out);

// Decodes header and table from the front of `in` (at least the header and table
// bytes). Corruption names `what` (e.g. "record at packs/3f/3f9a…+4096").
Status DecodeRecordMeta(std::string_view in, RecordMeta* meta, std::string_view what);

// Verifies the XXH3 checksum of a whole record (no key needed).
Status VerifyRecordChecksum(std::string_view record, const RecordMeta& meta, std::string_view what);

// Decrypts and decompresses a whole record into the frame plaintext.
Status OpenRecord(std::string_view record, const RecordMeta& meta, const Aead& aead,
                  std::string* plain, std::string_view what);
// The same into *plain (resized to meta.header.plain_len once that length is
// authenticated); *scratch holds the decrypted zstd frame of a compressed
// record. Neither is zero-filled.
Status OpenRecord(std::string_view record, const RecordMeta& meta, const Aead& aead,
                  ByteBuffer* plain, ByteBuffer* scratch, std::string_view what);

// Pack file: header (32) | records | trailer.
//   trailer = n × {u64 offset, u32 length} | u32 n | u64 xxh3(entries|n) | "COFFTRLR"
constexpr char kPackMagic[8] = {'C', 'O', 'F', 'F', 'P', 'A', 'C', 'K'};
constexpr char kTrailerMagic[8] = {'C', 'O', 'F', 'F', 'T', 'R', 'L', 'R'};
constexpr uint32_t kPackVersion = 1;
constexpr size_t kPackHeaderSize = 32;
constexpr size_t kTrailerFixedSize = 4 + 8 + 8;

using PackId = std::array<uint8_t, 16>;

struct PackRecordPos {
  uint64_t offset = 0;
  uint32_t length = 0;
};

std::string EncodePackHeader(const PackId& id);
Status DecodePackHeader(std::string_view in, PackId* id, std::string_view what);
std::string EncodePackTrailer(const std::vector<PackRecordPos>& records);
// `tail` holds the last kTrailerFixedSize bytes: returns the record count.
Result<uint32_t> DecodeTrailerTail(std::string_view tail, std::string_view what);
// `entries` holds n × 12 bytes followed by the fixed tail.
Status DecodeTrailerEntries(std::string_view trailer, uint32_t n, std::vector<PackRecordPos>* out,
                            std::string_view what);

// "packs/3f/3f9a…" for a pack id.
std::string PackPath(const PackId& id);

}  // namespace chunkstore

#endif  // CHUNKSTORE_FORMAT_H_
