// The block half of gnuflate: tallying tokens, building the three Huffman
// trees of a dynamic block and choosing the block type, as gzip(1) 1.12 does.
//
// What has to match gzip(1) exactly, beyond RFC 1951 itself:
//  - a block ends after 32767 tokens, or (levels 3-9) at every 4096th token
//    when fewer than half the tokens are matches and an estimate of the
//    output (8 bits a token plus 5 + extra bits a distance) is below half the
//    input the block covers;
//  - the trees come from a binary heap ordered by (frequency, depth), leaves
//    entering in symbol order; nodes are numbered after the leaves; a tree
//    with fewer than two used symbols gets symbols 0/1 (or 2) forced in;
//  - lengths over the limit (15, or 7 for the code-length tree) are fixed by
//    moving leaves down from the deepest non-full level, then re-assigned to
//    leaves in order of increasing frequency as the heap left them;
//  - code lengths are run-length coded separately for the literal and the
//    distance tree, at least 4 code-length codes are sent;
//  - fixed trees are used when their size in bytes is at most the dynamic
//    one's, a stored block when its payload plus 4 bytes is at most both and
//    the block's input is still in the window.
#include <algorithm>

#include "gnuflate_internal.h"

namespace cofferlayer {
namespace gnuflate_internal {
namespace {

constexpr int kRep3To6 = 16, kRepZ3To10 = 17, kRepZ11To138 = 18;
constexpr uint8_t kExtraBlBits[kBlCodes] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                            0, 0, 0, 0, 0, 0, 2, 3, 7};
constexpr uint8_t kBlOrder[kBlCodes] = {16, 17, 18, 0, 8,  7, 9,  6, 10, 5,
                                        11, 4,  12, 3, 13, 2, 14, 1, 15};

constexpr uint16_t Reverse(unsigned code, int len) {
  unsigned r = 0;
  for (int i = 0; i < len; ++i, code >>= 1) r = (r << 1) | (code & 1);
  return static_cast<uint16_t>(r);
}

// The fixed trees of RFC 1951 3.2.6, with their codes bit-reversed for the
// LSB-first writer.
struct StaticTrees {
  uint16_t llen[288] = {}, lcode[288] = {};
  uint16_t dlen[kDCodes] = {}, dcode[kDCodes] = {};
};
constexpr StaticTrees MakeStaticTrees() {
  StaticTrees t;
  uint16_t count[kMaxBits + 2] = {};
  for (int n = 0; n < 288; ++n) {
    t.llen[n] = n < 144 ? 8 : n < 256 ? 9 : n < 280 ? 7 : 8;
    ++count[t.llen[n]];
  }
  uint16_t next[kMaxBits + 2] = {};
  unsigned code = 0;
  for (int bits = 1; bits <= kMaxBits; ++bits) {
    code = (code + count[bits - 1]) << 1;
    next[bits] = static_cast<uint16_t>(code);
  }
  for (int n = 0; n < 288; ++n) t.lcode[n] = Reverse(next[t.llen[n]]++, t.llen[n]);
  for (int n = 0; n < kDCodes; ++n) {
    t.dlen[n] = 5;
    t.dcode[n] = Reverse(n, 5);
  }
  return t;
}
constexpr StaticTrees kStatic = MakeStaticTrees();

}  // namespace

struct BlockEncoder::Desc {
  int elems;
  const uint8_t* extra;  // extra bits of the symbols from extra_base on
  int extra_base;
  int max_length;
  const uint16_t* stree;  // fixed-tree lengths, to count the fixed block's size
};

BlockEncoder::BlockEncoder(int level) : level_(level) {
  std::fill(std::begin(ltree_.len), std::end(ltree_.len), 0);
  std::fill(std::begin(dtree_.len), std::end(dtree_.len), 0);
  std::fill(std::begin(bltree_.len), std::end(bltree_.len), 0);
  InitBlock();
}

void BlockEncoder::InitBlock() {
  std::fill(ltree_.freq, ltree_.freq + kLCodes, 0);
  std::fill(dtree_.freq, dtree_.freq + kDCodes, 0);
  std::fill(bltree_.freq, bltree_.freq + kBlCodes, 0);
  ltree_.freq[kEndBlock] = 1;
  opt_len_ = static_len_ = 0;
  last_lit_ = last_dist_ = 0;
}

bool BlockEncoder::AfterTally(uint64_t in_length) {
  if (level_ > 2 && (last_lit_ & 0xfff) == 0) {
    uint64_t out_length = uint64_t{last_lit_} * 8;
    for (int d = 0; d < kDCodes; ++d) out_length += uint64_t{dtree_.freq[d]} * (5 + kExtraDBits[d]);
    out_length >>= 3;
    if (last_dist_ < last_lit_ / 2 && out_length < in_length / 2) return true;
  }
  return last_lit_ == kLitBufSize - 1 || last_dist_ == kDistBufSize;
}

// Restores the heap property below heap_[k]: the smaller son moves up while it
// is smaller than the node (ties broken by the shallower subtree).
void BlockEncoder::DownHeap(const Tree& t, int k) {
  auto smaller = [&](int n, int m) {
    return t.freq[n] < t.freq[m] || (t.freq[n] == t.freq[m] && depth_[n] <= depth_[m]);
  };
  int v = heap_[k];
  int j = k << 1;
  while (j <= heap_len_) {
    if (j < heap_len_ && smaller(heap_[j + 1], heap_[j])) ++j;
    if (smaller(v, heap_[j])) break;
    heap_[k] = heap_[j];
    k = j;
    j <<= 1;
  }
  heap_[k] = v;
}

void BlockEncoder::BuildTree(Tree* t, const Desc& d) {
  heap_len_ = 0;
  heap_max_ = kHeapSize;
  int max_code = -1;
  for (int n = 0; n < d.elems; ++n) {
    if (t->freq[n] != 0) {
      heap_[++heap_len_] = max_code = n;
      depth_[n] = 0;
    } else {
      t->len[n] = 0;
    }
  }
  // At least two codes, so that every used symbol gets at least one bit.
  while (heap_len_ < 2) {
    int forced = heap_[++heap_len_] = max_code < 2 ? ++max_code : 0;
    t->freq[forced] = 1;
    depth_[forced] = 0;
    --opt_len_;
    if (d.stree) static_len_ -= d.stree[forced];
  }
  t->max_code = max_code;
  for (int n = heap_len_ / 2; n >= 1; --n) DownHeap(*t, n);
  int node = d.elems;
  do {
    int n = heap_[1];
    heap_[1] = heap_[heap_len_--];
    DownHeap(*t, 1);
    int m = heap_[1];
    heap_[--heap_max_] = n;  // the nodes in order of frequency, for GenBitLengths
    heap_[--heap_max_] = m;
    t->freq[node] = t->freq[n] + t->freq[m];
    depth_[node] = static_cast<uint8_t>(std::max(depth_[n], depth_[m]) + 1);
    t->dad[n] = t->dad[m] = static_cast<uint16_t>(node);
    heap_[1] = node++;
    DownHeap(*t, 1);
  } while (heap_len_ >= 2);
  heap_[--heap_max_] = heap_[1];
  GenBitLengths(t, d);
  GenCodes(t);
}

void BlockEncoder::GenBitLengths(Tree* t, const Desc& d) {
  std::fill(std::begin(bl_count_), std::end(bl_count_), 0);
  t->len[heap_[heap_max_]] = 0;  // the root
  int overflow = 0, h;
  for (h = heap_max_ + 1; h < kHeapSize; ++h) {
    int n = heap_[h];
    int bits = t->len[t->dad[n]] + 1;
    if (bits > d.max_length) bits = d.max_length, ++overflow;  // internal nodes count too
    t->len[n] = static_cast<uint16_t>(bits);
    if (n > t->max_code) continue;  // not a leaf
    ++bl_count_[bits];
    int xbits = n >= d.extra_base ? d.extra[n - d.extra_base] : 0;
    uint64_t f = t->freq[n];
    opt_len_ += f * static_cast<uint64_t>(bits + xbits);
    if (d.stree) static_len_ += f * static_cast<uint64_t>(d.stree[n] + xbits);
  }
  if (overflow == 0) return;
  do {
    int bits = d.max_length - 1;
    while (bl_count_[bits] == 0) --bits;
    --bl_count_[bits];         // a leaf moves one level down
    bl_count_[bits + 1] += 2;  // with an overflowing leaf as its brother
    --bl_count_[d.max_length];
    overflow -= 2;
  } while (overflow > 0);
  // Re-assign the lengths, longest first, to the leaves from the least
  // frequent (the end of the heap) on.
  for (int bits = d.max_length; bits != 0; --bits) {
    int n = bl_count_[bits];
    while (n != 0) {
      int m = heap_[--h];
      if (m > t->max_code) continue;
      if (t->len[m] != bits) {
        opt_len_ += static_cast<uint64_t>((int64_t{bits} - t->len[m]) * int64_t{t->freq[m]});
        t->len[m] = static_cast<uint16_t>(bits);
      }
      --n;
    }
  }
}

void BlockEncoder::GenCodes(Tree* t) {
  uint16_t next[kMaxBits + 1];
  unsigned code = 0;
  for (int bits = 1; bits <= kMaxBits; ++bits) {
    code = (code + bl_count_[bits - 1]) << 1;
    next[bits] = static_cast<uint16_t>(code);
  }
  for (int n = 0; n <= t->max_code; ++n) {
    int len = t->len[n];
    if (len != 0) t->code[n] = Reverse(next[len]++, len);
  }
}

// Walks t's code lengths 0..max_code as the RFC 1951 3.2.7 symbols gzip(1)
// cuts them into, calling emit(symbol, extra value, extra bits). Observed
// rules: a run of a non-zero length sends the length once, then 16s of 3-6
// repeats; zero runs use 17 (3-10) and 18 (11-138); runs shorter than a
// repeat code are sent as lengths. The run limits depend on the neighbours.
// REQUIRES t.len[max_code + 1] to be a guard no real length equals.
template <class Emit>
static void ForEachLengthSymbol(const Tree& t, int max_code, Emit emit) {
  int prevlen = -1, nextlen = t.len[0], count = 0;
  int max_count = nextlen == 0 ? 138 : 7, min_count = nextlen == 0 ? 3 : 4;
  for (int n = 0; n <= max_code; ++n) {
    int curlen = nextlen;
    nextlen = t.len[n + 1];
    if (++count < max_count && curlen == nextlen) continue;
    if (count < min_count) {
      for (; count > 0; --count) emit(curlen, 0, 0);
    } else if (curlen != 0) {
      if (curlen != prevlen) {
        emit(curlen, 0, 0);
        --count;
      }
      emit(kRep3To6, count - 3, 2);
    } else if (count <= 10) {
      emit(kRepZ3To10, count - 3, 3);
    } else {
      emit(kRepZ11To138, count - 11, 7);
    }
    count = 0;
    prevlen = curlen;
    if (nextlen == 0) {
      max_count = 138, min_count = 3;
    } else if (curlen == nextlen) {
      max_count = 6, min_count = 3;
    } else {
      max_count = 7, min_count = 4;
    }
  }
}

// Counts the code-length codes that SendTree will use for t.
void BlockEncoder::ScanTree(Tree* t, int max_code) {
  t->len[max_code + 1] = 0xffff;  // guard
  ForEachLengthSymbol(*t, max_code, [&](int sym, int, int) { ++bltree_.freq[sym]; });
}

void BlockEncoder::SendTree(const Tree& t, int max_code, BitWriter* bits) {
  ForEachLengthSymbol(t, max_code, [&](int sym, int extra, int extra_bits) {
    bits->Put(bltree_.code[sym], bltree_.len[sym]);
    if (extra_bits) bits->Put(static_cast<unsigned>(extra), extra_bits);
  });
}

int BlockEncoder::BuildBitLengthTree() {
  static const Desc kBlDesc{kBlCodes, kExtraBlBits, 0, kMaxBlBits, nullptr};
  ScanTree(&ltree_, ltree_.max_code);
  ScanTree(&dtree_, dtree_.max_code);
  BuildTree(&bltree_, kBlDesc);
  int max_blindex;
  for (max_blindex = kBlCodes - 1; max_blindex >= 3; --max_blindex) {
    if (bltree_.len[kBlOrder[max_blindex]] != 0) break;
  }
  opt_len_ += 3 * (max_blindex + 1) + 5 + 5 + 4;
  return max_blindex;
}

void BlockEncoder::CompressBlock(const uint16_t* lcode, const uint16_t* llen, const uint16_t* dcode,
                                 const uint16_t* dlen, BitWriter* bits) {
  for (unsigned i = 0; i < last_lit_; ++i) {
    unsigned lc = lit_[i];
    if (dist_[i] == 0) {
      bits->Put(lcode[lc], llen[lc]);
      continue;
    }
    unsigned code = kCodes.length_code[lc];
    bits->Put(lcode[code + kLiterals + 1], llen[code + kLiterals + 1]);
    if (int extra = kExtraLBits[code]; extra != 0) bits->Put(lc - kCodes.base_length[code], extra);
    unsigned d = dist_[i] - 1u;
    code = DistCode(d);
    bits->Put(dcode[code], dlen[code]);
    if (int extra = kExtraDBits[code]; extra != 0) bits->Put(d - kCodes.base_dist[code], extra);
  }
  bits->Put(lcode[kEndBlock], llen[kEndBlock]);
}

void BlockEncoder::FlushBlock(const uint8_t* stored, uint64_t stored_len, bool eof,
                              BitWriter* bits) {
  static const Desc kLDesc{kLCodes, kExtraLBits, kLiterals + 1, kMaxBits, kStatic.llen};
  static const Desc kDDesc{kDCodes, kExtraDBits, 0, kMaxBits, kStatic.dlen};
  BuildTree(&ltree_, kLDesc);
  BuildTree(&dtree_, kDDesc);
  int max_blindex = BuildBitLengthTree();
  uint64_t opt_lenb = (opt_len_ + 3 + 7) >> 3;
  uint64_t static_lenb = (static_len_ + 3 + 7) >> 3;
  if (static_lenb <= opt_lenb) opt_lenb = static_lenb;
  const uint32_t last = eof ? 1 : 0;
  if (stored_len + 4 <= opt_lenb && stored != nullptr) {
    bits->Put(last, 3);  // BTYPE 00
    bits->AlignToByte();
    uint8_t len[4] = {static_cast<uint8_t>(stored_len), static_cast<uint8_t>(stored_len >> 8),
                      static_cast<uint8_t>(~stored_len), static_cast<uint8_t>(~stored_len >> 8)};
    bits->Append(len, 4);
    bits->Append(stored, stored_len);
  } else if (static_lenb == opt_lenb) {
    bits->Put(2 | last, 3);  // BTYPE 01
    CompressBlock(kStatic.lcode, kStatic.llen, kStatic.dcode, kStatic.dlen, bits);
  } else {
    bits->Put(4 | last, 3);  // BTYPE 10
    int lcodes = ltree_.max_code + 1, dcodes = dtree_.max_code + 1, blcodes = max_blindex + 1;
    bits->Put(lcodes - 257, 5);
    bits->Put(dcodes - 1, 5);
    bits->Put(blcodes - 4, 4);
    for (int rank = 0; rank < blcodes; ++rank) bits->Put(bltree_.len[kBlOrder[rank]], 3);
    SendTree(ltree_, lcodes - 1, bits);
    SendTree(dtree_, dcodes - 1, bits);
    CompressBlock(ltree_.code, ltree_.len, dtree_.code, dtree_.len, bits);
  }
  InitBlock();
  if (eof) bits->AlignToByte();
}

}  // namespace gnuflate_internal
}  // namespace cofferlayer
