// Internals of gnuflate shared by its .cc files: the output bit writer and the
// block encoder (token buffer, Huffman trees, block-type choice). Not part of
// the library's interface; see gnuflate.h and the overview atop gnuflate.cc.
#ifndef COFFER_FS_LAYER_GNUFLATE_INTERNAL_H_
#define COFFER_FS_LAYER_GNUFLATE_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace cofferlayer {
namespace gnuflate_internal {

constexpr int kLiterals = 256;
constexpr int kEndBlock = 256;
constexpr int kLengthCodes = 29;
constexpr int kLCodes = kLiterals + 1 + kLengthCodes;  // 286
constexpr int kDCodes = 30;
constexpr int kBlCodes = 19;
constexpr int kHeapSize = 2 * kLCodes + 1;
constexpr int kMaxBits = 15;
constexpr int kMaxBlBits = 7;
// gzip(1)'s token buffer: a block is cut when it holds kLitBufSize - 1 tokens.
constexpr unsigned kLitBufSize = 0x8000;
constexpr unsigned kDistBufSize = 0x8000;

inline constexpr uint8_t kExtraLBits[kLengthCodes] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                                      2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
inline constexpr uint8_t kExtraDBits[kDCodes] = {0, 0, 0,  0,  1,  1,  2,  2,  3,  3,
                                                 4, 4, 5,  5,  6,  6,  7,  7,  8,  8,
                                                 9, 9, 10, 10, 11, 11, 12, 12, 13, 13};

// Length and distance code tables (RFC 1951 3.2.5). Length 258 takes code 285.
struct CodeTables {
  uint8_t length_code[256] = {};  // by length - 3
  uint8_t dist_code[512] = {};    // by distance - 1: < 256 direct, else 256 + (d >> 7)
  uint16_t base_length[kLengthCodes] = {};
  uint16_t base_dist[kDCodes] = {};
};
constexpr CodeTables MakeCodeTables() {
  CodeTables t;
  int length = 0, code = 0;
  for (; code < kLengthCodes - 1; ++code) {
    t.base_length[code] = static_cast<uint16_t>(length);
    for (int n = 0; n < (1 << kExtraLBits[code]); ++n) t.length_code[length++] = code;
  }
  t.base_length[code] = 255;
  t.length_code[255] = static_cast<uint8_t>(code);
  int dist = 0;
  for (code = 0; code < 16; ++code) {
    t.base_dist[code] = static_cast<uint16_t>(dist);
    for (int n = 0; n < (1 << kExtraDBits[code]); ++n) t.dist_code[dist++] = code;
  }
  dist >>= 7;
  for (; code < kDCodes; ++code) {
    t.base_dist[code] = static_cast<uint16_t>(dist << 7);
    for (int n = 0; n < (1 << (kExtraDBits[code] - 7)); ++n) t.dist_code[256 + dist++] = code;
  }
  return t;
}
inline constexpr CodeTables kCodes = MakeCodeTables();

// LSB-first bit packer (RFC 1951 3.1.1) appending to a caller's string.
class BitWriter {
 public:
  void set_out(std::string* out) { out_ = out; }
  // REQUIRES: n <= 16 and value < 2^n.
  void Put(uint32_t value, int n) {
    acc_ |= static_cast<uint64_t>(value) << nbits_;
    nbits_ += n;
    if (nbits_ >= 32) {
      char b[4] = {static_cast<char>(acc_), static_cast<char>(acc_ >> 8),
                   static_cast<char>(acc_ >> 16), static_cast<char>(acc_ >> 24)};
      out_->append(b, 4);
      acc_ >>= 32;
      nbits_ -= 32;
    }
  }
  // Pads with zero bits to a byte boundary (gzip's bi_windup).
  void AlignToByte() {
    while (nbits_ > 0) {
      out_->push_back(static_cast<char>(acc_));
      acc_ >>= 8;
      nbits_ = nbits_ > 8 ? nbits_ - 8 : 0;
    }
    acc_ = 0;
  }
  // REQUIRES: byte aligned.
  void Append(const uint8_t* p, size_t n) { out_->append(reinterpret_cast<const char*>(p), n); }

 private:
  std::string* out_ = nullptr;
  uint64_t acc_ = 0;
  int nbits_ = 0;
};

// One Huffman tree being built: frequencies, then bit lengths and codes, for
// `elems` leaves and the internal nodes after them.
struct Tree {
  uint32_t freq[kHeapSize];
  uint16_t code[kHeapSize];
  uint16_t len[kHeapSize + 1];  // +1: scan's guard after the last code
  uint16_t dad[kHeapSize];
  int max_code = 0;  // largest leaf with a non-zero frequency, after Build
};

// Collects the tokens of a block and writes the block the way gzip(1)'s
// trees.c does: dynamic trees built with its heap and depth tie-break and its
// length-limiting fix-up, and stored, fixed or dynamic chosen on its bit
// counts (fixed wins ties; stored needs its 4 length bytes to fit too).
class BlockEncoder {
 public:
  explicit BlockEncoder(int level);

  // ct_tally: records a literal or a match (distance 1..32768, length 3..258).
  // `in_length`: input bytes since the block start, for the early-cut
  // heuristic. Returns true when the block must be flushed now.
  bool TallyLiteral(uint8_t c, uint64_t in_length) {
    lit_[last_lit_] = c;
    dist_[last_lit_++] = 0;
    ++ltree_.freq[c];
    return AfterTally(in_length);
  }
  bool TallyMatch(unsigned distance, unsigned length, uint64_t in_length) {
    unsigned lc = length - 3;
    lit_[last_lit_] = static_cast<uint8_t>(lc);
    dist_[last_lit_++] = static_cast<uint16_t>(distance);
    ++ltree_.freq[kCodes.length_code[lc] + kLiterals + 1];
    ++dtree_.freq[DistCode(distance - 1)];
    ++last_dist_;
    return AfterTally(in_length);
  }

  // Writes the tallied tokens as one block and starts a new one. `stored`
  // holds the block's input (stored_len bytes) or is null when gzip(1) no
  // longer has it in its window (then a stored block is not an option).
  void FlushBlock(const uint8_t* stored, uint64_t stored_len, bool eof, BitWriter* bits);

  static unsigned DistCode(unsigned d) {
    return d < 256 ? kCodes.dist_code[d] : kCodes.dist_code[256 + (d >> 7)];
  }

 private:
  struct Desc;
  bool AfterTally(uint64_t in_length);
  void InitBlock();
  void BuildTree(Tree* t, const Desc& d);
  void DownHeap(const Tree& t, int k);
  void GenBitLengths(Tree* t, const Desc& d);
  void GenCodes(Tree* t);
  void ScanTree(Tree* t, int max_code);
  void SendTree(const Tree& t, int max_code, BitWriter* bits);
  int BuildBitLengthTree();
  void CompressBlock(const uint16_t* lcode, const uint16_t* llen, const uint16_t* dcode,
                     const uint16_t* dlen, BitWriter* bits);

  const int level_;
  Tree ltree_, dtree_, bltree_;
  uint8_t lit_[kLitBufSize];    // literal byte, or match length - 3
  uint16_t dist_[kLitBufSize];  // 0 for a literal, else the match distance
  unsigned last_lit_ = 0, last_dist_ = 0;
  uint64_t opt_len_ = 0, static_len_ = 0;  // bits, wrapping as gzip's ulg does
  int heap_[kHeapSize];
  int heap_len_ = 0, heap_max_ = 0;
  uint8_t depth_[kHeapSize];
  uint16_t bl_count_[kMaxBits + 1];
};

}  // namespace gnuflate_internal
}  // namespace cofferlayer

#endif  // COFFER_FS_LAYER_GNUFLATE_INTERNAL_H_
