// Internals of goflate shared by its .cc files: tokens, the bit writer, the
// block encoder (Huffman codes and block-type choice) and the level-1 matcher.
// Not part of the library's interface; see goflate.h and the rules atop
// goflate.cc.
#ifndef COFFER_FS_LAYER_GOFLATE_INTERNAL_H_
#define COFFER_FS_LAYER_GOFLATE_INTERNAL_H_

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace cofferlayer {
namespace goflate_internal {

constexpr int kWindowSize = 1 << 15;
constexpr int kWindowMask = kWindowSize - 1;
constexpr int kMinMatch = 4;
constexpr int kMaxMatch = 258;
constexpr int kMaxStoreBlock = 65535;
constexpr size_t kMaxTokens = 1 << 14;
constexpr uint32_t kHashMul = 0x1e35a7bd;  // both matchers' hashes
constexpr int kNumLit = 286;
constexpr int kNumDist = 30;
constexpr int kNumCodegen = 19;
constexpr int kEndBlock = 256;

// Tokens: a literal byte, or kMatchFlag | (length-3) << 16 | (distance-1).
constexpr uint32_t kMatchFlag = 1u << 31;
inline uint32_t MatchToken(int length, int distance) {
  return kMatchFlag | uint32_t(length - 3) << 16 | uint32_t(distance - 1);
}

inline uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Length of the common prefix of a and b, at most max; reads 8 bytes at a
// time, never past a+max or b+max.
inline int MatchLen(const uint8_t* a, const uint8_t* b, int max) {
  int n = 0;
  while (n + 8 <= max) {
    uint64_t x, y;
    std::memcpy(&x, a + n, 8);
    std::memcpy(&y, b + n, 8);
    if (uint64_t d = x ^ y) return n + (__builtin_ctzll(d) >> 3);
    n += 8;
  }
  while (n < max && a[n] == b[n]) ++n;
  return n;
}

// 288 entries: the fixed literal code defines 286 and 287 too, and they take
// part in its canonical numbering.
constexpr int kNumFixedLit = 288;
struct HuffCode {
  uint16_t code[kNumFixedLit];  // bit-reversed, ready for an LSB-first writer
  uint8_t len[kNumFixedLit];
};

// Accumulates bits LSB first (RFC 1951 3.1.1) into a growing byte buffer.
class BitWriter {
 public:
  void WriteBits(uint32_t v, int n) {
    bits_ |= uint64_t(v) << nbits_;
    nbits_ += n;
    if (nbits_ >= 32) {
      if (size_ + 4 > buf_.size()) buf_.resize(std::max<size_t>(2 * buf_.size(), 1 << 16));
      uint8_t* p = &buf_[size_];
      p[0] = uint8_t(bits_), p[1] = uint8_t(bits_ >> 8), p[2] = uint8_t(bits_ >> 16),
      p[3] = uint8_t(bits_ >> 24);
      size_ += 4;
      bits_ >>= 32;
      nbits_ -= 32;
    }
  }
  // Pads with zero bits to a byte boundary.
  void AlignToByte() {
    while (nbits_ > 0) {
      Append(uint8_t(bits_));
      bits_ >>= 8;
      nbits_ = std::max(nbits_ - 8, 0);
    }
    bits_ = 0;
  }
  void WriteBytes(const uint8_t* p, size_t n) {
    AlignToByte();
    if (size_ + n > buf_.size()) buf_.resize(std::max(2 * buf_.size(), size_ + n));
    std::memcpy(&buf_[size_], p, n);
    size_ += n;
  }
  // Whole bytes written so far; Clear() after handing them on.
  const uint8_t* data() const { return buf_.data(); }
  size_t size() const { return size_; }
  void Clear() {
    cleared_ += size_;
    size_ = 0;
  }
  // Bits written since the stream began (or since the resumed position).
  uint64_t bit_count() const { return (cleared_ + size_) * 8 + uint64_t(nbits_); }
  // Continues a stream at bit `bit`: the bits of the byte `bit` falls in that
  // come before it are left zero (they belong to the previous segment).
  void StartAt(uint64_t bit) {
    cleared_ = bit / 8;
    nbits_ = int(bit % 8);
    bits_ = 0;
  }
  // Writes out every pending bit (zero padded to a byte) without changing the
  // stream position as bit_count() sees it: for cutting a segment.
  void FlushPartial() {
    while (nbits_ > 0) {
      Append(uint8_t(bits_));
      bits_ >>= 8;
      nbits_ -= 8;
    }
    nbits_ = 0;
  }

 private:
  void Append(uint8_t b) {
    if (size_ == buf_.size()) buf_.resize(std::max<size_t>(2 * buf_.size(), 1 << 16));
    buf_[size_++] = b;
  }

  uint64_t bits_ = 0;
  int nbits_ = 0;
  std::vector<uint8_t> buf_;
  size_t size_ = 0;
  uint64_t cleared_ = 0;  // bytes handed on by Clear()
};

// Encodes one block of tokens, choosing stored / fixed / dynamic as Go does.
class BlockWriter {
 public:
  BitWriter& bits() { return w_; }

  void WriteStoredHeader(int length, bool eof) {
    w_.WriteBits(eof ? 1 : 0, 3);
    w_.AlignToByte();
    w_.WriteBits(uint32_t(length), 16);
    w_.WriteBits(uint32_t(~length) & 0xffff, 16);
  }

  void WriteStored(const uint8_t* p, int n, bool eof) {
    WriteStoredHeader(n, eof);
    w_.WriteBytes(p, n);
  }

  // `input` is the block's uncompressed bytes, or nullptr when they left the
  // window (then a stored block is not an option).
  void WriteBlock(const std::vector<uint32_t>& tokens, bool eof, const uint8_t* input, int n);
  // Huffman-only (level -2): all of `input` as literals in one block.
  void WriteBlockHuff(const uint8_t* input, int n, bool eof);
  // Level 1: always a dynamic block, stored when that is not ~1/17 smaller.
  void WriteBlockDynamic(const std::vector<uint32_t>& tokens, const uint8_t* input, int n,
                         bool eof);

 private:
  void CountTokens(const std::vector<uint32_t>& tokens);
  int ExtraBits() const;
  void GenerateCodegen(int num_lit, int num_dist, const HuffCode& lit, const HuffCode& dist);
  int DynamicSize(const HuffCode& lit, const HuffCode& dist, int extra, int* num_codegens);
  // Dynamic codes for the counted frequencies; returns the block size in bits.
  int BuildDynamic(int num_lit, int num_dist, int extra, int* num_codegens);
  void WriteDynamicHeader(int num_lit, int num_dist, int num_codegens, bool eof);
  void WriteTokens(const std::vector<uint32_t>& tokens, const HuffCode& lit, const HuffCode& dist);

  BitWriter w_;
  uint32_t lit_freq_[kNumLit];
  uint32_t dist_freq_[kNumDist];
  uint32_t codegen_freq_[kNumCodegen];
  int num_lit_ = 0, num_dist_ = 0;
  HuffCode lit_, dist_, codegen_;
  std::vector<uint8_t> codegen_seq_;  // code-length symbols, each followed by its extra value
};

// Level 1: a Snappy-style greedy matcher over 65535-byte blocks.
class FastEncoder {
 public:
  void Encode(const uint8_t* src, int n, std::vector<uint32_t>* tokens);
  void Reset() {
    prev_.clear();
    cur_ += kWindowSize;
  }

 private:
  static constexpr int kTableBits = 14;
  static constexpr int kInputMargin = 15;
  struct Entry {
    uint32_t val = 0;
    int64_t offset = 0;
  };
  static uint32_t Hash(uint32_t u) { return (u * kHashMul) >> (32 - kTableBits); }
  int MatchLen(int s, int64_t t, const uint8_t* src, int n) const;

  std::vector<Entry> table_ = std::vector<Entry>(1 << kTableBits);
  std::vector<uint8_t> prev_;
  int64_t cur_ = kMaxStoreBlock;
};

}  // namespace goflate_internal
}  // namespace cofferlayer

#endif  // COFFER_FS_LAYER_GOFLATE_INTERNAL_H_
