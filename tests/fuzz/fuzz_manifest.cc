// libFuzzer target: validation of a pushed manifest (ParseManifest) and the
// referrers descriptor built from an accepted one. The first input line is the
// Content-Type, the rest the body. An accepted manifest must only name valid
// sha256 digests (they become paths), and the descriptor and the referrers
// index built from it must be JSON objects.
#include <boost/json.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "manifest.h"
#include "names.h"

namespace {

using namespace cofferregistry;

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
    if (!IsJsonObject(desc)) std::abort();  // (a non-UTF-8 media type once did this)
    if (!IsJsonObject(ReferrersIndex({desc, desc}))) std::abort();
  }
  return 0;
}
