// Reading (never rewriting) pushed manifests: which blobs and manifests one
// references, its subject, and the descriptor the referrers API lists for it.
// The stored bytes are always exactly the bytes received.
#ifndef COFFER_REGISTRY_MANIFEST_H_
#define COFFER_REGISTRY_MANIFEST_H_

#include <optional>
#include <string>
#include <vector>

#include "chunkstore/status.h"

namespace cofferregistry {

inline constexpr char kOciManifest[] = "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kOciIndex[] = "application/vnd.oci.image.index.v1+json";
inline constexpr char kDockerManifest[] = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr char kDockerList[] = "application/vnd.docker.distribution.manifest.list.v2+json";

struct ManifestInfo {
  std::string media_type;              // from Content-Type, else the body, else inferred
  std::vector<std::string> blobs;      // config and layers that must exist (digests)
  std::vector<std::string> manifests;  // index entries that must exist (digests)
  std::optional<std::string> subject;  // digest of the subject manifest
  std::string artifact_type;           // artifactType, else config.mediaType (referrers)
  std::string annotations;             // serialized annotations object, or empty
};

// Validates a pushed manifest. `content_type` is the request's Content-Type
// (parameters ignored; may be empty). InvalidArgument with a reason that can be
// shown to the client: not JSON, schemaVersion not 2, schema1, a malformed or
// unsupported descriptor digest, Content-Type disagreeing with mediaType.
chunkstore::Result<ManifestInfo> ParseManifest(const std::string& body,
                                               const std::string& content_type);

// A referrers-API descriptor (JSON object text) for a stored manifest.
std::string ReferrerDescriptor(const ManifestInfo& m, const std::string& digest, uint64_t size);

// {"schemaVersion":2,"mediaType":"...index...","manifests":[d1,d2,...]}
std::string ReferrersIndex(const std::vector<std::string>& descriptors);

// sha256 of `data` as 64 lower hex digits.
std::string Sha256Hex(const std::string& data);

}  // namespace cofferregistry

#endif  // COFFER_REGISTRY_MANIFEST_H_
