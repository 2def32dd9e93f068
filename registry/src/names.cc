#include "names.h"

#include <openssl/rand.h>

#include <charconv>
#include <cstdlib>

namespace cofferregistry {
namespace {

bool LowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool Alnum(char c) { return LowerAlnum(c) || (c >= 'A' && c <= 'Z'); }
bool LowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
bool ValidComponent(std::string_view c) {
  size_t i = 0;
  while (i < c.size()) {
    if (!LowerAlnum(c[i])) return false;
    while (i < c.size() && LowerAlnum(c[i])) ++i;
    if (i == c.size()) return true;
    // A separator, then at least one alphanumeric.
    if (c[i] == '.') {
      ++i;
    } else if (c[i] == '_') {
      ++i;
      if (i < c.size() && c[i] == '_') ++i;
    } else if (c[i] == '-') {
      while (i < c.size() && c[i] == '-') ++i;
    } else {
      return false;
    }
    if (i == c.size()) return false;
  }
  return false;  // empty
}

bool ParseU64(std::string_view s, uint64_t* v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      int h = HexVal(s[i + 1]), l = HexVal(s[i + 2]);
      if (h < 0 || l < 0) return std::nullopt;
      out.push_back(static_cast<char>(h * 16 + l));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

bool ValidRepoName(std::string_view name) {
  if (name.empty() || name.size() > 255) return false;
  size_t start = 0;
  while (true) {
    size_t slash = name.find('/', start);
    std::string_view comp =
        name.substr(start, slash == std::string_view::npos ? name.npos : slash - start);
    if (!ValidComponent(comp)) return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

bool ValidTag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128) return false;
  if (!(Alnum(tag[0]) || tag[0] == '_')) return false;
  for (char c : tag.substr(1))
    if (!(Alnum(c) || c == '_' || c == '.' || c == '-')) return false;
  return true;
}

DigestCheck CheckDigest(std::string_view d) {
  if (d.size() == 71 && d.substr(0, 7) == "sha256:") {
    for (char c : d.substr(7))
      if (!LowerHex(c)) return DigestCheck::kInvalid;
    return DigestCheck::kOk;
  }
  // algorithm ::= component ([+._-] component)*, component ::= [a-z0-9]+,
  // encoded ::= [a-zA-Z0-9=_-]+ (image-spec descriptor.md).
  size_t colon = d.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == d.size())
    return DigestCheck::kInvalid;
  std::string_view alg = d.substr(0, colon), enc = d.substr(colon + 1);
  bool prev_sep = true;
  for (char c : alg) {
    bool sep = c == '+' || c == '.' || c == '_' || c == '-';
    if (!sep && !LowerAlnum(c)) return DigestCheck::kInvalid;
    if (sep && prev_sep) return DigestCheck::kInvalid;
    prev_sep = sep;
  }
  if (prev_sep) return DigestCheck::kInvalid;
  for (char c : enc)
    if (!(Alnum(c) || c == '=' || c == '_' || c == '-')) return DigestCheck::kInvalid;
  if (alg == "sha256") return DigestCheck::kInvalid;  // wrong length or case
  return DigestCheck::kUnsupported;
}

std::optional<std::vector<std::pair<std::string, std::string>>> ParseQueryAll(std::string_view q) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t start = 0;
  while (start <= q.size()) {
    size_t amp = q.find('&', start);
    std::string_view part = q.substr(start, amp == std::string_view::npos ? q.npos : amp - start);
    if (!part.empty()) {
      size_t eq = part.find('=');
      auto k = Unescape(part.substr(0, eq));
      auto v = Unescape(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1));
      if (!k || !v) return std::nullopt;
      out.emplace_back(std::move(*k), std::move(*v));
    }
    if (amp == std::string_view::npos) break;
    start = amp + 1;
  }
  return out;
}

std::optional<std::map<std::string, std::string>> ParseQuery(std::string_view q) {
  auto all = ParseQueryAll(q);
  if (!all) return std::nullopt;
  std::map<std::string, std::string> out;
  for (auto& [k, v] : *all) out.emplace(std::move(k), std::move(v));
  return out;
}

std::string QueryEscape(std::string_view v) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : v) {
    if (Alnum(static_cast<char>(c)) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

RangeParse ParseRange(std::string_view h, uint64_t size, ByteRange* out) {
  if (h.substr(0, 6) != "bytes=") return RangeParse::kIgnore;
  h.remove_prefix(6);
  if (h.find(',') != std::string_view::npos) return RangeParse::kIgnore;  // multipart: serve all
  size_t dash = h.find('-');
  if (dash == std::string_view::npos) return RangeParse::kIgnore;
  std::string_view a = h.substr(0, dash), b = h.substr(dash + 1);
  uint64_t first = 0, last = 0;
  if (a.empty()) {  // suffix: the last b bytes
    if (!ParseU64(b, &last)) return RangeParse::kIgnore;
    if (last == 0 || size == 0) return RangeParse::kUnsatisfiable;
    out->first = last >= size ? 0 : size - last;
    out->last = size - 1;
    return RangeParse::kOk;
  }
  if (!ParseU64(a, &first)) return RangeParse::kIgnore;
  if (b.empty()) {
    last = size == 0 ? 0 : size - 1;
  } else if (!ParseU64(b, &last) || last < first) {
    return RangeParse::kIgnore;  // RFC 7233: an invalid range is ignored
  }
  if (first >= size) return RangeParse::kUnsatisfiable;
  out->first = first;
  out->last = last >= size ? size - 1 : last;
  return RangeParse::kOk;
}

bool ParseUploadRange(std::string_view h, ByteRange* out) {
  if (h.substr(0, 6) == "bytes=" || h.substr(0, 6) == "bytes ") h.remove_prefix(6);
  size_t slash = h.find('/');  // "bytes 0-9/10" (RFC form) is accepted too
  if (slash != std::string_view::npos) h = h.substr(0, slash);
  size_t dash = h.find('-');
  if (dash == std::string_view::npos) return false;
  if (!ParseU64(h.substr(0, dash), &out->first) || !ParseU64(h.substr(dash + 1), &out->last))
    return false;
  return out->last >= out->first;
}

std::string NewUploadId() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) abort();  // no entropy: nothing safe to do
  static const char kHex[] = "0123456789abcdef";
  std::string s;
  for (unsigned char c : b) {
    s.push_back(kHex[c >> 4]);
    s.push_back(kHex[c & 15]);
  }
  return s;
}

bool ValidUploadId(std::string_view id) {
  if (id.size() != 32) return false;
  for (char c : id)
    if (!LowerHex(c)) return false;
  return true;
}

}  // namespace cofferregistry
