// Root files: the sealed records that say what the repository holds. Everything a
// root names is live; GC marks from them. docs/format.md §4.
//   roots/blobs/<hex HMAC(name-key, "sha256:<hex>")>   one per blob
//   roots/snapshots/<16 hex id>                        one per snapshot
//   roots/heads/<hex HMAC(name-key, "head:" + set)>    one per writable head
// A root is written tmp -> fsync -> rename -> fsync dir, after the chunks it names
// are durable and indexed.
#ifndef CHUNKSTORE_ROOTS_H_
#define CHUNKSTORE_ROOTS_H_

#include <string>
#include <string_view>
#include <vector>

#include "chunkstore/status.h"
#include "chunkstore/store.h"
#include "format.h"

namespace chunkstore {

enum class RootKind : uint8_t { kBlob = 1, kSnapshot = 2, kHead = 3 };

struct BlobRoot {
  std::string digest;  // "sha256:<hex>"
  uint64_t size = 0;
  std::vector<ChunkRef> chunks;
  std::string encoding;  // empty: the chunks are the blob's bytes (store.h BlobLayout)
  uint64_t stored_size() const;
};

// Snapshots and heads share this layout (a head has an empty id).
struct SnapshotRoot {
  SnapshotInfo info;
  uint64_t tree_len = 0;       // bytes of the encoded tree stream
  std::vector<ChunkRef> tree;  // the tree stream's chunks (RecordKind::kTree)
};

void EncodeBlobRoot(const BlobRoot& r, std::string* out);
Status DecodeBlobRoot(std::string_view in, BlobRoot* r, std::string_view what);
void EncodeSnapshotRoot(const SnapshotRoot& r, std::string* out);
Status DecodeSnapshotRoot(std::string_view in, SnapshotRoot* r, std::string_view what);

// Seals `plain` as the root file `name` ("roots/blobs/…"); the name is bound in.
std::string SealRoot(RootKind kind, std::string_view name, std::string_view plain,
                     const Aead& aead);
// Checks magic and XXH3 (no key needed).
Status VerifyRootChecksum(std::string_view file, std::string_view name);
Status OpenRoot(std::string_view file, std::string_view name, RootKind kind, const Aead& aead,
                std::string* plain);

}  // namespace chunkstore

#endif  // CHUNKSTORE_ROOTS_H_
