// JWT tokens: issue/verify round trips, and every reason a token is refused.
#include "token.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <boost/json.hpp>

#include "auth.h"

namespace cofferregistry {
namespace {
namespace json = boost::json;

constexpr int64_t kNow = 1'800'000'000;

TEST(Token, Base64Url) {
  for (std::string s : {"", "a", "ab", "abc", "\xff\xfe\xfd\x00\x01"})
    EXPECT_EQ(Base64UrlDecode(Base64UrlEncode(s)), s);
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
  EXPECT_FALSE(Base64UrlDecode("ab+c"));
  EXPECT_FALSE(Base64UrlDecode("abc="));
  EXPECT_FALSE(Base64UrlDecode("a"));
}

TEST(Token, Scopes) {
  auto s = ParseScope("repository:library/x:pull,push");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->type, "repository");
  EXPECT_EQ(s->name, "library/x");
  EXPECT_EQ(s->actions, unsigned{kPull | kPush});
  EXPECT_EQ(FormatScope(*s), "repository:library/x:pull,push");
  s = ParseScope("repository:host:5000/x:pull");  // the name keeps its ':'
  ASSERT_TRUE(s);
  EXPECT_EQ(s->name, "host:5000/x");
  EXPECT_EQ(ParseScope("registry:catalog:*")->actions, unsigned{kPull | kPush | kDelete});
  EXPECT_FALSE(ParseScope("repository"));
  EXPECT_FALSE(ParseScope("repository:x"));
  EXPECT_FALSE(ParseScope(":x:pull"));
}

TEST(Token, IssueVerifyRoundTrip) {
  auto t = TokenAuthority::Ephemeral("iss", "svc");
  ASSERT_TRUE(t.ok());
  auto tok = (*t)->Issue("alice", {{"repository", "a/b", kPull | kPush}}, kNow, 300);
  ASSERT_TRUE(tok.ok());
  auto c = (*t)->Verify(*tok, kNow + 10);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->subject, "alice");
  EXPECT_EQ(c->Granted("repository", "a/b"), unsigned{kPull | kPush});
  EXPECT_EQ(c->Granted("repository", "a/c"), 0u);
  // The header names ES256 and a libtrust-style key id.
  auto header = json::parse(*Base64UrlDecode(tok->substr(0, tok->find('.'))));
  EXPECT_EQ(header.at("alg").as_string(), "ES256");
  EXPECT_EQ(header.at("kid").as_string().size(), 59u);  // 12 groups of 4, 11 colons
}

TEST(Token, RefusedTokens) {
  auto t = TokenAuthority::Ephemeral("iss", "svc");
  auto other = TokenAuthority::Ephemeral("iss", "svc");
  ASSERT_TRUE(t.ok() && other.ok());
  std::string tok = *(*t)->Issue("alice", {}, kNow, 300);
  EXPECT_FALSE((*t)->Verify(tok, kNow + 300 + 61).ok());  // expired (beyond the leeway)
  EXPECT_TRUE((*t)->Verify(tok, kNow + 300 + 59).ok());
  EXPECT_FALSE((*t)->Verify(tok, kNow - 61).ok());  // not yet valid
  EXPECT_FALSE((*other)->Verify(tok, kNow).ok());   // another key
  // Claims rewritten, signature kept: refused.
  size_t d1 = tok.find('.'), d2 = tok.rfind('.');
  auto claims = json::parse(*Base64UrlDecode(tok.substr(d1 + 1, d2 - d1 - 1))).as_object();
  claims["sub"] = "mallory";
  std::string forged =
      tok.substr(0, d1 + 1) + Base64UrlEncode(json::serialize(claims)) + tok.substr(d2);
  auto r = (*t)->Verify(forged, kNow);
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("signature"), std::string::npos);
  // alg "none" with an empty signature: refused.
  std::string none = Base64UrlEncode("{\"alg\":\"none\",\"typ\":\"JWT\"}") + "." +
                     tok.substr(d1 + 1, d2 - d1 - 1) + ".";
  EXPECT_FALSE((*t)->Verify(none, kNow).ok());
  for (std::string junk : {"", ".", "a.b", "a.b.c", "!!.??.**"})
    EXPECT_FALSE((*t)->Verify(junk, kNow).ok());
}

// An external token server's RS256 token, verified from its public key in PEM.
TEST(Token, TrustsExternalRsaIssuer) {
  EVP_PKEY* key = EVP_RSA_gen(2048);
  ASSERT_NE(key, nullptr);
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key);
  char* p = nullptr;
  long n = BIO_get_mem_data(bio, &p);
  std::string pem(p, static_cast<size_t>(n));
  BIO_free(bio);
  auto t = TokenAuthority::Trusting(pem, "auth.example", "registry.example");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_FALSE((*t)->can_issue());

  auto sign = [&](const std::string& alg, const std::string& aud) {
    std::string input = Base64UrlEncode("{\"typ\":\"JWT\",\"alg\":\"" + alg + "\"}") + "." +
                        Base64UrlEncode("{\"iss\":\"auth.example\",\"sub\":\"ci\",\"aud\":[\"" +
                                        aud + "\"],\"exp\":" + std::to_string(kNow + 60) +
                                        ",\"nbf\":" + std::to_string(kNow) +
                                        ",\"access\":[{\"type\":\"repository\",\"name\":\"x\","
                                        "\"actions\":[\"pull\"]}]}");
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    size_t len = 0;
    EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key);
    EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                   input.size());
    std::string sig(len, '\0');
    EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                   reinterpret_cast<const unsigned char*>(input.data()), input.size());
    EVP_MD_CTX_free(ctx);
    return input + "." + Base64UrlEncode(sig.substr(0, len));
  };
  auto c = (*t)->Verify(sign("RS256", "registry.example"), kNow);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->subject, "ci");
  EXPECT_EQ(c->Granted("repository", "x"), unsigned{kPull});
  EXPECT_FALSE((*t)->Verify(sign("RS256", "elsewhere"), kNow).ok());         // audience
  EXPECT_FALSE((*t)->Verify(sign("ES256", "registry.example"), kNow).ok());  // alg mismatch
  EVP_PKEY_free(key);
  EXPECT_FALSE(TokenAuthority::Trusting("not pem", "a", "b").ok());
}

}  // namespace
}  // namespace cofferregistry
