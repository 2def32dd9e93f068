#include "keys.h"

namespace chunkstore {
namespace {

SecretBytes Derive(const SecretBytes& master, std::string_view salt, std::string_view info) {
  return Hkdf(master.view(), salt, info, 32);
}

}  // namespace

RepoKeys::RepoKeys(const SecretBytes& master, std::string_view repo_id)
    : chunk_id(Derive(master, repo_id, "coffer chunk-id v1").view()),
      name(Derive(master, repo_id, "coffer root-name v1").view()),
      data(Derive(master, repo_id, "coffer record-aead v1").view()),
      roots(Derive(master, repo_id, "coffer root-aead v1").view()),
      gear(GearTableFromSeed(Derive(master, repo_id, "coffer fastcdc-gear v1").view())) {}

}  // namespace chunkstore
