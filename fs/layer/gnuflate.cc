// The matcher half of gnuflate: gzip(1) 1.12's window, hash chains and
// its two parsing loops (gnuflate_trees.cc writes the blocks).
//
// Overview of what is reproduced (each rule is visible in gzip's output):
//  - A 64 KiB window read 64 KiB at a time (gzip reads a file in full-size
//    reads; its output is the same for a pipe), slid down by 32 KiB when the
//    position reaches 32 KiB + kMaxDist and fewer than kMinLookahead (262)
//    bytes are ahead; the hash heads and chain links are rebased, dropping
//    positions that fall off. At the end of input the two bytes after the
//    data are zeroed; bytes beyond them keep what the window held.
//  - A 15-bit rolling hash of three bytes, h = ((h << 5) ^ c) & 0x7fff, the
//    chain of every inserted position, and no match search from a position
//    past 64 KiB - 262 (only possible at the end of input) nor against a
//    candidate more than kMaxDist (32506) back.
//  - Longest match: candidates from the newest, first filtered on the bytes
//    at the current best length and on the first two bytes (the third is
//    implied by the hash), the first longest kept, the search stopping at the
//    nice length or after `chain` candidates (a quarter of them when the
//    previous match already reached `good`). A match never runs past the
//    input's end.
//  - Levels 1-3 (greedy): a match is taken at once; its positions are hashed
//    only if its length is at most the level's `lazy` value, otherwise the
//    hash restarts after it.
//  - Levels 4-9 (lazy): a match is only emitted when the next position does
//    not find a longer one; no search is made while the pending match is at
//    least `lazy` long; a 3-byte match more than 4096 bytes back is ignored.
#include "gnuflate.h"

#include <algorithm>
#include <cstring>

#include "gnuflate_internal.h"

namespace cofferlayer {
namespace gnuflate_internal {
namespace {

constexpr unsigned kWSize = 0x8000;
constexpr unsigned kWMask = kWSize - 1;
constexpr unsigned kWindowSize = 2 * kWSize;
constexpr unsigned kWindowSlack = 512;  // reads past the window's end see zeros
constexpr unsigned kHashSize = 1u << 15;
constexpr unsigned kHashMask = kHashSize - 1;
constexpr unsigned kHashShift = 5;
constexpr unsigned kMinMatch = 3;
constexpr unsigned kMaxMatch = 258;
constexpr unsigned kMinLookahead = kMaxMatch + kMinMatch + 1;
constexpr unsigned kMaxDist = kWSize - kMinLookahead;
constexpr unsigned kTooFar = 4096;

struct Config {
  uint16_t good, lazy, nice, chain;
};
// Per level: reduce the search above `good`, lazy limit (levels 1-3: the
// longest match whose positions are hashed), stop at `nice`, chain length.
constexpr Config kConfig[10] = {{0, 0, 0, 0},        {4, 4, 8, 4},      {4, 5, 16, 8},
                                {4, 6, 32, 32},      {4, 4, 16, 16},    {8, 16, 32, 32},
                                {8, 16, 128, 128},   {8, 32, 128, 256}, {32, 128, 258, 1024},
                                {32, 258, 258, 4096}};

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace

class Deflater {
 public:
  explicit Deflater(int level)
      : level_(level),
        cfg_(kConfig[level]),
        window_(new uint8_t[kWindowSize + kWindowSlack]()),
        blocks_(level) {
    std::fill(std::begin(head_), std::end(head_), 0);
    std::fill(std::begin(prev_), std::end(prev_), 0);
  }

  chunkstore::Status Write(std::string_view in, std::string* out) {
    if (finished_) return chunkstore::Status::FailedPrecondition("gnuflate: Write after Finish");
    in_ = in;
    bits_.set_out(out);
    Run(false);
    // Keep what the window could not take yet.
    pending_.erase(0, pending_pos_);
    pending_pos_ = 0;
    pending_.append(in_);
    in_ = {};
    return chunkstore::Status::OK();
  }

  chunkstore::Status Finish(std::string* out) {
    if (finished_) return chunkstore::Status::FailedPrecondition("gnuflate: Finish after Finish");
    finished_ = true;
    bits_.set_out(out);
    Run(true);
    if (level_ > 3 && match_available_) {
      blocks_.TallyLiteral(window_[strstart_ - 1], InLength());
    }
    FlushBlock(true);
    pending_.clear();
    return chunkstore::Status::OK();
  }

 private:
  size_t Available() const { return pending_.size() - pending_pos_ + in_.size(); }
  uint64_t InLength() const { return static_cast<uint64_t>(int64_t{strstart_} - block_start_); }

  // Copies up to n input bytes to dst, the buffered ones first.
  size_t Read(uint8_t* dst, size_t n) {
    size_t got = std::min(n, pending_.size() - pending_pos_);
    std::memcpy(dst, pending_.data() + pending_pos_, got);
    pending_pos_ += got;
    size_t more = std::min(n - got, in_.size());
    std::memcpy(dst + got, in_.data(), more);
    in_.remove_prefix(more);
    return got + more;
  }

  // The bytes a fill would ask for: the free space at the window's end, plus
  // 32 KiB if it slides first.
  unsigned FillSize() const {
    return kWindowSize - lookahead_ - strstart_ + (strstart_ >= kWSize + kMaxDist ? kWSize : 0);
  }

  void FillWindow() {
    unsigned more = kWindowSize - lookahead_ - strstart_;
    if (strstart_ >= kWSize + kMaxDist) {
      std::memcpy(window_.get(), window_.get() + kWSize, kWSize);
      match_start_ -= kWSize;
      strstart_ -= kWSize;
      block_start_ -= kWSize;
      for (uint16_t& h : head_) h = h >= kWSize ? static_cast<uint16_t>(h - kWSize) : 0;
      for (uint16_t& p : prev_) p = p >= kWSize ? static_cast<uint16_t>(p - kWSize) : 0;
      more += kWSize;
    }
    if (eofile_) return;
    size_t n = Read(window_.get() + strstart_ + lookahead_, more);
    if (n == 0) {
      eofile_ = true;
      std::memset(window_.get() + strstart_ + lookahead_, 0, kMinMatch - 1);
    } else {
      lookahead_ += static_cast<unsigned>(n);
    }
  }

  // Runs the parser as far as the input allows: until the window needs a fill
  // that the input cannot complete (unless finishing), or the input ends.
  void Run(bool finishing) {
    for (;;) {
      while (lookahead_ < kMinLookahead && !eofile_) {
        if (!finishing && Available() < FillSize()) return;
        FillWindow();
      }
      if (!started_) {
        ins_h_ = 0;
        for (unsigned j = 0; j < kMinMatch - 1; ++j) UpdateHash(window_[j]);
        started_ = true;
      }
      if (lookahead_ == 0) return;
      if (level_ <= 3) {
        RunGreedy();
      } else {
        RunLazy();
      }
    }
  }

  void UpdateHash(uint8_t c) { ins_h_ = ((ins_h_ << kHashShift) ^ c) & kHashMask; }
  // Inserts the string at s into the dictionary; returns the previous head.
  unsigned InsertString(unsigned s) {
    UpdateHash(window_[s + kMinMatch - 1]);
    unsigned head = head_[ins_h_];
    prev_[s & kWMask] = static_cast<uint16_t>(head);
    head_[ins_h_] = static_cast<uint16_t>(s);
    return head;
  }

  bool CanSearch(unsigned hash_head) const {
    return hash_head != 0 && strstart_ - hash_head <= kMaxDist &&
           strstart_ <= kWindowSize - kMinLookahead;
  }

  // The length of the common prefix of scan and match, known to share their
  // first three bytes, up to kMaxMatch.
  static unsigned MatchLength(const uint8_t* scan, const uint8_t* match) {
    for (unsigned i = 3; i < kMaxMatch; i += 8) {
      uint64_t x = Load64(scan + i) ^ Load64(match + i);
      if (x != 0) return std::min(kMaxMatch, i + (__builtin_ctzll(x) >> 3));
    }
    return kMaxMatch;
  }

  unsigned LongestMatch(unsigned cur_match) {
    unsigned chain = cfg_.chain;
    const uint8_t* scan = window_.get() + strstart_;
    unsigned best_len = prev_length_;
    const unsigned limit = strstart_ > kMaxDist ? strstart_ - kMaxDist : 0;
    uint8_t scan_end1 = scan[best_len - 1], scan_end = scan[best_len];
    if (prev_length_ >= cfg_.good) chain >>= 2;
    const unsigned nice = cfg_.nice;
    do {
      const uint8_t* match = window_.get() + cur_match;
      if (match[best_len] != scan_end || match[best_len - 1] != scan_end1 || match[0] != scan[0] ||
          match[1] != scan[1]) {
        continue;
      }
      unsigned len = MatchLength(scan, match);
      if (len > best_len) {
        match_start_ = cur_match;
        best_len = len;
        if (len >= nice) break;
        scan_end1 = scan[best_len - 1];
        scan_end = scan[best_len];
      }
    } while ((cur_match = prev_[cur_match & kWMask]) > limit && --chain != 0);
    return best_len;
  }

  void FlushBlock(bool eof) {
    const uint8_t* stored = block_start_ >= 0 ? window_.get() + block_start_ : nullptr;
    blocks_.FlushBlock(stored, InLength(), eof, &bits_);
    block_start_ = strstart_;
  }

  bool MoreToParse() const { return lookahead_ >= kMinLookahead || (eofile_ && lookahead_ != 0); }

  // Levels 1-3: deflate_fast.
  void RunGreedy() {
    while (MoreToParse()) {
      unsigned hash_head = InsertString(strstart_);
      if (CanSearch(hash_head)) {
        match_length_ = LongestMatch(hash_head);
        if (match_length_ > lookahead_) match_length_ = lookahead_;
      }
      bool flush;
      if (match_length_ >= kMinMatch) {
        flush = blocks_.TallyMatch(strstart_ - match_start_, match_length_, InLength());
        lookahead_ -= match_length_;
        if (match_length_ <= cfg_.lazy) {
          --match_length_;  // the string at strstart_ is in the table already
          do InsertString(++strstart_);
          while (--match_length_ != 0);
          ++strstart_;
        } else {
          strstart_ += match_length_;
          match_length_ = 0;
          ins_h_ = window_[strstart_];
          UpdateHash(window_[strstart_ + 1]);
        }
      } else {
        flush = blocks_.TallyLiteral(window_[strstart_], InLength());
        --lookahead_;
        ++strstart_;
      }
      if (flush) FlushBlock(false);
    }
  }

  // Levels 4-9: deflate with lazy evaluation.
  void RunLazy() {
    while (MoreToParse()) {
      unsigned hash_head = InsertString(strstart_);
      prev_length_ = match_length_;
      unsigned prev_match = match_start_;
      match_length_ = kMinMatch - 1;
      if (CanSearch(hash_head) && prev_length_ < cfg_.lazy) {
        match_length_ = LongestMatch(hash_head);
        if (match_length_ > lookahead_) match_length_ = lookahead_;
        if (match_length_ == kMinMatch && strstart_ - match_start_ > kTooFar) --match_length_;
      }
      if (prev_length_ >= kMinMatch && match_length_ <= prev_length_) {
        bool flush = blocks_.TallyMatch(strstart_ - 1 - prev_match, prev_length_, InLength());
        // strstart_ - 1 and strstart_ are hashed already.
        lookahead_ -= prev_length_ - 1;
        prev_length_ -= 2;
        do InsertString(++strstart_);
        while (--prev_length_ != 0);
        match_available_ = false;
        match_length_ = kMinMatch - 1;
        ++strstart_;
        if (flush) FlushBlock(false);
      } else if (match_available_) {
        // The previous position becomes a literal (its match, if any, lost
        // to a longer one here).
        if (blocks_.TallyLiteral(window_[strstart_ - 1], InLength())) FlushBlock(false);
        ++strstart_;
        --lookahead_;
      } else {
        match_available_ = true;
        ++strstart_;
        --lookahead_;
      }
    }
  }

  const int level_;
  const Config cfg_;
  std::unique_ptr<uint8_t[]> window_;
  uint16_t head_[kHashSize];
  uint16_t prev_[kWSize];
  unsigned strstart_ = 0, lookahead_ = 0, match_start_ = 0, ins_h_ = 0;
  unsigned prev_length_ = kMinMatch - 1, match_length_ = kMinMatch - 1;
  int64_t block_start_ = 0;
  bool eofile_ = false, started_ = false, match_available_ = false, finished_ = false;
  std::string pending_;  // input not yet in the window: pending_[pending_pos_..]
  size_t pending_pos_ = 0;
  std::string_view in_;  // the current Write's input not yet consumed
  BlockEncoder blocks_;
  BitWriter bits_;
};

}  // namespace gnuflate_internal

GnuFlateWriter::GnuFlateWriter(int level)
    : d_(std::make_unique<gnuflate_internal::Deflater>(IsSupportedLevel(level) ? level : 6)) {}
GnuFlateWriter::~GnuFlateWriter() = default;

chunkstore::Status GnuFlateWriter::Write(std::string_view in, std::string* out) {
  return d_->Write(in, out);
}
chunkstore::Status GnuFlateWriter::Finish(std::string* out) { return d_->Finish(out); }

chunkstore::Result<std::string> GnuDeflate(std::string_view data, int level) {
  if (!GnuFlateWriter::IsSupportedLevel(level)) {
    return chunkstore::Status::InvalidArgument("gzip(1) level " + std::to_string(level) +
                                               " is not supported");
  }
  GnuFlateWriter w(level);
  std::string out;
  RETURN_IF_ERROR(w.Write(data, &out));
  RETURN_IF_ERROR(w.Finish(&out));
  return out;
}

}  // namespace cofferlayer
