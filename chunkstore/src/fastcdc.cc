// FastCDC, as in Xia et al., TPDS 2020.
//
// Overview. A gear hash fp = (fp << 1) + gear[byte] is rolled over the bytes of a
// candidate chunk; a cut is declared before byte i when (fp & mask) == 0 after byte i
// has been hashed. Because each step shifts left by one, bit k of fp depends only on
// the last k + 1 bytes, so a mask whose highest bit is 47 gives a 48-byte window.
//
//  - Sub-minimum skipping: the first min_size bytes of a chunk are not hashed at all,
//    so no cut can fall before min_size. The window is far shorter than min_size, so
//    starting from fp = 0 there loses nothing.
//  - Normalized chunking, level 2: between min_size and avg_size the mask has
//    log2(avg) + 2 one-bits (cuts are 4x less likely than 1/avg), after avg_size it
//    has log2(avg) - 2 (4x more likely). This squeezes the size distribution
//    towards avg_size.
//  - Rolling two bytes per step (Algorithm 2): with gear_ls = gear << 1,
//      fp' = (fp << 2) + gear_ls[a]  ==  ((fp << 1) + gear[a]) << 1,
//    i.e. the true hash after byte a, shifted left by one, which we test against
//    mask << 1; then fp' + gear[b] is exactly the true hash after byte b. One
//    shift (an LEA on x86) and two adds per two bytes. The masks never use bit 63,
//    so testing the shifted hash against the shifted mask is exact: results are
//    identical to the one-byte-per-step loop whatever the pairing phase is.
//
// Masks spread their one-bits over bits [0, 47] rather than using the low bits
// contiguously, as the paper recommends: the top bit fixes the window length and
// the spacing makes the cut condition depend on bytes across the whole window.
// The loose mask is a subset of the strict one.
//
// Cut convention (the paper's): NextChunk returns the index of the byte whose hash
// matched, so that byte starts the next chunk.
#include "fastcdc.h"

#include <openssl/sha.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <string>

namespace chunkstore {
namespace {

constexpr uint32_t kMinAvgSize = 256;
constexpr uint32_t kMaxAvgSize = 16u << 20;
constexpr uint32_t kMaxMaxSize = 64u << 20;

// Highest bit any mask uses. Must stay below 63 so that mask << 1 loses nothing.
constexpr int kMaskTopBit = 47;

// Keeps `bits` of the one-bits of `from`, spread evenly and always including its
// highest one. REQUIRES: 0 < bits <= popcount(from).
uint64_t SpreadMask(uint64_t from, int bits) {
  int positions[64];
  int count = 0;
  for (int b = 63; b >= 0; --b) {
    if ((from >> b) & 1) positions[count++] = b;
  }
  assert(bits > 0 && bits <= count);
  uint64_t mask = 0;
  for (int k = 0; k < bits; ++k) mask |= uint64_t{1} << positions[k * count / bits];
  return mask;
}

// Rolls the hash over data[i, end) and returns the index of the first byte after
// which (fp & mask) == 0, or `end` when there is none; *fp carries the hash across
// calls so the two normalization regions form one continuous roll. The hot loop.
inline size_t Scan(const uint8_t* data, size_t i, size_t end, uint64_t mask, uint64_t mask_ls,
                   const uint64_t* gear, const uint64_t* gear_ls, uint64_t* fp) {
  uint64_t h = *fp;
  for (; i + 2 <= end; i += 2) {
    h = (h << 2) + gear_ls[data[i]];  // true hash after data[i], shifted left by one
    if ((h & mask_ls) == 0) return i;
    h += gear[data[i + 1]];  // true hash after data[i + 1]
    if ((h & mask) == 0) return i + 1;
  }
  // An odd byte left over (odd min_size, n or max_size): one plain step keeps the
  // hash in its unshifted form for the next region.
  if (i < end) {
    h = (h << 1) + gear[data[i]];
    if ((h & mask) == 0) return i;
  }
  *fp = h;
  return end;
}

}  // namespace

bool ChunkerParams::Valid() const {
  const bool avg_ok =
      std::has_single_bit(avg_size) && avg_size >= kMinAvgSize && avg_size <= kMaxAvgSize;
  return avg_ok && min_size < avg_size && avg_size < max_size && max_size <= kMaxMaxSize;
}

// Block j of the table is SHA-256(seed || le32(j)); each 32-byte digest gives four
// little-endian uint64 entries, so 64 blocks fill the 256 entries. Counter mode keeps
// it a pure function of the seed, independent of the host's endianness.
GearTable GearTableFromSeed(std::string_view seed) {
  GearTable table{};
  std::string input(seed);
  input.resize(seed.size() + 4);
  constexpr size_t kPerBlock = SHA256_DIGEST_LENGTH / sizeof(uint64_t);
  for (uint32_t block = 0; block < table.size() / kPerBlock; ++block) {
    for (int b = 0; b < 4; ++b) input[seed.size() + b] = static_cast<char>(block >> (8 * b));
    uint8_t digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const uint8_t*>(input.data()), input.size(), digest);
    for (size_t w = 0; w < kPerBlock; ++w) {
      uint64_t v = 0;
      for (int b = 7; b >= 0; --b) v = (v << 8) | digest[w * 8 + b];
      table[block * kPerBlock + w] = v;
    }
  }
  return table;
}

FastCdc::FastCdc(const ChunkerParams& params, const GearTable& gear)
    : params_(params), gear_(gear) {
  assert(params_.Valid());
  for (size_t i = 0; i < gear_.size(); ++i) gear_ls_[i] = gear_[i] << 1;
  const int avg_bits = std::countr_zero(params_.avg_size);
  // mask_l_ is a subset of mask_s_ (as in the paper's masks): a position that
  // matches the strict mask also matches the loose one, so when an insertion moves
  // a cut from below avg_size to above it, the cut survives and chunking resyncs.
  constexpr uint64_t kWindowBits = (uint64_t{1} << (kMaskTopBit + 1)) - 1;
  mask_s_ = SpreadMask(kWindowBits, avg_bits + 2);
  mask_l_ = SpreadMask(mask_s_, avg_bits - 2);
  mask_s_ls_ = mask_s_ << 1;
  mask_l_ls_ = mask_l_ << 1;
}

size_t FastCdc::NextChunk(const uint8_t* data, size_t n, bool eof) const {
  // Byte `start` is the first that may begin the next chunk. At least 1 so that a
  // found cut is never 0, which would read as "give me more data".
  const size_t start = std::max<size_t>(params_.min_size, 1);
  if (n <= start) return eof ? n : 0;
  const size_t end = std::min<size_t>(n, params_.max_size);
  const size_t normal = std::min<size_t>(end, params_.avg_size);  // > start
  uint64_t fp = 0;
  size_t cut = Scan(data, start, normal, mask_s_, mask_s_ls_, gear_.data(), gear_ls_.data(), &fp);
  if (cut < normal) return cut;
  cut = Scan(data, normal, end, mask_l_, mask_l_ls_, gear_.data(), gear_ls_.data(), &fp);
  if (cut < end) return cut;
  if (end == params_.max_size) return end;
  // No cut in data[0, n) with n < max_size: a later byte might still cut, unless
  // the stream has ended and this is the tail.
  return eof ? n : 0;
}

}  // namespace chunkstore
