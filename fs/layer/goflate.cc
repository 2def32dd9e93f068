// A DEFLATE encoder that reproduces Go 1.19 compress/flate bit for bit.
//
// Written from RFC 1951 and from Go's observed output; Go's source was not
// read. Starting hypotheses came from the usual zlib-style design (hash
// chains, lazy matching, zlib's per-level table; Snappy's for level 1) and
// general familiarity with Go's encoder; each rule below was kept because Go's
// output agreed on every test input (goflate_test.cc: byte equality, and a
// DEFLATE parser that names the first differing block, code length or token).
// [c] = confirmed: changing the rule makes some input differ from Go.
//
// Match finding (levels 2-9)
//  - [c] Minimum match 4, maximum 258; a 4-byte match only within 4096 bytes.
//  - [c] Candidates from hash chains of 4-byte prefixes: 17-bit multiplicative
//    hash (big-endian 32-bit read * 0x1e35a7bd, top 17 bits), newest first, at
//    most `chain` candidates, back at most 32768 bytes; a candidate wins only
//    if strictly longer; stop at `nice`. zlib's `good` (shorter chains after a
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
//    literals after each slide). The way input is split into writes does not
//    change Go's output [c: 1-byte, 32 KiB, random splits on 144 MB].
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
//
// Level 1 (BestSpeed): a different algorithm. [c] for each rule below
// (the table size, step, previous-piece matches, 15-byte margin, 16/128-byte
// tails, the 1/16 rule and the uncounted extra bits were each changed once):
//  - Input is cut into 65535-byte pieces, one block each. At Close a piece of
//    <= 16 bytes is stored, one of < 128 bytes is a Huffman-only block.
//  - Greedy matching, Snappy style: a 16384-entry table keyed by a 14-bit hash
//    of 4 bytes (little-endian read * 0x1e35a7bd), holding those 4 bytes and
//    their position. Scanning for a match, the step is skip/32 with skip
//    starting at 32 and growing by each step taken. A match needs the 4 bytes
//    equal within 32768 bytes back, may start in the previous piece (and run
//    on into this one), and is extended to at most 258 bytes. After a match
//    its last position and the one after it are hashed and a match is tried
//    right after it. No match starts in the last 15 bytes of a piece; a piece
//    of < 17 bytes is all literals.
//  - A piece whose tokens save less than 1/16 of its bytes becomes a
//    Huffman-only block; otherwise always a dynamic block (never fixed),
//    stored instead when the stored size < dynamic size * 17/16 (extra bits
//    not counted).
//  - gzip XFL is 4 at level 1.
#include "goflate.h"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <utility>
#include <vector>

#include "goflate_internal.h"

namespace cofferlayer {
namespace goflate_internal {
namespace {

using chunkstore::Status;

constexpr int kHashBits = 17;
constexpr int kMaxHashOffset = 1 << 24;
constexpr int kSkipNever = INT_MAX;
constexpr size_t kSinkChunk = 64 << 10;

// The 4 bytes read big-endian, times kHashMul, top kHashBits bits.
inline uint32_t Hash4(const uint8_t* b) {
  return (__builtin_bswap32(Load32(b)) * kHashMul) >> (32 - kHashBits);
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

}  // namespace

class Compressor {
 public:
  Compressor(int level, ByteSink sink);
  Status Write(const uint8_t* data, size_t size);
  Status Close();

  void SetCheckpointObserver(uint64_t interval,
                             std::function<void(const GoFlateCheckpoint&)> observer) {
    if (mode_ != Mode::kDeflate || p_.fast_skip != kSkipNever) return;
    cp_interval_ = interval;
    cp_observer_ = std::move(observer);
  }
  // Puts a fresh compressor in the state the original was in at `cp`;
  // `history` is the input [cp.window_base, cp.plain_offset).
  Status Resume(const GoFlateCheckpoint& cp, const uint8_t* history, size_t n);
  // Ends a segment at the block boundary `end_bit`, which must be the last
  // one written: sends the bytes up to it, the last one zero padded.
  Status EndSegment(uint64_t end_bit);

  // Search hints (goflate.h): record them while searching in full, or follow
  // recorded ones. At most one of the two; before the first Write.
  void RecordHints(std::string* out) {
    if (mode_ == Mode::kDeflate && p_.fast_skip == kSkipNever) hints_out_ = out;
  }
  void FollowHints(std::string_view hints) {
    hints_in_ = hints;
    follow_ = true;
  }
  bool hints_valid() const { return hints_valid_; }

 private:
  enum class Mode { kStore, kHuffOnly, kFast, kDeflate };
  void EncodeFast();
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
  void RecordHint(int searched, int win_step);
  int FollowHint(int pos, int i, int min_index, int look, int best, int* offset);
  void RecordCheckpoint();
  void PrimeHashes();
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
  FastEncoder fast_;
  uint64_t window_base_ = 0;  // input offset of window_[0] (levels 2-9)
  // Checkpoints (levels 4-9).
  std::function<void(const GoFlateCheckpoint&)> cp_observer_;
  uint64_t cp_interval_ = 0;
  uint64_t cp_last_ = 0;
  bool cp_due_ = false;
  bool prime_ = false;  // resumed: hash the history once its lookahead is in
  // Search hints.
  std::string* hints_out_ = nullptr;
  std::string_view hints_in_;
  bool follow_ = false;
  bool hints_valid_ = true;  // false: a followed hint named no possible match
};

void Compressor::EncodeFast() {
  if (window_end_ < kMaxStoreBlock) {
    if (!sync_ || window_end_ == 0) return;
    if (window_end_ < 128) {  // small tails: stored or literals only
      if (window_end_ <= 16) {
        bw_.WriteStored(window_.data(), window_end_, false);
      } else {
        bw_.WriteBlockHuff(window_.data(), window_end_, false);
      }
      window_end_ = 0;
      fast_.Reset();
      return;
    }
  }
  tokens_.clear();
  fast_.Encode(window_.data(), window_end_, &tokens_);
  if (tokens_.size() > size_t(window_end_ - (window_end_ >> 4))) {
    bw_.WriteBlockHuff(window_.data(), window_end_, false);
  } else {
    bw_.WriteBlockDynamic(tokens_, window_.data(), window_end_, false);
  }
  window_end_ = 0;
}

Compressor::Compressor(int level, ByteSink sink) : sink_(std::move(sink)) {
  if (level == 0 || level == -2 || level == 1) {
    mode_ = level == 0 ? Mode::kStore : level == 1 ? Mode::kFast : Mode::kHuffOnly;
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
  window_base_ += kWindowSize;
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
    case Mode::kFast:
      EncodeFast();
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
  // Recorded at the next step, once the lazy matcher's state for the new
  // block is settled. Close's blocks are not resumable: their input is short.
  if (cp_observer_ && !sync_ && window_base_ + uint64_t(index) >= cp_last_ + cp_interval_) {
    cp_due_ = true;
  }
}

void Compressor::RecordCheckpoint() {
  cp_due_ = false;
  GoFlateCheckpoint cp;
  cp.plain_offset = window_base_ + uint64_t(block_start_);
  cp.bit_offset = bw_.bits().bit_count();
  cp.window_base = window_base_;
  cp.byte_pending = byte_available_;
  if (byte_available_) {
    cp.match_length = uint16_t(length_);
    cp.match_distance = uint16_t(offset_);
  }
  cp_last_ = cp.plain_offset;
  cp_observer_(cp);
}

Status Compressor::Resume(const GoFlateCheckpoint& cp, const uint8_t* history, size_t n) {
  if (mode_ != Mode::kDeflate || p_.fast_skip != kSkipNever) {
    return Status::InvalidArgument("goflate: this level has no checkpoints");
  }
  const uint64_t h = cp.plain_offset - cp.window_base;
  if (cp.plain_offset < cp.window_base || h + kMinMatch + kMaxMatch > 2 * kWindowSize ||
      cp.window_base % kWindowSize != 0 || n != h) {
    return Status::InvalidArgument("goflate: checkpoint does not fit its history");
  }
  std::memcpy(window_.data(), history, n);
  window_base_ = cp.window_base;
  window_end_ = block_start_ = int(h);
  index_ = int(h) + (cp.byte_pending ? 1 : 0);
  byte_available_ = cp.byte_pending;
  length_ = cp.byte_pending ? cp.match_length : kMinMatch - 1;
  offset_ = cp.byte_pending ? cp.match_distance : 0;
  bw_.bits().StartAt(cp.bit_offset);
  prime_ = true;
  return Status::OK();
}

// Levels 4-9 hash every position in order, so re-inserting the positions a
// search can still reach (the last 32 KiB, not before the buffer start)
// re-creates every chain a future search follows.
void Compressor::PrimeHashes() {
  prime_ = false;
  for (int pos = std::max(index_ - kWindowSize, 0); pos < index_; ++pos) InsertHash(pos);
}

Status Compressor::EndSegment(uint64_t end_bit) {
  if (!err_.ok()) return err_;
  Step();  // Write buffers its last piece until the next call
  BitWriter& out = bw_.bits();
  if (out.bit_count() != end_bit) {
    return err_ = Status::Corruption("goflate: segment ends at bit " +
                                     std::to_string(out.bit_count()) + ", its checkpoint at " +
                                     std::to_string(end_bit));
  }
  closed_ = true;
  out.FlushPartial();
  return err_ = Drain(true);
}

bool Compressor::FindMatch(int pos, int prev_head, int lookahead, int* length, int* offset) {
  const int look = std::min(kMaxMatch, lookahead);
  const int nice = std::min(p_.nice, look);
  const uint8_t* win = window_.data();
  const int min_index = pos - kWindowSize;
  // With hints, the walk stops after kGoFlateHintAfter candidates and the
  // hint says where the rest of the chain holds a longer match, if anywhere.
  const int limit = follow_ ? std::min(p_.chain, kGoFlateHintAfter) : p_.chain;
  int best = kMinMatch - 1;
  // A candidate can beat `best` only if bytes [best-3, best] match too; one
  // 32-bit compare rejects most candidates.
  uint32_t w_end = Load32(win + pos + best - 3);
  int win_step = -1, step = 0;
  int i = prev_head;
  for (;; ++step) {
    if (step == limit) {
      if (step == p_.chain) break;  // the chain limit ended the walk
      if (hints_in_.empty()) {      // past the segment's end: its output is discarded
        follow_ = false;
        return FindMatch(pos, prev_head, lookahead, length, offset);
      }
      const int n = FollowHint(pos, i, min_index, look, best, offset);
      if (n > 0) {
        *length = n;
        return true;
      }
      break;
    }
    if (Load32(win + i + best - 3) == w_end) {
      int n = MatchLen(win + i, win + pos, look);
      if (n > best && (n > kMinMatch || pos - i <= 4096)) {
        best = n;
        *offset = pos - i;
        win_step = step;
        if (n >= nice) break;
        w_end = Load32(win + pos + n - 3);
      }
    }
    if (i == min_index) break;  // its chain slot now belongs to pos
    i = int(hash_prev_[i & kWindowMask]) - hash_offset_;
    if (i < min_index || i < 0) break;
  }
  if (hints_out_) RecordHint(step, win_step);
  if (win_step >= 0) *length = best;
  return win_step >= 0;
}

// A hint for each search that examined more than kGoFlateHintAfter
// candidates: 0 if the winner (or no match) was decided among the first
// kGoFlateHintAfter, else 1 + the winner's step beyond them; one byte below
// 255, else 255 and the value in 16 bits little-endian (levels 8 and 9 walk
// up to 4096 candidates).
void Compressor::RecordHint(int searched, int win_step) {
  if (searched < kGoFlateHintAfter || p_.chain <= kGoFlateHintAfter) return;
  const int h = win_step < kGoFlateHintAfter ? 0 : win_step - kGoFlateHintAfter + 1;
  if (h < 255) {
    hints_out_->push_back(char(h));
  } else {
    hints_out_->push_back(char(255));
    hints_out_->push_back(char(h & 0xff));
    hints_out_->push_back(char(h >> 8));
  }
}

// Follows the next hint from candidate `i` (step kGoFlateHintAfter): the
// match length it names (its offset in *offset), or 0 if the best of the
// first candidates stands. A hint that names no longer match within the
// window marks the stream invalid; the digest check then fails.
int Compressor::FollowHint(int pos, int i, int min_index, int look, int best, int* offset) {
  int h = uint8_t(hints_in_[0]);
  hints_in_.remove_prefix(1);
  if (h == 255) {
    if (hints_in_.size() < 2) return hints_valid_ = false, 0;
    h = uint8_t(hints_in_[0]) | uint8_t(hints_in_[1]) << 8;
    hints_in_.remove_prefix(2);
  }
  if (h == 0) return 0;
  if (h > p_.chain - kGoFlateHintAfter) return hints_valid_ = false, 0;
  for (int k = 1; k < h; ++k) {
    if (i == min_index) return hints_valid_ = false, 0;
    i = int(hash_prev_[i & kWindowMask]) - hash_offset_;
    if (i < min_index || i < 0) return hints_valid_ = false, 0;
  }
  const int n = MatchLen(window_.data() + i, window_.data() + pos, look);
  if (n <= best || !(n > kMinMatch || pos - i <= 4096)) return hints_valid_ = false, 0;
  *offset = pos - i;
  return n;
}

template <bool kLazy>
void Compressor::Deflate() {
  if (window_end_ - index_ < kMinMatch + kMaxMatch && !sync_) return;
  max_insert_index_ = window_end_ - (kMinMatch - 1);
  if (prime_) PrimeHashes();
  for (;;) {
    if (cp_due_) RecordCheckpoint();
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

bool GoFlateWriter::IsSupportedLevel(int level) { return level >= -2 && level <= 9; }

Status GoFlateWriter::Write(const uint8_t* data, size_t size) { return c_->Write(data, size); }
void GoFlateWriter::RecordHints(std::string* out) { c_->RecordHints(out); }
void GoFlateWriter::SetCheckpointObserver(uint64_t interval,
                                          std::function<void(const GoFlateCheckpoint&)> observer) {
  c_->SetCheckpointObserver(interval, std::move(observer));
}
Status GoFlateWriter::Close() { return c_->Close(); }

GoGzipWriter::GoGzipWriter(int level, ByteSink sink)
    : sink_(sink), flate_(level, sink), level_(level) {}

Status GoGzipWriter::Write(const uint8_t* data, size_t size) {
  if (!header_written_) {
    // ID1 ID2 CM=8 FLG=0 MTIME=0 XFL OS=255 (unknown), as Go writes it.
    const uint8_t header[10] = {
        0x1f, 0x8b, 8, 0, 0, 0, 0, 0, uint8_t(level_ == 9 ? 2 : level_ == 1 ? 4 : 0), 255};
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

Result<std::string> GoFlateSegment(int level, const GoFlateCheckpoint* from,
                                   const GoFlateCheckpoint* to, std::string_view plain,
                                   std::string_view hints) {
  if (!GoFlateWriter::SupportsCheckpoints(level)) {
    return Status::InvalidArgument("goflate: level " + std::to_string(level) +
                                   " has no checkpoints");
  }
  std::string out;
  goflate_internal::Compressor c(level, [&out](const uint8_t* p, size_t n) {
    out.append(reinterpret_cast<const char*>(p), n);
    return Status::OK();
  });
  const uint64_t base = from ? from->window_base : 0;
  const uint64_t start = from ? from->plain_offset - base : 0;
  if (start > plain.size()) return Status::InvalidArgument("goflate: segment history missing");
  const auto* p = reinterpret_cast<const uint8_t*>(plain.data());
  if (from) RETURN_IF_ERROR(c.Resume(*from, p, start));
  if (!hints.empty()) c.FollowHints(hints);
  // Up to the end checkpoint plus the lookahead that made Go tokenize up to
  // it, and no further: then no block after it is written.
  uint64_t end = plain.size();
  if (to) end = std::min<uint64_t>(end, to->plain_offset + kGoFlateSegmentLookahead - base);
  if (end < start) return Status::InvalidArgument("goflate: segment ends before it starts");
  RETURN_IF_ERROR(c.Write(p + start, end - start));
  RETURN_IF_ERROR(to ? c.EndSegment(to->bit_offset) : c.Close());
  if (!c.hints_valid()) return Status::Corruption("goflate: a search hint names no match");
  return out;
}

Result<std::string> GoGzip(std::string_view data, int level) {
  return CompressAll<GoGzipWriter>(data, level);
}

Result<std::string> GoDeflate(std::string_view data, int level) {
  return CompressAll<GoFlateWriter>(data, level);
}

}  // namespace cofferlayer
