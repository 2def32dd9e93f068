// A DEFLATE encoder that reproduces Go 1.19 compress/flate bit for bit.
//
// Written from RFC 1951 and from Go's observed output; Go's source was not
// read. Starting hypotheses came from the usual zlib-style design (hash
// chains, lazy matching, zlib's per-level table) and general familiarity with
// Go's encoder; each rule below was kept because Go's output agreed on every
// test input (goflate_test.cc: byte equality, and a DEFLATE parser that names
// the first differing block, code length or token).
// [c] = confirmed: changing the rule makes some input differ from Go.
//
// Match finding (levels 2-9)
//  - [c] Minimum match 4, maximum 258; a 4-byte match only within 4096 bytes.
//  - [c] Candidates from hash chains of 4-byte prefixes: 17-bit multiplicative
//    hash (big-endian 32-bit read * 0x1e35a7bd, top 17 bits), newest first, at
//    most `chain` candidates, back at most 32768 bytes; a candidate wins only if
//    strictly longer; stop at `nice`. zlib's `good` (shorter chains after a
//    good match) does not exist: applying it changes the output.
//  - [c] Levels 4-9 match lazily: the match at p is emitted if the one at p+1
//    is not longer; no search at p+1 if the match at p is >= `lazy`. Levels 2-3
//    emit at once and do not hash the inside of matches longer than 5 / 6.
//    (lazy, nice, chain): 4: 4,16,16  5: 16,32,32  6: 16,128,128
//    7: 32,128,256  8: 128,258,1024  9: 258,258,4096;  (nice, chain) 2: 16,8
//    3: 32,32.
//  - [c] A 64 KiB buffer; input is processed while >= 262 bytes lie ahead (all
//    of it at Close); when the position reaches 65536-262 the upper half slides
//    down 32 KiB, and right after a slide matches reach back only to the start
//    of the buffer (random data repeated with period 32768: Go emits ~260
//    literals after each slide). The way input is split into writes does not change Go's
//    output [c: 1-byte, 32 KiB, random splits on 144 MB].
// Blocks
//  - [c] A block ends after 16384 tokens (the last one may hold one more);
//    the rest goes out at Close as a non-final block, then an empty final
//    stored block (01 00 00 ff ff), even for empty input.
//  - Block type by size in bits: fixed = 3 + codes + extra bits; dynamic = the
//    same with its header (3+5+5+4, 3 per code-length code, coded lengths and
//    16/17/18 extras); stored = (bytes + 5) * 8, only for blocks of <= 65535
//    input bytes still in the buffer [c for random data]. [c] Dynamic only if
//    strictly smaller than fixed; stored only if strictly smaller than both
//    (tie inputs found by search, in goflate_test.cc).
//  - [c] Huffman lengths: optimal length-limited codes (package-merge; limit
//    15, 7 for the code-length code); symbols ordered by (frequency, symbol);
//    a package sorts before a leaf of equal weight. One or two used symbols get
//    length 1. No match in a block: distance code 0 gets frequency 1. HLIT and
//    HDIST trimmed to the last used symbol, HCLEN to >= 4 codes.
//  - [c] Code lengths are run-length coded over lit+dist lengths together: a
//    nonzero length is sent once, then 16s (up to 6) while >= 3 repeats remain;
//    zeros use 18s (11-138) while >= 11 remain, then one 17 (3-10); leftovers
//    are sent literally.
// Level 0: stored blocks of 65535 bytes. Level -2 (Huffman only): one block
// of literals per 65535 input bytes, HLIT always 257, one distance code;
// stored instead when the stored size < dynamic size * 17/16.
#include "goflate.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstring>
#include <utility>
#include <vector>

namespace cofferlayer {
namespace goflate_internal {
namespace {

using chunkstore::Status;

constexpr int kWindowSize = 1 << 15;
constexpr int kWindowMask = kWindowSize - 1;
constexpr int kMinMatch = 4;
constexpr int kMaxMatch = 258;
constexpr int kMaxStoreBlock = 65535;
constexpr size_t kMaxTokens = 1 << 14;
constexpr int kHashBits = 17;
constexpr uint32_t kHashMul = 0x1e35a7bd;
constexpr int kMaxHashOffset = 1 << 24;
constexpr int kSkipNever = INT_MAX;
constexpr int kNumLit = 286;
constexpr int kNumDist = 30;
constexpr int kNumCodegen = 19;
constexpr int kEndBlock = 256;
constexpr size_t kSinkChunk = 64 << 10;

// Tokens: a literal byte, or kMatchFlag | (length-3) << 16 | (distance-1).
constexpr uint32_t kMatchFlag = 1u << 31;
inline uint32_t MatchToken(int length, int distance) {
  return kMatchFlag | uint32_t(length - 3) << 16 | uint32_t(distance - 1);
}

struct CodeTables {
  uint8_t len_code[256];           // length-3 -> length code - 257
  uint8_t dist_code[kWindowSize];  // distance-1 -> distance code
  uint16_t len_base[29];
  uint8_t len_extra[29];
  uint16_t dist_base[30];
  uint8_t dist_extra[30];
  CodeTables() {
    static const uint8_t kLenExtra[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2,
                                          2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    int base = 3;
    for (int c = 0; c < 29; ++c) {
      len_extra[c] = kLenExtra[c];
      len_base[c] = c == 28 ? 258 : base;
      base += 1 << kLenExtra[c];
    }
    for (int l = 3; l <= 258; ++l) {
      int c = 0;
      while (c + 1 < 29 && len_base[c + 1] <= l) ++c;
      len_code[l - 3] = c;
    }
    base = 1;
    for (int c = 0; c < 30; ++c) {
      dist_extra[c] = c < 4 ? 0 : (c - 2) / 2;
      dist_base[c] = base;
      for (int i = 0; i < (1 << dist_extra[c]); ++i) dist_code[base - 1 + i] = c;
      base += 1 << dist_extra[c];
    }
  }
};
const CodeTables& Tables() {
  static const CodeTables t;
  return t;
}

inline uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// The 4 bytes read big-endian, times kHashMul, top kHashBits bits.
inline uint32_t Hash4(const uint8_t* b) {
  return (__builtin_bswap32(Load32(b)) * kHashMul) >> (32 - kHashBits);
}

// ---------------------------------------------------------------------------
// Huffman code construction.

// 288 entries: the fixed literal code defines 286 and 287 too, and they take
// part in its canonical numbering.
constexpr int kNumFixedLit = 288;
struct HuffCode {
  uint16_t code[kNumFixedLit];  // bit-reversed, ready for an LSB-first writer
  uint8_t len[kNumFixedLit];
};

// Optimal code lengths limited to max_bits by package-merge. Ties are broken the
// way Go's output shows: symbols ordered by (freq, symbol); a package is placed
// before a leaf of the same weight.
void BuildLengths(const uint32_t* freq, int n, int max_bits, uint8_t* len) {
  std::memset(len, 0, n);
  // Leaves sorted by (freq, symbol): freq in the high bits, symbol in the low 9.
  uint64_t leaves[kNumLit];
  int count = 0;
  for (int s = 0; s < n; ++s)
    if (freq[s] != 0) leaves[count++] = uint64_t(freq[s]) << 9 | uint64_t(s);
  if (count <= 2) {
    for (int k = 0; k < count; ++k) len[leaves[k] & 511] = 1;
    return;
  }
  std::sort(leaves, leaves + count);
  const int levels = std::min(max_bits, count - 1);
  // Level 0 is the deepest (leaves only); each higher level merges the leaves
  // with pairs of the level below, a pair first when weights tie.
  static thread_local uint64_t weight[15][2 * kNumLit];
  static thread_local uint8_t is_leaf[15][2 * kNumLit];
  int size[15];
  for (int k = 0; k < count; ++k) weight[0][k] = leaves[k] >> 9, is_leaf[0][k] = 1;
  size[0] = count;
  for (int j = 1; j < levels; ++j) {
    const uint64_t* below = weight[j - 1];
    const int pairs = size[j - 1] / 2;
    int li = 0, pi = 0, m = 0;
    for (; li < count || pi < pairs; ++m) {  // at most 2*count-1 items
      uint64_t pw = pi < pairs ? below[2 * pi] + below[2 * pi + 1] : UINT64_MAX;
      bool leaf = li < count && (leaves[li] >> 9) < pw;
      weight[j][m] = leaf ? leaves[li++] >> 9 : (++pi, pw);
      is_leaf[j][m] = leaf;
    }
    size[j] = m;
  }
  // Walk down from the top list's first 2n-2 items: each level uses a prefix of
  // the sorted leaves, and a leaf's length is the number of levels using it.
  int need = 2 * count - 2;
  for (int j = levels - 1; j >= 0; --j) {
    need = std::min(need, size[j]);
    int leaves_used = 0;
    for (int k = 0; k < need; ++k) leaves_used += is_leaf[j][k];
    for (int k = 0; k < leaves_used; ++k) ++len[leaves[k] & 511];
    need = 2 * (need - leaves_used);
  }
}

// Canonical codes (RFC 1951 3.2.2), stored bit-reversed.
void AssignCodes(const uint8_t* len, int n, uint16_t* code) {
  int bl_count[16] = {0};
  for (int s = 0; s < n; ++s) bl_count[len[s]]++;
  bl_count[0] = 0;
  int next[16] = {0};
  int c = 0;
  for (int b = 1; b < 16; ++b) {
    c = (c + bl_count[b - 1]) << 1;
    next[b] = c;
  }
  for (int s = 0; s < n; ++s) {
    int l = len[s];
    if (l == 0) continue;
    uint32_t v = next[l]++, r = 0;
    for (int i = 0; i < l; ++i) r |= ((v >> i) & 1) << (l - 1 - i);
    code[s] = uint16_t(r);
  }
}

void Generate(const uint32_t* freq, int n, int max_bits, HuffCode* h) {
  BuildLengths(freq, n, max_bits, h->len);
  AssignCodes(h->len, n, h->code);
}

int BitLength(const HuffCode& h, const uint32_t* freq, int n) {
  int total = 0;
  for (int s = 0; s < n; ++s) total += int(freq[s]) * h.len[s];
  return total;
}

const HuffCode& FixedLit() {
  static const HuffCode h = [] {
    HuffCode f{};
    for (int s = 0; s < kNumFixedLit; ++s) f.len[s] = s < 144 ? 8 : s < 256 ? 9 : s < 280 ? 7 : 8;
    AssignCodes(f.len, kNumFixedLit, f.code);
    return f;
  }();
  return h;
}

const HuffCode& FixedDist() {
  static const HuffCode h = [] {
    HuffCode f{};
    for (int s = 0; s < kNumDist; ++s) f.len[s] = 5;
    AssignCodes(f.len, kNumDist, f.code);
    return f;
  }();
  return h;
}

// ---------------------------------------------------------------------------
// Bit output.

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
  void Clear() { size_ = 0; }

 private:
  void Append(uint8_t b) {
    if (size_ == buf_.size()) buf_.resize(std::max<size_t>(2 * buf_.size(), 1 << 16));
    buf_[size_++] = b;
  }

  uint64_t bits_ = 0;
  int nbits_ = 0;
  std::vector<uint8_t> buf_;
  size_t size_ = 0;
};

// ---------------------------------------------------------------------------
// Block encoding: chooses stored / fixed / dynamic and writes one block.

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

 private:
  void CountTokens(const std::vector<uint32_t>& tokens);
  int ExtraBits() const;
  void GenerateCodegen(int num_lit, int num_dist, const HuffCode& lit, const HuffCode& dist);
  int DynamicSize(const HuffCode& lit, const HuffCode& dist, int extra, int* num_codegens);
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

constexpr uint8_t kCodegenOrder[kNumCodegen] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                                11, 4,  12, 3, 13, 2, 14, 1, 15};

void BlockWriter::CountTokens(const std::vector<uint32_t>& tokens) {
  const CodeTables& t = Tables();
  std::memset(lit_freq_, 0, sizeof(lit_freq_));
  std::memset(dist_freq_, 0, sizeof(dist_freq_));
  for (uint32_t tok : tokens) {
    if (tok & kMatchFlag) {
      lit_freq_[257 + t.len_code[(tok >> 16) & 0xff]]++;
      dist_freq_[t.dist_code[tok & 0xffff]]++;
    } else {
      lit_freq_[tok]++;
    }
  }
  lit_freq_[kEndBlock]++;
  num_lit_ = kNumLit;
  while (lit_freq_[num_lit_ - 1] == 0) --num_lit_;
  num_dist_ = kNumDist;
  while (num_dist_ > 0 && dist_freq_[num_dist_ - 1] == 0) --num_dist_;
  if (num_dist_ == 0) {  // the dynamic header needs at least one distance code
    dist_freq_[0] = 1;
    num_dist_ = 1;
  }
}

int BlockWriter::ExtraBits() const {
  const CodeTables& t = Tables();
  int extra = 0;
  for (int c = 257; c < num_lit_; ++c) extra += int(lit_freq_[c]) * t.len_extra[c - 257];
  for (int c = 0; c < num_dist_; ++c) extra += int(dist_freq_[c]) * t.dist_extra[c];
  return extra;
}

void BlockWriter::GenerateCodegen(int num_lit, int num_dist, const HuffCode& lit,
                                  const HuffCode& dist) {
  std::memset(codegen_freq_, 0, sizeof(codegen_freq_));
  codegen_seq_.clear();
  std::vector<uint8_t> lens(lit.len, lit.len + num_lit);
  lens.insert(lens.end(), dist.len, dist.len + num_dist);
  auto emit = [&](int sym, int extra) {
    codegen_seq_.push_back(uint8_t(sym));
    codegen_seq_.push_back(uint8_t(extra));
    codegen_freq_[sym]++;
  };
  size_t i = 0;
  while (i < lens.size()) {
    const int size = lens[i];
    size_t run = 1;
    while (i + run < lens.size() && lens[i + run] == size) ++run;
    i += run;
    int count = int(run);
    if (size != 0) {
      emit(size, 0);
      --count;
      while (count >= 3) {
        int n = std::min(count, 6);
        emit(16, n - 3);
        count -= n;
      }
    } else {
      while (count >= 11) {
        int n = std::min(count, 138);
        emit(18, n - 11);
        count -= n;
      }
      if (count >= 3) {
        emit(17, count - 3);
        count = 0;
      }
    }
    for (; count > 0; --count) emit(size, 0);
  }
}

int BlockWriter::DynamicSize(const HuffCode& lit, const HuffCode& dist, int extra,
                             int* num_codegens) {
  int n = kNumCodegen;
  while (n > 4 && codegen_.len[kCodegenOrder[n - 1]] == 0) --n;
  *num_codegens = n;
  int header = 3 + 5 + 5 + 4 + 3 * n + BitLength(codegen_, codegen_freq_, kNumCodegen) +
               int(codegen_freq_[16]) * 2 + int(codegen_freq_[17]) * 3 + int(codegen_freq_[18]) * 7;
  return header + BitLength(lit, lit_freq_, kNumLit) + BitLength(dist, dist_freq_, kNumDist) +
         extra;
}

void BlockWriter::WriteDynamicHeader(int num_lit, int num_dist, int num_codegens, bool eof) {
  w_.WriteBits(eof ? 5 : 4, 3);
  w_.WriteBits(num_lit - 257, 5);
  w_.WriteBits(num_dist - 1, 5);
  w_.WriteBits(num_codegens - 4, 4);
  for (int i = 0; i < num_codegens; ++i) w_.WriteBits(codegen_.len[kCodegenOrder[i]], 3);
  static const int kExtraBits[3] = {2, 3, 7};
  for (size_t i = 0; i < codegen_seq_.size(); i += 2) {
    int sym = codegen_seq_[i];
    w_.WriteBits(codegen_.code[sym], codegen_.len[sym]);
    if (sym >= 16) w_.WriteBits(codegen_seq_[i + 1], kExtraBits[sym - 16]);
  }
}

void BlockWriter::WriteTokens(const std::vector<uint32_t>& tokens, const HuffCode& lit,
                              const HuffCode& dist) {
  const CodeTables& t = Tables();
  for (uint32_t tok : tokens) {
    if (!(tok & kMatchFlag)) {
      w_.WriteBits(lit.code[tok], lit.len[tok]);
      continue;
    }
    int l = (tok >> 16) & 0xff, lc = t.len_code[l];
    w_.WriteBits(lit.code[257 + lc], lit.len[257 + lc]);
    if (t.len_extra[lc]) w_.WriteBits(l + 3 - t.len_base[lc], t.len_extra[lc]);
    int d = tok & 0xffff, dc = t.dist_code[d];
    w_.WriteBits(dist.code[dc], dist.len[dc]);
    if (t.dist_extra[dc]) w_.WriteBits(d + 1 - t.dist_base[dc], t.dist_extra[dc]);
  }
  w_.WriteBits(lit.code[kEndBlock], lit.len[kEndBlock]);
}

void BlockWriter::WriteBlock(const std::vector<uint32_t>& tokens, bool eof, const uint8_t* input,
                             int n) {
  CountTokens(tokens);
  const bool storable = input != nullptr && n <= kMaxStoreBlock;
  const int stored_size = (n + 5) * 8;
  // Extra bits are the same for fixed and dynamic codes, so they only matter
  // when a stored block competes.
  const int extra = storable ? ExtraBits() : 0;
  Generate(lit_freq_, kNumLit, 15, &lit_);
  Generate(dist_freq_, kNumDist, 15, &dist_);
  const HuffCode* lit = &FixedLit();
  const HuffCode* dist = &FixedDist();
  int size = 3 + BitLength(FixedLit(), lit_freq_, kNumLit) +
             BitLength(FixedDist(), dist_freq_, kNumDist) + extra;
  GenerateCodegen(num_lit_, num_dist_, lit_, dist_);
  Generate(codegen_freq_, kNumCodegen, 7, &codegen_);
  int num_codegens = 0;
  int dyn_size = DynamicSize(lit_, dist_, extra, &num_codegens);
  if (dyn_size < size) {
    size = dyn_size;
    lit = &lit_;
    dist = &dist_;
  }
  if (storable && stored_size < size) {
    WriteStored(input, n, eof);
    return;
  }
  if (lit == &lit_) {
    WriteDynamicHeader(num_lit_, num_dist_, num_codegens, eof);
  } else {
    w_.WriteBits(eof ? 3 : 2, 3);
  }
  WriteTokens(tokens, *lit, *dist);
}

void BlockWriter::WriteBlockHuff(const uint8_t* input, int n, bool eof) {
  std::memset(lit_freq_, 0, sizeof(lit_freq_));
  std::memset(dist_freq_, 0, sizeof(dist_freq_));
  for (int i = 0; i < n; ++i) lit_freq_[input[i]]++;
  lit_freq_[kEndBlock] = 1;
  dist_freq_[0] = 1;
  constexpr int kLits = kEndBlock + 1;
  Generate(lit_freq_, kNumLit, 15, &lit_);
  Generate(dist_freq_, kNumDist, 15, &dist_);
  GenerateCodegen(kLits, 1, lit_, dist_);
  Generate(codegen_freq_, kNumCodegen, 7, &codegen_);
  int num_codegens = 0;
  int size = DynamicSize(lit_, dist_, 0, &num_codegens);
  // Stored unless Huffman saves more than about 1/17.
  if (n <= kMaxStoreBlock && (n + 5) * 8 < size + (size >> 4)) {
    WriteStored(input, n, eof);
    return;
  }
  WriteDynamicHeader(kLits, 1, num_codegens, eof);
  for (int i = 0; i < n; ++i) w_.WriteBits(lit_.code[input[i]], lit_.len[input[i]]);
  w_.WriteBits(lit_.code[kEndBlock], lit_.len[kEndBlock]);
}

// ---------------------------------------------------------------------------
// The compressor: window, hash chains, match finding, block cutting.

// Per-level search effort (see the table at the top). fast_skip: levels 2-3
// match greedily and do not hash the inside of longer matches; kSkipNever
// marks the lazy levels 4-9.
struct LevelParams {
  int lazy, nice, chain, fast_skip;
};

LevelParams ParamsFor(int level) {
  switch (level) {
    case 2:
      return {0, 16, 8, 5};
    case 3:
      return {0, 32, 32, 6};
    case 4:
      return {4, 16, 16, kSkipNever};
    case 5:
      return {16, 32, 32, kSkipNever};
    case 7:
      return {32, 128, 256, kSkipNever};
    case 8:
      return {128, 258, 1024, kSkipNever};
    case 9:
      return {258, 258, 4096, kSkipNever};
    default:
      return {16, 128, 128, kSkipNever};  // 6 and -1
  }
}

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

}  // namespace

class Compressor {
 public:
  Compressor(int level, ByteSink sink);
  Status Write(const uint8_t* data, size_t size);
  Status Close();

 private:
  enum class Mode { kStore, kHuffOnly, kDeflate };
  void Step();
  size_t Fill(const uint8_t* data, size_t size);
  void SlideWindow();
  // kLazy: levels 4-9; otherwise 2-3.
  template <bool kLazy>
  void Deflate();
  template <bool kLazy>
  void EmitMatch(int prev_length, int prev_offset);
  template <bool kLazy>
  void EmitLiteral();
  bool FindMatch(int pos, int prev_head, int lookahead, int* length, int* offset);
  void InsertHash(int pos) {
    uint32_t& head = hash_head_[Hash4(&window_[pos])];
    hash_prev_[pos & kWindowMask] = head;
    head = uint32_t(pos + hash_offset_);
  }
  void WriteBlock(int index);
  Status Drain(bool all);

  Mode mode_;
  LevelParams p_{};
  ByteSink sink_;
  Status err_;
  bool closed_ = false;
  BlockWriter bw_;
  std::vector<uint8_t> window_;
  int window_end_ = 0;
  // Deflate state.
  int index_ = 0;
  int block_start_ = 0;
  int hash_offset_ = 1;  // hash tables hold position + hash_offset_; 0 is "none"
  int chain_head_ = -1;
  int length_ = kMinMatch - 1;
  int offset_ = 0;
  int max_insert_index_ = 0;
  bool byte_available_ = false;
  bool sync_ = false;
  std::vector<uint32_t> hash_head_;
  std::vector<uint32_t> hash_prev_;
  std::vector<uint32_t> tokens_;
};

Compressor::Compressor(int level, ByteSink sink) : sink_(std::move(sink)) {
  if (level == 0 || level == -2) {
    mode_ = level == 0 ? Mode::kStore : Mode::kHuffOnly;
    window_.resize(kMaxStoreBlock);
    return;
  }
  mode_ = Mode::kDeflate;
  p_ = ParamsFor(level);
  window_.resize(2 * kWindowSize + 8);  // +8: MatchLen may load past the end
  hash_head_.assign(1 << kHashBits, 0);
  hash_prev_.assign(kWindowSize, 0);
  tokens_.reserve(kMaxTokens + 1);
}

Status Compressor::Write(const uint8_t* data, size_t size) {
  if (closed_) return Status::FailedPrecondition("goflate: write after close");
  while (err_.ok() && size > 0) {
    Step();
    size_t n = Fill(data, size);
    data += n;
    size -= n;
    err_ = Drain(false);
  }
  return err_;
}

Status Compressor::Close() {
  if (closed_) return err_.ok() ? Status::FailedPrecondition("goflate: close after close") : err_;
  closed_ = true;
  if (!err_.ok()) return err_;
  sync_ = true;
  Step();
  bw_.WriteStoredHeader(0, true);
  bw_.bits().AlignToByte();
  err_ = Drain(true);
  return err_;
}

Status Compressor::Drain(bool all) {
  BitWriter& out = bw_.bits();
  if (out.size() == 0 || (!all && out.size() < kSinkChunk)) return Status::OK();
  Status s = sink_(out.data(), out.size());
  out.Clear();
  return s;
}

size_t Compressor::Fill(const uint8_t* data, size_t size) {
  if (mode_ == Mode::kDeflate && index_ >= 2 * kWindowSize - (kMinMatch + kMaxMatch)) {
    SlideWindow();
  }
  const size_t cap = mode_ == Mode::kDeflate ? 2 * kWindowSize : kMaxStoreBlock;
  size_t n = std::min(size, cap - size_t(window_end_));
  std::memcpy(&window_[window_end_], data, n);
  window_end_ += int(n);
  return n;
}

void Compressor::SlideWindow() {
  std::memmove(&window_[0], &window_[kWindowSize], kWindowSize);
  index_ -= kWindowSize;
  window_end_ -= kWindowSize;
  block_start_ = block_start_ >= kWindowSize ? block_start_ - kWindowSize : INT_MAX;
  hash_offset_ += kWindowSize;
  if (hash_offset_ <= kMaxHashOffset) return;
  // Rebase the stored positions so they fit in 32 bits; anything older than
  // the window becomes "none".
  const int delta = hash_offset_ - 1;
  hash_offset_ -= delta;
  chain_head_ -= delta;
  auto rebase = [delta](uint32_t& v) { v = int64_t(v) > delta ? v - uint32_t(delta) : 0; };
  for (uint32_t& v : hash_prev_) rebase(v);
  for (uint32_t& v : hash_head_) rebase(v);
}

void Compressor::Step() {
  switch (mode_) {
    case Mode::kDeflate:
      if (p_.fast_skip == kSkipNever) {
        Deflate<true>();
      } else {
        Deflate<false>();
      }
      return;
    case Mode::kStore:
      if (window_end_ > 0 && (window_end_ == kMaxStoreBlock || sync_)) {
        bw_.WriteStored(window_.data(), window_end_, false);
        window_end_ = 0;
      }
      return;
    case Mode::kHuffOnly:
      if (window_end_ > 0 && (window_end_ == kMaxStoreBlock || sync_)) {
        bw_.WriteBlockHuff(window_.data(), window_end_, false);
        window_end_ = 0;
      }
      return;
  }
}

void Compressor::WriteBlock(int index) {
  if (index <= 0) return;
  const uint8_t* input = nullptr;
  int n = 0;
  if (block_start_ <= index) {
    input = &window_[block_start_];
    n = index - block_start_;
  }
  block_start_ = index;
  bw_.WriteBlock(tokens_, false, input, n);
  tokens_.clear();
}

bool Compressor::FindMatch(int pos, int prev_head, int lookahead, int* length, int* offset) {
  const int look = std::min(kMaxMatch, lookahead);
  const int nice = std::min(p_.nice, look);
  const uint8_t* win = window_.data();
  const int min_index = pos - kWindowSize;
  int best = kMinMatch - 1;
  // A candidate can beat `best` only if bytes [best-3, best] match too; one
  // 32-bit compare rejects most candidates.
  uint32_t w_end = Load32(win + pos + best - 3);
  bool found = false;
  int i = prev_head;
  for (int tries = p_.chain; tries > 0; --tries) {
    if (Load32(win + i + best - 3) == w_end) {
      int n = MatchLen(win + i, win + pos, look);
      if (n > best && (n > kMinMatch || pos - i <= 4096)) {
        best = n;
        *offset = pos - i;
        found = true;
        if (n >= nice) break;
        w_end = Load32(win + pos + n - 3);
      }
    }
    if (i == min_index) break;  // its chain slot now belongs to pos
    i = int(hash_prev_[i & kWindowMask]) - hash_offset_;
    if (i < min_index || i < 0) break;
  }
  if (found) *length = best;
  return found;
}

template <bool kLazy>
void Compressor::Deflate() {
  if (window_end_ - index_ < kMinMatch + kMaxMatch && !sync_) return;
  max_insert_index_ = window_end_ - (kMinMatch - 1);
  for (;;) {
    const int lookahead = window_end_ - index_;
    if (lookahead < kMinMatch + kMaxMatch) {
      if (!sync_) return;
      if (lookahead == 0) {
        if (byte_available_) {
          tokens_.push_back(window_[index_ - 1]);
          byte_available_ = false;
        }
        if (!tokens_.empty()) WriteBlock(index_);
        return;
      }
    }
    if (index_ < max_insert_index_) {
      // The hash table is larger than L2: fetch the next position's bucket now.
      if (index_ + 1 < max_insert_index_) {
        __builtin_prefetch(&hash_head_[Hash4(&window_[index_ + 1])]);
      }
      chain_head_ = int(hash_head_[Hash4(&window_[index_])]);
      InsertHash(index_);
    }
    const int prev_length = length_, prev_offset = offset_;
    length_ = kMinMatch - 1;
    offset_ = 0;
    const int min_index = std::max(index_ - kWindowSize, 0);
    const bool search =
        kLazy ? lookahead > prev_length && prev_length < p_.lazy : lookahead > kMinMatch - 1;
    if (search && chain_head_ - hash_offset_ >= min_index) {
      FindMatch(index_, chain_head_ - hash_offset_, lookahead, &length_, &offset_);
    }
    if (kLazy ? prev_length >= kMinMatch && length_ <= prev_length : length_ >= kMinMatch) {
      EmitMatch<kLazy>(prev_length, prev_offset);
    } else {
      EmitLiteral<kLazy>();
    }
  }
}

// Emits the match found at index_-1 (lazy) or index_ and moves past it,
// hashing the positions it covers.
template <bool kLazy>
void Compressor::EmitMatch(int prev_length, int prev_offset) {
  tokens_.push_back(kLazy ? MatchToken(prev_length, prev_offset) : MatchToken(length_, offset_));
  if (length_ <= p_.fast_skip) {
    const int new_index = kLazy ? index_ + prev_length - 1 : index_ + length_;
    const int end = std::min(new_index, max_insert_index_);
    for (int pos = std::min(index_ + 1, max_insert_index_); pos < end; ++pos) InsertHash(pos);
    index_ = new_index;
  } else {
    index_ += length_;
  }
  byte_available_ = false;
  length_ = kMinMatch - 1;
  if (tokens_.size() == kMaxTokens) WriteBlock(index_);
}

template <bool kLazy>
void Compressor::EmitLiteral() {
  if (!kLazy || byte_available_) {
    const int i = kLazy ? index_ - 1 : index_;
    tokens_.push_back(window_[i]);
    if (tokens_.size() == kMaxTokens) WriteBlock(i + 1);
  }
  ++index_;
  if (kLazy) byte_available_ = true;
}

}  // namespace goflate_internal

// ---------------------------------------------------------------------------

using chunkstore::Result;
using chunkstore::Status;

GoFlateWriter::GoFlateWriter(int level, ByteSink sink)
    : c_(std::make_unique<goflate_internal::Compressor>(level, std::move(sink))) {}
GoFlateWriter::~GoFlateWriter() = default;

bool GoFlateWriter::IsSupportedLevel(int level) {
  return level == -2 || level == -1 || level == 0 || (level >= 2 && level <= 9);
}

Status GoFlateWriter::Write(const uint8_t* data, size_t size) { return c_->Write(data, size); }
Status GoFlateWriter::Close() { return c_->Close(); }

GoGzipWriter::GoGzipWriter(int level, ByteSink sink)
    : sink_(sink), flate_(level, sink), level_(level) {}

Status GoGzipWriter::Write(const uint8_t* data, size_t size) {
  if (!header_written_) {
    // ID1 ID2 CM=8 FLG=0 MTIME=0 XFL OS=255 (unknown), as Go writes it.
    const uint8_t header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, uint8_t(level_ == 9 ? 2 : 0), 255};
    header_written_ = true;
    RETURN_IF_ERROR(sink_(header, sizeof(header)));
  }
  if (size > 0) crc_ = uint32_t(crc32_z(crc_, data, size));  // crc32(NULL) resets
  size_ += uint32_t(size);
  return flate_.Write(data, size);
}

Status GoGzipWriter::Close() {
  RETURN_IF_ERROR(Write(nullptr, 0));
  RETURN_IF_ERROR(flate_.Close());
  const uint8_t trailer[8] = {uint8_t(crc_),        uint8_t(crc_ >> 8),  uint8_t(crc_ >> 16),
                              uint8_t(crc_ >> 24),  uint8_t(size_),      uint8_t(size_ >> 8),
                              uint8_t(size_ >> 16), uint8_t(size_ >> 24)};
  return sink_(trailer, sizeof(trailer));
}

namespace {
template <typename W>
Result<std::string> CompressAll(std::string_view data, int level) {
  if (!GoFlateWriter::IsSupportedLevel(level)) {
    return Status::InvalidArgument("goflate: unsupported compression level " +
                                   std::to_string(level));
  }
  std::string out;
  W w(level, [&out](const uint8_t* p, size_t n) {
    out.append(reinterpret_cast<const char*>(p), n);
    return Status::OK();
  });
  RETURN_IF_ERROR(w.Write(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
  RETURN_IF_ERROR(w.Close());
  return out;
}
}  // namespace

Result<std::string> GoGzip(std::string_view data, int level) {
  return CompressAll<GoGzipWriter>(data, level);
}

Result<std::string> GoDeflate(std::string_view data, int level) {
  return CompressAll<GoFlateWriter>(data, level);
}

}  // namespace cofferlayer
