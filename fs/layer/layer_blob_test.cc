// Layers in a real (in-memory) repository: ingestion replaces the stored form
// only when the pushed bytes come back exactly; reads re-create them, at any
// offset; a wrong recipe is caught, never served as a complete blob.
#include "layer_blob.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <thread>

#include "chunkstore/env.h"
#include "goflate.h"
#include "layer_test_util.h"
#include "recipe.h"
#include "reconstruct.h"
#include "segment_cache.h"
#include "tokens.h"

namespace cofferlayer {
namespace {

using chunkstore::Repository;
using testing::MakeRandomTree;
using testing::Quote;
using testing::ReadAll;
using testing::Shell;
using testing::TempDir;

class LayerBlobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_ = chunkstore::NewMemEnv();
    opts_.env = mem_.get();
    opts_.local_dir = local_.path();
    ASSERT_TRUE(Repository::Init("/r", "secret", "p", chunkstore::RepoParams(),
                                 chunkstore::KeyCost{4, 8192, 1}, opts_)
                    .ok());
    repo_ = std::move(Repository::Open("/r", "secret", opts_)).value();
    chunkstore::SetBlobDecoder(DecodeLayerBlob);
    chunkstore::SetBlobEncodingKind(LayerEncodingKind);
    // Reads here re-create from the stored form; the tests of the segment
    // cache turn it on themselves (segment_cache_test.cc: off in this binary).
    SegmentCache::Global().SetCapacity(0);
  }
  void TearDown() override {
    SegmentCache::Global().SetCapacity(0);
    repo_.reset();
    chunkstore::SetBlobDecoder(nullptr);
    chunkstore::SetBlobEncodingKind(nullptr);
  }

  std::string Put(const std::string& data) {
    auto info = repo_->PutBlob(
        [&, off = size_t{0}](char* buf, size_t n) mutable -> chunkstore::Result<size_t> {
          size_t take = std::min(n, data.size() - off);
          std::memcpy(buf, data.data() + off, take);
          off += take;
          return take;
        },
        nullptr);
    EXPECT_TRUE(info.ok()) << info.status().ToString();
    return info->digest;
  }
  // A Go layer of Tar(seed, files), pushed and re-stored: its bytes, digest,
  // layout and recipe.
  struct Ingested {
    std::string tar, gz, digest;
    chunkstore::BlobLayout layout;
    LayerRecipe recipe;
  };
  Ingested IngestGoLayer(int seed, int files) {
    Ingested g;
    g.tar = Tar(seed, files);
    g.gz = *GoGzip(g.tar, 6);
    g.digest = Put(g.gz);
    auto rep = IngestLayer(repo_.get(), g.digest);
    EXPECT_TRUE(rep.ok() && rep->outcome == IngestReport::Outcome::kReplaced);
    auto layout = repo_->GetBlobLayout(g.digest);
    EXPECT_TRUE(layout.ok());
    if (layout.ok()) g.layout = *layout;
    auto recipe = LayerRecipe::Decode(g.layout.encoding);
    EXPECT_TRUE(recipe.ok()) << recipe.status().ToString();
    if (recipe.ok()) g.recipe = *recipe;
    return g;
  }
  // Stores `recipe` as g's encoding (with `chunks`, default g's own).
  void Replace(const Ingested& g, const LayerRecipe& recipe,
               const std::vector<chunkstore::ChunkRef>* chunks = nullptr) {
    ASSERT_TRUE(repo_
                    ->ReplaceBlob(g.digest, g.layout.size, recipe.Encode(),
                                  chunks ? *chunks : g.layout.chunks)
                    .ok());
  }

  std::string Read(const std::string& digest, uint64_t off, size_t n) {
    auto b = repo_->OpenBlob(digest);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    std::string out(n, '\0');
    auto got = (*b)->ReadAt(off, n, out.data());
    EXPECT_TRUE(got.ok()) << got.status().ToString();
    out.resize(got.ok() ? *got : 0);
    return out;
  }
  // The whole blob includes its end: the digest check fails, naming the blob.
  // Reads of one open blob at the end, the start, the middle, backwards and
  // at `random` random offsets, each of up to 300000 bytes, all exact.
  void ExpectReadsAnywhere(const std::string& d, const std::string& blob, uint64_t seed,
                           int random) {
    auto b = repo_->OpenBlob(d);
    ASSERT_TRUE(b.ok());
    std::mt19937_64 rng(seed);
    std::vector<uint64_t> offsets = {blob.size() - 100, 0, blob.size() / 2, blob.size() / 3, 17};
    for (int i = 0; i < random; ++i) offsets.push_back(rng() % blob.size());
    for (uint64_t off : offsets) {
      size_t n = 1 + rng() % 300000;
      std::string got(n, '\0');
      auto r = (*b)->ReadAt(off, n, got.data());
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      got.resize(*r);
      EXPECT_TRUE(got == blob.substr(off, n)) << "offset " << off;
    }
  }
  void ExpectWholeReadFails(const std::string& d, size_t size) {
    auto b = repo_->OpenBlob(d);
    ASSERT_TRUE(b.ok());
    std::string out(size, '\0');
    auto r = (*b)->ReadAt(0, out.size(), out.data());
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(d), std::string::npos) << r.status().ToString();
  }
  // A tar (GNU format) of a random tree of `files` files.
  std::string Tar(uint64_t seed, int files, const std::string& extra_dir = "") {
    std::filesystem::remove_all(tmp_ / "tree");
    std::filesystem::create_directories(tmp_ / "tree");
    MakeRandomTree(tmp_ / "tree", seed, files, 200000);
    if (!extra_dir.empty()) {
      std::filesystem::create_directories(tmp_ / "tree" + "/" + extra_dir);
      MakeRandomTree(tmp_ / "tree" + "/" + extra_dir, seed + 1, 5, 50000);
    }
    std::string tar = Shell("tar --sort=name --mtime=@0 --owner=0 --group=0 -C " +
                            Quote(tmp_ / "tree") + " -cf - .");
    return tar;
  }

  TempDir local_, tmp_;
  std::unique_ptr<chunkstore::MemEnv> mem_;
  chunkstore::OpenOptions opts_;
  std::unique_ptr<Repository> repo_;
};

TEST_F(LayerBlobTest, GoGzipLayerIsStoredAsTarAndReadBackExactly) {
  std::string tar = Tar(1, 40);
  ASSERT_GT(tar.size(), 100000u);
  auto gz = GoGzip(tar, 6);
  ASSERT_TRUE(gz.ok());
  std::string digest = Put(*gz);
  auto rep = IngestLayer(repo_.get(), digest);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_EQ(rep->outcome, IngestReport::Outcome::kReplaced) << rep->why;
  EXPECT_EQ(rep->plain_bytes, tar.size());
  EXPECT_GT(rep->members, 40u);
  auto layout = repo_->GetBlobLayout(digest);
  ASSERT_TRUE(layout.ok());
  EXPECT_FALSE(layout->encoding.empty());
  EXPECT_EQ(layout->stored_size, tar.size());

  EXPECT_EQ(Read(digest, 0, gz->size() + 10), *gz);
  // Random offsets, backwards too, from one reader.
  auto b = repo_->OpenBlob(digest);
  ASSERT_TRUE(b.ok());
  std::mt19937_64 rng(3);
  for (int i = 0; i < 20; ++i) {
    uint64_t off = rng() % gz->size();
    size_t n = 1 + rng() % 100000;
    std::string got(n, '\0');
    auto r = (*b)->ReadAt(off, n, got.data());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    got.resize(*r);
    EXPECT_EQ(got, gz->substr(off, n)) << "offset " << off;
  }
  EXPECT_EQ(IngestLayer(repo_.get(), digest)->outcome, IngestReport::Outcome::kAlreadyDone);
  auto stats = repo_->GetStats();
  EXPECT_EQ(stats->encoded_blobs, 1u);
}

TEST_F(LayerBlobTest, FilesSharedByTwoLayersAreStoredOnce) {
  std::string tar1 = Tar(5, 30);
  std::string tar2 = Tar(5, 30, "extra");  // same files plus a directory
  std::string d1 = Put(*GoGzip(tar1, 6));
  testing::WriteAll(tmp_ / "t2.tar", tar2);
  std::string gz2 = Shell("gzip -n -6 -c " + Quote(tmp_ / "t2.tar"));
  ASSERT_EQ(IngestLayer(repo_.get(), d1)->outcome, IngestReport::Outcome::kReplaced);
  ASSERT_TRUE(repo_->Gc(nullptr).ok());  // d1's pushed bytes go: count what d2 adds
  auto before = repo_->GetStats();
  std::string d2 = Put(gz2);
  auto rep = IngestLayer(repo_.get(), d2);
  ASSERT_TRUE(rep.ok());
  ASSERT_EQ(rep->outcome, IngestReport::Outcome::kReplaced) << rep->why;  // gzip(1) level 6
  ASSERT_TRUE(repo_->Gc(nullptr).ok());
  auto after = repo_->GetStats();
  // The second layer adds its extra directory and headers, not the shared files.
  EXPECT_LT(after->unique_bytes - before->unique_bytes, tar2.size() - tar1.size() + 200000)
      << "unique bytes " << before->unique_bytes << " -> " << after->unique_bytes;
  EXPECT_EQ(Read(d2, 0, gz2.size()), gz2);
}

TEST_F(LayerBlobTest, PlainTarIsRechunkedByFile) {
  std::string tar = Tar(9, 20);
  std::string d = Put(tar);
  auto rep = IngestLayer(repo_.get(), d);
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->outcome, IngestReport::Outcome::kReplaced);
  EXPECT_TRUE(repo_->GetBlobLayout(d)->encoding.empty());
  EXPECT_EQ(Read(d, 0, tar.size()), tar);
}

TEST_F(LayerBlobTest, NotALayerAndUnreproducibleLayerKeepTheBlob) {
  std::string junk = Shell("head -c 300000 /dev/urandom");
  std::string d = Put(junk);
  auto rep = IngestLayer(repo_.get(), d);
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->outcome, IngestReport::Outcome::kNotALayer);
  EXPECT_EQ(Read(d, 0, junk.size()), junk);

  // A gzip layer followed by 1.5 MiB of bytes that start no member: neither
  // an encoder nor the stream's tokens reproduce that (kMaxTailBytes).
  testing::WriteAll(tmp_ / "l.tar", Tar(12, 10));
  std::string gz = Shell("gzip -n -c " + Quote(tmp_ / "l.tar")) + std::string(3 << 19, 'z');
  d = Put(gz);
  rep = IngestLayer(repo_.get(), d);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_EQ(rep->outcome, IngestReport::Outcome::kKeptAsPushed);
  EXPECT_NE(rep->why.find("deflate tokens: more than"), std::string::npos) << rep->why;
  EXPECT_TRUE(repo_->GetBlobLayout(d)->encoding.empty());
  EXPECT_EQ(Read(d, 0, gz.size()), gz);
}

// zlib with a 512-byte window, written in two members: a valid gzip layer no
// candidate reproduces, so it is stored as its tar plus the streams' tokens
// (recipe version 4, frames after the tar) and read back exactly.
TEST_F(LayerBlobTest, UnknownEncoderIsStoredAsTokens) {
  testing::WriteAll(tmp_ / "l.tar", Tar(11, 40));
  std::string odd = Shell(
      "python3 -c 'import sys,zlib\n"
      "d=open(sys.argv[1],\"rb\").read(); h=len(d)//3\n"
      "for part in (d[:h], d[h:]):\n"
      "  c=zlib.compressobj(6, zlib.DEFLATED, 25, 1); "
      "sys.stdout.buffer.write(c.compress(part)+c.flush())' " +
      Quote(tmp_ / "l.tar"));
  ASSERT_GT(odd.size(), 100000u);
  std::string d = Put(odd);
  auto rep = IngestLayer(repo_.get(), d);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_EQ(rep->outcome, IngestReport::Outcome::kReplaced) << rep->why;
  EXPECT_NE(rep->why.find("deflate tokens"), std::string::npos) << rep->why;
  auto layout = repo_->GetBlobLayout(d);
  ASSERT_TRUE(layout.ok());
  auto recipe = LayerRecipe::Decode(layout->encoding);
  ASSERT_TRUE(recipe.ok()) << recipe.status().ToString();
  EXPECT_EQ(layout->encoding[4], '\x04');
  EXPECT_EQ(LayerEncodingKind(layout->encoding), "deflate tokens");  // `coffer stats`
  EXPECT_EQ(LayerEncodingKind(layout->encoding.substr(0, 5)), "unreadable recipe");
  auto stats = repo_->GetStats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->encoded_by_kind["deflate tokens"].blobs, 1u);
  ASSERT_EQ(recipe->members.size(), 2u);
  for (const MemberRecipe& m : recipe->members) {
    EXPECT_EQ(m.encoder.id, EncoderId::kTokens);
    EXPECT_GE(m.hint_sizes.size(), 1u);
  }
  EXPECT_EQ(layout->stored_size, recipe->PlainSize() + recipe->HintBytes());
  EXPECT_LT(recipe->HintBytes(), odd.size() / 3);
  EXPECT_EQ(Read(d, 0, odd.size()), odd);
  EXPECT_EQ(Read(d, odd.size() / 2, 1000), odd.substr(odd.size() / 2, 1000));

  // The same frames with one byte changed in each: never served as the blob.
  std::vector<chunkstore::ChunkRef> chunks;
  std::string side;
  uint64_t at = 0;
  for (const auto& c : layout->chunks) {
    if (at < recipe->PlainSize()) {
      chunks.push_back(c);
    } else {
      ASSERT_TRUE(repo_->ReadChunk(c.id, &side).ok());
    }
    at += c.length;
  }
  ASSERT_EQ(side.size(), recipe->HintBytes());
  LayerRecipe bad = *recipe;
  auto w = repo_->NewContentWriter();
  size_t pos = 0;
  for (MemberRecipe& m : bad.members) {
    for (uint64_t& size : m.hint_sizes) {
      auto frame = DecompressHints(side.substr(pos, size), kMaxTokenFrame);
      ASSERT_TRUE(frame.ok()) << frame.status().ToString();
      pos += size;
      (*frame)[frame->size() / 2] ^= 0x10;
      std::string z = CompressHints(*frame);
      size = z.size();
      ASSERT_TRUE(w->Append(z).ok());
    }
  }
  auto more = w->Finish();
  ASSERT_TRUE(more.ok());
  chunks.insert(chunks.end(), more->begin(), more->end());
  ASSERT_TRUE(repo_->ReplaceBlob(d, layout->size, bad.Encode(), chunks).ok());
  ExpectWholeReadFails(d, odd.size());
}

TEST_F(LayerBlobTest, WrongRecipeIsDetectedNotServed) {
  Ingested g = IngestGoLayer(13, 15);
  MemberRecipe& m = g.recipe.members[0];
  m.encoder.level = m.encoder.level == 9 ? 8 : 9;
  Replace(g, g.recipe);
  ExpectWholeReadFails(g.digest, g.gz.size());
}

// A layer large enough for checkpoints (every 4 MiB of tar) gets a version 5
// recipe (checkpoints, search hints, segment checks); reads re-create it in
// segments on worker threads, exactly, from any offset and backwards.
TEST_F(LayerBlobTest, LargeGoLayerIsReadInSegments) {
  Ingested g = IngestGoLayer(21, 130);
  const std::string& gz = g.gz;
  const std::string& d = g.digest;
  ASSERT_GT(g.tar.size(), 9u << 20);
  MemberRecipe& m = g.recipe.members[0];
  EXPECT_EQ(g.layout.encoding[4], '\x05');
  EXPECT_GE(m.checkpoints.size(), 2u);
  EXPECT_EQ(m.hint_sizes.size(), m.checkpoints.size() + 1);
  EXPECT_EQ(m.segment_checks.size(), m.checkpoints.size() + 1);
  EXPECT_EQ(g.layout.stored_size, g.tar.size() + g.recipe.HintBytes());
  EXPECT_EQ(Read(d, 0, gz.size() + 10), gz);
  ExpectReadsAnywhere(d, gz, 5, 12);
  // The same recipe without checkpoints (version 1) reads sequentially; a
  // fresh reader's first read far into the blob gets the right bytes too.
  m.checkpoints.clear();
  m.hint_sizes.clear();
  m.hint_after = 0;
  m.segment_checks.clear();
  m.seams.clear();
  Replace(g, g.recipe);
  ASSERT_GT(gz.size() - 1000000, 4u << 20);
  for (uint64_t off : {gz.size() - 100, gz.size() - 1000000}) {
    EXPECT_TRUE(Read(d, off, 100) == gz.substr(off, 100)) << "sequential, offset " << off;
  }
}

// A one-member token layer large enough for several frames is read in
// segments, one per frame (checkpoints at the frames' starts), from any offset.
TEST_F(LayerBlobTest, LargeTokenLayerIsReadInSegments) {
  testing::WriteAll(tmp_ / "big.tar", Tar(24, 130));
  const std::string odd = Shell(
      "python3 -c 'import sys,zlib; c=zlib.compressobj(6, zlib.DEFLATED, -9, 9); "
      "sys.stdout.buffer.write(c.compress(open(sys.argv[1],\"rb\").read())+c.flush())' " +
      Quote(tmp_ / "big.tar") +
      " | python3 -c 'import sys; d=sys.stdin.buffer.read(); "
      "import zlib,struct; t=open(sys.argv[1],\"rb\").read(); "
      "sys.stdout.buffer.write(b\"\\x1f\\x8b\\x08\\0\\0\\0\\0\\0\\0\\xff\"+d+struct.pack(\"<II\", "
      "zlib.crc32(t), len(t) & 0xffffffff))' " +
      Quote(tmp_ / "big.tar"));
  ASSERT_GT(odd.size(), 4u << 20);
  const std::string d = Put(odd);
  auto rep = IngestLayer(repo_.get(), d);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  ASSERT_EQ(rep->outcome, IngestReport::Outcome::kReplaced) << rep->why;
  auto layout = repo_->GetBlobLayout(d);
  ASSERT_TRUE(layout.ok());
  auto recipe = LayerRecipe::Decode(layout->encoding);
  ASSERT_TRUE(recipe.ok()) << recipe.status().ToString();
  const MemberRecipe& m = recipe->members[0];
  ASSERT_EQ(m.encoder.id, EncoderId::kTokens);
  EXPECT_GE(m.checkpoints.size(), 3u);
  EXPECT_EQ(m.hint_sizes.size(), m.checkpoints.size() + 1);
  EXPECT_EQ(layout->encoding[4], '\x05');  // segment checks
  EXPECT_EQ(m.segment_checks.size(), m.checkpoints.size() + 1);
  EXPECT_TRUE(SegmentedReconstructor::Supports(*recipe));
  ExpectReadsAnywhere(d, odd, 6, 8);
  EXPECT_EQ(Read(d, 0, odd.size()), odd);
}

// Search hints that are not the encoder's (valid zstd frames, wrong
// decisions) are never served as a complete blob: the digest check fails.
TEST_F(LayerBlobTest, WrongSearchHintsAreDetectedNotServed) {
  Ingested g = IngestGoLayer(23, 130);
  MemberRecipe& m = g.recipe.members[0];
  ASSERT_FALSE(m.hint_sizes.empty());
  // The tar's chunks, then hints of the same sizes' meaning: every "decided
  // among the first candidates" turned into "one step further".
  std::vector<chunkstore::ChunkRef> chunks;
  uint64_t at = 0;
  for (const auto& c : g.layout.chunks) {
    if (at >= m.plain_size) break;
    chunks.push_back(c);
    at += c.length;
  }
  ASSERT_EQ(at, m.plain_size);
  auto w = repo_->NewContentWriter();
  for (size_t i = 0; i < m.hint_sizes.size(); ++i) {
    std::string h(200000, '\0');
    for (size_t j = 0; j < h.size(); j += 7) h[j] = 1;
    std::string frame = CompressHints(h);
    m.hint_sizes[i] = frame.size();
    ASSERT_TRUE(w->Append(frame).ok());
  }
  auto more = w->Finish();
  ASSERT_TRUE(more.ok());
  chunks.insert(chunks.end(), more->begin(), more->end());
  Replace(g, g.recipe, &chunks);
  ExpectWholeReadFails(g.digest, g.gz.size());
}

// A checkpoint that does not describe the stream is never served as a
// complete blob.
TEST_F(LayerBlobTest, WrongCheckpointIsDetectedNotServed) {
  Ingested g = IngestGoLayer(22, 130);
  ASSERT_FALSE(g.recipe.members[0].checkpoints.empty());
  g.recipe.members[0].checkpoints[0].bit_offset += 8;
  Replace(g, g.recipe);
  ExpectWholeReadFails(g.digest, g.gz.size());
}

// The whole blob read in 1 MiB pieces by one reader.
std::string ReadWhole(Repository* repo, const std::string& digest, uint64_t size) {
  auto b = repo->OpenBlob(digest);
  if (!b.ok()) return "open: " + b.status().ToString();
  std::string out;
  std::string piece(1 << 20, '\0');
  while (out.size() < size) {
    auto r = (*b)->ReadAt(out.size(), piece.size(), piece.data());
    if (!r.ok()) return "read: " + r.status().ToString();
    if (*r == 0) break;
    out.append(piece.data(), *r);
  }
  return out;
}

// Two readers of a re-stored layer at once encode each segment once between
// them; a later reader encodes nothing.
TEST_F(LayerBlobTest, ConcurrentReadersShareOneRecreation) {
  SegmentCache& cache = SegmentCache::Global();
  cache.SetCapacity(kDefaultSegmentCacheBytes);
  Ingested g = IngestGoLayer(21, 130);
  const size_t segments = g.recipe.members[0].checkpoints.size() + 1;
  ASSERT_GE(segments, 3u);
  cache.Drop(g.digest);  // cold: what the verification kept is gone
  const SegmentCache::Counters before = cache.counters();
  std::string a, b;
  std::thread t1([&] { a = ReadWhole(repo_.get(), g.digest, g.gz.size()); });
  std::thread t2([&] { b = ReadWhole(repo_.get(), g.digest, g.gz.size()); });
  t1.join();
  t2.join();
  EXPECT_TRUE(a == g.gz) << a.substr(0, 200);
  EXPECT_TRUE(b == g.gz) << b.substr(0, 200);
  SegmentCache::Counters after = cache.counters();
  EXPECT_EQ(after.made - before.made, segments);
  EXPECT_EQ(after.hits - before.hits, segments);  // the other reader's
  EXPECT_EQ(after.entries, segments);
  EXPECT_EQ(ReadWhole(repo_.get(), g.digest, g.gz.size()), g.gz);
  EXPECT_EQ(cache.counters().made, after.made);
}

// The verification at ingestion made every segment: a pull right after the
// push encodes nothing. With the cache off, every read encodes.
TEST_F(LayerBlobTest, VerificationKeepsTheSegmentsForTheFirstPull) {
  SegmentCache& cache = SegmentCache::Global();
  cache.SetCapacity(kDefaultSegmentCacheBytes);
  Ingested g = IngestGoLayer(25, 130);
  const size_t segments = g.recipe.members[0].checkpoints.size() + 1;
  const SegmentCache::Counters before = cache.counters();
  EXPECT_EQ(before.entries, segments);
  EXPECT_EQ(ReadWhole(repo_.get(), g.digest, g.gz.size()), g.gz);
  EXPECT_EQ(cache.counters().made, before.made);
  EXPECT_EQ(cache.counters().hits - before.hits, segments);
  cache.SetCapacity(0);
  EXPECT_EQ(cache.counters().entries, 0u);
  EXPECT_EQ(ReadWhole(repo_.get(), g.digest, g.gz.size()), g.gz);
  EXPECT_EQ(cache.counters().made - before.made, segments);
}

// A wrong segment in the cache (memory damage, a bug) fails the read that
// meets it at the digest check, is dropped, and the next read is exact.
// A wrong segment in the cache fails its check before a byte of it is
// delivered: it is dropped, made again from the stored form, and the read
// gets the right bytes.
TEST_F(LayerBlobTest, WrongCachedSegmentIsDetectedDroppedAndRemade) {
  SegmentCache& cache = SegmentCache::Global();
  cache.SetCapacity(kDefaultSegmentCacheBytes);
  Ingested g = IngestGoLayer(26, 130);
  const MemberRecipe& m = g.recipe.members[0];
  ASSERT_GE(m.checkpoints.size(), 2u);
  const uint64_t begin = m.header.size() * 8 + m.checkpoints[0].bit_offset;
  const uint64_t end = m.header.size() * 8 + m.checkpoints[1].bit_offset;
  std::string wrong = g.gz.substr(begin / 8, (end + 7) / 8 - begin / 8);
  wrong[wrong.size() / 2] ^= 0x20;
  cache.SetCapacity(0);  // drop what the verification kept
  cache.SetCapacity(kDefaultSegmentCacheBytes);
  cache.Put(g.digest, begin, end, wrong);
  const uint64_t failures = SegmentedReconstructor::check_failures();
  EXPECT_EQ(ReadWhole(repo_.get(), g.digest, g.gz.size()), g.gz);
  EXPECT_EQ(SegmentedReconstructor::check_failures(), failures + 1);
  // Dropped with the layer's others; what was made after the drop is kept.
  EXPECT_LT(cache.counters().entries, m.checkpoints.size() + 1);
  EXPECT_EQ(ReadWhole(repo_.get(), g.digest, g.gz.size()), g.gz);
  EXPECT_EQ(SegmentedReconstructor::check_failures(), failures + 1);
}

// A segment that the stored form itself makes wrong (here: a check that does
// not match) is never delivered: reads before it succeed, the read that
// reaches it fails naming the layer and the segment, and every byte returned
// is the blob's.
TEST_F(LayerBlobTest, SegmentFailingItsCheckIsNeverDelivered) {
  Ingested g = IngestGoLayer(27, 130);
  MemberRecipe& m = g.recipe.members[0];
  ASSERT_GE(m.checkpoints.size(), 3u);
  m.segment_checks[2].low ^= 1;
  Replace(g, g.recipe);
  const uint64_t seg2 = m.header.size() + m.checkpoints[1].bit_offset / 8;
  auto b = repo_->OpenBlob(g.digest);
  ASSERT_TRUE(b.ok());
  std::string out(64 << 10, '\0');
  uint64_t off = 0;
  Status last;
  while (off < g.gz.size()) {
    auto r = (*b)->ReadAt(off, out.size(), out.data());
    if (!r.ok()) {
      last = r.status();
      break;
    }
    ASSERT_TRUE(std::string_view(out.data(), *r) == std::string_view(g.gz).substr(off, *r));
    off += *r;
  }
  ASSERT_FALSE(last.ok()) << "read the whole blob past a wrong segment";
  EXPECT_LE(off, seg2);
  EXPECT_GT(off + out.size(), seg2);  // every byte before it was delivered
  EXPECT_NE(last.message().find(g.digest), std::string::npos) << last.ToString();
  EXPECT_NE(last.message().find("segment 2 "), std::string::npos) << last.ToString();
  // The segments after it are still served (a Range GET past it).
  const uint64_t late = m.header.size() + m.checkpoints[2].bit_offset / 8 + 1000;
  EXPECT_TRUE(Read(g.digest, late, 5000) == g.gz.substr(late, 5000));
}

// With segment checks a fresh reader's first read far into the blob makes
// that read's segment (and what the workers make ahead), not those before.
TEST_F(LayerBlobTest, ReadFarIntoTheBlobMakesOnlyItsSegments) {
  Ingested g = IngestGoLayer(28, 160);
  const MemberRecipe& m = g.recipe.members[0];
  ASSERT_GE(m.checkpoints.size(), 3u);
  SegmentCache& cache = SegmentCache::Global();
  cache.SetCapacity(kDefaultSegmentCacheBytes);  // counts the segments made
  const uint64_t before = cache.counters().made;
  const uint64_t off = g.gz.size() - 1000;
  EXPECT_TRUE(Read(g.digest, off, 1000) == g.gz.substr(off));
  const uint64_t made = cache.counters().made - before;
  EXPECT_EQ(made, 1u);  // the last segment: nothing before it
  const uint64_t mid = g.gz.size() / 2;
  EXPECT_TRUE(Read(g.digest, mid, 300000) == g.gz.substr(mid, 300000));
}

TEST_F(LayerBlobTest, TreeEntriesWithWhiteoutsLinksAndImplicitParents) {
  // A layer as a layer builder writes it: "./"-prefixed names, no directory
  // members, whiteouts, a hardlink before... and after its target, a symlink.
  std::string script = R"PY(
import io, sys, tarfile
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
    def add(name, data=b"", **kw):
        i = tarfile.TarInfo(name); i.size = len(data); i.mtime = 1000
        for k, v in kw.items(): setattr(i, k, v)
        t.addfile(i, io.BytesIO(data) if data else None)
    add("./d/a", b"A" * 70000)
    add("./d/.wh.b")
    add("./e/.wh..wh..opq")
    add("./e/f", b"F")
    add("./h", type=tarfile.LNKTYPE, linkname="./d/a")
    add("./s", type=tarfile.SYMTYPE, linkname="../outside")
    add("../evil", b"x")
sys.stdout.buffer.write(buf.getvalue() + b"\0" * 100000)
)PY";
  testing::WriteAll(tmp_ / "mk.py", script);
  std::string tar = Shell("python3 " + Quote(tmp_ / "mk.py"));
  ASSERT_GT(tar.size(), 70000u);
  std::string d = Put(*GoGzip(tar, 6));
  auto rep = IngestLayer(repo_.get(), d);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  ASSERT_EQ(rep->outcome, IngestReport::Outcome::kReplaced) << rep->why;
  EXPECT_EQ(rep->diff_id, Sha256Digest(tar));
  EXPECT_EQ(rep->entries_skipped, 1u);  // ../evil
  std::map<std::string, const chunkstore::TreeEntry*> by;
  std::vector<std::string> order;
  for (const auto& e : rep->entries) {
    by[e.path] = &e;
    order.push_back(e.path);
  }
  using chunkstore::EntryType;
  ASSERT_TRUE(by.count("d") && by.count("e") && by.count("d/a") && by.count("d/b"));
  EXPECT_EQ(by["d"]->type, EntryType::kDir);        // implicit parent
  EXPECT_EQ(by["d/b"]->type, EntryType::kCharDev);  // whiteout
  EXPECT_EQ(by["d/b"]->rdev, 0u);
  EXPECT_FALSE(by.count("e/.wh..wh..opq"));
  ASSERT_EQ(by["e"]->xattrs.size(), 1u);
  EXPECT_EQ(by["e"]->xattrs[0],
            (std::pair<std::string, std::string>{"trusted.overlay.opaque", "y"}));
  EXPECT_EQ(by["h"]->type, EntryType::kHardlink);
  EXPECT_EQ(by["h"]->link, "d/a");
  EXPECT_EQ(by["s"]->link, "../outside");  // a symlink's target is data, not a path we follow
  EXPECT_FALSE(by.count("evil") || by.count("../evil"));
  // Parents before children, hardlinks after their targets.
  auto pos = [&](const std::string& p) {
    return std::find(order.begin(), order.end(), p) - order.begin();
  };
  EXPECT_LT(pos("d"), pos("d/a"));
  EXPECT_LT(pos("d/a"), pos("h"));
  // The file's chunks are exactly its content.
  std::string content;
  for (const auto& c : by["d/a"]->chunks) ASSERT_TRUE(repo_->ReadChunk(c.id, &content).ok());
  EXPECT_EQ(content, std::string(70000, 'A'));
  EXPECT_EQ(by["d/a"]->size, 70000u);
}

}  // namespace
}  // namespace cofferlayer
