// Subkeys derived from the repository master key with HKDF-SHA-256
// (docs/design.md "Keys"). Immutable after construction; thread-safe.
#ifndef CHUNKSTORE_KEYS_H_
#define CHUNKSTORE_KEYS_H_

#include <memory>
#include <string_view>

#include "crypto.h"
#include "fastcdc.h"
#include "secret.h"

namespace chunkstore {

struct RepoKeys {
  // `repo_id` (from the config) is the HKDF salt, so two repositories that share a
  // master key (a restored header backup) still derive unrelated subkeys.
  RepoKeys(const SecretBytes& master, std::string_view repo_id);

  Hmac256 chunk_id;  // chunk id = HMAC(chunk_id, plaintext)
  Hmac256 name;      // root file names of blobs = HMAC(name, "sha256:<hex>")
  Aead data;         // records in packs
  Aead roots;        // root files (blob and snapshot roots)
  GearTable gear;    // FastCDC gear table
};

}  // namespace chunkstore

#endif  // CHUNKSTORE_KEYS_H_
