// Validation of everything a client names: repositories, tags, digests, query
// strings and ranges. Only names that pass these checks ever reach a path, so
// no request can address a file outside the tree it is meant for.
#ifndef COFFER_REGISTRY_NAMES_H_
#define COFFER_REGISTRY_NAMES_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cofferregistry {

// [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*, at most
// 255 characters (the spec's limit for the name plus host is 255).
bool ValidRepoName(std::string_view name);
// [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
bool ValidTag(std::string_view tag);

enum class DigestCheck { kOk, kInvalid, kUnsupported };
// "sha256:<64 lower hex>" is kOk; a well-formed digest of another algorithm
// (sha512:..., per the image spec's grammar) is kUnsupported; anything else kInvalid.
DigestCheck CheckDigest(std::string_view digest);
// The hex part of a valid sha256 digest.
inline std::string DigestHex(std::string_view digest) { return std::string(digest.substr(7)); }

// Splits "a=1&b=x%2Fy" into decoded pairs (first occurrence wins); nullopt when a
// percent escape is malformed.
std::optional<std::map<std::string, std::string>> ParseQuery(std::string_view q);
// Every pair, in order, repeated keys kept ("scope=a&scope=b" for the token endpoint).
std::optional<std::vector<std::pair<std::string, std::string>>> ParseQueryAll(std::string_view q);
// Percent-encodes a query value (unreserved characters pass through).
std::string QueryEscape(std::string_view v);

// An inclusive byte range [first, last].
struct ByteRange {
  uint64_t first = 0, last = 0;
};
enum class RangeParse { kOk, kIgnore, kUnsatisfiable };
// Parses an HTTP Range header ("bytes=0-99", "bytes=100-", "bytes=-50") against a
// resource of `size` bytes. kIgnore: not a single byte range we serve (send 200).
RangeParse ParseRange(std::string_view header, uint64_t size, ByteRange* out);
// Parses a blob-upload Content-Range "<first>-<last>" (optionally "bytes=" or
// "bytes " prefixed). False when malformed or last < first.
bool ParseUploadRange(std::string_view header, ByteRange* out);

// Random 128-bit upload id, 32 lower hex characters.
std::string NewUploadId();
bool ValidUploadId(std::string_view id);

}  // namespace cofferregistry

#endif  // COFFER_REGISTRY_NAMES_H_
