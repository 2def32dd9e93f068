// Huffman codes and block encoding for goflate: how Go builds code lengths,
// run-length codes them, and picks the block type (rules atop goflate.cc).
#include <algorithm>
#include <cstring>

#include "goflate_internal.h"

namespace cofferlayer {
namespace goflate_internal {
namespace {

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

// Optimal code lengths limited to max_bits by package-merge. Ties are broken
// the way Go's output shows: symbols ordered by (freq, symbol); a package is
// placed before a leaf of the same weight.
void BuildLengths(const uint32_t* freq, int n, int max_bits, uint8_t* len) {
  std::memset(len, 0, n);
  // Leaves sorted by (freq, symbol): freq in the high bits, symbol in the
  // low 9.
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

}  // namespace

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

int BlockWriter::BuildDynamic(int num_lit, int num_dist, int extra, int* num_codegens) {
  Generate(lit_freq_, kNumLit, 15, &lit_);
  Generate(dist_freq_, kNumDist, 15, &dist_);
  GenerateCodegen(num_lit, num_dist, lit_, dist_);
  Generate(codegen_freq_, kNumCodegen, 7, &codegen_);
  return DynamicSize(lit_, dist_, extra, num_codegens);
}

namespace {
// Levels 1 and -2 store a block unless Huffman coding saves more than ~1/17.
bool StoredWins(int n, int huffman_size) {
  return n <= kMaxStoreBlock && (n + 5) * 8 < huffman_size + (huffman_size >> 4);
}
}  // namespace

void BlockWriter::WriteBlock(const std::vector<uint32_t>& tokens, bool eof, const uint8_t* input,
                             int n) {
  CountTokens(tokens);
  const bool storable = input != nullptr && n <= kMaxStoreBlock;
  // Extra bits are the same for fixed and dynamic codes, so they only matter
  // when a stored block competes.
  const int extra = storable ? ExtraBits() : 0;
  int size = 3 + BitLength(FixedLit(), lit_freq_, kNumLit) +
             BitLength(FixedDist(), dist_freq_, kNumDist) + extra;
  int num_codegens = 0;
  const int dyn_size = BuildDynamic(num_lit_, num_dist_, extra, &num_codegens);
  const bool dynamic = dyn_size < size;
  if (dynamic) size = dyn_size;
  if (storable && (n + 5) * 8 < size) {
    WriteStored(input, n, eof);
    return;
  }
  if (dynamic) {
    WriteDynamicHeader(num_lit_, num_dist_, num_codegens, eof);
    WriteTokens(tokens, lit_, dist_);
  } else {
    w_.WriteBits(eof ? 3 : 2, 3);
    WriteTokens(tokens, FixedLit(), FixedDist());
  }
}

void BlockWriter::WriteBlockDynamic(const std::vector<uint32_t>& tokens, const uint8_t* input,
                                    int n, bool eof) {
  CountTokens(tokens);
  int num_codegens = 0;
  // Extra bits are not counted here (Go's choice; it matters for the output).
  if (StoredWins(n, BuildDynamic(num_lit_, num_dist_, 0, &num_codegens))) {
    WriteStored(input, n, eof);
    return;
  }
  WriteDynamicHeader(num_lit_, num_dist_, num_codegens, eof);
  WriteTokens(tokens, lit_, dist_);
}

void BlockWriter::WriteBlockHuff(const uint8_t* input, int n, bool eof) {
  std::memset(lit_freq_, 0, sizeof(lit_freq_));
  std::memset(dist_freq_, 0, sizeof(dist_freq_));
  for (int i = 0; i < n; ++i) lit_freq_[input[i]]++;
  lit_freq_[kEndBlock] = 1;
  dist_freq_[0] = 1;
  constexpr int kLits = kEndBlock + 1;  // HLIT is not trimmed here
  int num_codegens = 0;
  if (StoredWins(n, BuildDynamic(kLits, 1, 0, &num_codegens))) {
    WriteStored(input, n, eof);
    return;
  }
  WriteDynamicHeader(kLits, 1, num_codegens, eof);
  for (int i = 0; i < n; ++i) w_.WriteBits(lit_.code[input[i]], lit_.len[input[i]]);
  w_.WriteBits(lit_.code[kEndBlock], lit_.len[kEndBlock]);
}

}  // namespace goflate_internal
}  // namespace cofferlayer
