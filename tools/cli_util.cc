#include "cli_util.h"

#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "fs/mount.h"

namespace coffer {

using chunkstore::Code;
using chunkstore::Result;
using chunkstore::Status;

int Fail(const Globals& g, const Status& st) {
  int code = kExitFail;
  if (st.code() == Code::kUnavailable) code = kExitBusy;
  if (st.code() == Code::kPermissionDenied && st.message().rfind("wrong passphrase", 0) == 0)
    code = kExitBadKey;
  return FailMsg(g, st.message(), code);
}

int FailMsg(const Globals& g, const std::string& msg, int code) {
  std::fprintf(stderr, "coffer: %s\n", msg.c_str());
  if (g.json) PrintJson({{"error", msg}, {"exit_code", code}});
  return code;
}

void Audit(const Globals& g, const std::string& event,
           const std::map<std::string, std::string>& fields) {
  std::string path = g.audit_log;
  if (path.empty())
    if (const char* env = std::getenv("COFFER_AUDIT_LOG"); env) path = env;
  if (path.empty()) return;
  auto f = fields;
  if (auto dir = RepoDir(g); dir.ok()) f.emplace("repository", *dir);
  Status st = cofferfs::AppendAudit(path, event, f);
  if (!st.ok()) std::fprintf(stderr, "coffer: %s\n", st.message().c_str());
}

void PrintJson(const nlohmann::json& j) { std::cout << j.dump() << std::endl; }

Result<std::string> ReadSecretFile(const std::string& path, bool strip_newline) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status::FromErrno("read `" + path + "`", errno);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  if (strip_newline && !s.empty() && s.back() == '\n') s.pop_back();
  if (strip_newline && !s.empty() && s.back() == '\r') s.pop_back();
  if (s.empty()) return Status::InvalidArgument("`" + path + "` is empty");
  return s;
}

static Result<std::string> Prompt(const char* text) {
  int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return Status::InvalidArgument(
        "no passphrase: give --passphrase-file, --key-file or COFFER_PASSPHRASE (no terminal to "
        "prompt on)");
  struct termios old {};
  tcgetattr(fd, &old);
  struct termios quiet = old;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  tcsetattr(fd, TCSAFLUSH, &quiet);
  (void)!write(fd, text, strlen(text));
  std::string s;
  char c;
  while (read(fd, &c, 1) == 1 && c != '\n') s.push_back(c);
  (void)!write(fd, "\n", 1);
  tcsetattr(fd, TCSAFLUSH, &old);
  close(fd);
  if (s.empty()) return Status::InvalidArgument("empty passphrase");
  return s;
}

Result<std::string> ReadSecret(const Globals& g, bool confirm, std::string* label) {
  if (!g.key_file.empty()) {
    if (label) *label = "key-file";
    return ReadSecretFile(g.key_file, false);
  }
  if (label) *label = "passphrase";
  if (!g.passphrase_file.empty()) return ReadSecretFile(g.passphrase_file, true);
  if (const char* env = std::getenv("COFFER_PASSPHRASE"); env && *env) return std::string(env);
  auto first = Prompt("passphrase: ");
  if (!first.ok() || !confirm) return first;
  auto second = Prompt("repeat passphrase: ");
  if (!second.ok()) return second;
  if (*first != *second) return Status::InvalidArgument("the passphrases do not match");
  return first;
}

Result<std::string> RepoDir(const Globals& g) {
  if (!g.repo.empty()) return g.repo;
  if (const char* env = std::getenv("COFFER_REPO"); env && *env) return std::string(env);
  return Status::InvalidArgument("no repository: give --repo DIR or set COFFER_REPO");
}

Result<std::unique_ptr<chunkstore::Repository>> OpenRepo(const Globals& g, bool read_only) {
  ASSIGN_OR_RETURN(std::string dir, RepoDir(g));
  ASSIGN_OR_RETURN(std::string secret, ReadSecret(g, false, nullptr));
  chunkstore::OpenOptions o;
  o.read_only = read_only;
  o.lock_wait_ms = static_cast<uint32_t>(g.lock_wait * 1000);
  return chunkstore::Repository::Open(dir, secret, o);
}

// "90", "90s", "500ms", "10m", "2h" -> milliseconds.
chunkstore::Result<uint64_t> ParseDuration(const std::string& s) {
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(s, &pos);
  } catch (...) {
    pos = 0;
  }
  std::string unit = s.substr(pos);
  double mult = unit.empty() || unit == "s"    ? 1000
                : unit == "ms"                 ? 1
                : unit == "m" || unit == "min" ? 60000
                : unit == "h"                  ? 3600000
                                               : -1;
  if (pos == 0 || v < 0 || mult < 0)
    return chunkstore::Status::InvalidArgument("`" + s + "` is not a duration (e.g. 90s, 10m, 1h)");
  return static_cast<uint64_t>(v * mult);
}

}  // namespace coffer
