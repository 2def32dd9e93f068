#include "registry_child.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

namespace coffer {

using chunkstore::Status;

namespace {

// One line from fd (without the newline); nullopt at EOF or on an error.
std::optional<std::string> ReadLine(int fd) {
  std::string line;
  char c;
  for (;;) {
    ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    if (c == '\n') return line;
    line.push_back(c);
  }
}

bool WriteLine(int fd, const std::string& s) {
  std::string line = s + "\n";
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// A failure crosses the socketpair as "err <code number> <message>", so the
// daemon reports it with its own code (a bad certificate stays exit 1).
std::string ErrLine(const Status& st) {
  std::string msg = st.message();
  for (char& c : msg)
    if (c == '\n' || c == '\r') c = ' ';
  return "err " + std::to_string(static_cast<int>(st.code())) + " " + msg;
}

Status FromErrLine(const std::string& line) {  // line without "err "
  char* end = nullptr;
  long code = std::strtol(line.c_str(), &end, 10);
  std::string msg = *end == ' ' ? std::string(end + 1) : line;
  switch (static_cast<chunkstore::Code>(code)) {
    case chunkstore::Code::kNotFound:
      return Status::NotFound(msg);
    case chunkstore::Code::kInvalidArgument:
      return Status::InvalidArgument(msg);
    case chunkstore::Code::kFailedPrecondition:
      return Status::FailedPrecondition(msg);
    case chunkstore::Code::kCorruption:
      return Status::Corruption(msg);
    case chunkstore::Code::kIOError:
      return Status::IOError(msg);
    case chunkstore::Code::kPermissionDenied:
      return Status::PermissionDenied(msg);
    case chunkstore::Code::kAlreadyExists:
      return Status::AlreadyExists(msg);
    default:
      return Status::Unavailable(msg);
  }
}

std::string OneLine(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

// The child's whole life: wait for "start", serve, answer "gc", stop at EOF.
[[noreturn]] void ChildMain(int fd, const cofferregistry::RegistryOptions& opts) {
  std::unique_ptr<cofferregistry::Registry> reg;
  while (auto line = ReadLine(fd)) {
    if (*line == "start" && !reg) {
      auto r = cofferregistry::Registry::Start(opts);
      if (!r.ok()) {
        WriteLine(fd, ErrLine(r.status()));
        _exit(1);
      }
      reg = std::move(r).value();
      WriteLine(fd, "ok " + reg->address());
    } else if (line->rfind("gc ", 0) == 0 && reg) {
      auto r = reg->CollectGarbage(std::strtoll(line->c_str() + 3, nullptr, 10));
      if (!r.ok()) {
        WriteLine(fd, ErrLine(r.status()));
        continue;
      }
      WriteLine(fd, nlohmann::json({{"registry_manifests", r->manifests},
                                    {"registry_blobs_kept", r->blobs_kept},
                                    {"registry_blobs_recent", r->blobs_recent},
                                    {"registry_blobs_deleted", r->blobs_deleted},
                                    {"registry_bytes_deleted", r->bytes_deleted},
                                    {"registry_links_removed", r->links_removed}})
                        .dump());
    } else {
      WriteLine(fd, ErrLine(Status::InvalidArgument("registry process: unknown request `" +
                                                    OneLine(*line) + "`")));
    }
  }
  if (reg) reg->Stop();  // the parent closed its end: stop cleanly
  _exit(0);
}

}  // namespace

chunkstore::Result<std::unique_ptr<RegistryChild>> RegistryChild::Fork(
    const cofferregistry::RegistryOptions& opts) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return Status::FromErrno("socketpair for the registry process", errno);
  pid_t parent = ::getpid();
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    int e = errno;
    ::close(sv[0]);
    ::close(sv[1]);
    return Status::FromErrno("fork the registry process", e);
  }
  if (pid == 0) {
    ::close(sv[0]);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);   // dies with the daemon, whatever kills it
    if (::getppid() != parent) _exit(1);  // the daemon died before prctl
    ChildMain(sv[1], opts);
  }
  ::close(sv[1]);
  return std::unique_ptr<RegistryChild>(new RegistryChild(pid, sv[0]));
}

RegistryChild::~RegistryChild() { Stop(); }

chunkstore::Result<std::string> RegistryChild::Ask(const std::string& line) {
  std::lock_guard<std::mutex> l(mu_);
  if (fd_ < 0 || !WriteLine(fd_, line)) return Status::Unavailable("the registry process is gone");
  auto reply = ReadLine(fd_);
  if (!reply) return Status::Unavailable("the registry process died");
  if (reply->rfind("err ", 0) == 0) return FromErrLine(reply->substr(4));
  return *reply;
}

chunkstore::Result<std::string> RegistryChild::Start() {
  ASSIGN_OR_RETURN(std::string reply, Ask("start"));
  if (reply.rfind("ok ", 0) != 0) return Status::Unavailable("registry process: " + reply);
  return reply.substr(3);
}

chunkstore::Result<std::vector<std::pair<std::string, uint64_t>>> RegistryChild::CollectGarbage(
    int64_t grace_s) {
  ASSIGN_OR_RETURN(std::string reply, Ask("gc " + std::to_string(grace_s)));
  auto j = nlohmann::json::parse(reply, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Status::Unavailable("registry process: malformed gc reply");
  std::vector<std::pair<std::string, uint64_t>> out;
  for (auto& [k, v] : j.items())
    if (v.is_number_unsigned()) out.emplace_back(k, v.get<uint64_t>());
  return out;
}

void RegistryChild::Stop() {
  std::lock_guard<std::mutex> l(mu_);
  if (fd_ >= 0) {
    ::close(fd_);  // EOF: the child stops its registry and exits
    fd_ = -1;
  }
  for (int i = 0; i < 600 && !reaped_; ++i) {
    if (::waitpid(pid_, &wait_status_, WNOHANG) == pid_) reaped_ = true;
    if (!reaped_) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!reaped_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &wait_status_, 0);
    reaped_ = true;
  }
}

bool RegistryChild::Exited(std::string* status) {
  std::lock_guard<std::mutex> l(mu_);
  if (!reaped_ && ::waitpid(pid_, &wait_status_, WNOHANG) == pid_) reaped_ = true;
  if (!reaped_) return false;
  if (WIFSIGNALED(wait_status_))
    *status = "killed by signal " + std::to_string(WTERMSIG(wait_status_));
  else
    *status = "exit status " + std::to_string(WEXITSTATUS(wait_status_));
  return true;
}

}  // namespace coffer
