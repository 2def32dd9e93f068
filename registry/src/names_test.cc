#include "names.h"

#include <gtest/gtest.h>

namespace cofferregistry {
namespace {

TEST(Names, RepoNames) {
  for (const char* ok : {"a", "library/ubuntu", "a.b_c__d-e---f/g0", "0/1/2", "foo/manifests/bar"})
    EXPECT_TRUE(ValidRepoName(ok)) << ok;
  for (const char* bad : {"", "A", "a/", "/a", "a//b", "a..b", "a___b", "-a", "a-", "a_", ".a",
                          "a/../b", "..", "a/.", "a b", "a%2fb", "_catalog", "a:b"})
    EXPECT_FALSE(ValidRepoName(bad)) << bad;
  EXPECT_TRUE(ValidRepoName(std::string(255, 'a')));
  EXPECT_FALSE(ValidRepoName(std::string(256, 'a')));
}

TEST(Names, Tags) {
  for (const char* ok : {"latest", "v1.0", "_x", "A-b_c.d"}) EXPECT_TRUE(ValidTag(ok)) << ok;
  for (const char* bad : {"", ".x", "-x", "a/b", "a:b", "..", "a b"})
    EXPECT_FALSE(ValidTag(bad)) << bad;
  EXPECT_TRUE(ValidTag(std::string(128, 'a')));
  EXPECT_FALSE(ValidTag(std::string(129, 'a')));
}

TEST(Names, Digests) {
  std::string hex(64, 'a');
  EXPECT_EQ(CheckDigest("sha256:" + hex), DigestCheck::kOk);
  EXPECT_EQ(CheckDigest("sha256:" + std::string(64, 'A')), DigestCheck::kInvalid);
  EXPECT_EQ(CheckDigest("sha256:" + hex.substr(1)), DigestCheck::kInvalid);
  EXPECT_EQ(CheckDigest("sha256:" + hex + "a"), DigestCheck::kInvalid);
  EXPECT_EQ(CheckDigest("sha256:../../etc/passwd"), DigestCheck::kInvalid);
  EXPECT_EQ(CheckDigest("sha512:" + std::string(128, 'b')), DigestCheck::kUnsupported);
  EXPECT_EQ(CheckDigest("blake3:abc"), DigestCheck::kUnsupported);
  EXPECT_EQ(CheckDigest("nodigest"), DigestCheck::kInvalid);
  EXPECT_EQ(CheckDigest(":abc"), DigestCheck::kInvalid);
  EXPECT_EQ(CheckDigest("sha256:"), DigestCheck::kInvalid);
  EXPECT_EQ(CheckDigest("SHA256:" + hex), DigestCheck::kInvalid);
  EXPECT_EQ(CheckDigest("sha512:a/b"), DigestCheck::kInvalid);
}

TEST(Names, Query) {
  auto q = ParseQuery("n=10&last=a%2Fb&digest=sha256%3Aab&flag&n=20");
  ASSERT_TRUE(q);
  EXPECT_EQ((*q)["n"], "10");
  EXPECT_EQ((*q)["last"], "a/b");
  EXPECT_EQ((*q)["digest"], "sha256:ab");
  EXPECT_EQ(q->count("flag"), 1u);
  EXPECT_FALSE(ParseQuery("a=%zz"));
  EXPECT_FALSE(ParseQuery("a=%2"));
  EXPECT_EQ(QueryEscape("a/b c"), "a%2Fb%20c");
}

TEST(Names, Range) {
  ByteRange r;
  EXPECT_EQ(ParseRange("bytes=0-9", 100, &r), RangeParse::kOk);
  EXPECT_EQ(r.first, 0u);
  EXPECT_EQ(r.last, 9u);
  EXPECT_EQ(ParseRange("bytes=90-", 100, &r), RangeParse::kOk);
  EXPECT_EQ(r.last, 99u);
  EXPECT_EQ(ParseRange("bytes=-10", 100, &r), RangeParse::kOk);
  EXPECT_EQ(r.first, 90u);
  EXPECT_EQ(ParseRange("bytes=50-1000", 100, &r), RangeParse::kOk);
  EXPECT_EQ(r.last, 99u);
  EXPECT_EQ(ParseRange("bytes=100-", 100, &r), RangeParse::kUnsatisfiable);
  EXPECT_EQ(ParseRange("bytes=-0", 100, &r), RangeParse::kUnsatisfiable);
  EXPECT_EQ(ParseRange("bytes=5-1", 100, &r), RangeParse::kIgnore);
  EXPECT_EQ(ParseRange("bytes=0-1,5-6", 100, &r), RangeParse::kIgnore);
  EXPECT_EQ(ParseRange("items=0-1", 100, &r), RangeParse::kIgnore);
  EXPECT_EQ(ParseRange("bytes=x-1", 100, &r), RangeParse::kIgnore);

  EXPECT_TRUE(ParseUploadRange("0-99", &r));
  EXPECT_EQ(r.last, 99u);
  EXPECT_TRUE(ParseUploadRange("bytes=100-199", &r));
  EXPECT_TRUE(ParseUploadRange("bytes 100-199/*", &r));
  EXPECT_EQ(r.first, 100u);
  EXPECT_FALSE(ParseUploadRange("9-1", &r));
  EXPECT_FALSE(ParseUploadRange("abc", &r));
  EXPECT_FALSE(ParseUploadRange("-5", &r));
}

TEST(Names, UploadIds) {
  std::string a = NewUploadId(), b = NewUploadId();
  EXPECT_TRUE(ValidUploadId(a));
  EXPECT_NE(a, b);
  EXPECT_FALSE(ValidUploadId("../x"));
  EXPECT_FALSE(ValidUploadId(std::string(32, 'g')));
}

}  // namespace
}  // namespace cofferregistry
