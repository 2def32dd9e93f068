// Token recipes: any DEFLATE stream, re-created from its plain data and the
// frames TokenAnalyzer wrote, must come out bit for bit; frames that do not
// fit the data must fail, never write a stream silently.
#include "tokens.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <random>

#include "encoders.h"
#include "layer_test_util.h"

namespace cofferlayer {
namespace {

using testing::RandomText;

struct ZlibCase {
  int level, mem_level, strategy, flush_every;  // flush_every: plain bytes, 0 = none
  int flush;
};

// Raw DEFLATE by zlib, optionally with a flush every `c.flush_every` bytes.
std::string ZlibDeflate(const std::string& in, const ZlibCase& c) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, c.level, Z_DEFLATED, -15, c.mem_level, c.strategy), Z_OK);
  std::string out;
  size_t pos = 0;
  const size_t step = c.flush_every ? size_t(c.flush_every) : in.size() + 1;
  do {
    const size_t n = std::min(step, in.size() - pos);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + pos));
    z.avail_in = static_cast<uInt>(n);
    pos += n;
    const int flush = pos == in.size() ? Z_FINISH : c.flush;
    int rc;
    do {
      char buf[65536];
      z.next_out = reinterpret_cast<Bytef*>(buf);
      z.avail_out = sizeof buf;
      rc = deflate(&z, flush);
      out.append(buf, sizeof buf - z.avail_out);
    } while (z.avail_out == 0 || (flush == Z_FINISH && rc != Z_STREAM_END));
  } while (pos < in.size());
  deflateEnd(&z);
  return out;
}

// Analyze `deflate` in pieces of `piece` bytes, then write it back from
// `plain` fed in pieces of `plain_piece` bytes.
Result<std::string> RoundTrip(const std::string& deflate, const std::string& plain, size_t piece,
                              size_t plain_piece, std::vector<std::string>* frames_out = nullptr) {
  TokenAnalyzer a;
  std::vector<std::string> frames;
  for (size_t i = 0; i < deflate.size(); i += piece) {
    RETURN_IF_ERROR(a.Feed(std::string_view(deflate).substr(i, piece)));
    for (std::string& f : a.TakeFrames()) frames.push_back(std::move(f));
  }
  RETURN_IF_ERROR(a.Finish());
  for (std::string& f : a.TakeFrames()) frames.push_back(std::move(f));
  EXPECT_EQ(a.plain_size(), plain.size());
  auto enc = NewTokenEncoder(frames.size(), [&](size_t i) -> Result<std::string> {
    EXPECT_LT(i, frames.size());
    return frames[i];
  });
  std::string out;
  for (size_t i = 0; i < plain.size(); i += plain_piece)
    RETURN_IF_ERROR(enc->Write(std::string_view(plain).substr(i, plain_piece), &out));
  RETURN_IF_ERROR(enc->Finish(&out));
  if (frames_out) *frames_out = std::move(frames);
  return out;
}

// Text with binary stretches and long runs: literals, matches of every
// length, stored blocks where zlib finds nothing.
std::string MixedData(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  std::string s;
  while (s.size() < n) {
    switch (rng() % 4) {
      case 0:
        s += RandomText(rng, 1 + rng() % 20000);
        break;
      case 1:
        for (size_t i = 0, k = 1 + rng() % 9000; i < k; ++i) s += static_cast<char>(rng());
        break;
      case 2:
        s.append(1 + rng() % 3000, static_cast<char>(rng() % 3));
        break;
      default:
        if (s.size() > 1000) s += s.substr(rng() % (s.size() - 500), 1 + rng() % 500);
    }
  }
  s.resize(n);
  return s;
}

TEST(TokensTest, ZlibStreamsOfEveryKindComeBackBitForBit) {
  const std::string plain = MixedData(1, 3 << 20);
  std::vector<ZlibCase> cases;
  for (int level : {0, 1, 3, 6, 9}) cases.push_back({level, 8, Z_DEFAULT_STRATEGY, 0, 0});
  for (int s : {Z_FILTERED, Z_HUFFMAN_ONLY, Z_RLE, Z_FIXED}) cases.push_back({6, 8, s, 0, 0});
  cases.push_back({9, 9, Z_DEFAULT_STRATEGY, 0, 0});
  cases.push_back({4, 1, Z_DEFAULT_STRATEGY, 0, 0});
  for (int flush : {Z_SYNC_FLUSH, Z_FULL_FLUSH, Z_PARTIAL_FLUSH, Z_BLOCK})
    cases.push_back({6, 8, Z_DEFAULT_STRATEGY, 100001, flush});
  for (const ZlibCase& c : cases) {
    SCOPED_TRACE("level " + std::to_string(c.level) + " memlevel " + std::to_string(c.mem_level) +
                 " strategy " + std::to_string(c.strategy) + " flush " + std::to_string(c.flush));
    const std::string deflate = ZlibDeflate(plain, c);
    std::vector<std::string> frames;
    auto out = RoundTrip(deflate, plain, 65536 + 17, 1 << 20, &frames);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_TRUE(*out == deflate) << "re-created " << out->size() << " bytes of " << deflate.size();
    EXPECT_GE(frames.size(), 3u);  // >= kTokenFramePlain each
  }
}

TEST(TokensTest, GoFlateAndOddSplitsComeBack) {
  const std::string plain = MixedData(2, 1 << 20);
  for (int level : {1, 2, 5, 6, 9, -2}) {
    SCOPED_TRACE("go-flate level " + std::to_string(level));
    EncoderSpec spec;
    spec.id = EncoderId::kGoFlate;
    spec.level = level;
    auto enc = NewEncoder(spec);
    ASSERT_TRUE(enc.ok());
    std::string deflate;
    ASSERT_TRUE((*enc)->Write(plain, &deflate).ok());
    ASSERT_TRUE((*enc)->Finish(&deflate).ok());
    for (auto [piece, plain_piece] :
         {std::pair<size_t, size_t>{1, 7}, {4093, 1}, {1 << 22, 1 << 22}}) {
      if (piece == 1 && level != 6) continue;  // slow; one level is enough
      auto out = RoundTrip(deflate, plain, piece, plain_piece);
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      EXPECT_TRUE(*out == deflate);
    }
  }
}

// Each frame written alone from its recorded start (TokenSegment), the
// segments joined by OR-ing the byte two of them share, is the stream.
TEST(TokensTest, FramesWrittenAloneJoinToTheStream) {
  const std::string plain = MixedData(6, 5 << 20);
  for (int level : {1, 6, 9}) {
    SCOPED_TRACE("zlib level " + std::to_string(level));
    const std::string deflate = ZlibDeflate(plain, {level, 8, Z_DEFAULT_STRATEGY, 0, 0});
    TokenAnalyzer a;
    ASSERT_TRUE(a.Feed(deflate).ok());
    ASSERT_TRUE(a.Finish().ok());
    std::vector<std::string> frames = a.TakeFrames();
    const std::vector<GoFlateCheckpoint> starts = a.frame_starts();
    ASSERT_EQ(starts.size() + 1, frames.size());
    ASSERT_GE(starts.size(), 3u);
    std::string joined;
    for (size_t i = 0; i < frames.size(); ++i) {
      const GoFlateCheckpoint* from = i ? &starts[i - 1] : nullptr;
      const GoFlateCheckpoint* to = i < starts.size() ? &starts[i] : nullptr;
      if (from) {
        EXPECT_EQ(from->window_base % 32768, 0u);
        EXPECT_GE(from->plain_offset - from->window_base, from->plain_offset < 65536 ? 0u : 32768u);
      }
      const uint64_t begin = from ? from->window_base : 0;
      const uint64_t end =
          to ? std::min<uint64_t>(plain.size(), to->plain_offset + 258) : plain.size();
      auto seg =
          TokenSegment(frames[i], from, to, std::string_view(plain).substr(begin, end - begin));
      ASSERT_TRUE(seg.ok()) << i << ": " << seg.status().ToString();
      ASSERT_FALSE(seg->empty());
      std::string_view b = *seg;
      if (from && from->bit_offset % 8) {  // the shared byte
        ASSERT_FALSE(joined.empty());
        joined.back() = static_cast<char>(joined.back() | b[0]);
        b.remove_prefix(1);
      }
      joined.append(b);
      EXPECT_EQ(joined.size(), to ? (to->bit_offset + 7) / 8 : deflate.size()) << i;
    }
    EXPECT_TRUE(joined == deflate);
    // A frame written from another frame's start fails or differs.
    auto wrong = TokenSegment(frames[2], &starts[0], &starts[1],
                              std::string_view(plain).substr(starts[0].window_base));
    EXPECT_TRUE(!wrong.ok() || *wrong != deflate.substr(starts[0].bit_offset / 8, wrong->size()));
  }
}

TEST(TokensTest, TinyStreams) {
  for (const std::string& plain : {std::string(), std::string("a"), std::string("abcabcabc")}) {
    for (int level : {0, 1, 9}) {
      const std::string deflate = ZlibDeflate(plain, {level, 8, Z_DEFAULT_STRATEGY, 0, 0});
      auto out = RoundTrip(deflate, plain, 3, 1);
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      EXPECT_TRUE(*out == deflate);
    }
  }
}

// LSB-first bits, for streams zlib would not write.
struct Bits {
  std::string out;
  uint64_t acc = 0;
  int n = 0;
  void Put(uint32_t v, int k) {
    acc |= uint64_t(v) << n;
    n += k;
    while (n >= 8) {
      out.push_back(static_cast<char>(acc));
      acc >>= 8;
      n -= 8;
    }
  }
  void Huff(uint32_t code, int len) {  // Huffman codes go most significant bit first
    for (int i = len - 1; i >= 0; --i) Put((code >> i) & 1, 1);
  }
  std::string Done() {
    if (n) Put(0, 8 - n);
    return out;
  }
};

TEST(TokensTest, MalformedStreamsAreRefusedWithTheBitOffset) {
  auto analyze = [](const std::string& deflate) {
    TokenAnalyzer a;
    Status st = a.Feed(deflate);
    if (st.ok()) st = a.Finish();
    return st;
  };
  Bits type3;
  type3.Put(1, 1);
  type3.Put(3, 2);
  Status st = analyze(type3.Done());
  EXPECT_EQ(st.code(), chunkstore::Code::kCorruption);
  EXPECT_NE(st.message().find("block type 3 at bit 0"), std::string::npos) << st.ToString();

  // Fixed block: 'a', then length 258 as code 284 + 31, distance 1, end.
  Bits b;
  b.Put(1, 1);
  b.Put(1, 2);
  b.Huff(0x30 + 'a', 8);
  b.Huff(0xc0 + (284 - 280), 8);
  b.Put(31, 5);
  b.Huff(0, 5);
  b.Huff(0, 7);
  st = analyze(b.Done());
  EXPECT_NE(st.message().find("length 258 written as code 284"), std::string::npos)
      << st.ToString();

  const std::string plain = MixedData(3, 200000);
  const std::string good = ZlibDeflate(plain, {6, 8, Z_DEFAULT_STRATEGY, 0, 0});
  st = analyze(good.substr(0, good.size() / 2));
  EXPECT_EQ(st.code(), chunkstore::Code::kCorruption) << st.ToString();
  st = analyze(good + "x");
  EXPECT_NE(st.message().find("bytes after the final block"), std::string::npos) << st.ToString();
  EXPECT_TRUE(analyze(good).ok());
}

// A frame with a byte changed either fails or gives other bytes (which the
// layer's digest check then refuses); it never gives the stream silently
// "right" from wrong frames, and never crashes (run under ASan in CI's
// sanitizer build).
TEST(TokensTest, DamagedFramesFailOrDiffer) {
  const std::string plain = MixedData(4, 600000);
  const std::string deflate = ZlibDeflate(plain, {6, 8, Z_DEFAULT_STRATEGY, 0, 0});
  std::vector<std::string> frames;
  ASSERT_TRUE(RoundTrip(deflate, plain, 1 << 20, 1 << 20, &frames).ok());
  ASSERT_EQ(frames.size(), 1u);
  std::mt19937_64 rng(5);
  int failed = 0, differed = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::string f = frames[0];
    f[rng() % f.size()] ^= static_cast<char>(1 + rng() % 255);
    auto enc = NewTokenEncoder(1, [&](size_t) -> Result<std::string> { return f; });
    std::string out;
    Status st = enc->Write(plain, &out);
    if (st.ok()) st = enc->Finish(&out);
    if (!st.ok()) {
      EXPECT_EQ(st.code(), chunkstore::Code::kCorruption) << st.ToString();
      ++failed;
    } else if (out != deflate) {
      ++differed;
    }
  }
  // A changed byte in a literal run's length that keeps the total is caught
  // only by the digest; most changes fail here already.
  EXPECT_GT(failed, 200);
  EXPECT_EQ(failed + differed, 300);
  // Wrong plain data under the right frames.
  std::string other = plain;
  other[300000] ^= 1;
  auto enc = NewTokenEncoder(1, [&](size_t) -> Result<std::string> { return frames[0]; });
  std::string out;
  Status st = enc->Write(other, &out);
  if (st.ok()) st = enc->Finish(&out);
  EXPECT_TRUE(!st.ok() || out != deflate);
}

}  // namespace
}  // namespace cofferlayer
