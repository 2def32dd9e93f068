// libFuzzer target: the registry's validators of client-supplied names, digests,
// query strings and ranges (registry/src/names.h). Besides "never crash", each
// accepted input must satisfy the property the handler relies on: an accepted
// repository name or tag can be joined into a path without escaping its
// directory, an accepted range lies inside the resource, and a query value
// escaped with QueryEscape parses back to itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "names.h"

namespace {

using namespace cofferregistry;

bool IsLowerHex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

void CheckNames(std::string_view s) {
  if (ValidRepoName(s)) {
    if (s.empty() || s.size() > 255 || s.front() == '/' || s.back() == '/' ||
        s.find("//") != s.npos || s.find("..") != s.npos || s.find('\0') != s.npos)
      std::abort();  // a name that could address a path outside /repos
  }
  if (ValidTag(s)) {
    if (s.empty() || s.size() > 128 || s.find('/') != s.npos || s == "." || s == ".." ||
        s.front() == '.' || s.front() == '-')
      std::abort();
  }
  if (CheckDigest(s) == DigestCheck::kOk) {
    if (s.size() != 71 || s.substr(0, 7) != "sha256:" || !IsLowerHex(s.substr(7))) std::abort();
    if (DigestHex(s).size() != 64) std::abort();
  }
  if (ValidUploadId(s) && (s.size() != 32 || !IsLowerHex(s))) std::abort();
}

void CheckRanges(std::string_view s, uint64_t size) {
  ByteRange r;
  RangeParse p = ParseRange(s, size, &r);
  if (p == RangeParse::kOk && (r.first > r.last || r.last >= size)) std::abort();
  ByteRange u;
  if (ParseUploadRange(s, &u) && u.first > u.last) std::abort();
}

void CheckQuery(std::string_view s) {
  auto q = ParseQuery(s);
  (void)q;
  // Escaping then parsing must give the value back, whatever bytes it holds.
  auto back = ParseQuery("v=" + QueryEscape(s));
  if (!back || back->count("v") != 1 || back->at("v") != s) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The first 8 bytes (when present) are the resource size for ParseRange.
  uint64_t resource = 0;
  if (size >= 8) {
    std::memcpy(&resource, data, 8);
    resource %= (uint64_t{1} << 48);
  }
  std::string_view all(reinterpret_cast<const char*>(data), size);
  std::string_view rest = size >= 8 ? all.substr(8) : all;
  CheckNames(all);
  CheckNames(rest);
  CheckRanges(rest, resource);
  CheckRanges(all, 1000);
  CheckQuery(all);
  return 0;
}
