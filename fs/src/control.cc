#include "control.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "fs/mount.h"

namespace cofferfs {

using chunkstore::Status;

namespace {

constexpr size_t kMaxRequest = 64 * 1024;

Status FillAddr(const std::string& path, struct sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof addr->sun_path)
    return Status::InvalidArgument("control socket path `" + path + "` is too long");
  std::memcpy(addr->sun_path, path.c_str(), path.size());
  return Status::OK();
}

bool WriteAll(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::string ControlSocketPath(const std::string& repo_dir) { return repo_dir + "/daemon.sock"; }

ControlServer::~ControlServer() { Stop(); }

Status ControlServer::Start(const std::string& path, Handler handler) {
  path_ = path;
  handler_ = std::move(handler);
  struct sockaddr_un addr;
  RETURN_IF_ERROR(FillAddr(path, &addr));
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return Status::FromErrno("create control socket", errno);
  unlink(path.c_str());  // left by a daemon that was killed; we hold the repository lock
  mode_t old = umask(077);
  int rc = bind(fd_, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr);
  umask(old);
  if (rc != 0 || listen(fd_, 16) != 0)
    return Status::FromErrno("listen on control socket `" + path + "`", errno);
  if (pipe2(stop_pipe_, O_CLOEXEC) != 0) return Status::FromErrno("pipe", errno);
  thread_ = std::thread([this] { Loop(); });
  return Status::OK();
}

void ControlServer::Stop() {
  if (!thread_.joinable()) return;
  (void)!write(stop_pipe_[1], "x", 1);
  thread_.join();
  close(fd_);
  close(stop_pipe_[0]);
  close(stop_pipe_[1]);
  unlink(path_.c_str());
}

// Requests are handled one at a time: administrative verbs are rare and some
// (gc) must not overlap anyway.
void ControlServer::Loop() {
  for (;;) {
    struct pollfd p[2] = {{fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents) return;
    int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    std::string req;
    char buf[4096];
    while (req.size() < kMaxRequest && req.find('\n') == std::string::npos) {
      ssize_t n = read(c, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
    }
    std::string reply =
        req.find('\n') == std::string::npos
            ? std::string("{\"ok\":false,\"error\":\"request too long or not terminated\"}")
            : handler_(req.substr(0, req.find('\n')));
    WriteAll(c, reply + "\n");
    close(c);
  }
}

chunkstore::Result<std::string> ControlRequest(const std::string& socket_path,
                                               const std::string& json_request) {
  struct sockaddr_un addr;
  RETURN_IF_ERROR(FillAddr(socket_path, &addr));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("create socket", errno);
  if (connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    close(fd);
    return Status::Unavailable("no coffer daemon at `" + socket_path + "`: " + std::strerror(e));
  }
  std::string reply;
  if (WriteAll(fd, json_request + "\n")) {
    char buf[4096];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      reply.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  if (reply.empty())
    return Status::IOError("coffer daemon at `" + socket_path + "` closed the connection");
  if (reply.back() == '\n') reply.pop_back();
  return reply;
}

}  // namespace cofferfs
