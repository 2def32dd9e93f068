// FastCDC content-defined chunking (Xia et al., "The Design of Fast Content-Defined
// Chunking for Data Deduplication Based Storage Systems", TPDS 2020).
//
// Normalized chunking (level 2: a stricter mask below the average size, a looser
// one above it) and the "two bytes per step" roll of the 2020 paper. The gear table
// is derived from a per-repository secret seed so chunk boundaries (and therefore
// chunk sizes) reveal nothing about content to someone without the key.
#ifndef CHUNKSTORE_FASTCDC_H_
#define CHUNKSTORE_FASTCDC_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace chunkstore {

struct ChunkerParams {
  uint32_t min_size = 4 * 1024;
  uint32_t avg_size = 16 * 1024;  // must be a power of two
  uint32_t max_size = 64 * 1024;
  // True when min < avg < max, avg is a power of two in [256, 16 MiB], max <= 64 MiB.
  bool Valid() const;
};

using GearTable = std::array<uint64_t, 256>;

// Expands a secret seed (any length, normally 32 bytes from HKDF) into a gear table.
// Deterministic: the same seed always gives the same table.
GearTable GearTableFromSeed(std::string_view seed);

class FastCdc {
 public:
  FastCdc(const ChunkerParams& params, const GearTable& gear);

  // Length of the chunk that starts at data[0], looking at data[0, n).
  //  - a cut point found in the data: its length (min_size <= len <= max_size);
  //  - none found and n >= max_size: max_size;
  //  - none found, n < max_size, and !eof: 0 ("give me more data");
  //  - none found, n < max_size, and eof: n (the tail; may be < min_size).
  // n == 0 returns 0. Pure function of (data, params, gear): thread-safe.
  size_t NextChunk(const uint8_t* data, size_t n, bool eof) const;

  const ChunkerParams& params() const { return params_; }

 private:
  ChunkerParams params_;
  GearTable gear_;
  GearTable gear_ls_;  // gear_[i] << 1, for the two-bytes-per-step roll
  uint64_t mask_s_, mask_l_, mask_s_ls_, mask_l_ls_;
};

}  // namespace chunkstore

#endif  // CHUNKSTORE_FASTCDC_H_
