// goflate against the real thing: every test compresses generated input with
// goflate and with a small Go 1.19 program (compress/gzip, built here with
// `go build`) and requires identical bytes. On a mismatch, a DEFLATE parser
// below decodes both streams and the failure names the first differing block,
// code length or token, which is how the rules in goflate.cc were found.
//
// Set GOFLATE_COMPARE_FILES="path[:level] ..." to compare arbitrary files too.
#include "goflate.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "deflate_tables.h"

namespace cofferlayer {
namespace {

namespace fs = std::filesystem;
using chunkstore::Status;

// ---------------------------------------------------------------------------
// A DEFLATE decoder that keeps the structure: blocks, code lengths, tokens.

struct Token {
  int lit_or_len;  // < 256: literal; else match length
  int dist;        // 0 for a literal
  bool operator==(const Token&) const = default;
};

struct Block {
  int type = 0;  // 0 stored, 1 fixed, 2 dynamic
  bool final = false;
  std::vector<int> lit_lens, dist_lens, clen_lens;  // dynamic only
  std::vector<Token> tokens;                        // not for stored
  size_t stored_len = 0;
};

class BitReader {
 public:
  explicit BitReader(std::string_view in) : in_(in) {}
  bool Bits(int n, int* v) {
    *v = 0;
    for (int i = 0; i < n; ++i) {
      if (pos_ >= in_.size() * 8) return false;
      *v |= ((uint8_t(in_[pos_ / 8]) >> (pos_ % 8)) & 1) << i;
      ++pos_;
    }
    return true;
  }
  void Align() { pos_ = (pos_ + 7) / 8 * 8; }
  size_t byte_pos() const { return pos_ / 8; }

 private:
  std::string_view in_;
  size_t pos_ = 0;
};

// Canonical Huffman decoding, one bit at a time (RFC 1951 3.2.2).
struct Decoder {
  std::vector<int> count, symbols;
  explicit Decoder(const std::vector<int>& lens) : count(16) {
    for (int l : lens) count[l]++;
    count[0] = 0;
    std::vector<int> offs(16);
    for (int l = 1; l < 16; ++l) offs[l] = offs[l - 1] + count[l - 1];
    symbols.resize(lens.size());
    for (size_t s = 0; s < lens.size(); ++s)
      if (lens[s]) symbols[offs[lens[s]]++] = int(s);
  }
  bool Decode(BitReader* br, int* sym) const {
    int code = 0, first = 0, index = 0;
    for (int len = 1; len < 16; ++len) {
      int b;
      if (!br->Bits(1, &b)) return false;
      code |= b;
      if (code - count[len] < first) {
        *sym = symbols[index + code - first];
        return true;
      }
      index += count[len];
      first = (first + count[len]) << 1;
      code <<= 1;
    }
    return false;
  }
};

using deflate::kDistBase;
using deflate::kLenBase;
using deflate::kLenExtra;

bool ReadDynamicLengths(BitReader* br, Block* b) {
  const uint8_t* kOrder = deflate::kCodeLengthOrder;
  int hlit, hdist, hclen;
  if (!br->Bits(5, &hlit) || !br->Bits(5, &hdist) || !br->Bits(4, &hclen)) return false;
  b->clen_lens.assign(19, 0);
  for (int i = 0; i < hclen + 4; ++i)
    if (!br->Bits(3, &b->clen_lens[kOrder[i]])) return false;
  Decoder cl(b->clen_lens);
  std::vector<int> lens;
  const size_t total = size_t(hlit + 257 + hdist + 1);
  while (lens.size() < total) {
    int sym, rep = 0, val = 0;
    if (!cl.Decode(br, &sym)) return false;
    if (sym < 16) {
      lens.push_back(sym);
      continue;
    }
    if (sym == 16) {
      if (lens.empty() || !br->Bits(2, &rep)) return false;
      val = lens.back(), rep += 3;
    } else if (!br->Bits(sym == 17 ? 3 : 7, &rep)) {
      return false;
    } else {
      rep += sym == 17 ? 3 : 11;
    }
    lens.insert(lens.end(), rep, val);
  }
  if (lens.size() != total) return false;
  b->lit_lens.assign(lens.begin(), lens.begin() + hlit + 257);
  b->dist_lens.assign(lens.begin() + hlit + 257, lens.end());
  return true;
}

bool ReadTokens(BitReader* br, const Decoder& lit, const Decoder& dist, Block* b,
                std::string* out) {
  for (;;) {
    int sym;
    if (!lit.Decode(br, &sym)) return false;
    if (sym < 256) {
      b->tokens.push_back({sym, 0});
      out->push_back(char(sym));
      continue;
    }
    if (sym == 256) return true;
    if (sym > 285) return false;
    int extra, dsym, dextra;
    if (!br->Bits(kLenExtra[sym - 257], &extra) || !dist.Decode(br, &dsym) || dsym > 29) {
      return false;
    }
    int len = kLenBase[sym - 257] + extra;
    if (!br->Bits(dsym < 4 ? 0 : (dsym - 2) / 2, &dextra)) return false;
    int d = kDistBase[dsym] + dextra;
    if (size_t(d) > out->size()) return false;
    b->tokens.push_back({len, d});
    for (int i = 0; i < len; ++i) out->push_back((*out)[out->size() - d]);
  }
}

// Parses a raw DEFLATE stream; false on malformed input or trailing bytes.
bool ParseDeflate(std::string_view in, std::vector<Block>* blocks, std::string* out) {
  BitReader br(in);
  for (;;) {
    Block b;
    int final, type;
    if (!br.Bits(1, &final) || !br.Bits(2, &type) || type == 3) return false;
    b.final = final, b.type = type;
    if (type == 0) {
      br.Align();
      int len, nlen;
      if (!br.Bits(16, &len) || !br.Bits(16, &nlen) || (len ^ 0xffff) != nlen) return false;
      size_t at = br.byte_pos();
      if (at + len > in.size()) return false;
      out->append(in.substr(at, len));
      b.stored_len = len;
      for (int i = 0; i < len * 8; ++i) br.Bits(1, &nlen);
    } else {
      if (type == 1) {
        b.lit_lens.assign(288, 8);
        std::fill(b.lit_lens.begin() + 144, b.lit_lens.begin() + 256, 9);
        std::fill(b.lit_lens.begin() + 256, b.lit_lens.begin() + 280, 7);
        b.dist_lens.assign(30, 5);
      } else if (!ReadDynamicLengths(&br, &b)) {
        return false;
      }
      if (!ReadTokens(&br, Decoder(b.lit_lens), Decoder(b.dist_lens), &b, out)) return false;
      if (type == 1) b.lit_lens.clear(), b.dist_lens.clear();
    }
    blocks->push_back(std::move(b));
    if (final) break;
  }
  br.Align();
  return br.byte_pos() == in.size();
}

std::string DescribeToken(const Token& t) {
  if (t.dist == 0) return "lit " + std::to_string(t.lit_or_len);
  return "match len " + std::to_string(t.lit_or_len) + " dist " + std::to_string(t.dist);
}

// The first structural difference between two DEFLATE streams, for failure
// messages: which block, and whether its type, code lengths or tokens differ.
std::string FirstDifference(std::string_view want, std::string_view got) {
  std::vector<Block> a, b;
  std::string out_a, out_b;
  if (!ParseDeflate(want, &a, &out_a)) return "Go's stream does not parse";
  if (!ParseDeflate(got, &b, &out_b)) return "goflate's stream does not parse";
  size_t pos = 0;  // uncompressed offset of the block
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    std::string where =
        "block " + std::to_string(i) + " (input offset " + std::to_string(pos) + ")";
    if (a[i].type != b[i].type) {
      return where + ": type " + std::to_string(a[i].type) + " vs " + std::to_string(b[i].type);
    }
    for (size_t k = 0; k < std::min(a[i].tokens.size(), b[i].tokens.size()); ++k) {
      if (!(a[i].tokens[k] == b[i].tokens[k])) {
        return where + " token " + std::to_string(k) + ": Go " + DescribeToken(a[i].tokens[k]) +
               ", goflate " + DescribeToken(b[i].tokens[k]);
      }
    }
    if (a[i].tokens.size() != b[i].tokens.size() || a[i].stored_len != b[i].stored_len) {
      return where + ": Go has " + std::to_string(a[i].tokens.size()) + " tokens / " +
             std::to_string(a[i].stored_len) + " stored bytes, goflate " +
             std::to_string(b[i].tokens.size()) + " / " + std::to_string(b[i].stored_len);
    }
    if (a[i].lit_lens != b[i].lit_lens || a[i].dist_lens != b[i].dist_lens) {
      return where + ": same tokens, different Huffman code lengths";
    }
    if (a[i].clen_lens != b[i].clen_lens) return where + ": different code-length code";
    for (const Token& t : a[i].tokens) pos += t.dist ? t.lit_or_len : 1;
    pos += a[i].stored_len;
  }
  if (a.size() != b.size()) {
    return "Go has " + std::to_string(a.size()) + " blocks, goflate " + std::to_string(b.size());
  }
  return "same blocks and tokens; the difference is in the run-length coding of code lengths";
}

// ---------------------------------------------------------------------------
// The Go oracle.

constexpr char kOracleGo[] = R"(package main

import (
	"compress/gzip"
	"math/rand"
	"os"
	"strconv"
)

// oracle LEVEL WRITESIZE IN OUT: gzip IN to OUT with gzip.NewWriterLevel, in
// writes of WRITESIZE bytes (0: one write; -N: random sizes 1..N).
func main() {
	level, _ := strconv.Atoi(os.Args[1])
	ws, _ := strconv.Atoi(os.Args[2])
	in, err := os.ReadFile(os.Args[3])
	if err != nil {
		panic(err)
	}
	out, err := os.Create(os.Args[4])
	if err != nil {
		panic(err)
	}
	zw, err := gzip.NewWriterLevel(out, level)
	if err != nil {
		panic(err)
	}
	r := rand.New(rand.NewSource(1))
	for len(in) > 0 {
		n := len(in)
		if ws > 0 && n > ws {
			n = ws
		} else if ws < 0 {
			n = 1 + r.Intn(-ws)
			if n > len(in) {
				n = len(in)
			}
		}
		if _, err := zw.Write(in[:n]); err != nil {
			panic(err)
		}
		in = in[n:]
	}
	if err := zw.Close(); err != nil {
		panic(err)
	}
	if err := out.Close(); err != nil {
		panic(err)
	}
}
)";

std::string ReadFile(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void WriteFile(const fs::path& p, std::string_view data) {
  std::ofstream f(p, std::ios::binary);
  f.write(data.data(), std::streamsize(data.size()));
}

int Run(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Builds the oracle once per test binary run, in a private temporary directory.
class Oracle {
 public:
  static Oracle& Get() {
    static Oracle o;
    return o;
  }
  bool ok() const { return ok_; }
  const std::string& why() const { return why_; }
  const fs::path& dir() const { return dir_; }

  // Go's gzip of `data`; write_size as in kOracleGo.
  std::string Gzip(std::string_view data, int level, int write_size = 32768) {
    const fs::path in = dir_ / "in", out = dir_ / "out.gz";
    WriteFile(in, data);
    std::string cmd = (dir_ / "oracle").string() + " " + std::to_string(level) + " " +
                      std::to_string(write_size) + " " + in.string() + " " + out.string();
    if (Run(cmd) != 0) return "oracle failed: " + cmd;
    return ReadFile(out);
  }

 private:
  Oracle() {
    char tmpl[] = "/tmp/goflate_test.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      why_ = "mkdtemp failed";
      return;
    }
    dir_ = tmpl;
    if (Run("command -v go >/dev/null 2>&1") != 0) {
      why_ = "`go` (golang-go 1.19) is not installed";
      return;
    }
    WriteFile(dir_ / "main.go", kOracleGo);
    WriteFile(dir_ / "go.mod", "module oracle\n\ngo 1.19\n");
    // ctest may run without HOME; Go then needs an explicit build cache, shared
    // by the test processes so that only the first one compiles the library.
    std::string env =
        getenv("HOME")
            ? ""
            : "GOCACHE=" + (fs::temp_directory_path() / "goflate_test_gocache").string() + " ";
    std::string cmd = "cd " + dir_.string() + " && " + env + "go build -o oracle . 2>&1";
    ok_ = Run(cmd) == 0;
    if (!ok_) why_ = "go build of the oracle failed: " + cmd;
  }
  ~Oracle() {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }

  bool ok_ = false;
  std::string why_;
  fs::path dir_;
};

// Go is a test dependency (scripts/install-deps.sh installs golang-go): without
// it the oracle is missing and the test fails, it does not skip.
#define REQUIRE_ORACLE()                                    \
  do {                                                      \
    ASSERT_TRUE(Oracle::Get().ok()) << Oracle::Get().why(); \
  } while (0)

std::string Mine(std::string_view data, int level, size_t write_size = 32768) {
  std::string out;
  GoGzipWriter w(level, [&out](const uint8_t* p, size_t n) {
    out.append(reinterpret_cast<const char*>(p), n);
    return Status::OK();
  });
  const auto* p = reinterpret_cast<const uint8_t*>(data.data());
  for (size_t i = 0; i < data.size(); i += write_size) {
    EXPECT_TRUE(w.Write(p + i, std::min(write_size, data.size() - i)).ok());
  }
  EXPECT_TRUE(w.Close().ok());
  return out;
}

// Compares goflate with Go on `data`; on a mismatch, says where the DEFLATE
// streams first differ.
void ExpectSameAsGo(std::string_view data, int level, const std::string& what) {
  std::string want = Oracle::Get().Gzip(data, level);
  std::string got = Mine(data, level);
  if (want == got) return;
  std::string why = want.size() < 18 || got.size() < 18
                        ? "short output"
                        : FirstDifference(std::string_view(want).substr(10, want.size() - 18),
                                          std::string_view(got).substr(10, got.size() - 18));
  ADD_FAILURE() << what << " (" << data.size() << " bytes) at level " << level
                << ": differs from Go (" << want.size() << " vs " << got.size()
                << " bytes): " << why;
}

// ---------------------------------------------------------------------------
// Inputs.

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = char(rng());
  return s;
}

// English-like text: words with a skewed distribution, so that matches of all
// lengths and distances occur.
std::string Text(size_t n, uint64_t seed) {
  static const char* kWords[] = {
      "the",   "of",     "and",     "a",        "to",      "in",     "is",    "container",
      "layer", "image",  "storage", "registry", "digest",  "sha256", "chunk", "deduplicated",
      "block", "stream", "huffman", "window",   "matches", "lazy",   "hash",  "encoder",
      "byte",  "exact",  "go",      "deflate",  "level",   "six",    "tar",   "gzip"};
  std::mt19937_64 rng(seed);
  std::string s;
  while (s.size() < n) {
    size_t w = rng() % 32;
    w = w * w / 32;  // skew towards the first words
    s += kWords[w];
    s += rng() % 12 == 0 ? ".\n" : " ";
    if (rng() % 50 == 0) s += std::to_string(rng() % 100000);
  }
  s.resize(n);
  return s;
}

// Runs of a few byte values with random lengths, some longer than 258.
std::string Runs(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s;
  while (s.size() < n) s.append(1 + rng() % 700, "\0ab\xff"[rng() % 4]);
  s.resize(n);
  return s;
}

// Text, binary, repeats and zeros interleaved: exercises block-type changes.
std::string Mixed(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s;
  while (s.size() < n) {
    size_t part = 1000 + rng() % 90000;
    switch (rng() % 4) {
      case 0:
        s += Text(part, rng());
        break;
      case 1:
        s += RandomBytes(part, rng());
        break;
      case 2:
        s += Runs(part, rng());
        break;
      default:  // a repeat of earlier data, near or far
        if (s.size() > part) s += s.substr(rng() % (s.size() - part), part);
    }
  }
  s.resize(n);
  return s;
}

// A real tar of a directory tree of a few MB: generated files plus copies of
// real binaries and docs, so headers, padding, ELF and text alternate.
std::string TarOfTree(const fs::path& root) {
  std::mt19937_64 rng(7);
  for (int d = 0; d < 8; ++d) {
    fs::path dir = root / ("dir" + std::to_string(d));
    fs::create_directories(dir / "sub");
    for (int f = 0; f < 20; ++f) {
      size_t size = rng() % 3 == 0 ? rng() % 100 : rng() % 60000;
      WriteFile(dir / ("text" + std::to_string(f) + ".txt"), Text(size, rng()));
      WriteFile(dir / "sub" / ("bin" + std::to_string(f)), RandomBytes(rng() % 5000, rng()));
    }
  }
  std::error_code ec;
  for (const char* p : {"/usr/bin/tar", "/usr/bin/gzip", "/usr/bin/ls", "/usr/bin/cp"}) {
    fs::copy_file(p, root / fs::path(p).filename(), ec);
  }
  fs::copy("/usr/share/common-licenses", root / "licenses", fs::copy_options::recursive, ec);
  fs::path tar = root.string() + ".tar";
  if (Run("tar cf " + tar.string() + " --sort=name -C " + root.string() + " .") != 0) return "";
  return ReadFile(tar);
}

// ---------------------------------------------------------------------------
// Tests.

TEST(GoFlate, EmptyAndTinyInputs) {
  REQUIRE_ORACLE();
  for (size_t n : {0, 1, 2, 3, 4, 5, 7, 16, 100, 258, 261, 262, 263, 300}) {
    ExpectSameAsGo(Text(n, n), 6, "text");
    ExpectSameAsGo(std::string(n, 'x'), 6, "run");
  }
  // Fixed-code blocks with literals 144-255 (9-bit codes).
  std::string high;
  for (int c = 255; c >= 140; c -= 23) high += char(c);
  for (int level : {-2, 0, 1, 2, 6, 9}) ExpectSameAsGo(high, level, "high literals");
}

TEST(GoFlate, SizesAroundBlockAndWindowBoundaries) {
  REQUIRE_ORACLE();
  for (size_t n : {32767, 32768, 32769, 65274, 65535, 65536, 65537, 98304, 131072 + 5}) {
    ExpectSameAsGo(Text(n, n), 6, "text");
    ExpectSameAsGo(RandomBytes(n, n), 6, "random");
  }
  // Matches at exactly 32768 bytes are lost for a while after each slide.
  std::string period = RandomBytes(32768, 1);
  for (int i = 0; i < 3; ++i) period += period;
  ExpectSameAsGo(period, 6, "random data with period 32768");
}

TEST(GoFlate, RandomDataGoesStored) {
  REQUIRE_ORACLE();
  std::string data = RandomBytes(1 << 20, 1);
  ExpectSameAsGo(data, 6, "random");
  std::string gz = Mine(data, 6);
  std::vector<Block> blocks;
  std::string out;
  ASSERT_TRUE(ParseDeflate(std::string_view(gz).substr(10, gz.size() - 18), &blocks, &out));
  EXPECT_EQ(out, data);
  EXPECT_EQ(blocks.front().type, 0);
  EXPECT_EQ(blocks.back().type, 0);  // the empty final stored block
  EXPECT_TRUE(blocks.back().final);
  EXPECT_EQ(blocks.back().stored_len, 0u);
}

TEST(GoFlate, LongRunsAndRepeats) {
  REQUIRE_ORACLE();
  ExpectSameAsGo(std::string(3 << 20, '\0'), 6, "zeros");
  ExpectSameAsGo(Runs(2 << 20, 3), 6, "runs");
  std::string period;
  for (int i = 0; i < 200000; ++i) period += "abcdefg"[i % 7];
  ExpectSameAsGo(period, 6, "period 7");
}

TEST(GoFlate, Text) {
  REQUIRE_ORACLE();
  ExpectSameAsGo(Text(3 << 20, 11), 6, "text");
}

TEST(GoFlate, MixedContentAllLevels) {
  REQUIRE_ORACLE();
  std::string data = Mixed(1 << 20, 5);
  for (int level : {-2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) ExpectSameAsGo(data, level, "mixed");
}

std::string FromHex(std::string_view hex) {
  std::string s;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    s += char(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16));
  return s;
}

// Inputs found by search where the computed sizes tie: stored vs Huffman
// (Go keeps Huffman) and dynamic vs fixed (Go keeps fixed); and one where
// level 1's stored/dynamic choice depends on leaving out the extra bits.
TEST(GoFlate, TiesBetweenBlockTypes) {
  REQUIRE_ORACLE();
  ExpectSameAsGo(
      FromHex("3198aeaa20b22b8b7b9da90b0f9d706898380e020c29013f689fc38695beb9a7630c0ebda5"
              "0c3a156d72801e9c97031a76040eb39f322c3e17661b94a3343c1b151638202b2ac96a1a04"
              "0d96138982a52b8519"),
      6, "stored/Huffman tie");
  ExpectSameAsGo(
      FromHex("8e8e02018d8e8d02638d620102636201018d8e62616163006263018e8e02018d8e8d02638d"
              "620102636201018d8e6261616300626301"),
      6, "dynamic/fixed tie");
  // Level 1 leaves extra bits out when it weighs stored against dynamic; with
  // them this piece would be stored.
  ExpectSameAsGo(
      FromHex("6aa971fa87faf23f80fc73ec965ce2f989ad2edc390d3aafc2178c3608c4acdca28b3c4a71"
              "df424012afc927eea7fa6aa971fa87fa6aa971fa87fa1a0aa60bae9d5a9bc91a0aa60bae9d"
              "5a9bc91a0aa60bae9d5a9bc91a6d0327174bbdc52df2cb224f73e33054dc6d9fb22ffdf99a"
              "1ac2695a33987f3210b76a0bd5231f44cabec2e6bbfab025ba16d31818cbbdc52df2cb224f"
              "73e33054dc562d417e8187dc42c0a4642c0466229bbd0a1a0f15c6433866c71a0aa60bae9d"
              "5a9bc9e7144c463276c665f6add590cabec2e6bbfab025ba16d3d1e0d1c733987f3210ab64"
              "065273ec965ce2f989ad2e5f02bf67fbae78b660de6ce1e39d5d92cabec2e6bbfab025ba16"
              "d337fc5e5bf7b1011ef4328e69"),
      1, "level 1 stored/dynamic, extra bits not counted");
}

// Level 1 cuts the input into 65535-byte pieces and treats small last pieces
// (<= 16, < 128 bytes) specially; matches reach into the previous piece.
TEST(GoFlate, Level1PieceBoundaries) {
  REQUIRE_ORACLE();
  for (size_t n : {15, 16, 17, 18, 127, 128, 129, 65535, 65536, 65535 + 16, 65535 + 17, 65535 + 127,
                   65535 + 128, 3 * 65535 + 40}) {
    ExpectSameAsGo(Text(n, n), 1, "text");
  }
  ExpectSameAsGo(RandomBytes(200000, 3), 1, "random");
  std::string period = RandomBytes(32768, 1);
  for (int i = 0; i < 3; ++i) period += period;
  ExpectSameAsGo(period, 1, "random data with period 32768");
  ExpectSameAsGo(Mixed(6 << 20, 4), 1, "mixed");
}

// Many small cases with random generator, size and level: the cheap way to
// reach rare paths (tiny blocks, 16384-token boundaries, stored/fixed ties).
TEST(GoFlate, RandomizedCases) {
  REQUIRE_ORACLE();
  static const int kLevels[] = {-2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  std::mt19937_64 rng(99);
  for (int i = 0; i < 80; ++i) {
    size_t n = rng() % 3 == 0 ? rng() % 3000 : rng() % 200000;
    uint64_t seed = rng();
    std::string data;
    switch (rng() % 4) {
      case 0:
        data = Text(n, seed);
        break;
      case 1:
        data = Runs(n, seed);
        break;
      case 2:
        data = Mixed(n, seed);
        break;
      default:
        data = RandomBytes(n, seed);
    }
    ExpectSameAsGo(data, kLevels[rng() % 12], "case " + std::to_string(i));
  }
  for (int level : kLevels) {
    ExpectSameAsGo("", level, "empty");
    ExpectSameAsGo("z", level, "one byte");
  }
}

TEST(GoFlate, RealTarOfADirectoryTree) {
  REQUIRE_ORACLE();
  fs::path root = Oracle::Get().dir() / "tree";
  std::string tar = TarOfTree(root);
  ASSERT_GT(tar.size(), 1u << 20);
  ExpectSameAsGo(tar, 6, "tar");
  for (int level : {-2, 1, 2, 9}) ExpectSameAsGo(tar.substr(0, 4 << 20), level, "tar prefix");
}

TEST(GoFlate, LargeInputTensOfMB) {
  REQUIRE_ORACLE();
  ExpectSameAsGo(Mixed(24 << 20, 9), 6, "mixed");
}

// Go's output does not depend on how the input is split into writes, and
// neither does goflate's.
TEST(GoFlate, WriteSizesDoNotChangeOutput) {
  REQUIRE_ORACLE();
  std::string data = Mixed(600000, 13);
  for (int level : {6, 1}) {
    std::string reference = Mine(data, level, data.size() + 1);
    for (size_t ws : {1, 7, 4096, 32768, 65536, 100000}) {
      EXPECT_EQ(Mine(data, level, ws), reference)
          << "goflate, level " << level << ", write size " << ws;
    }
    for (int ws : {1, 32768, -5000, -70000}) {
      EXPECT_EQ(Oracle::Get().Gzip(data, level, ws), reference)
          << "Go, level " << level << ", write size " << ws;
    }
  }
}

// Some of the rules in goflate.cc, checked on Go's own stream: keeps the
// documentation honest if the oracle ever changes.
TEST(GoFlate, ObservedRulesHoldInGoOutput) {
  REQUIRE_ORACLE();
  std::string data = Text(2 << 20, 21);
  std::string gz = Oracle::Get().Gzip(data, 6);
  std::vector<Block> blocks;
  std::string out;
  ASSERT_TRUE(ParseDeflate(std::string_view(gz).substr(10, gz.size() - 18), &blocks, &out));
  EXPECT_EQ(out, data);
  ASSERT_GE(blocks.size(), 3u);
  for (size_t i = 0; i + 2 < blocks.size(); ++i) {
    EXPECT_EQ(blocks[i].tokens.size(), 16384u) << "block " << i;
  }
  EXPECT_FALSE(blocks[blocks.size() - 2].final);
  EXPECT_TRUE(blocks.back().final && blocks.back().type == 0 && blocks.back().stored_len == 0);
  for (const Block& b : blocks) {
    for (const Token& t : b.tokens) {
      if (t.dist == 0) continue;
      EXPECT_GE(t.lit_or_len, 4);
      if (t.lit_or_len == 4) {
        EXPECT_LE(t.dist, 4096);
      }
    }
  }
}

TEST(GoFlate, FirstDifferenceNamesTheToken) {
  std::string data = Text(100000, 3);
  auto a = GoDeflate(data, 4), b = GoDeflate(data, 9);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(FirstDifference(*a, *b).find("token"), std::string::npos) << FirstDifference(*a, *b);
  EXPECT_EQ(FirstDifference(*a, "junk"), "goflate's stream does not parse");
}

// Needs no Go: every level's output inflates with zlib, from tiny fixed-code
// blocks to large dynamic ones.
TEST(GoFlate, OutputInflatesWithZlib) {
  const std::string inputs[] = {Mixed(300000, 17), "\xff\xfe\x90\x91 abc \xff\xff", Text(50, 1),
                                ""};
  for (const std::string& data : inputs) {
    for (int level : {-2, 0, 1, 2, 4, 6, 9}) {
      std::string gz = Mine(data, level);
      std::string out(data.size() + 1, '\0');
      z_stream zs{};
      ASSERT_EQ(inflateInit2(&zs, 16 + MAX_WBITS), Z_OK);
      zs.next_in = reinterpret_cast<Bytef*>(gz.data());
      zs.avail_in = uInt(gz.size());
      zs.next_out = reinterpret_cast<Bytef*>(out.data());
      zs.avail_out = uInt(out.size());
      EXPECT_EQ(inflate(&zs, Z_FINISH), Z_STREAM_END) << "level " << level;
      out.resize(zs.total_out);
      inflateEnd(&zs);
      EXPECT_EQ(out, data) << "level " << level << ", " << data.size() << " bytes";
    }
  }
}

TEST(GoFlate, GzipHeaderAsGoWritesIt) {
  auto gz = GoGzip("", 6);
  ASSERT_TRUE(gz.ok());
  const std::string want("\x1f\x8b\x08\0\0\0\0\0\0\xff\x01\0\0\xff\xff\0\0\0\0\0\0\0\0", 23);
  EXPECT_EQ(*gz, want);
  auto best = GoGzip("a", 9);
  ASSERT_TRUE(best.ok());
  EXPECT_EQ((*best)[8], '\x02');  // XFL: maximum compression
  auto fast = GoGzip("a", 1);
  ASSERT_TRUE(fast.ok());
  EXPECT_EQ((*fast)[8], '\x04');  // XFL: fastest
}

TEST(GoFlate, RejectsUnsupportedLevels) {
  for (int level : {-3, 10}) {
    auto r = GoGzip("x", level);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), chunkstore::Code::kInvalidArgument);
  }
}

TEST(GoFlate, SinkErrorStopsTheWriter) {
  int calls = 0;
  GoFlateWriter w(6, [&calls](const uint8_t*, size_t) {
    ++calls;
    return Status::IOError("write `layer.gz`: No space left on device", 28);
  });
  std::string data = RandomBytes(1 << 20, 2);
  Status s = w.Write(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  EXPECT_EQ(s.sys_errno(), 28);
  EXPECT_EQ(w.Close().sys_errno(), 28);
  EXPECT_EQ(calls, 1);
}

TEST(GoFlate, WriteAfterCloseFails) {
  std::string out;
  GoGzipWriter w(6, [&out](const uint8_t* p, size_t n) {
    out.append(reinterpret_cast<const char*>(p), n);
    return Status::OK();
  });
  ASSERT_TRUE(w.Write(reinterpret_cast<const uint8_t*>("abc"), 3).ok());
  ASSERT_TRUE(w.Close().ok());
  const std::string closed = out;
  EXPECT_EQ(w.Write(reinterpret_cast<const uint8_t*>("d"), 1).code(),
            chunkstore::Code::kFailedPrecondition);
  EXPECT_EQ(w.Close().code(), chunkstore::Code::kFailedPrecondition);
  EXPECT_EQ(out, closed);
  EXPECT_EQ(out, *GoGzip("abc", 6));
}

// GOFLATE_COMPARE_FILES="path[:level] ...": compare goflate with Go on real files.
// A tool, not part of the suite: with GOFLATE_COMPARE_FILES="path[:level] ...",
//   cofferlayer_test --gtest_also_run_disabled_tests --gtest_filter='*FilesFromEnvironment*'
TEST(GoFlate, DISABLED_FilesFromEnvironment) {
  const char* files = getenv("GOFLATE_COMPARE_FILES");
  ASSERT_NE(files, nullptr) << "set GOFLATE_COMPARE_FILES";
  REQUIRE_ORACLE();
  std::istringstream ss(files);
  std::string item;
  while (ss >> item) {
    int level = 6;
    if (size_t colon = item.rfind(':'); colon != std::string::npos) {
      level = std::stoi(item.substr(colon + 1));
      item.resize(colon);
    }
    ExpectSameAsGo(ReadFile(item), level, item);
  }
}

// ---------------------------------------------------------------------------
// Checkpoints: segments re-created independently, each from its checkpoint
// alone, concatenate to Go's exact stream.

struct Checkpointed {
  std::string deflate;  // goflate's raw stream, made in one pass
  std::vector<GoFlateCheckpoint> cps;
  std::vector<std::string> hints;  // search hints of each segment (cps.size() + 1)
};

Checkpointed WithCheckpoints(std::string_view data, int level, uint64_t interval) {
  Checkpointed r;
  GoFlateWriter w(level, [&r](const uint8_t* p, size_t n) {
    r.deflate.append(reinterpret_cast<const char*>(p), n);
    return Status::OK();
  });
  std::string hints;
  w.SetCheckpointObserver(interval, [&r, &hints](const GoFlateCheckpoint& cp) {
    r.cps.push_back(cp);
    r.hints.push_back(std::move(hints));
    hints.clear();
  });
  w.RecordHints(&hints);
  EXPECT_TRUE(w.Write(reinterpret_cast<const uint8_t*>(data.data()), data.size()).ok());
  EXPECT_TRUE(w.Close().ok());
  r.hints.push_back(std::move(hints));
  return r;
}

// Segment i runs from checkpoint i-1 (or the start) to checkpoint i (or the
// end), and sees only the input it is documented to need.
// With `hints`, each segment follows its own.
std::string Stitch(std::string_view data, int level, const std::vector<GoFlateCheckpoint>& cps,
                   const std::vector<std::string>* hints = nullptr) {
  std::string out;
  for (size_t i = 0; i <= cps.size(); ++i) {
    const GoFlateCheckpoint* from = i > 0 ? &cps[i - 1] : nullptr;
    const GoFlateCheckpoint* to = i < cps.size() ? &cps[i] : nullptr;
    uint64_t begin = from ? from->window_base : 0;
    uint64_t end = to ? std::min<uint64_t>(data.size(), to->plain_offset + kGoFlateSegmentLookahead)
                      : data.size();
    auto seg = GoFlateSegment(level, from, to, data.substr(begin, end - begin),
                              hints ? std::string_view((*hints)[i]) : std::string_view());
    if (!seg.ok()) {
      ADD_FAILURE() << "segment " << i << ": " << seg.status().ToString();
      return "";
    }
    std::string_view b = *seg;
    if (from && from->bit_offset % 8 != 0) {  // the byte both segments share
      if (b.empty() || out.empty()) {
        ADD_FAILURE() << "segment " << i << " has no shared byte";
        return "";
      }
      out.back() = char(out.back() | b[0]);
      b.remove_prefix(1);
    }
    out.append(b);
  }
  return out;
}

std::string GoDeflateOf(std::string_view data, int level) {
  std::string gz = Oracle::Get().Gzip(data, level);
  return gz.size() < 18 ? gz : gz.substr(10, gz.size() - 18);
}

// Returns how many checkpoints had a pending byte (the lazy matcher's state).
size_t ExpectSegmentsMakeGoStream(std::string_view data, int level, uint64_t interval,
                                  const std::string& what) {
  std::string want = GoDeflateOf(data, level);
  Checkpointed c = WithCheckpoints(data, level, interval);
  EXPECT_EQ(c.deflate, want) << what << ": one-pass goflate differs from Go";
  EXPECT_EQ(c.hints.size(), c.cps.size() + 1);
  for (bool with_hints : {false, true}) {
    std::string got = Stitch(data, level, c.cps, with_hints ? &c.hints : nullptr);
    if (got != want) {
      size_t i = 0;
      while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
      ADD_FAILURE() << what << " at level " << level << ", " << c.cps.size() << " checkpoints"
                    << (with_hints ? ", following hints" : "")
                    << ": stitched segments differ from Go at byte " << i << " of " << want.size()
                    << " (got " << got.size() << ")";
    }
  }
  size_t pending = 0;
  for (const auto& cp : c.cps) pending += cp.byte_pending;
  return pending;
}

TEST(GoFlateCheckpoints, EveryBlockBoundaryAllLazyLevels) {
  REQUIRE_ORACLE();
  size_t pending = 0, total = 0;
  for (int level : {-1, 4, 5, 6, 7, 8, 9}) {
    for (int kind = 0; kind < 4; ++kind) {
      size_t n = 1500000 + 77777 * size_t(kind);
      std::string data = kind == 0   ? Mixed(n, 5 + level)
                         : kind == 1 ? Text(n, 6 + level)
                         : kind == 2 ? Runs(n, 7 + level)
                                     : Mixed(n, 8 + level) + RandomBytes(70000, 9) + Text(n, 10);
      pending += ExpectSegmentsMakeGoStream(data, level, 0, "kind " + std::to_string(kind));
      total += WithCheckpoints(data, level, 0).cps.size();
    }
  }
  // Both lazy-matcher states at a boundary were exercised.
  EXPECT_GT(pending, 0u);
  EXPECT_LT(pending, total);
}

TEST(GoFlateCheckpoints, RealTarEveryBoundaryAndSparse) {
  REQUIRE_ORACLE();
  fs::path root = Oracle::Get().dir() / "cptree";
  std::string tar = TarOfTree(root);
  ASSERT_GT(tar.size(), 1u << 20);
  for (int level : {6, 9}) {
    ExpectSegmentsMakeGoStream(tar, level, 0, "tar");
    ExpectSegmentsMakeGoStream(tar, level, 1 << 20, "tar, 1 MiB apart");
  }
}

// Segments cut across window slides, hash-offset rebases (> 16 MiB) and long
// inputs: 40 MB at level 6 with checkpoints 4 MiB apart.
TEST(GoFlateCheckpoints, LargeInputFewCheckpoints) {
  REQUIRE_ORACLE();
  std::string data = Mixed(40 << 20, 31);
  ExpectSegmentsMakeGoStream(data, 6, 4 << 20, "mixed 40 MB");
}

TEST(GoFlateCheckpoints, RandomizedSizesAndIntervals) {
  REQUIRE_ORACLE();
  std::mt19937_64 rng(123);
  static const int kLevels[] = {-1, 4, 5, 6, 7, 8, 9};
  for (int i = 0; i < 30; ++i) {
    size_t n = rng() % 900000;
    std::string data = rng() % 2 ? Mixed(n, rng()) : Text(n, rng());
    ExpectSegmentsMakeGoStream(data, kLevels[rng() % 7], rng() % 200000,
                               "case " + std::to_string(i));
  }
}

// Levels whose state is not a function of recent input report no checkpoints
// and refuse segments.
TEST(GoFlateCheckpoints, OtherLevelsHaveNone) {
  std::string data = Mixed(400000, 3);
  for (int level : {-2, 0, 1, 2, 3}) {
    EXPECT_FALSE(GoFlateWriter::SupportsCheckpoints(level));
    EXPECT_TRUE(WithCheckpoints(data, level, 0).cps.empty()) << level;
    EXPECT_FALSE(GoFlateSegment(level, nullptr, nullptr, data).ok()) << level;
  }
}

// A checkpoint that does not describe the stream is caught: the segment does
// not end where the next checkpoint says.
TEST(GoFlateCheckpoints, WrongCheckpointIsAnError) {
  std::string data = Text(600000, 4);
  Checkpointed c = WithCheckpoints(data, 6, 0);
  ASSERT_GE(c.cps.size(), 2u);
  GoFlateCheckpoint to = c.cps[1];
  to.bit_offset += 1;
  EXPECT_FALSE(GoFlateSegment(6, &c.cps[0], &to, data.substr(c.cps[0].window_base)).ok());
}

// Search hints: following them gives the full search's stream, and a hint
// that is wrong gives a different one or an error, never silently the same
// stream from wrong decisions.
TEST(GoFlateHints, HintedSegmentsEqualFullSearch) {
  std::string data = Text(2000000, 41) + Mixed(1500000, 42);
  for (int level : {4, 6, 9}) {
    Checkpointed c = WithCheckpoints(data, level, 1 << 20);
    ASSERT_GE(c.cps.size(), 2u) << level;
    size_t hint_bytes = 0, nonzero = 0;
    for (const auto& h : c.hints) {
      hint_bytes += h.size();
      for (char b : h) nonzero += b != 0;
    }
    EXPECT_GT(nonzero, 100u) << level;  // the jumps past the first candidates are exercised
    EXPECT_LT(hint_bytes, data.size() / 4) << level;
    EXPECT_EQ(Stitch(data, level, c.cps, &c.hints), c.deflate) << level;
  }
}

TEST(GoFlateHints, NoCheckpointsOneSegment) {
  std::string data = Text(700000, 43);
  Checkpointed c = WithCheckpoints(data, 6, 1 << 30);
  ASSERT_TRUE(c.cps.empty());
  ASSERT_EQ(c.hints.size(), 1u);
  auto seg = GoFlateSegment(6, nullptr, nullptr, data, c.hints[0]);
  ASSERT_TRUE(seg.ok()) << seg.status().ToString();
  EXPECT_EQ(*seg, c.deflate);
}

TEST(GoFlateHints, WrongHintsChangeTheStream) {
  std::string data = Text(900000, 44);
  Checkpointed c = WithCheckpoints(data, 6, 1 << 30);
  ASSERT_EQ(c.hints.size(), 1u);
  const std::string& h = c.hints[0];
  // A changed hint is an error or another stream (the digest check rejects
  // it), unless the lazy matcher discarded that search's result anyway.
  std::mt19937_64 rng(45);
  int changed = 0;
  const int kTrials = 60;
  for (int trial = 0; trial < kTrials; ++trial) {
    std::string bad = h;
    size_t at = rng() % bad.size();
    while (uint8_t(bad[at]) == 255) at = rng() % bad.size();
    bad[at] = bad[at] == 0 ? char(1 + rng() % 100) : 0;
    auto seg = GoFlateSegment(6, nullptr, nullptr, data, bad);
    changed += !seg.ok() || *seg != c.deflate;
  }
  EXPECT_GT(changed, kTrials / 2);
  // Too few hints: the searches after them run in full, and still agree.
  auto seg = GoFlateSegment(6, nullptr, nullptr, data, std::string_view(h).substr(0, h.size() / 2));
  ASSERT_TRUE(seg.ok());
  EXPECT_EQ(*seg, c.deflate);
}

}  // namespace
}  // namespace cofferlayer
