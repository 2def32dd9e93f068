// Parallel reconstruction: recipe version 2 (checkpoints) and
// SegmentedReconstructor, which re-creates a goflate layer in segments made on
// worker threads. Exactness of the segments against Go itself is in
// goflate_test.cc (GoFlateCheckpoints); here, against goflate's one-pass output.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <sstream>

#include "goflate.h"
#include "identify.h"
#include "recipe.h"
#include "reconstruct.h"

namespace cofferlayer {
namespace {

// Text-like runs, random bytes and repeats: blocks of every type.
std::string Data(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s;
  static const char* kWords[] = {"layer ", "chunk ", "digest ", "tar ", "\n", "gzip ", "go "};
  while (s.size() < n) {
    switch (rng() % 3) {
      case 0:
        for (int i = 0; i < 2000; ++i) s += kWords[rng() % 7];
        break;
      case 1:
        for (int i = 0; i < 5000; ++i) s += char(rng());
        break;
      default:
        if (s.size() > 9000) s += s.substr(rng() % (s.size() - 9000), 9000);
    }
  }
  s.resize(n);
  return s;
}

// A one-member gzip recipe for Go's gzip of `plain` at `level`, with
// checkpoints about `interval` apart, as ingestion records them.
LayerRecipe RecipeFor(std::string_view plain, const std::string& gz, int level, uint64_t interval) {
  LayerRecipe r;
  MemberRecipe m;
  m.header = gz.substr(0, 10);
  m.encoder.id = EncoderId::kGoFlate;
  m.encoder.level = level;
  m.plain_size = plain.size();
  m.trailer = gz.substr(gz.size() - 8);
  r.members.push_back(m);
  VerifyingReconstructor v(r, Sha256Digest(gz), nullptr);
  v.RecordCheckpoints(interval);
  EXPECT_TRUE(v.Feed(plain).ok());
  EXPECT_TRUE(v.Finish().ok());
  r.members[0].checkpoints = v.checkpoints(0);
  return r;
}

PlainReader ReaderOf(std::string_view plain) {
  return [plain](uint64_t off, size_t n, char* out) -> Result<size_t> {
    if (off >= plain.size()) return size_t{0};
    size_t take = std::min<size_t>(n, plain.size() - off);
    std::memcpy(out, plain.data() + off, take);
    return take;
  };
}

Result<std::string> ReadAll(SegmentedReconstructor& s) {
  std::string out;
  for (;;) {
    ASSIGN_OR_RETURN(std::string b, s.Next());
    if (b.empty()) return out;
    out += b;
  }
}

TEST(RecipeV2, ExactEncodingOfCheckpoints) {
  LayerRecipe r;
  MemberRecipe m;
  m.encoder.id = EncoderId::kGoFlate;
  m.encoder.level = 6;
  m.plain_size = 300000;
  GoFlateCheckpoint a;
  a.plain_offset = 131072 + 5;  // window_back 5
  a.window_base = 131072;
  a.bit_offset = 1000;
  GoFlateCheckpoint b;
  b.plain_offset = 200000;
  b.window_base = 163840;  // window_back 36160
  b.bit_offset = 1001;
  b.byte_pending = true;
  b.match_length = 3;
  b.match_distance = 0;
  m.checkpoints = {a, b};
  r.members.push_back(m);
  std::string e = r.Encode();
  static const char kWant[] =
      "CLRC\x02\x01\x01"                                      // v2, gzip, 1 member
      "\x00\x04\x0c\x0f\x08\x00\x00\x00\x00\xe0\xa7\x12\x00"  // member as in v1
      "\x02"                                                  // 2 checkpoints
      "\x85\x80\x08\xe8\x07\x05\x00"                          // +131077, +1000 bits, back 5
      "\xbb\x9a\x04\x01\xc0\x9a\x02\x01\x03\x00"              // +68923, +1, back 36160, pending 3/0
      "\x00";                                                 // tail
  std::string want(kWant, sizeof kWant - 1);
  ASSERT_EQ(e.size(), want.size() + 4);
  EXPECT_EQ(e.substr(0, want.size()), want);
  auto d = LayerRecipe::Decode(e);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(*d == r);
}

// Without checkpoints a recipe is version 1, byte for byte as before, so old
// recipes decode and re-encode unchanged.
TEST(RecipeV2, NoCheckpointsIsVersionOne) {
  LayerRecipe r;
  MemberRecipe m;
  m.encoder.id = EncoderId::kGoFlate;
  r.members.push_back(m);
  std::string e = r.Encode();
  EXPECT_EQ(e[4], '\x01');
  auto d = LayerRecipe::Decode(e);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->members[0].checkpoints.empty());
}

// Re-encodes a recipe after `edit` changed its decoded form, bypassing the
// encoder's checks, and expects Decode to refuse it.
void ExpectRefused(LayerRecipe r, const std::string& what) {
  auto d = LayerRecipe::Decode(r.Encode());
  EXPECT_FALSE(d.ok()) << what;
  if (!d.ok()) {
    EXPECT_EQ(d.status().code(), chunkstore::Code::kCorruption) << what;
  }
}

TEST(RecipeV2, ImpossibleCheckpointsAreCorruption) {
  std::string plain = Data(3 << 20, 1);
  std::string gz = GoGzip(plain, 6).value();
  LayerRecipe r = RecipeFor(plain, gz, 6, 1 << 20);
  ASSERT_GE(r.members[0].checkpoints.size(), 2u);
  ASSERT_TRUE(LayerRecipe::Decode(r.Encode()).ok());
  LayerRecipe bad = r;
  bad.members[0].encoder.level = 1;  // level 1 has no checkpoints
  ExpectRefused(bad, "level 1");
  bad = r;
  std::swap(bad.members[0].checkpoints[0], bad.members[0].checkpoints[1]);
  ExpectRefused(bad, "not increasing");
  bad = r;
  bad.members[0].checkpoints[0].window_base += 1;
  ExpectRefused(bad, "window base not a multiple of 32 KiB");
  bad = r;
  bad.members[0].plain_size = bad.members[0].checkpoints.back().plain_offset - 1;
  ExpectRefused(bad, "beyond the member");
}

TEST(SegmentedReconstructor, MakesTheExactBlobAndRestarts) {
  std::string plain = Data(9 << 20, 2);
  for (int level : {6, 4}) {
    std::string gz = GoGzip(plain, level).value();
    LayerRecipe r = RecipeFor(plain, gz, level, 1 << 20);
    ASSERT_TRUE(SegmentedReconstructor::Supports(r));
    SegmentedReconstructor s(r, Sha256Digest(gz), ReaderOf(plain), 3, 4);
    EXPECT_EQ(s.segments(), r.members[0].checkpoints.size() + 1);
    auto all = ReadAll(s);
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    EXPECT_TRUE(*all == gz) << "level " << level;
    // Back to a segment made before: the hash state there is kept.
    for (size_t i : {s.segments() / 2, size_t{1}, size_t{0}}) {
      s.Restart(i);
      auto rest = ReadAll(s);
      ASSERT_TRUE(rest.ok()) << rest.status().ToString();
      EXPECT_TRUE(*rest == gz.substr(s.SegmentStart(i))) << "restart at " << i;
    }
    EXPECT_EQ(s.RestartPoint(gz.size() - 1), s.segments() - 1);
    EXPECT_EQ(s.RestartPoint(5), 0u);
  }
}

// Ingestion takes a go-flate layer's checkpoints and hints from the
// identification pass (LayerAnalyzer::RecordSegments) instead of encoding it a
// second time: they must be the ones a recording re-creation makes, at
// docker's level and another, and none at a level without checkpoints.
TEST(SegmentedReconstructor, IdentificationRecordsTheSameSegments) {
  std::string plain = Data(6 << 20, 7);
  for (int level : {6, 9, 1}) {
    std::string gz = GoGzip(plain, level).value();
    LayerAnalyzer an([](std::string_view) { return Status::OK(); });
    an.RecordSegments(1 << 20);
    for (size_t off = 0; off < gz.size(); off += 300000)
      ASSERT_TRUE(an.Feed(gz.substr(off, 300000)).ok());
    auto a = an.Finish();
    ASSERT_TRUE(a.ok() && a->recipe) << "level " << level;
    ASSERT_EQ(a->recipe->members[0].encoder.id, EncoderId::kGoFlate);
    ASSERT_EQ(a->segments.size(), 1u);
    const RecordedSegments& got = a->segments[0];
    EXPECT_TRUE(a->recipe->members[0].checkpoints.empty()) << "the recipe stays version 1";
    VerifyingReconstructor v(*a->recipe, Sha256Digest(gz), nullptr);
    v.RecordCheckpoints(1 << 20);
    ASSERT_TRUE(v.Feed(plain).ok());
    ASSERT_TRUE(v.Finish().ok());
    if (!GoFlateWriter::SupportsCheckpoints(level)) {
      EXPECT_TRUE(got.checkpoints.empty() && got.hints.empty()) << "level " << level;
      continue;
    }
    ASSERT_GE(got.checkpoints.size(), 5u) << "level " << level;
    EXPECT_TRUE(got.checkpoints == v.checkpoints(0)) << "level " << level;
    EXPECT_TRUE(got.hints == v.hints(0)) << "level " << level;
    // And they re-create the stream in segments.
    LayerRecipe r = *a->recipe;
    r.members[0].checkpoints = got.checkpoints;
    SegmentedReconstructor s(r, Sha256Digest(gz), ReaderOf(plain), 2, 3);
    auto all = ReadAll(s);
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    EXPECT_TRUE(*all == gz) << "level " << level;
  }
}

TEST(SegmentedReconstructor, OneThreadSameBytes) {
  std::string plain = Data(3 << 20, 3);
  std::string gz = GoGzip(plain, 6).value();
  LayerRecipe r = RecipeFor(plain, gz, 6, 256 << 10);
  SegmentedReconstructor s(r, Sha256Digest(gz), ReaderOf(plain), 1, 1);
  auto all = ReadAll(s);
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(*all == gz);
}

TEST(SegmentedReconstructor, WrongDigestOrCheckpointFailsTheLastRead) {
  std::string plain = Data(3 << 20, 4);
  std::string gz = GoGzip(plain, 6).value();
  LayerRecipe r = RecipeFor(plain, gz, 6, 1 << 20);
  {
    SegmentedReconstructor s(r, Sha256Digest("other"), ReaderOf(plain), 2, 2);
    auto all = ReadAll(s);
    ASSERT_FALSE(all.ok());
    EXPECT_EQ(all.status().code(), chunkstore::Code::kCorruption);
  }
  {
    LayerRecipe bad = r;
    bad.members[0].checkpoints[0].match_distance += 1;
    bad.members[0].checkpoints[0].byte_pending = true;
    bad.members[0].checkpoints[0].match_length = 200;
    SegmentedReconstructor s(bad, Sha256Digest(gz), ReaderOf(plain), 2, 2);
    EXPECT_FALSE(ReadAll(s).ok());
  }
  {
    std::string other = plain;
    other[other.size() / 2] ^= 1;  // the stored tar is not the layer's
    SegmentedReconstructor s(r, Sha256Digest(gz), ReaderOf(other), 2, 2);
    EXPECT_FALSE(ReadAll(s).ok());
  }
}

// A tool, not part of the suite: single-thread goflate vs segments on 1..4
// threads over a real tar (numbers for docs/layers.md, "Measured"):
// SEGMENT_BENCH_TAR=path[:level] cofferlayer_test --gtest_also_run_disabled_tests
//   --gtest_filter='*DISABLED_Speed'
TEST(SegmentedReconstructor, DISABLED_Speed) {
  const char* env = getenv("SEGMENT_BENCH_TAR");
  ASSERT_NE(env, nullptr) << "set SEGMENT_BENCH_TAR";
  std::string path = env;
  int level = 6;
  if (size_t c = path.rfind(':'); c != std::string::npos) {
    level = std::stoi(path.substr(c + 1));
    path.resize(c);
  }
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string plain = ss.str();
  // Wall MB/s of tar, and the CPU seconds all threads spent: on a busy
  // machine the second shows what the segments cost.
  using Clock = std::chrono::steady_clock;
  std::clock_t c0 = 0;
  auto mbps = [&](Clock::time_point t0) {
    return double(plain.size()) / 1e6 / std::chrono::duration<double>(Clock::now() - t0).count();
  };
  auto cpu = [&] { return double(std::clock() - c0) / CLOCKS_PER_SEC; };
  auto t0 = Clock::now();
  c0 = std::clock();
  std::string gz = GoGzip(plain, level).value();
  std::printf("goflate level %d one pass: %.1f MB/s of tar, %.2f CPU s (%zu -> %zu bytes)\n", level,
              mbps(t0), cpu(), plain.size(), gz.size());
  t0 = Clock::now();
  c0 = std::clock();
  LayerRecipe r = RecipeFor(plain, gz, level, 4 << 20);
  std::printf("one pass recording checkpoints + sha256: %.1f MB/s, %zu checkpoints, recipe %zu B\n",
              mbps(t0), r.members[0].checkpoints.size(), r.Encode().size());
  for (int threads = 1; threads <= 4; ++threads) {
    t0 = Clock::now();
    c0 = std::clock();
    SegmentedReconstructor s(r, Sha256Digest(gz), ReaderOf(plain), threads, threads + 1);
    auto all = ReadAll(s);
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    std::printf("segments, %d thread(s): %.1f MB/s of tar, %.2f CPU s\n", threads, mbps(t0), cpu());
    EXPECT_TRUE(*all == gz);
  }
}

}  // namespace
}  // namespace cofferlayer
