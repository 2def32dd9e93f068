// libFuzzer target: root files (blob and snapshot roots) and pack headers and
// trailers, as read from a repository directory someone else can write to.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "format.h"
#include "roots.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const chunkstore::Aead aead(std::string(32, 'r'));
  std::string_view in(reinterpret_cast<const char*>(data), size);
  chunkstore::BlobRoot b;
  (void)chunkstore::DecodeBlobRoot(in, &b, "fuzz");
  chunkstore::SnapshotRoot s;
  (void)chunkstore::DecodeSnapshotRoot(in, &s, "fuzz");
  std::string plain;
  (void)chunkstore::OpenRoot(in, "roots/blobs/x", chunkstore::RootKind::kBlob, aead, &plain);
  chunkstore::PackId id;
  (void)chunkstore::DecodePackHeader(in, &id, "fuzz");
  if (size >= chunkstore::kTrailerFixedSize) {
    auto n = chunkstore::DecodeTrailerTail(in.substr(size - chunkstore::kTrailerFixedSize), "fuzz");
    if (n.ok() && 12ull * *n + chunkstore::kTrailerFixedSize <= size) {
      std::vector<chunkstore::PackRecordPos> pos;
      (void)chunkstore::DecodeTrailerEntries(
          in.substr(size - 12ull * *n - chunkstore::kTrailerFixedSize), *n, &pos, "fuzz");
    }
  }
  return 0;
}
