// libFuzzer target: a record from a hostile pack (header, chunk table, checksum,
// AEAD body, zstd frame). Must never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string>

#include "format.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const chunkstore::Aead aead(std::string(32, 'k'));
  std::string_view in(reinterpret_cast<const char*>(data), size);
  chunkstore::RecordMeta meta;
  if (!chunkstore::DecodeRecordMeta(in, &meta, "fuzz").ok()) return 0;
  if (meta.header.RecordSize() > in.size()) return 0;
  if (!chunkstore::VerifyRecordChecksum(in, meta, "fuzz").ok()) return 0;
  std::string plain;
  (void)chunkstore::OpenRecord(in, meta, aead, &plain, "fuzz");
  return 0;
}
