#include "format.h"

#include <gtest/gtest.h>

#include <random>

#include "coding.h"
#include "roots.h"
#include "tree.h"

namespace chunkstore {
namespace {

std::string RandomString(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

struct Frame {
  std::vector<ChunkRef> chunks;
  std::string plain;
};

Frame MakeFrame(bool compressible) {
  Frame f;
  for (int i = 0; i < 5; ++i) {
    std::string c = compressible ? std::string(3000 + i, 'a' + i) : RandomString(3000 + i, i);
    ChunkRef r;
    r.id = Sha256(c);
    r.length = static_cast<uint32_t>(c.size());
    f.chunks.push_back(r);
    f.plain += c;
  }
  return f;
}

class RecordTest : public ::testing::TestWithParam<bool> {};

TEST_P(RecordTest, RoundTrip) {
  Aead aead(std::string(32, 'k'));
  Frame f = MakeFrame(GetParam());
  std::string rec;
  EncodeRecord(RecordKind::kData, f.chunks, f.plain, 3, aead, &rec);
  RecordMeta m;
  ASSERT_TRUE(DecodeRecordMeta(rec, &m, "r").ok());
  EXPECT_EQ(m.header.RecordSize(), rec.size());
  EXPECT_EQ(m.chunks, f.chunks);
  EXPECT_EQ(bool(m.header.flags & kRecordFlagZstd), GetParam());
  if (GetParam()) {
    EXPECT_LT(rec.size(), f.plain.size() / 4);
  }
  ASSERT_TRUE(VerifyRecordChecksum(rec, m, "r").ok());
  std::string plain;
  ASSERT_TRUE(OpenRecord(rec, m, aead, &plain, "r").ok());
  EXPECT_EQ(plain, f.plain);
  EXPECT_EQ(rec.find(f.plain.substr(0, 64)), std::string::npos) << "plaintext in record";
}

TEST_P(RecordTest, EveryFlippedByteIsDetected) {
  Aead aead(std::string(32, 'k'));
  Frame f = MakeFrame(GetParam());
  std::string rec;
  EncodeRecord(RecordKind::kTree, f.chunks, f.plain, 3, aead, &rec);
  for (size_t i = 0; i < rec.size(); i += 7) {
    std::string bad = rec;
    bad[i] ^= 0x10;
    RecordMeta m;
    Status st = DecodeRecordMeta(bad, &m, "r");
    if (st.ok() && m.header.RecordSize() == bad.size()) st = VerifyRecordChecksum(bad, m, "r");
    EXPECT_FALSE(st.ok()) << "flip at " << i << " not detected without the key";
    EXPECT_TRUE(st.IsCorruption()) << st.ToString();
  }
}

TEST_P(RecordTest, WrongKeyOrTamperedTableFailsToOpen) {
  Aead aead(std::string(32, 'k')), other(std::string(32, 'x'));
  Frame f = MakeFrame(GetParam());
  std::string rec;
  EncodeRecord(RecordKind::kData, f.chunks, f.plain, 3, aead, &rec);
  RecordMeta m;
  ASSERT_TRUE(DecodeRecordMeta(rec, &m, "r").ok());
  std::string plain;
  EXPECT_TRUE(OpenRecord(rec, m, other, &plain, "r").IsCorruption());
  // Swap a chunk id in the table and fix up the XXH3: AEAD still catches it.
  std::string bad = rec;
  bad[RecordHeader::kSize] ^= 1;
  ASSERT_TRUE(DecodeRecordMeta(bad, &m, "r").ok());
  EXPECT_TRUE(OpenRecord(bad, m, aead, &plain, "r").IsCorruption());
}

INSTANTIATE_TEST_SUITE_P(Compression, RecordTest, ::testing::Bool());

TEST(PackFormat, HeaderAndTrailerRoundTrip) {
  PackId id;
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<uint8_t>(i * 7);
  std::string h = EncodePackHeader(id);
  ASSERT_EQ(h.size(), kPackHeaderSize);
  PackId back;
  ASSERT_TRUE(DecodePackHeader(h, &back, "p").ok());
  EXPECT_EQ(back, id);
  std::vector<PackRecordPos> pos = {{32, 100}, {132, 4000}, {4132, 7}};
  std::string t = EncodePackTrailer(pos);
  auto n = DecodeTrailerTail(std::string_view(t).substr(t.size() - kTrailerFixedSize), "p");
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(*n, 3u);
  std::vector<PackRecordPos> got;
  ASSERT_TRUE(DecodeTrailerEntries(t, *n, &got, "p").ok());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[1].offset, 132u);
  EXPECT_EQ(got[1].length, 4000u);
  t[3] ^= 1;
  EXPECT_TRUE(DecodeTrailerEntries(t, *n, &got, "p").IsCorruption());
  EXPECT_EQ(PackPath(id).substr(0, 9), "packs/00/");
}

TEST(Roots, SealedRootIsBoundToItsName) {
  Aead aead(std::string(32, 'r'));
  BlobRoot b;
  b.digest = "sha256:" + std::string(64, 'a');
  b.chunks = {{Sha256("x"), 10}, {Sha256("y"), 20}};
  b.size = 30;
  std::string plain, got;
  EncodeBlobRoot(b, &plain);
  std::string file = SealRoot(RootKind::kBlob, "roots/blobs/aa", plain, aead);
  ASSERT_TRUE(OpenRoot(file, "roots/blobs/aa", RootKind::kBlob, aead, &got).ok());
  BlobRoot back;
  ASSERT_TRUE(DecodeBlobRoot(got, &back, "x").ok());
  EXPECT_EQ(back.chunks, b.chunks);
  EXPECT_EQ(back.digest, b.digest);
  EXPECT_TRUE(OpenRoot(file, "roots/blobs/bb", RootKind::kBlob, aead, &got).IsCorruption());
  EXPECT_TRUE(OpenRoot(file, "roots/blobs/aa", RootKind::kSnapshot, aead, &got).IsCorruption());
  file[20] ^= 4;
  EXPECT_TRUE(VerifyRootChecksum(file, "roots/blobs/aa").IsCorruption());
}

TEST(Roots, SnapshotRootRoundTrip) {
  SnapshotRoot r;
  r.info.id = "0123456789abcdef";
  r.info.set = "db";
  r.info.time_ns = 1700000000123456789;
  r.info.host = "h";
  r.info.paths = {"/a", "/b c"};
  r.info.files = 3;
  r.info.bytes = 99;
  r.tree_len = 77;
  r.tree = {{Sha256("t"), 77}};
  std::string plain;
  EncodeSnapshotRoot(r, &plain);
  SnapshotRoot back;
  ASSERT_TRUE(DecodeSnapshotRoot(plain, &back, "s").ok());
  EXPECT_EQ(back.info.paths, r.info.paths);
  EXPECT_EQ(back.info.time_ns, r.info.time_ns);
  EXPECT_EQ(back.tree, r.tree);
  EXPECT_FALSE(DecodeSnapshotRoot(plain.substr(0, plain.size() - 1), &back, "s").ok());
}

TEST(Tree, EntryRoundTripAndTruncation) {
  TreeEntry e;
  e.path = "etc/ssl/certs/ca.pem";
  e.type = EntryType::kFile;
  e.mode = 04755;
  e.uid = 1234;
  e.gid = 5678;
  e.mtime_ns = -5;  // before the epoch
  e.atime_ns = 1700000000000000001;
  e.size = 12345;
  e.inode = 99;
  e.xattrs = {{"user.a", std::string("v\0w", 3)}, {"system.posix_acl_access", "acl"}};
  e.chunks = {{Sha256("c"), 12345}};
  std::string s;
  EncodeEntry(e, &s);
  std::string_view in = s;
  TreeEntry d;
  ASSERT_TRUE(DecodeEntry(&in, &d).ok());
  EXPECT_TRUE(in.empty());
  EXPECT_EQ(d.path, e.path);
  EXPECT_EQ(d.mode, e.mode);
  EXPECT_EQ(d.mtime_ns, e.mtime_ns);
  EXPECT_EQ(d.atime_ns, e.atime_ns);
  EXPECT_EQ(d.xattrs, e.xattrs);
  EXPECT_EQ(d.chunks, e.chunks);
  for (size_t n = 0; n < s.size(); ++n) {
    std::string_view cut(s.data(), n);
    TreeEntry x;
    EXPECT_FALSE(DecodeEntry(&cut, &x).ok()) << "accepted a truncation at " << n;
  }
}

TEST(Tree, UnsafePathsAreRejected) {
  for (const char* p : {"", "/etc", "a/../b", "..", "a//b", "a/./b", "a/"})
    EXPECT_FALSE(IsSafeRelativePath(p)) << p;
  for (const char* p : {"a", "a/b", "a/.b", "..a/b..", "tmp/x y"})
    EXPECT_TRUE(IsSafeRelativePath(p)) << p;
  TreeEntry e;
  e.path = "../evil";
  std::string s;
  EncodeEntry(e, &s);
  std::string_view in = s;
  EXPECT_TRUE(DecodeEntry(&in, &e).IsCorruption());
}

TEST(Coding, VarintsRoundTrip) {
  std::string s;
  std::vector<uint64_t> u = {0, 1, 127, 128, 300, UINT32_MAX, UINT64_MAX};
  std::vector<int64_t> v = {0, -1, 1, INT64_MIN, INT64_MAX, -300};
  for (uint64_t x : u) PutVarint64(&s, x);
  for (int64_t x : v) PutVarsint64(&s, x);
  std::string_view in = s;
  for (uint64_t x : u) {
    uint64_t y;
    ASSERT_TRUE(GetVarint64(&in, &y));
    EXPECT_EQ(x, y);
  }
  for (int64_t x : v) {
    int64_t y;
    ASSERT_TRUE(GetVarsint64(&in, &y));
    EXPECT_EQ(x, y);
  }
  std::string overlong(11, '\xff');
  std::string_view o = overlong;
  uint64_t y;
  EXPECT_FALSE(GetVarint64(&o, &y));
}

}  // namespace
}  // namespace chunkstore
