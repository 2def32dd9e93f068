// Options for creating and opening a repository.
#ifndef CHUNKSTORE_OPTIONS_H_
#define CHUNKSTORE_OPTIONS_H_

#include <cstdint>
#include <string>

namespace chunkstore {

class Env;

// Fixed at `coffer init`, stored in the repository's config.
struct RepoParams {
  uint32_t chunk_min = 4 * 1024;
  uint32_t chunk_avg = 16 * 1024;  // power of two
  uint32_t chunk_max = 64 * 1024;
  int compression_level = 3;      // zstd level; 0 disables compression
  uint32_t frame_size = 1 << 20;  // new chunks are compressed together up to this size
  uint32_t pack_size = 32 << 20;  // a pack is sealed once it reaches this size
};

// argon2id cost for new keyslots.
struct KeyCost {
  uint32_t iterations = 4;
  uint32_t memory_kib = 64 * 1024;
  uint32_t parallel = 1;
};

struct OpenOptions {
  Env* env = nullptr;      // nullptr: Env::Default()
  bool read_only = false;  // no lock, RocksDB opened read-only, no writes
  // A real local directory for the two things that bypass Env: the RocksDB index
  // (<local_dir>/index) and the LUKS2 header (<local_dir>/luks2.hdr). Empty means
  // the repository directory itself (index/ and keys/luks2.hdr). Tests that run the
  // repository on an in-memory Env point this at a temporary directory.
  std::string local_dir;
  // Retry the writer lock for this long before failing with "busy".
  uint32_t lock_wait_ms = 0;
  size_t cache_bytes = 64 << 20;  // decompressed-frame cache budget
  int threads = 2;                // compression/encryption workers while writing
};

}  // namespace chunkstore

#endif  // CHUNKSTORE_OPTIONS_H_
