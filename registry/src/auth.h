// Who may do what: htpasswd (bcrypt) Basic authentication and per-repository
// pull/push/delete permissions.
//
// Access file, one rule a line ('#' starts a comment):
//   <user|*|anonymous> <repository glob> <actions>
// e.g. "alice library/* pull,push,delete", "* public/* pull", "anonymous public/* pull".
// `*` is any authenticated user; the glob is fnmatch(3) without FNM_PATHNAME, so
// `*` also matches '/'. The first rule whose user and glob match decides. Without
// an access file every authenticated user may do everything and anonymous users
// nothing (when htpasswd is set) or everything (when it is not).
// Thread-safe after construction.
#ifndef COFFER_REGISTRY_AUTH_H_
#define COFFER_REGISTRY_AUTH_H_

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "chunkstore/status.h"

namespace cofferregistry {

enum Action : unsigned { kPull = 1, kPush = 2, kDelete = 4 };

class Auth {
 public:
  // Empty paths: no authentication / no access rules.
  static chunkstore::Result<std::unique_ptr<Auth>> Load(const std::string& htpasswd,
                                                        const std::string& access);
  // From file contents (tests).
  static chunkstore::Result<std::unique_ptr<Auth>> FromStrings(const std::string& htpasswd,
                                                               const std::string& access,
                                                               bool auth_enabled);

  bool enabled() const { return enabled_; }
  // The user named by an Authorization header ("" for anonymous: no header).
  // nullopt when the credentials are wrong or malformed.
  std::optional<std::string> Authenticate(const std::string* authorization);
  // Whether `user` ("" anonymous) may do all `actions` on `repo`.
  bool Allowed(const std::string& user, const std::string& repo, unsigned actions) const;

 private:
  struct Rule {
    std::string user, glob;
    unsigned actions;
  };
  bool enabled_ = false;
  bool has_rules_ = false;
  std::map<std::string, std::string> hashes_;  // user -> crypt(3) hash
  std::vector<Rule> rules_;
  std::mutex mu_;
  std::set<std::string> verified_;  // GUARDED_BY(mu_): sha256(user:password) that passed
};

// base64 decoding (RFC 4648, with padding); nullopt when malformed.
std::optional<std::string> Base64Decode(const std::string& in);

}  // namespace cofferregistry

#endif  // COFFER_REGISTRY_AUTH_H_
