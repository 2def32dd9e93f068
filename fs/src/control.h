// ControlServer: the daemon's administrative socket (<repo>/daemon.sock, mode
// 0600). One JSON request line per connection, one JSON reply line:
//   {"verb":"ping"} {"verb":"stats"} {"verb":"snapshot","set":S,"name":N}
//   {"verb":"gc"} {"verb":"check","read_data":true|false}
// Replies carry "ok": true|false and, on failure, "error" and "code".
#ifndef COFFER_FS_CONTROL_H_
#define COFFER_FS_CONTROL_H_

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "chunkstore/status.h"

namespace cofferfs {

class ControlServer {
 public:
  using Handler = std::function<std::string(const std::string& request)>;
  ControlServer() = default;
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  chunkstore::Status Start(const std::string& path, Handler handler);
  void Stop();

 private:
  void Loop();
  std::string path_;
  Handler handler_;
  int fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace cofferfs

#endif  // COFFER_FS_CONTROL_H_
