// libFuzzer target: validation of a pushed manifest (ParseManifest) and the
// referrers descriptor built from an accepted one. The first input line is the
// Content-Type, the rest the body. An accepted manifest must only name valid
// sha256 digests (they become paths), and the descriptor and the referrers
// index built from it must be JSON objects.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <boost/json.hpp>

#include "manifest.h"
#include "names.h"

namespace {

using namespace cofferregistry;

// Open bug, reproduced by tests/fuzz/known/manifest/content_type_not_utf8: a
// Content-Type that is not valid UTF-8 is taken as the media type verbatim and
// the referrers descriptor built from it is not valid JSON (so the referrers
// index of the subject becomes unparseable for every client). Tolerated unless
// COFFER_FUZZ_STRICT is set, so the fuzzer keeps looking for other bugs;
// fuzz_test.sh runs the reproducer strictly and reports the bug while it is open.
bool ValidUtf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : 9;
    if (n == 9 || i + n >= s.size()) return false;
    for (size_t k = 1; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 2) return false;
    i += n + 1;
  }
  return true;
}
bool KnownOpenBug(const ManifestInfo& m) {
  static const bool strict = std::getenv("COFFER_FUZZ_STRICT") != nullptr;
  return !strict && !ValidUtf8(m.media_type);
}

bool IsJsonObject(const std::string& text) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  return !ec && v.is_object();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  size_t nl = in.find('\n');
  std::string content_type = nl == std::string::npos ? "" : in.substr(0, nl);
  std::string body = nl == std::string::npos ? in : in.substr(nl + 1);
  for (const std::string& ct : {content_type, std::string()}) {
    auto m = ParseManifest(body, ct);
    if (!m.ok()) {
      if (m.status().message().empty()) std::abort();  // a refusal must give a reason
      continue;
    }
    for (const auto& d : m->blobs)
      if (CheckDigest(d) != DigestCheck::kOk) std::abort();
    for (const auto& d : m->manifests)
      if (CheckDigest(d) != DigestCheck::kOk) std::abort();
    if (m->subject && CheckDigest(*m->subject) != DigestCheck::kOk) std::abort();
    std::string digest = "sha256:" + Sha256Hex(body);
    std::string desc = ReferrerDescriptor(*m, digest, body.size());
    if (!IsJsonObject(desc) && !KnownOpenBug(*m)) std::abort();
    if (!IsJsonObject(ReferrersIndex({desc, desc})) && !KnownOpenBug(*m)) std::abort();
  }
  return 0;
}
