#include "tar.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstring>
#include <random>

#include "layer_test_util.h"

namespace cofferlayer {
namespace {

using testing::Quote;
using testing::ReadAll;
using testing::Shell;
using testing::TempDir;
using testing::WriteAll;

// Records the segments: raw runs merged, one entry per member.
struct Segment {
  bool file = false;
  std::string bytes;
  TarMember member;
};

class CollectSink : public TarSink {
 public:
  Status OnRaw(std::string_view b) override {
    if (b.empty()) return Status::OK();
    if (segs.empty() || segs.back().file) segs.push_back({});
    segs.back().bytes.append(b);
    return Status::OK();
  }
  Status OnMemberBegin(const TarMember& m) override {
    if (in_member) return Status::Corruption("nested member");
    in_member = true;
    segs.push_back({true, "", m});
    return Status::OK();
  }
  Status OnMemberData(std::string_view b) override {
    if (!in_member) return Status::Corruption("data outside a member");
    segs.back().bytes.append(b);
    return Status::OK();
  }
  Status OnMemberEnd() override {
    in_member = false;
    return Status::OK();
  }
  std::string Joined() const {
    std::string s;
    for (const auto& g : segs) s += g.bytes;
    return s;
  }
  std::vector<const TarMember*> Members() const {
    std::vector<const TarMember*> v;
    for (const auto& g : segs) {
      if (g.file) v.push_back(&g.member);
    }
    return v;
  }
  std::vector<Segment> segs;
  bool in_member = false;
};

// Feeds `data` in random pieces (1 byte .. 100 KiB).
Status ScanPieces(std::string_view data, CollectSink* sink, uint64_t seed) {
  TarScanner sc(sink);
  std::mt19937_64 rng(seed);
  while (!data.empty()) {
    size_t n = std::min<size_t>(data.size(), rng() % 3 == 0 ? rng() % 600 + 1 : rng() % 100000 + 1);
    RETURN_IF_ERROR(sc.Feed(data.substr(0, n)));
    data.remove_prefix(n);
  }
  return sc.Finish();
}

// tar-split's view of a tar: "R <len>" for raw runs, "F <size> <name>" per entry.
// Go lists a pax global header ('g', GNU tar names it /tmp/GlobalHead.*) as an
// entry; for us it is raw, so such entries are folded into the raw runs.
std::vector<std::string> TarSplitSegments(const std::string& tar, const TempDir& dir) {
  std::string meta = dir / "tarsplit.json.gz";
  int rc = 0;
  Shell("tar-split disasm --no-stdout --output " + Quote(meta) + " " + Quote(tar) + " 2>/dev/null",
        &rc);
  EXPECT_EQ(rc, 0) << "tar-split disasm " << tar;
  std::string py =
      "import sys,json,base64,gzip\n"
      "raw=0\n"
      "for l in gzip.open(sys.argv[1]):\n"
      "  j=json.loads(l)\n"
      "  if j['type']==2: raw+=len(base64.b64decode(j.get('payload') or ''))\n"
      "  else:\n"
      "    if 'GlobalHead.' in j['name']: continue\n"
      "    if raw: print('R',raw)\n"
      "    raw=0; print('F',j.get('size',0),j['name'])\n"
      "if raw: print('R',raw)\n";
  WriteAll(dir / "ts.py", py);
  std::string out = Shell("python3 " + Quote(dir / "ts.py") + " " + Quote(meta));
  std::vector<std::string> lines;
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

std::vector<std::string> OurSegments(const CollectSink& s) {
  std::vector<std::string> v;
  for (const auto& g : s.segs) {
    if (g.file) {
      v.push_back("F " + std::to_string(g.member.size) + " " + g.member.path);
    } else {
      v.push_back("R " + std::to_string(g.bytes.size()));
    }
  }
  return v;
}

// A tree with the awkward cases: long names, links, whiteouts, xattrs.
void MakeEdgeTree(const std::string& root, bool very_long) {
  testing::MakeRandomTree(root, 7, 20, 40000);
  std::string d = root + "/" + std::string(60, 'a') + "/" + std::string(60, 'b');
  Shell("mkdir -p " + Quote(d));
  WriteAll(d + "/long_name_over_100_chars.txt", "long name\n");
  if (very_long) {
    std::string dd = d + "/" + std::string(100, 'c') + "/" + std::string(100, 'd');
    Shell("mkdir -p " + Quote(dd));
    WriteAll(dd + "/" + std::string(120, 'e'), "over 255\n");
    Shell("ln -s " + Quote(std::string(150, 'x') + "/target") + " " + Quote(root + "/longlink"));
  }
  WriteAll(root + "/linked.txt", "linked\n");
  Shell("cd " + Quote(root) + " && ln linked.txt hardlink && ln -s d1 symlink && mkdir -p wh" +
        " && touch wh/.wh.gone wh/.wh..wh..opq && mkfifo fifo && touch empty");
  Shell("setfattr -n user.coffer -v value " + Quote(root + "/empty") + " 2>/dev/null");
  Shell("setfattr -n user.bin -v 0x00ff10 " + Quote(root + "/hardlink") + " 2>/dev/null");
}

// A sparse file with many data islands, so GNU 'S' headers need extension blocks.
void MakeSparse(const std::string& path) {
  Shell("truncate -s 8M " + Quote(path));
  for (int i = 0; i < 30; ++i) {
    Shell("printf 'island%d' " + std::to_string(i) + " | dd of=" + Quote(path) +
          " bs=1 seek=" + std::to_string(i * 200000 + 4096) + " conv=notrunc 2>/dev/null");
  }
}

std::string MakeTar(const TempDir& dir, const std::string& src, const std::string& flags,
                    const std::string& name) {
  std::string tar = dir / name;
  Shell("tar " + flags + " -cf " + Quote(tar) + " -C " + Quote(src) + " . 2>/dev/null");
  return tar;
}

void ExpectExact(const std::string& data, const CollectSink& sink) {
  ASSERT_EQ(sink.Joined().size(), data.size());
  EXPECT_TRUE(sink.Joined() == data) << "reassembly differs";
}

struct FormatCase {
  const char* name;
  const char* flags;
  bool very_long;
};

class TarFormatTest : public ::testing::TestWithParam<FormatCase> {};

TEST_P(TarFormatTest, ReassemblesExactlyAndMatchesTarSplit) {
  TempDir dir;
  std::string src = dir / "src";
  Shell("mkdir " + Quote(src));
  MakeEdgeTree(src, GetParam().very_long);
  std::string tar = MakeTar(dir, src, GetParam().flags, "a.tar");
  std::string data = ReadAll(tar);
  ASSERT_GT(data.size(), 10240u);
  for (uint64_t seed : {1, 2, 3}) {
    CollectSink sink;
    Status s = ScanPieces(data, &sink, seed);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ExpectExact(data, sink);
    EXPECT_EQ(OurSegments(sink), TarSplitSegments(tar, dir));
  }
  // tar -t sees the same names (it strips nothing for "./" paths).
  CollectSink sink;
  ASSERT_TRUE(ScanPieces(data, &sink, 9).ok());
  std::string listed = Shell("tar -tf " + Quote(tar));
  std::string ours;
  for (const TarMember* m : sink.Members()) ours += m->path + "\n";
  EXPECT_EQ(ours, listed);
  bool saw_xattr = false, saw_link = false, saw_fifo = false;
  for (const TarMember* m : sink.Members()) {
    if (m->type == '1') saw_link = true;
    if (m->type == '6') saw_fifo = true;
    for (auto& [k, v] : m->xattrs) saw_xattr |= k == "user.coffer" && v == "value";
  }
  EXPECT_TRUE(saw_link);
  if (std::string(GetParam().name) != "v7") {  // v7 has no FIFOs
    EXPECT_TRUE(saw_fifo);
  }
  if (std::string(GetParam().flags).find("xattrs") != std::string::npos) {
    EXPECT_TRUE(saw_xattr);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Formats, TarFormatTest,
    ::testing::Values(FormatCase{"gnu", "--format=gnu", true},
                      FormatCase{"pax", "--format=pax --xattrs", true},
                      FormatCase{"pax_global", "--format=pax --pax-option=comment=coffer", true},
                      FormatCase{"posix_numeric", "--format=posix --numeric-owner", true},
                      FormatCase{"ustar", "--format=ustar", false},
                      FormatCase{"v7", "--format=v7", false}),
    [](const auto& info) { return std::string(info.param.name); });

class TarSparseTest : public ::testing::TestWithParam<FormatCase> {};

// tar-split expands sparse members (its reassembly differs), so the oracle here
// is GNU tar's own listing and exact reassembly.
TEST_P(TarSparseTest, SparseMembersKeepStoredData) {
  TempDir dir;
  std::string src = dir / "src";
  Shell("mkdir " + Quote(src));
  MakeSparse(src + "/sparse.img");
  WriteAll(src + "/plain", "plain\n");
  std::string tar = MakeTar(dir, src, GetParam().flags, "s.tar");
  std::string data = ReadAll(tar);
  CollectSink sink;
  Status s = ScanPieces(data, &sink, 5);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ExpectExact(data, sink);
  const TarMember* sp = nullptr;
  for (const TarMember* m : sink.Members()) {
    if (m->path == "./sparse.img") sp = m;
  }
  ASSERT_NE(sp, nullptr);
  EXPECT_TRUE(sp->sparse);
  EXPECT_EQ(sp->real_size, 8u << 20);
  EXPECT_LT(sp->size, 1u << 20);
  std::string listed = Shell("tar -tf " + Quote(tar));
  std::string ours;
  for (const TarMember* m : sink.Members()) ours += m->path + "\n";
  EXPECT_EQ(ours, listed);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, TarSparseTest,
    ::testing::Values(FormatCase{"gnu", "--format=gnu --sparse", false},
                      FormatCase{"pax00", "--format=pax --sparse --sparse-version=0.0", false},
                      FormatCase{"pax01", "--format=pax --sparse --sparse-version=0.1", false},
                      FormatCase{"pax10", "--format=pax --sparse --sparse-version=1.0", false}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(TarScannerTest, TrailingGarbageIsRaw) {
  TempDir dir;
  std::string src = dir / "src";
  Shell("mkdir " + Quote(src));
  testing::MakeRandomTree(src, 3, 5, 3000);
  std::string data = ReadAll(MakeTar(dir, src, "--format=gnu", "a.tar"));
  CollectSink plain;
  ASSERT_TRUE(ScanPieces(data, &plain, 1).ok());
  std::mt19937_64 rng(11);
  for (size_t extra : {1, 511, 512, 513, 100000}) {
    std::string g = data;
    for (size_t i = 0; i < extra; ++i) g += static_cast<char>(rng());
    CollectSink sink;
    Status s = ScanPieces(g, &sink, extra);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ExpectExact(g, sink);
    EXPECT_EQ(sink.Members().size(), plain.Members().size());
    EXPECT_FALSE(sink.segs.back().file);
  }
}

TEST(TarScannerTest, EndWithoutZeroBlocksIsAccepted) {
  TempDir dir;
  std::string src = dir / "src";
  Shell("mkdir " + Quote(src) + " && echo x > " + Quote(src + "/x"));
  std::string data = ReadAll(MakeTar(dir, src, "--format=ustar", "a.tar"));
  std::string cut = data.substr(0, 3 * kTarBlock);  // "./" header, x header, x data
  CollectSink sink;
  TarScanner sc(&sink);
  ASSERT_TRUE(sc.Feed(cut).ok());
  ASSERT_TRUE(sc.Finish().ok());
  EXPECT_FALSE(sc.saw_end_marker());
  ExpectExact(cut, sink);
}

TEST(TarScannerTest, BadChecksumNamesOffsetAndMember) {
  TempDir dir;
  std::string src = dir / "src";
  Shell("mkdir -p " + Quote(src + "/usr/bin") + " && echo a > " + Quote(src + "/usr/bin/a") +
        " && echo x > " + Quote(src + "/usr/bin/x"));
  std::string data = ReadAll(MakeTar(dir, src, "--format=ustar", "a.tar"));
  size_t off = data.find(std::string("./usr/bin/x\0", 12));
  ASSERT_EQ(off % kTarBlock, 0u);
  data[off + 200] ^= 1;
  CollectSink sink;
  Status s = ScanPieces(data, &sink, 2);
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_EQ(s.message(), "tar: member './usr/bin/x' at offset " + std::to_string(off) +
                             ": header checksum mismatch");
  // The prefix before the bad header was reproduced.
  EXPECT_EQ(sink.Joined(), data.substr(0, off));
}

TEST(TarScannerTest, TruncationIsReported) {
  TempDir dir;
  std::string src = dir / "src";
  Shell("mkdir " + Quote(src));
  testing::WriteAll(src + "/big", std::string(5000, 'z'));
  std::string data = ReadAll(MakeTar(dir, src, "--format=gnu", "a.tar"));
  for (size_t cut : {size_t{100}, 2 * kTarBlock + 10, 2 * kTarBlock + 5000 + 3}) {
    CollectSink sink;
    Status s = ScanPieces(data.substr(0, cut), &sink, cut);
    ASSERT_FALSE(s.ok()) << cut;
    EXPECT_NE(s.message().find("truncated"), std::string::npos) << s.message();
  }
  CollectSink sink;
  Status s = ScanPieces(data.substr(0, 2 * kTarBlock + 100), &sink, 1);
  EXPECT_NE(s.message().find("member './big'"), std::string::npos) << s.message();
}

// Needs ../shared/bench/make-corpus.sh's output, so it is run by hand:
//   cofferlayer_test --gtest_also_run_disabled_tests --gtest_filter='*CorpusTar*'
TEST(TarScannerTest, DISABLED_CorpusTarMatchesTarSplit) {
  const std::string tar = "/tmp/coffer-bench-corpus/tars/base.tar";
  ASSERT_EQ(access(tar.c_str(), R_OK), 0) << "no bench corpus at " << tar;
  TempDir dir;
  std::string data = ReadAll(tar);
  CollectSink sink;
  Status s = ScanPieces(data, &sink, 4);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ExpectExact(data, sink);
  EXPECT_EQ(OurSegments(sink), TarSplitSegments(tar, dir));
}

// A ustar header; sizes of 8 GiB and more in GNU base-256.
std::string UstarHeader(const std::string& name, uint64_t size, char type) {
  std::string h(kTarBlock, '\0');
  memcpy(&h[0], name.data(), name.size());
  snprintf(&h[100], 8, "%07o", 0644);
  snprintf(&h[108], 8, "%07o", 0);
  snprintf(&h[116], 8, "%07o", 0);
  if (size < (1ull << 33)) {
    snprintf(&h[124], 12, "%011llo", static_cast<unsigned long long>(size));
  } else {
    h[124] = static_cast<char>(0x80);
    for (int i = 0; i < 8; ++i) h[135 - i] = static_cast<char>(size >> (8 * i));
  }
  snprintf(&h[136], 12, "%011o", 0);
  h[156] = type;
  memcpy(&h[257],
         "ustar\0"
         "00",
         8);
  memset(&h[148], ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  snprintf(&h[148], 8, "%06o", sum);
  h[155] = ' ';
  return h;
}

long MaxRssKb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

// Counts without keeping: the scanner itself must not buffer member data.
class CountingSink : public TarSink {
 public:
  Status OnRaw(std::string_view b) override {
    raw += b.size();
    return Status::OK();
  }
  Status OnMemberBegin(const TarMember& m) override {
    sizes.push_back(m.size);
    return Status::OK();
  }
  Status OnMemberData(std::string_view b) override {
    data += b.size();
    return Status::OK();
  }
  Status OnMemberEnd() override { return Status::OK(); }
  uint64_t raw = 0, data = 0;
  std::vector<uint64_t> sizes;
};

TEST(TarScannerTest, NineGiBMemberInBoundedMemory) {
  const uint64_t size = (9ull << 30) + 100;  // base-256 size field, 412 bytes of padding
  std::string piece(1 << 20, 'z');
  CountingSink sink;
  TarScanner sc(&sink);
  long rss_before = MaxRssKb();
  ASSERT_TRUE(sc.Feed(UstarHeader("big.img", size, '0')).ok());
  for (uint64_t left = size; left > 0;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(left, piece.size()));
    ASSERT_TRUE(sc.Feed(std::string_view(piece).substr(0, n)).ok());
    left -= n;
  }
  ASSERT_TRUE(sc.Feed(std::string(412 + 2 * kTarBlock, '\0')).ok());
  ASSERT_TRUE(sc.Finish().ok());
  EXPECT_TRUE(sc.saw_end_marker());
  EXPECT_EQ(sink.sizes, std::vector<uint64_t>{size});
  EXPECT_EQ(sink.data, size);
  EXPECT_EQ(sink.raw, kTarBlock + 412 + 2 * kTarBlock);
  EXPECT_LT(MaxRssKb() - rss_before, 16 * 1024) << "scanner memory grew";
}

TEST(EntryNameTest, Validate) {
  EXPECT_TRUE(ValidateEntryName("usr/bin/x").ok());
  EXPECT_TRUE(ValidateEntryName("./a/..b/c..").ok());
  EXPECT_FALSE(ValidateEntryName("").ok());
  EXPECT_FALSE(ValidateEntryName("/etc/passwd").ok());
  EXPECT_FALSE(ValidateEntryName("a/../../x").ok());
  EXPECT_FALSE(ValidateEntryName("..").ok());
  EXPECT_FALSE(ValidateEntryName("a/..").ok());
  EXPECT_FALSE(ValidateEntryName(std::string_view("a\0b", 3)).ok());
  EXPECT_NE(ValidateEntryName("/x").message().find("absolute"), std::string::npos);
}

TEST(WhiteoutTest, Classify) {
  std::string t;
  EXPECT_EQ(ClassifyWhiteout("a/b/.wh.c", &t), WhiteoutKind::kFile);
  EXPECT_EQ(t, "a/b/c");
  EXPECT_EQ(ClassifyWhiteout(".wh.top", &t), WhiteoutKind::kFile);
  EXPECT_EQ(t, "top");
  EXPECT_EQ(ClassifyWhiteout("./d/.wh..wh..opq", nullptr), WhiteoutKind::kOpaque);
  EXPECT_EQ(ClassifyWhiteout("a/.wh.", nullptr), WhiteoutKind::kNone);
  EXPECT_EQ(ClassifyWhiteout("a/x.wh.y", nullptr), WhiteoutKind::kNone);
  EXPECT_EQ(ClassifyWhiteout("a/b", nullptr), WhiteoutKind::kNone);
}

}  // namespace
}  // namespace cofferlayer
