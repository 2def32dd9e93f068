// Level 1 (BestSpeed) for goflate: a Snappy-style greedy matcher, one block
// per 65535 input bytes, matches reaching into the previous block. The rules
// are listed atop goflate.cc.
#include <algorithm>
#include <cstring>

#include "goflate_internal.h"

namespace cofferlayer {
namespace goflate_internal {

// Length of the match at s against t (t < 0: inside the previous block, and
// the match may run on into this one), at most 254 (the caller adds 4).
int FastEncoder::MatchLen(int s, int64_t t, const uint8_t* src, int n) const {
  const int s1 = std::min(s + kMaxMatch - 4, n);
  if (t >= 0) return goflate_internal::MatchLen(src + t, src + s, s1 - s);
  const int64_t tp = int64_t(prev_.size()) + t;
  if (tp < 0) return 0;
  const int in_prev = int(std::min<int64_t>(int64_t(prev_.size()) - tp, s1 - s));
  const int m = goflate_internal::MatchLen(prev_.data() + tp, src + s, in_prev);
  if (m < in_prev || s + m == s1) return m;
  return m + goflate_internal::MatchLen(src, src + s + m, s1 - s - m);
}

void FastEncoder::Encode(const uint8_t* src, int n, std::vector<uint32_t>* tokens) {
  auto literals = [&](int from, int to) {
    for (int i = from; i < to; ++i) tokens->push_back(src[i]);
  };
  if (n < kInputMargin + 2) {
    cur_ += kMaxStoreBlock;
    prev_.clear();
    literals(0, n);
    return;
  }
  const int s_limit = n - kInputMargin;
  int next_emit = 0, s = 0;
  uint32_t cv = Load32(src);
  uint32_t next_hash = Hash(cv);
  for (;;) {
    // Look for a 4-byte match, stepping faster the longer none is found.
    int skip = 32, next_s = s;
    Entry cand;
    for (;;) {
      s = next_s;
      const int step = skip >> 5;
      next_s = s + step;
      skip += step;
      if (next_s > s_limit) goto remainder;
      cand = table_[next_hash];
      const uint32_t now = Load32(src + next_s);
      table_[next_hash] = {cv, s + cur_};
      next_hash = Hash(now);
      const int64_t offset = s - (cand.offset - cur_);
      if (offset <= kWindowSize && cv == cand.val) break;
      cv = now;
    }
    literals(next_emit, s);
    for (;;) {
      s += 4;
      const int64_t t = cand.offset - cur_ + 4;
      const int l = MatchLen(s, t, src, n);
      tokens->push_back(MatchToken(l + 4, int(s - t)));
      s += l;
      next_emit = s;
      if (s >= s_limit) goto remainder;
      uint64_t x;
      std::memcpy(&x, src + s - 1, 8);
      table_[Hash(uint32_t(x))] = {uint32_t(x), cur_ + s - 1};
      x >>= 8;
      const uint32_t curr_hash = Hash(uint32_t(x));
      cand = table_[curr_hash];
      table_[curr_hash] = {uint32_t(x), cur_ + s};
      const int64_t offset = s - (cand.offset - cur_);
      if (offset > kWindowSize || uint32_t(x) != cand.val) {
        cv = uint32_t(x >> 8);
        next_hash = Hash(cv);
        ++s;
        break;
      }
    }
  }
remainder:
  literals(next_emit, n);
  cur_ += n;
  prev_.assign(src, src + n);
}

}  // namespace goflate_internal
}  // namespace cofferlayer
