#include "audit.h"

#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>

#include "fs/mount.h"

namespace cofferfs {
namespace {

std::string HexSha(const std::string& line) {
  unsigned char md[32];
  SHA256(reinterpret_cast<const unsigned char*>(line.data()), line.size(), md);
  static const char k[] = "0123456789abcdef";
  std::string s;
  for (unsigned char c : md) {
    s.push_back(k[c >> 4]);
    s.push_back(k[c & 15]);
  }
  return s;
}

std::string Now() {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  struct tm tm;
  gmtime_r(&t.tv_sec, &tm);
  char buf[64];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[128];
  snprintf(out, sizeof out, "%s.%06ldZ", buf, t.tv_nsec / 1000);
  return out;
}

}  // namespace

AuditLog::AuditLog(int fd, std::string path, std::string prev)
    : fd_(fd), path_(std::move(path)), prev_(std::move(prev)) {}

AuditLog::~AuditLog() { close(fd_); }

chunkstore::Result<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path) {
  std::string prev(64, '0'), line, last;
  {
    std::ifstream in(path);
    while (std::getline(in, line))
      if (!line.empty()) last = line;
  }
  if (!last.empty()) prev = HexSha(last);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return chunkstore::Status::FromErrno("open audit log `" + path + "`", errno);
  return std::unique_ptr<AuditLog>(new AuditLog(fd, path, prev));
}

// The hash of the last line of the file at `fd` (64 zeros if empty).
static std::string TipOf(int fd) {
  off_t end = lseek(fd, 0, SEEK_END);
  std::string tail;
  const off_t kWindow = 64 * 1024;  // audit lines are short
  off_t start = end > kWindow ? end - kWindow : 0;
  tail.resize(static_cast<size_t>(end - start));
  if (pread(fd, tail.data(), tail.size(), start) != static_cast<ssize_t>(tail.size())) return "";
  while (!tail.empty() && tail.back() == '\n') tail.pop_back();
  if (tail.empty()) return std::string(64, '0');
  size_t nl = tail.rfind('\n');
  return HexSha(nl == std::string::npos ? tail : tail.substr(nl + 1));
}

chunkstore::Status AuditLog::Record(const std::string& event,
                                    const std::map<std::string, std::string>& fields) {
  std::lock_guard<std::mutex> l(mu_);
  // Several processes (the daemon, CLI key changes) append to one log: take the
  // file lock and chain onto the line that is really last.
  if (flock(fd_, LOCK_EX) != 0)
    return chunkstore::Status::FromErrno("lock audit log `" + path_ + "`", errno);
  std::string tip = TipOf(fd_);
  if (!tip.empty()) prev_ = tip;
  nlohmann::ordered_json j;
  j["time"] = Now();
  j["event"] = event;
  for (const auto& [k, v] : fields) j[k] = v;
  j["pid"] = getpid();
  j["prev"] = prev_;
  std::string line = j.dump();
  std::string out = line + "\n";
  bool ok =
      write(fd_, out.data(), out.size()) == static_cast<ssize_t>(out.size()) && fdatasync(fd_) == 0;
  int err = errno;
  flock(fd_, LOCK_UN);
  if (!ok) return chunkstore::Status::FromErrno("append to audit log `" + path_ + "`", err);
  prev_ = HexSha(line);
  return chunkstore::Status::OK();
}

void AuditLog::Note(const std::string& event, const std::map<std::string, std::string>& fields) {
  chunkstore::Status st = Record(event, fields);
  if (!st.ok()) fprintf(stderr, "coffer: %s\n", st.message().c_str());
}

chunkstore::Status AuditLog::Verify(const std::string& path, size_t* lines) {
  std::ifstream in(path);
  if (!in) return chunkstore::Status::FromErrno("open audit log `" + path + "`", errno);
  std::string prev(64, '0'), line;
  size_t n = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    ++n;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("prev") || j["prev"] != prev)
      return chunkstore::Status::Corruption("audit log `" + path + "`: chain broken at line " +
                                            std::to_string(n));
    prev = HexSha(line);
  }
  if (lines) *lines = n;
  return chunkstore::Status::OK();
}

chunkstore::Status AppendAudit(const std::string& path, const std::string& event,
                               const std::map<std::string, std::string>& fields) {
  ASSIGN_OR_RETURN(auto log, AuditLog::Open(path));
  return log->Record(event, fields);
}

chunkstore::Status VerifyAuditLog(const std::string& path, size_t* lines) {
  return AuditLog::Verify(path, lines);
}

}  // namespace cofferfs
