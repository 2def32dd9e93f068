#include "manifest.h"

#include <openssl/evp.h>

#include <boost/json.hpp>

#include "names.h"

namespace cofferregistry {
namespace json = boost::json;
using chunkstore::Status;

namespace {

std::string BaseType(std::string t) {
  size_t semi = t.find(';');
  if (semi != std::string::npos) t.resize(semi);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.pop_back();
  return t;
}

const json::string* StringField(const json::object& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_string() ? &it->value().get_string() : nullptr;
}

// Checks one descriptor and returns its digest.
chunkstore::Result<std::string> Descriptor(const json::value& v, const std::string& where) {
  if (!v.is_object()) return Status::InvalidArgument(where + " is not an object");
  const json::object& o = v.get_object();
  const json::string* d = StringField(o, "digest");
  if (!d) return Status::InvalidArgument(where + " has no digest");
  switch (CheckDigest(std::string_view(d->data(), d->size()))) {
    case DigestCheck::kOk:
      break;
    case DigestCheck::kUnsupported:
      return Status::InvalidArgument(where + " digest `" + std::string(d->c_str()) +
                                     "` uses an unsupported algorithm (only sha256)");
    case DigestCheck::kInvalid:
      return Status::InvalidArgument(where + " digest `" + std::string(d->c_str()) +
                                     "` is malformed");
  }
  auto size = o.find("size");
  if (size == o.end() || !(size->value().is_int64() || size->value().is_uint64()) ||
      (size->value().is_int64() && size->value().get_int64() < 0))
    return Status::InvalidArgument(where + " has no valid size");
  return std::string(d->c_str());
}

// Foreign (non-distributable) layers live elsewhere: they carry urls and need
// not be pushed.
bool IsForeign(const json::value& v) {
  const json::object& o = v.get_object();
  auto urls = o.find("urls");
  return urls != o.end() && urls->value().is_array() && !urls->value().get_array().empty();
}

// RFC 6838 section 4.2: type "/" subtype, each 1-127 of [A-Za-z0-9!#$&^_.+-]
// starting with a letter or digit. Anything else (bytes that are not ASCII
// included) must not become a media type we store and serve back in JSON.
bool ValidMediaType(const std::string& t) {
  auto name_ok = [](std::string_view n) {
    if (n.empty() || n.size() > 127 || !std::isalnum(static_cast<unsigned char>(n[0])))
      return false;
    for (char c : n)
      if (!std::isalnum(static_cast<unsigned char>(c)) &&
          std::string_view("!#$&^_.+-").find(c) == std::string_view::npos)
        return false;
    return true;
  };
  size_t slash = t.find('/');
  return slash != std::string::npos && name_ok(std::string_view(t).substr(0, slash)) &&
         name_ok(std::string_view(t).substr(slash + 1));
}

}  // namespace

chunkstore::Result<ManifestInfo> ParseManifest(const std::string& body,
                                               const std::string& content_type) {
  ManifestInfo m;
  std::string ct = BaseType(content_type);
  if (!ct.empty() && !ValidMediaType(ct))
    return Status::InvalidArgument("Content-Type is not a media type (RFC 6838)");
  if (ct == "application/vnd.docker.distribution.manifest.v1+json" ||
      ct == "application/vnd.docker.distribution.manifest.v1+prettyjws")
    return Status::InvalidArgument(
        "Docker schema1 manifests are not supported; push with a client that writes schema2 or "
        "OCI");
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) return Status::InvalidArgument("manifest is not valid JSON: " + ec.message());
  if (!v.is_object()) return Status::InvalidArgument("manifest is not a JSON object");
  const json::object& o = v.get_object();
  auto sv = o.find("schemaVersion");
  if (sv != o.end() && sv->value().is_number() && sv->value().to_number<double>() == 1)
    return Status::InvalidArgument(
        "Docker schema1 manifests are not supported; push with a client that writes schema2 or "
        "OCI");
  if (sv == o.end() || !sv->value().is_int64() || sv->value().get_int64() != 2)
    return Status::InvalidArgument("manifest schemaVersion must be 2");

  const json::string* body_type = StringField(o, "mediaType");
  if (body_type && !ct.empty() && ct != "application/json" && ct != body_type->c_str())
    return Status::InvalidArgument("Content-Type `" + ct +
                                   "` does not match the manifest's mediaType `" +
                                   std::string(body_type->c_str()) + "`");
  if (!ct.empty() && ct != "application/json") {
    m.media_type = ct;
  } else if (body_type) {
    m.media_type = body_type->c_str();
    if (!ValidMediaType(m.media_type))
      return Status::InvalidArgument("the manifest's mediaType is not a media type (RFC 6838)");
  } else {
    m.media_type = o.contains("manifests") ? kOciIndex : kOciManifest;
  }

  if (auto it = o.find("config"); it != o.end()) {
    ASSIGN_OR_RETURN(std::string d, Descriptor(it->value(), "config"));
    m.blobs.push_back(d);
    if (const json::string* t = StringField(it->value().get_object(), "mediaType"))
      m.artifact_type = t->c_str();
  }
  for (const char* key : {"layers", "blobs"}) {
    auto it = o.find(key);
    if (it == o.end()) continue;
    if (!it->value().is_array())
      return Status::InvalidArgument(std::string(key) + " is not an array");
    size_t i = 0;
    for (const auto& l : it->value().get_array()) {
      std::string where = std::string(key) + "[" + std::to_string(i++) + "]";
      ASSIGN_OR_RETURN(std::string d, Descriptor(l, where));
      if (!IsForeign(l)) m.blobs.push_back(d);
    }
  }
  if (auto it = o.find("manifests"); it != o.end()) {
    if (!it->value().is_array()) return Status::InvalidArgument("manifests is not an array");
    size_t i = 0;
    for (const auto& l : it->value().get_array()) {
      ASSIGN_OR_RETURN(std::string d, Descriptor(l, "manifests[" + std::to_string(i++) + "]"));
      m.manifests.push_back(d);
    }
  }
  if (m.media_type == kOciManifest || m.media_type == kDockerManifest) {
    if (!o.contains("config")) return Status::InvalidArgument("image manifest has no config");
    if (!o.contains("layers") && m.media_type == kDockerManifest)
      return Status::InvalidArgument("image manifest has no layers");
  }
  if ((m.media_type == kOciIndex || m.media_type == kDockerList) && !o.contains("manifests"))
    return Status::InvalidArgument("index has no manifests");
  if (auto it = o.find("subject"); it != o.end()) {
    ASSIGN_OR_RETURN(std::string d, Descriptor(it->value(), "subject"));
    m.subject = d;
  }
  if (const json::string* t = StringField(o, "artifactType")) m.artifact_type = t->c_str();
  if (auto it = o.find("annotations"); it != o.end() && it->value().is_object())
    m.annotations = json::serialize(it->value());
  return m;
}

std::string ReferrerDescriptor(const ManifestInfo& m, const std::string& digest, uint64_t size) {
  json::object d;
  d["mediaType"] = m.media_type;
  d["digest"] = digest;
  d["size"] = size;
  if (!m.artifact_type.empty()) d["artifactType"] = m.artifact_type;
  if (!m.annotations.empty()) d["annotations"] = json::parse(m.annotations);
  return json::serialize(d);
}

std::string ReferrersIndex(const std::vector<std::string>& descriptors) {
  std::string out =
      std::string("{\"schemaVersion\":2,\"mediaType\":\"") + kOciIndex + "\",\"manifests\":[";
  for (size_t i = 0; i < descriptors.size(); ++i) {
    if (i) out += ',';
    out += descriptors[i];
  }
  return out + "]}";
}

std::string Sha256Hex(const std::string& data) {
  unsigned char md[32];
  unsigned len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned i = 0; i < len; ++i) {
    hex.push_back(kHex[md[i] >> 4]);
    hex.push_back(kHex[md[i] & 15]);
  }
  return hex;
}

}  // namespace cofferregistry
