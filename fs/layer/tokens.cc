#include "tokens.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <deque>

#include "deflate_tables.h"

namespace cofferlayer {
namespace {

using deflate::kDistBase;
using deflate::kDistExtra;
using deflate::kLenBase;
using deflate::kLenExtra;
constexpr const uint8_t* kClOrder = deflate::kCodeLengthOrder;
constexpr uint64_t kWindow = 32768;
constexpr uint64_t kMaxMatch = 258;

// LSB-first bit reader over a buffer; reads past the end give zeros, and the
// caller checks Overrun() after a step.
class BitReader {
 public:
  BitReader(const uint8_t* p, size_t n, uint64_t pos = 0) : p_(p), n_(n), pos_(pos) {}
  uint32_t Peek(int k) const {  // k <= 24
    size_t byte = static_cast<size_t>(pos_ >> 3);
    uint64_t v = 0;
    if (byte + 8 <= n_) {
      std::memcpy(&v, p_ + byte, 8);  // little-endian host (x86-64, aarch64)
    } else {
      for (size_t i = 0; i < 8 && byte + i < n_; ++i) v |= uint64_t(p_[byte + i]) << (8 * i);
    }
    return static_cast<uint32_t>((v >> (pos_ & 7)) & ((1u << k) - 1));
  }
  uint32_t Read(int k) {
    uint32_t v = k ? Peek(k) : 0;
    pos_ += k;
    return v;
  }
  void Skip(int k) { pos_ += k; }
  uint64_t pos() const { return pos_; }
  bool Overrun() const { return pos_ > uint64_t(n_) * 8; }

 private:
  const uint8_t* p_;
  size_t n_;
  uint64_t pos_;
};

// A canonical Huffman code (RFC 1951 3.2.2) as a decoding table indexed by
// the next `bits` input bits: entry = symbol << 4 | length, 0 = no code.
struct HuffDecoder {
  std::vector<uint16_t> table;
  int bits = 0;
  bool Build(const uint8_t* lens, int n);
  // -1 when the input holds no code of this table.
  int Decode(BitReader& r) const {
    if (bits == 0) return -1;
    uint16_t e = table[r.Peek(bits)];
    if (e == 0) return -1;
    r.Skip(e & 15);
    return e >> 4;
  }
};

uint32_t Reverse(uint32_t code, int len) {
  uint32_t r = 0;
  for (int i = 0; i < len; ++i, code >>= 1) r = (r << 1) | (code & 1);
  return r;
}

// Canonical codes of `lens`, bit-reversed for LSB-first output. False when
// the lengths over-subscribe the code space.
bool CanonicalCodes(const uint8_t* lens, int n, uint16_t* codes) {
  int count[16] = {0};
  for (int i = 0; i < n; ++i) count[lens[i]]++;
  count[0] = 0;
  int left = 1;
  for (int l = 1; l < 16; ++l) {
    left = 2 * left - count[l];
    if (left < 0) return false;
  }
  uint32_t next[16] = {0}, code = 0;
  for (int l = 1; l < 16; ++l) next[l] = code = (code + count[l - 1]) << 1;
  for (int i = 0; i < n; ++i)
    codes[i] = lens[i] ? static_cast<uint16_t>(Reverse(next[lens[i]]++, lens[i])) : 0;
  return true;
}

bool HuffDecoder::Build(const uint8_t* lens, int n) {
  uint16_t codes[320];
  if (!CanonicalCodes(lens, n, codes)) return false;
  bits = 0;
  for (int i = 0; i < n; ++i) bits = std::max<int>(bits, lens[i]);
  table.assign(size_t{1} << bits, 0);
  if (bits == 0) return true;
  for (int i = 0; i < n; ++i) {
    if (!lens[i]) continue;
    for (uint32_t k = codes[i]; k < table.size(); k += 1u << lens[i])
      table[k] = static_cast<uint16_t>(i << 4 | lens[i]);
  }
  return true;
}

void FixedLengths(uint8_t lit[288], uint8_t dist[32]) {
  for (int i = 0; i < 288; ++i) lit[i] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
  for (int i = 0; i < 32; ++i) dist[i] = 5;
}

// A dynamic block's header after BTYPE: the code lengths of both codes
// (unused symbols 0). Empty string on success, else what is wrong.
std::string ReadDynamicHeader(BitReader& r, uint8_t lit[288], uint8_t dist[32]) {
  const int nlit = static_cast<int>(r.Read(5)) + 257, ndist = static_cast<int>(r.Read(5)) + 1;
  const int ncl = static_cast<int>(r.Read(4)) + 4;
  if (nlit > 286 || ndist > 30) return "too many length or distance codes";
  uint8_t cl[19] = {0};
  for (int i = 0; i < ncl; ++i) cl[kClOrder[i]] = static_cast<uint8_t>(r.Read(3));
  HuffDecoder cld;
  if (!cld.Build(cl, 19)) return "bad code length code";
  uint8_t lens[320] = {0};
  for (int i = 0; i < nlit + ndist;) {
    int sym = cld.Decode(r);
    if (sym < 0 || r.Overrun()) return "bad code lengths";
    if (sym < 16) {
      lens[i++] = static_cast<uint8_t>(sym);
      continue;
    }
    int rep = 0;
    uint8_t v = 0;
    if (sym == 16) {
      if (i == 0) return "repeat with no previous length";
      v = lens[i - 1];
      rep = 3 + static_cast<int>(r.Read(2));
    } else {
      rep = sym == 17 ? 3 + static_cast<int>(r.Read(3)) : 11 + static_cast<int>(r.Read(7));
    }
    if (i + rep > nlit + ndist) return "code lengths overflow";
    while (rep--) lens[i++] = v;
  }
  if (lens[256] == 0) return "no end-of-block code";
  std::memset(lit, 0, 288);
  std::memset(dist, 0, 32);
  std::memcpy(lit, lens, nlit);
  std::memcpy(dist, lens + nlit, ndist);
  return "";
}

int LengthCode(int len) {  // 3..258 -> 0..28
  if (len == 258) return 28;
  return static_cast<int>(std::upper_bound(kLenBase, kLenBase + 28, len) - kLenBase) - 1;
}
int DistCode(int dist) {  // 1..32768 -> 0..29
  return static_cast<int>(std::upper_bound(kDistBase, kDistBase + 30, dist) - kDistBase) - 1;
}

void PutVarint(std::string* s, uint64_t v) {
  while (v >= 0x80) {
    s->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  s->push_back(static_cast<char>(v));
}

// The plain data both sides see, addressed by member offset, and the 3-byte
// hash chains over it (every position inserted, as zlib at its best levels).
class Window {
 public:
  // `base`: the member offset of the first byte Append will add.
  explicit Window(uint64_t base = 0)
      : base_(base), head_(kHashSize, -1), prev_(kWindow, -1), next_(base) {}
  uint64_t end() const { return base_ + buf_.size(); }
  uint8_t At(uint64_t p) const { return static_cast<uint8_t>(buf_[p - base_]); }
  const char* Ptr(uint64_t p) const { return buf_.data() + (p - base_); }
  void Append(std::string_view b) { buf_.append(b); }
  void Push(uint8_t c) { buf_.push_back(static_cast<char>(c)); }
  // Copies a match (overlapping copies repeat, as DEFLATE means them).
  void Copy(uint64_t dist, int len) {
    size_t from = buf_.size() - dist;
    for (int i = 0; i < len; ++i) buf_.push_back(buf_[from + i]);
  }
  // Drops what no match at `pos` or later can reach (inserting it into the
  // chains first: the same chains whenever either side trims).
  void Trim(uint64_t pos) {
    if (pos < base_ + kWindow + (4 << 20)) return;
    const uint64_t keep = pos - kWindow;
    InsertUpTo(keep);
    buf_.erase(0, static_cast<size_t>(keep - base_));
    base_ = keep;
  }

  // The longest match of the chain at p, capped at `cap` bytes (<= 258,
  // <= the bytes here past p).
  int MatchLen(uint64_t c, uint64_t p, int cap) const {
    const char* a = Ptr(c);
    const char* b = Ptr(p);
    int n = 0;
    for (; n + 8 <= cap; n += 8) {  // all bytes up to p + cap are here, overlap or not
      uint64_t x, y;
      std::memcpy(&x, a + n, 8);
      std::memcpy(&y, b + n, 8);
      if (x != y) return n + __builtin_ctzll(x ^ y) / 8;  // little-endian host
    }
    while (n < cap && a[n] == b[n]) ++n;
    return n;
  }
  // The chain at p, nearest first, as ranks: a candidate with a match of at
  // least 3 bytes is match number m; if its match is longer than every
  // nearer one's it is also record number r (else r = -1). f(r, m,
  // candidate) returns true to stop; the walk ends by itself after
  // kTokenMaxWalk steps.
  template <class F>
  void Walk(uint64_t p, int cap, F f) {
    InsertUpTo(p);
    int steps = 0, best = 2, records = 0, matches = 0;
    for (int64_t c = head_[Hash(p)]; Candidate(c, p, &steps); c = prev_[c & (kWindow - 1)]) {
      const int len = MatchLen(uint64_t(c), p, cap);
      if (len < 3) continue;
      const bool record = len > best;
      if (record) best = len;
      if (f(record ? records++ : -1, matches++, uint64_t(c))) return;
    }
  }
  // How the match from p - dist is named: 2 * r + 1 for record r, 2 * m + 2
  // for match m that is no record; 0 if not within the walk.
  uint64_t Rank(uint64_t p, uint64_t dist, int cap) {
    uint64_t code = 0;
    Walk(p, cap, [&](int r, int m, uint64_t c) {
      if (p - c != dist) return false;
      code = r >= 0 ? 2 * uint64_t(r) + 1 : 2 * uint64_t(m) + 2;
      return true;
    });
    return code;
  }
  // The distance Rank named by `code` (> 0); 0 if there is none.
  uint64_t Find(uint64_t p, uint64_t code, int cap) {
    const bool record = code & 1;
    const int want = static_cast<int>((code - 1) / 2);
    uint64_t dist = 0;
    Walk(p, cap, [&](int r, int m, uint64_t c) {
      if ((record ? r : m) != want) return false;
      if (!record && r >= 0) return true;  // named as a match, but it is a record
      dist = p - c;
      return true;
    });
    return dist;
  }

 private:
  static constexpr size_t kHashBits = 15, kHashSize = size_t{1} << kHashBits;
  uint32_t Hash(uint64_t p) const {
    const uint8_t* s = reinterpret_cast<const uint8_t*>(Ptr(p));
    uint32_t v = uint32_t(s[0]) << 16 | uint32_t(s[1]) << 8 | s[2];
    return (v * 2654435761u) >> (32 - kHashBits);
  }
  // Every position before p, each needing the 3 bytes it starts.
  void InsertUpTo(uint64_t p) {
    for (; next_ < p; ++next_) {
      uint32_t h = Hash(next_);
      prev_[next_ & (kWindow - 1)] = head_[h];
      head_[h] = static_cast<int64_t>(next_);
    }
  }
  static bool Candidate(int64_t c, uint64_t p, int* steps) {
    return c >= 0 && p - uint64_t(c) <= kWindow && (*steps)++ < kTokenMaxWalk;
  }

  std::string buf_;
  uint64_t base_;  // member offset of buf_[0]
  std::vector<int64_t> head_, prev_;
  uint64_t next_;  // first position not yet inserted
};

struct Streams {
  std::string ops, lits, lens, ranks, dists;
  uint64_t pending = 0;  // analysis: matches whose lens/ranks are still to come
  std::string Serialize() const {
    std::string f;
    for (const std::string* s : {&ops, &lits, &lens, &ranks, &dists}) PutVarint(&f, s->size());
    for (const std::string* s : {&ops, &lits, &lens, &ranks, &dists}) f += *s;
    return f;
  }
  void Clear() {
    for (std::string* s : {&ops, &lits, &lens, &ranks, &dists}) s->clear();
  }
};

}  // namespace

// ---------------------------------------------------------------- analysis

struct TokenAnalyzer::Impl {
  // A step consumes at most this many input bytes (a stored block's data is
  // the largest), so with this much ahead no step runs out mid-way.
  static constexpr size_t kSlack = 70000;

  // A match whose length and rank wait for the 258 plain bytes after it
  // (both depend on the longest matches there).
  struct Pending {
    uint64_t pos;
    uint16_t len, dist;
    Streams* frame;
  };

  std::string in;               // input not consumed yet (whole bytes), from in_bit
  uint64_t in_bit = 0;          // bit offset in `in` of the next unread bit
  uint64_t consumed_bytes = 0;  // stream bytes dropped before `in`
  Window w;
  std::deque<Streams> open{1};  // frames not serialized yet; back() gets new blocks
  std::deque<Pending> pending;
  std::vector<std::string> frames;
  std::vector<GoFlateCheckpoint> starts;  // of frames 1, 2, ...
  uint64_t frame_plain = 0;
  bool in_block = false, final_block = false, done = false;
  uint8_t block_kind = 0;
  std::string block_ops;  // the current block's descriptor, written at its end
  uint64_t matches = 0, lit_run = 0;
  HuffDecoder lit, dist;
  Status error;

  Status Bad(uint64_t bit, const std::string& why) {
    return error = Status::Corruption("deflate tokens: " + why + " at bit " +
                                      std::to_string(consumed_bytes * 8 + bit));
  }
  Streams& s() { return open.back(); }
  Status Run(bool last);
  Status BlockHeader(BitReader& r);
  Status Token(BitReader& r, bool* block_end);
  void EndBlock(BitReader& r);
  void Model(bool all);
};

// Lengths and ranks of the pending matches whose next 258 bytes are here
// (all of them at the end), then the frames that are complete.
void TokenAnalyzer::Impl::Model(bool all) {
  while (!pending.empty() && (all || w.end() >= pending.front().pos + kMaxMatch)) {
    const Pending m = pending.front();
    pending.pop_front();
    const int cap = static_cast<int>(std::min<uint64_t>(kMaxMatch, w.end() - m.pos));
    const uint64_t rank = w.Rank(m.pos, m.dist, cap);
    PutVarint(&m.frame->ranks, rank);
    if (rank == 0) {
      m.frame->dists.push_back(static_cast<char>((m.dist - 1) & 0xff));
      m.frame->dists.push_back(static_cast<char>((m.dist - 1) >> 8));
    }
    const int longest = w.MatchLen(m.pos - m.dist, m.pos, cap);
    PutVarint(&m.frame->lens, m.len == longest ? 0 : m.len - 2u);
    --m.frame->pending;
  }
  while (open.size() > 1 && open.front().pending == 0) {
    frames.push_back(open.front().Serialize());
    open.pop_front();
  }
  if (done && open.size() == 1 && open.front().pending == 0 && !open.front().ops.empty()) {
    frames.push_back(open.front().Serialize());
    open.front().Clear();
  }
}

Status TokenAnalyzer::Impl::BlockHeader(BitReader& r) {
  const uint64_t start = r.pos();
  final_block = r.Read(1);
  const uint32_t type = r.Read(2);
  block_kind = static_cast<uint8_t>(final_block | type << 1);
  block_ops.assign(1, static_cast<char>(block_kind));
  matches = lit_run = 0;
  if (type == 0) {
    const int pad = static_cast<int>((8 - r.pos() % 8) % 8);
    block_ops.push_back(static_cast<char>(r.Read(pad)));
    const uint32_t len = r.Read(16), nlen = r.Read(16);
    if ((len ^ 0xffff) != nlen) return Bad(start, "stored block length check fails");
    if (r.Overrun() || (r.pos() >> 3) + len > in.size())
      return Bad(start, "stream ends inside a stored block");
    const char* data = in.data() + (r.pos() >> 3);
    w.Append(std::string_view(data, len));
    r.Skip(static_cast<int>(len * 8));
    PutVarint(&block_ops, len);
    frame_plain += len;
    EndBlock(r);
    return Status::OK();
  }
  uint8_t ll[288], dl[32];
  if (type == 1) {
    FixedLengths(ll, dl);
  } else if (type == 2) {
    std::string why = ReadDynamicHeader(r, ll, dl);
    if (!why.empty()) return Bad(start, why);
    if (r.Overrun()) return Bad(start, "stream ends inside a block header");
    const uint64_t nbits = r.pos() - start - 3;
    PutVarint(&block_ops, nbits);
    BitReader h(reinterpret_cast<const uint8_t*>(in.data()), in.size(), start + 3);
    for (uint64_t i = 0; i < nbits; i += 8)
      block_ops.push_back(
          static_cast<char>(h.Read(static_cast<int>(std::min<uint64_t>(8, nbits - i)))));
  } else {
    return Bad(start, "block type 3");
  }
  if (!lit.Build(ll, 288) || !dist.Build(dl, 32)) return Bad(start, "over-subscribed Huffman code");
  in_block = true;
  return Status::OK();
}

// One literal, match or end of block.
Status TokenAnalyzer::Impl::Token(BitReader& r, bool* block_end) {
  const uint64_t at = r.pos();
  const int sym = lit.Decode(r);
  if (sym < 0 || sym > 285) return Bad(at, "invalid literal/length code");
  if (sym < 256) {
    w.Push(static_cast<uint8_t>(sym));
    ++lit_run;
    ++frame_plain;
    return Status::OK();
  }
  if (sym == 256) {
    PutVarint(&s().lits, lit_run);
    PutVarint(&block_ops, matches);
    in_block = false;
    *block_end = true;
    EndBlock(r);
    return Status::OK();
  }
  const int lc = sym - 257;
  const uint32_t extra = r.Read(kLenExtra[lc]);
  if (lc == 27 && extra == 31) return Bad(at, "length 258 written as code 284");
  const int len = kLenBase[lc] + static_cast<int>(extra);
  const int dc = dist.Decode(r);
  if (dc < 0 || dc > 29) return Bad(at, "invalid distance code");
  const uint64_t d = kDistBase[dc] + r.Read(kDistExtra[dc]);
  const uint64_t p = w.end();
  if (d > p) return Bad(at, "distance " + std::to_string(d) + " before the stream's start");
  w.Copy(d, len);
  PutVarint(&s().lits, lit_run);
  lit_run = 0;
  pending.push_back({p, static_cast<uint16_t>(len), static_cast<uint16_t>(d), &s()});
  ++s().pending;
  ++matches;
  frame_plain += len;
  return Status::OK();
}

void TokenAnalyzer::Impl::EndBlock(BitReader& r) {
  s().ops += block_ops;
  if (final_block) {
    const int pad = static_cast<int>((8 - r.pos() % 8) % 8);
    s().ops.push_back(static_cast<char>(r.Read(pad)));
    done = true;
  } else if (frame_plain >= kTokenFramePlain) {
    open.emplace_back();  // the next blocks go to a new frame
    frame_plain = 0;
    GoFlateCheckpoint cp;
    cp.plain_offset = w.end();
    cp.bit_offset = consumed_bytes * 8 + r.pos();
    cp.window_base =
        cp.plain_offset < 2 * kWindow ? 0 : (cp.plain_offset - kWindow) / kWindow * kWindow;
    starts.push_back(cp);
  }
}

Status TokenAnalyzer::Impl::Run(bool last) {
  BitReader r(reinterpret_cast<const uint8_t*>(in.data()), in.size(), in_bit);
  while (!done && (last ? r.pos() < in.size() * 8 : (r.pos() >> 3) + kSlack <= in.size())) {
    const uint64_t before = r.pos();
    if (!in_block) {
      RETURN_IF_ERROR(BlockHeader(r));
    } else {
      bool end = false;
      for (int i = 0; i < 64 && !end && r.pos() + 8 * 600 <= in.size() * 8; ++i)
        RETURN_IF_ERROR(Token(r, &end));
      if (!end && r.pos() == before) RETURN_IF_ERROR(Token(r, &end));  // near the end
    }
    if (r.Overrun()) return Bad(before, "stream ends early");
    if (!pending.empty() && w.end() >= pending.front().pos + kMaxMatch) Model(false);
    w.Trim(pending.empty() ? w.end() : pending.front().pos);
  }
  Model(false);
  const size_t drop = static_cast<size_t>(r.pos() >> 3);
  in.erase(0, drop);
  consumed_bytes += drop;
  in_bit = r.pos() - uint64_t(drop) * 8;
  return Status::OK();
}

TokenAnalyzer::TokenAnalyzer() : impl_(std::make_unique<Impl>()) {}
TokenAnalyzer::~TokenAnalyzer() = default;

Status TokenAnalyzer::Feed(std::string_view deflate) {
  if (!impl_->error.ok()) return impl_->error;
  if (impl_->done) {
    if (!deflate.empty()) return impl_->Bad(impl_->in_bit, "bytes after the final block");
    return Status::OK();
  }
  impl_->in.append(deflate);
  return impl_->Run(false);
}

Status TokenAnalyzer::Finish() {
  if (!impl_->error.ok()) return impl_->error;
  RETURN_IF_ERROR(impl_->Run(true));
  impl_->Model(true);
  if (!impl_->done) return impl_->Bad(impl_->in_bit, "stream ends before its final block");
  if (!impl_->in.empty()) return impl_->Bad(impl_->in_bit, "bytes after the final block");
  return Status::OK();
}

std::vector<std::string> TokenAnalyzer::TakeFrames() { return std::move(impl_->frames); }
uint64_t TokenAnalyzer::plain_size() const { return impl_->w.end(); }
const std::vector<GoFlateCheckpoint>& TokenAnalyzer::frame_starts() const { return impl_->starts; }

// ---------------------------------------------------------------- writer
namespace {

// A frame's streams, read with bounds checks; errors name the stream.
class FrameReader {
 public:
  Status Load(std::string frame, size_t index) {
    frame_ = std::move(frame);
    index_ = index;
    std::string_view all(frame_);
    uint64_t sizes[5];
    for (uint64_t& n : sizes)
      if (!Varint(all, &n)) return Bad("sizes");
    for (int i = 0; i < 5; ++i) {
      if (sizes[i] > all.size()) return Bad("sizes");
      part_[i] = all.substr(0, sizes[i]);
      all.remove_prefix(sizes[i]);
    }
    if (!all.empty()) return Bad("trailing bytes");
    return Status::OK();
  }
  bool OpsLeft() const { return !part_[0].empty(); }
  bool AllUsed() const {
    return std::all_of(part_, part_ + 5, [](std::string_view p) { return p.empty(); });
  }
  Status U8(int stream, uint8_t* v) {
    if (part_[stream].empty()) return Bad(kNames[stream]);
    *v = static_cast<uint8_t>(part_[stream][0]);
    part_[stream].remove_prefix(1);
    return Status::OK();
  }
  Status Var(int stream, uint64_t* v) {
    return Varint(part_[stream], v) ? Status::OK() : Bad(kNames[stream]);
  }
  Status Take(int stream, size_t n, std::string_view* out) {
    if (part_[stream].size() < n) return Bad(kNames[stream]);
    *out = part_[stream].substr(0, n);
    part_[stream].remove_prefix(n);
    return Status::OK();
  }
  Status Bad(const std::string& what) const {
    return Status::Corruption("deflate tokens: frame " + std::to_string(index_) + ": " + what +
                              " malformed or short");
  }

 private:
  static constexpr const char* kNames[5] = {"ops", "literal runs", "lengths", "ranks", "distances"};
  static bool Varint(std::string_view& s, uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64 && !s.empty(); shift += 7) {
      uint8_t b = static_cast<uint8_t>(s[0]);
      s.remove_prefix(1);
      *v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return true;
    }
    return false;
  }
  std::string frame_;
  size_t index_ = 0;
  std::string_view part_[5];
};

constexpr int kOps = 0, kLits = 1, kLens = 2, kRanks = 3, kDists = 4;

class TokenEncoder : public Encoder {
 public:
  TokenEncoder(size_t frames, TokenFrameSource source)
      : frames_(frames), source_(std::move(source)) {}
  // One frame alone (TokenSegment): plain data from `window_base`, encoding
  // from `from`; with `stop_at_frame_end`, done when the frame's blocks are.
  TokenEncoder(TokenFrameSource source, uint64_t window_base, uint64_t pos, uint64_t bit_pos,
               bool stop_at_frame_end)
      : frames_(1),
        source_(std::move(source)),
        w_(window_base),
        pos_(pos),
        bit_pos_(bit_pos),
        nbits_(static_cast<int>(bit_pos % 8)),
        segment_(stop_at_frame_end) {}
  // The last byte's bits so far (segment ends that are not byte aligned).
  void FlushPartial(std::string* out) {
    FlushWhole(out);
    if (nbits_ > 0) out->push_back(static_cast<char>(acc_));
    acc_ = 0;
    nbits_ = 0;
  }
  bool done() const { return state_ == State::kDone; }
  // Writes what the plain data at hand allows, taking it as all there is
  // (a segment's plain data reaches 258 bytes past its end, or the member's).
  Status Drain(std::string* out) {
    if (!error_.ok()) return error_;
    return error_ = Run(true, out);
  }

  Status Write(std::string_view in, std::string* out) override {
    if (!error_.ok()) return error_;
    w_.Append(in);
    return error_ = Run(false, out);
  }
  Status Finish(std::string* out) override {
    if (!error_.ok()) return error_;
    RETURN_IF_ERROR(error_ = Run(true, out));
    if (state_ != State::kDone)
      return error_ = Status::Corruption("deflate tokens: the frames end before the final block");
    if (pos_ != w_.end())
      return error_ = Status::Corruption("deflate tokens: " + std::to_string(w_.end() - pos_) +
                                         " plain bytes left after the final block");
    return Status::OK();
  }

 private:
  enum class State { kBlock, kStored, kLiterals, kMatch, kDone };

  // Bits go out 32 at a time (n <= 24, so acc_ never overflows); whole bytes
  // still pending are flushed where the stream must be byte-aligned.
  void Put(uint32_t v, int n, std::string* out) {
    acc_ |= uint64_t(v) << nbits_;
    nbits_ += n;
    bit_pos_ += n;
    if (nbits_ >= 32) {
      char b[4] = {char(acc_), char(acc_ >> 8), char(acc_ >> 16), char(acc_ >> 24)};
      out->append(b, 4);
      acc_ >>= 32;
      nbits_ -= 32;
    }
  }
  void FlushWhole(std::string* out) {
    for (; nbits_ >= 8; nbits_ -= 8, acc_ >>= 8) out->push_back(static_cast<char>(acc_));
  }
  Status PutSym(const uint16_t* codes, const uint8_t* lens, int sym, std::string* out) {
    if (lens[sym] == 0)
      return Status::Corruption("deflate tokens: a block's code has no symbol " +
                                std::to_string(sym));
    Put(codes[sym], lens[sym], out);
    return Status::OK();
  }
  Status SetCodes(const uint8_t* ll, const uint8_t* dl) {
    std::memcpy(lit_len_, ll, 288);
    std::memcpy(dist_len_, dl, 32);
    if (!CanonicalCodes(lit_len_, 288, lit_code_) || !CanonicalCodes(dist_len_, 32, dist_code_))
      return fr_.Bad("block header");
    return Status::OK();
  }
  Status NextBlock(std::string* out);
  Status Literals(bool last, std::string* out);
  Status Match(bool last, bool* wait, std::string* out);
  Status EndOfBlock(std::string* out);
  Status EndBlock(std::string* out);
  Status Run(bool last, std::string* out);

  const size_t frames_;
  TokenFrameSource source_;
  size_t next_frame_ = 0;
  bool have_frame_ = false;
  FrameReader fr_;
  Window w_;
  uint64_t pos_ = 0;  // next plain position to encode
  State state_ = State::kBlock;
  bool final_ = false;
  uint64_t matches_left_ = 0, run_left_ = 0, stored_left_ = 0;
  uint16_t lit_code_[288], dist_code_[32];
  uint8_t lit_len_[288], dist_len_[32];
  uint64_t acc_ = 0, bit_pos_ = 0;
  int nbits_ = 0;
  bool segment_ = false;
  Status error_;
};

Status TokenEncoder::NextBlock(std::string* out) {
  if (!have_frame_ || !fr_.OpsLeft()) {
    if (have_frame_ && !fr_.AllUsed()) return fr_.Bad("streams left over at its end,");
    if (have_frame_ && segment_) {  // the frame's blocks are written
      state_ = State::kDone;
      return Status::OK();
    }
    if (next_frame_ >= frames_)
      return Status::Corruption("deflate tokens: the frames end before the final block");
    ASSIGN_OR_RETURN(std::string f, source_(next_frame_));
    RETURN_IF_ERROR(fr_.Load(std::move(f), next_frame_++));
    have_frame_ = true;
  }
  uint8_t kind = 0;
  RETURN_IF_ERROR(fr_.U8(kOps, &kind));
  final_ = kind & 1;
  const int type = kind >> 1;
  if (type > 2) return fr_.Bad("block kind");
  Put(kind, 3, out);
  if (type == 0) {
    uint8_t pad = 0;
    RETURN_IF_ERROR(fr_.U8(kOps, &pad));
    const int npad = static_cast<int>((8 - bit_pos_ % 8) % 8);
    if (pad >> npad) return fr_.Bad("stored block padding");
    Put(pad, npad, out);
    uint64_t len = 0;
    RETURN_IF_ERROR(fr_.Var(kOps, &len));
    if (len > 0xffff) return fr_.Bad("stored block length");
    Put(static_cast<uint32_t>(len), 16, out);
    Put(static_cast<uint32_t>(len ^ 0xffff), 16, out);
    stored_left_ = len;
    state_ = State::kStored;
    return Status::OK();
  }
  uint8_t ll[288], dl[32];
  if (type == 1) {
    FixedLengths(ll, dl);
  } else {
    uint64_t nbits = 0;
    RETURN_IF_ERROR(fr_.Var(kOps, &nbits));
    std::string_view h;
    RETURN_IF_ERROR(fr_.Take(kOps, static_cast<size_t>((nbits + 7) / 8), &h));
    BitReader r(reinterpret_cast<const uint8_t*>(h.data()), h.size());
    if (!ReadDynamicHeader(r, ll, dl).empty() || r.pos() != nbits)
      return fr_.Bad("dynamic block header");
    for (uint64_t i = 0; i < nbits; i += 8) {
      const int n = static_cast<int>(std::min<uint64_t>(8, nbits - i));
      const uint32_t v = static_cast<uint8_t>(h[i / 8]);
      if (v >> n) return fr_.Bad("dynamic block header");  // one encoding only
      Put(v, n, out);
    }
  }
  RETURN_IF_ERROR(SetCodes(ll, dl));
  RETURN_IF_ERROR(fr_.Var(kOps, &matches_left_));
  RETURN_IF_ERROR(fr_.Var(kLits, &run_left_));
  state_ = State::kLiterals;
  return Status::OK();
}

// As much of the current literal run as the plain data at hand allows.
Status TokenEncoder::Literals(bool last, std::string* out) {
  while (run_left_ > 0 && pos_ < w_.end()) {
    RETURN_IF_ERROR(PutSym(lit_code_, lit_len_, w_.At(pos_), out));
    ++pos_;
    --run_left_;
  }
  if (run_left_ > 0) {
    if (last)
      return Status::Corruption("deflate tokens: a literal run passes the plain data's end");
    return Status::OK();
  }
  if (matches_left_ == 0) return EndOfBlock(out);
  state_ = State::kMatch;
  return Status::OK();
}

// The next match, once the 258 bytes after it are here (*wait otherwise):
// its rank and length depend on the longest matches there.
Status TokenEncoder::Match(bool last, bool* wait, std::string* out) {
  if (pos_ + kMaxMatch > w_.end() && !last) {
    *wait = true;
    return Status::OK();
  }
  const int cap = static_cast<int>(std::min<uint64_t>(kMaxMatch, w_.end() - pos_));
  uint64_t rank1 = 0, len_code = 0;
  RETURN_IF_ERROR(fr_.Var(kRanks, &rank1));
  uint64_t dist = 0;
  if (rank1 == 0) {
    std::string_view d;
    RETURN_IF_ERROR(fr_.Take(kDists, 2, &d));
    dist = (uint64_t(uint8_t(d[0])) | uint64_t(uint8_t(d[1])) << 8) + 1;
  } else if (rank1 <= 2 * uint64_t(kTokenMaxWalk)) {
    dist = w_.Find(pos_, rank1, cap);
  }
  if (dist == 0 || dist > pos_)
    return fr_.Bad("match at plain offset " + std::to_string(pos_) + ",");
  RETURN_IF_ERROR(fr_.Var(kLens, &len_code));
  // The copy must give the plain bytes, or the stream would decode to others.
  const int longest = w_.MatchLen(pos_ - dist, pos_, cap);
  const uint64_t len = len_code == 0 ? uint64_t(longest) : len_code + 2;
  if (len < 3 || len > uint64_t(longest) || (len_code != 0 && len == uint64_t(longest)))
    return fr_.Bad("match length at plain offset " + std::to_string(pos_) + ",");
  const int lc = LengthCode(static_cast<int>(len)), dc = DistCode(static_cast<int>(dist));
  RETURN_IF_ERROR(PutSym(lit_code_, lit_len_, 257 + lc, out));
  Put(static_cast<uint32_t>(len - kLenBase[lc]), kLenExtra[lc], out);
  RETURN_IF_ERROR(PutSym(dist_code_, dist_len_, dc, out));
  Put(static_cast<uint32_t>(dist - kDistBase[dc]), kDistExtra[dc], out);
  pos_ += len;
  --matches_left_;
  RETURN_IF_ERROR(fr_.Var(kLits, &run_left_));
  state_ = State::kLiterals;
  return Status::OK();
}

Status TokenEncoder::EndOfBlock(std::string* out) {
  RETURN_IF_ERROR(PutSym(lit_code_, lit_len_, 256, out));
  return EndBlock(out);
}

Status TokenEncoder::EndBlock(std::string* out) {
  state_ = State::kBlock;
  if (!final_) return Status::OK();
  uint8_t pad = 0;
  RETURN_IF_ERROR(fr_.U8(kOps, &pad));
  const int npad = static_cast<int>((8 - bit_pos_ % 8) % 8);
  if (pad >> npad) return fr_.Bad("final padding");
  Put(pad, npad, out);
  FlushWhole(out);
  if (!fr_.AllUsed()) return fr_.Bad("streams left over after the final block,");
  if (next_frame_ != frames_)
    return Status::Corruption("deflate tokens: " + std::to_string(frames_ - next_frame_) +
                              " frames after the final block");
  state_ = State::kDone;
  return Status::OK();
}

Status TokenEncoder::Run(bool last, std::string* out) {
  for (;;) {
    switch (state_) {
      case State::kDone:
        return Status::OK();
      case State::kBlock:
        RETURN_IF_ERROR(NextBlock(out));
        break;
      case State::kStored: {
        const uint64_t n = std::min<uint64_t>(stored_left_, w_.end() - pos_);
        FlushWhole(out);
        if (nbits_ != 0) return fr_.Bad("stored block alignment");
        if (n > 0) {
          out->append(w_.Ptr(pos_), static_cast<size_t>(n));  // byte-aligned here
          pos_ += n;
          bit_pos_ += n * 8;
          stored_left_ -= n;
        }
        if (stored_left_ > 0) {
          if (last)
            return Status::Corruption("deflate tokens: a stored block passes the plain data's end");
          return Status::OK();
        }
        RETURN_IF_ERROR(EndBlock(out));
        break;
      }
      case State::kLiterals: {
        const uint64_t before = pos_;
        RETURN_IF_ERROR(Literals(last, out));
        if (state_ == State::kLiterals && pos_ == before && run_left_ > 0) return Status::OK();
        break;
      }
      case State::kMatch: {
        bool wait = false;
        RETURN_IF_ERROR(Match(last, &wait, out));
        if (wait) return Status::OK();
        break;
      }
    }
    w_.Trim(pos_);
  }
}

}  // namespace

std::unique_ptr<Encoder> NewTokenEncoder(size_t frames, TokenFrameSource source) {
  return std::make_unique<TokenEncoder>(frames, std::move(source));
}

Result<std::string> TokenSegment(std::string frame, const GoFlateCheckpoint* from,
                                 const GoFlateCheckpoint* to, std::string_view plain) {
  const uint64_t base = from ? from->window_base : 0;
  TokenEncoder enc([&frame](size_t) -> Result<std::string> { return std::move(frame); }, base,
                   from ? from->plain_offset : 0, from ? from->bit_offset : 0, to != nullptr);
  std::string out;
  // The window before the frame: appended and skipped (its positions are
  // inserted into the chains as the first match asks for them).
  const uint64_t start = from ? from->plain_offset : 0;
  if (start - base > plain.size())
    return Status::InvalidArgument("token segment: plain data ends before the frame");
  RETURN_IF_ERROR(enc.Write(plain, &out));
  RETURN_IF_ERROR(to ? enc.Drain(&out) : enc.Finish(&out));
  if (to) {
    // With the frame's blocks done the next position must be `to`.
    if (!enc.done())
      return Status::Corruption("deflate tokens: a frame does not end at its recorded end");
    enc.FlushPartial(&out);
  }
  return out;
}

}  // namespace cofferlayer
