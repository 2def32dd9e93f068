#include "auth.h"

#include <crypt.h>
#include <fnmatch.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "manifest.h"

namespace cofferregistry {
using chunkstore::Status;

namespace {

chunkstore::Result<std::string> Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::FromErrno("open `" + path + "`", errno);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  return s.substr(i);
}

chunkstore::Result<unsigned> ParseActions(const std::string& s, int line) {
  unsigned a = 0;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    if (tok == "pull")
      a |= kPull;
    else if (tok == "push")
      a |= kPush;
    else if (tok == "delete")
      a |= kDelete;
    else if (tok == "*" || tok == "all")
      a |= kPull | kPush | kDelete;
    else if (tok == "none" || tok == "-") {
    } else
      return Status::InvalidArgument("access rules line " + std::to_string(line) +
                                     ": unknown action `" + tok + "`");
  }
  return a;
}

}  // namespace

chunkstore::Result<std::unique_ptr<Auth>> Auth::Load(const std::string& htpasswd,
                                                     const std::string& access) {
  std::string h, a;
  if (!htpasswd.empty()) {
    ASSIGN_OR_RETURN(h, Slurp(htpasswd));
  }
  if (!access.empty()) {
    ASSIGN_OR_RETURN(a, Slurp(access));
  }
  return FromStrings(h, a, !htpasswd.empty());
}

chunkstore::Result<std::unique_ptr<Auth>> Auth::FromStrings(const std::string& htpasswd,
                                                            const std::string& access,
                                                            bool enabled) {
  auto auth = std::unique_ptr<Auth>(new Auth);
  auth->enabled_ = enabled;
  std::stringstream hs(htpasswd);
  std::string line;
  int n = 0;
  while (std::getline(hs, line)) {
    ++n;
    line = Trim(line);
    if (line.empty() || line[0] == '#') continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos || colon == 0)
      return Status::InvalidArgument("htpasswd line " + std::to_string(n) + ": expected user:hash");
    std::string hash = line.substr(colon + 1);
    if (hash.rfind("$2y$", 0) != 0 && hash.rfind("$2b$", 0) != 0 && hash.rfind("$2a$", 0) != 0)
      return Status::InvalidArgument("htpasswd line " + std::to_string(n) +
                                     ": only bcrypt hashes are accepted (htpasswd -B)");
    auth->hashes_[line.substr(0, colon)] = hash;
  }
  std::stringstream as(access);
  n = 0;
  while (std::getline(as, line)) {
    ++n;
    if (size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    line = Trim(line);
    if (line.empty()) continue;
    std::stringstream ls(line);
    Rule r;
    std::string actions, extra;
    if (!(ls >> r.user >> r.glob >> actions) || (ls >> extra))
      return Status::InvalidArgument("access rules line " + std::to_string(n) +
                                     ": expected `<user> <repository glob> <actions>`");
    ASSIGN_OR_RETURN(r.actions, ParseActions(actions, n));
    auth->rules_.push_back(std::move(r));
  }
  auth->has_rules_ = !auth->rules_.empty() || !access.empty();
  return auth;
}

std::optional<std::string> Auth::Authenticate(const std::string* authorization) {
  if (!authorization) return std::string();
  const std::string& h = *authorization;
  if (h.size() < 6 || strncasecmp(h.c_str(), "Basic ", 6) != 0) return std::nullopt;
  auto decoded = Base64Decode(Trim(h.substr(6)));
  if (!decoded) return std::nullopt;
  size_t colon = decoded->find(':');
  if (colon == std::string::npos) return std::nullopt;
  std::string user = decoded->substr(0, colon), pass = decoded->substr(colon + 1);
  auto it = hashes_.find(user);
  if (it == hashes_.end()) return std::nullopt;
  // bcrypt costs tens of milliseconds and clients send credentials with every
  // request: remember the pairs that passed (by hash, never the password).
  std::string key = Sha256Hex(*decoded + '\n' + it->second);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (verified_.count(key)) return user;
  }
  struct crypt_data data;
  std::memset(&data, 0, sizeof data);
  const char* out = crypt_r(pass.c_str(), it->second.c_str(), &data);
  if (!out || out[0] == '*' || it->second != out) return std::nullopt;
  std::lock_guard<std::mutex> l(mu_);
  if (verified_.size() > 10000) verified_.clear();
  verified_.insert(key);
  return user;
}

bool Auth::Allowed(const std::string& user, const std::string& repo, unsigned actions) const {
  if (!has_rules_) return !enabled_ || !user.empty();
  for (const Rule& r : rules_) {
    bool who = r.user == (user.empty() ? "anonymous" : user) || (r.user == "*" && !user.empty());
    if (!who || fnmatch(r.glob.c_str(), repo.c_str(), 0) != 0) continue;
    return (r.actions & actions) == actions;
  }
  return false;
}

std::optional<std::string> Base64Decode(const std::string& in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  unsigned buf = 0;
  int bits = 0;
  size_t i = 0;
  for (; i < in.size() && in[i] != '='; ++i) {
    int v = val(in[i]);
    if (v < 0) return std::nullopt;
    buf = (buf << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buf >> bits) & 0xff));
    }
  }
  for (; i < in.size(); ++i)
    if (in[i] != '=') return std::nullopt;
  return out;
}

}  // namespace cofferregistry
