// The registry of `coffer serve`, in a process of its own.
//
// Why a process: the registry reads and writes through the mount. If it ran in
// the daemon's process, a SIGKILL landing while one of its threads waits inside
// a FUSE request would leave that thread waiting for an answer from threads that
// are already dead: the process could never finish dying, the mount and the
// repository lock would stay held (docs/reliability.md, B1). As a child, the
// kernel aborts its pending requests when the daemon dies, and PDEATHSIG ends
// it. It also holds no key: it is forked before the repository is unlocked.
//
// Protocol on a socketpair, one line each way per request:
//   parent: "start\n"       child: "ok <address>\n" | "err <code> <message>\n"
//   parent: "gc <grace_s>\n" child: one JSON line (RegistryGcReport) | "err <code> <message>\n"
//   parent closes its end:  child stops the registry and exits 0.
#ifndef COFFER_TOOLS_REGISTRY_CHILD_H_
#define COFFER_TOOLS_REGISTRY_CHILD_H_

#include <sys/types.h>

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "chunkstore/status.h"
#include "registry/server.h"

namespace coffer {

class RegistryChild {
 public:
  // Forks the child; it waits for Start(). Call before unlocking anything.
  static chunkstore::Result<std::unique_ptr<RegistryChild>> Fork(
      const cofferregistry::RegistryOptions& opts);
  ~RegistryChild();  // Stop()

  // Starts the registry (the mount must be live); the address it listens on.
  chunkstore::Result<std::string> Start();
  // The registry's garbage collection, as named counters for the gc reply.
  chunkstore::Result<std::vector<std::pair<std::string, uint64_t>>> CollectGarbage(int64_t grace_s);
  // Asks the child to stop and waits for it (60 s, then SIGKILL). Idempotent.
  void Stop();
  // True once the child has exited (it died, or Stop() ran); *status says how.
  bool Exited(std::string* status);
  pid_t pid() const { return pid_; }

 private:
  RegistryChild(pid_t pid, int fd) : pid_(pid), fd_(fd) {}
  chunkstore::Result<std::string> Ask(const std::string& line);

  pid_t pid_;
  int fd_;
  bool reaped_ = false;
  int wait_status_ = 0;
  std::mutex mu_;  // one request at a time
};

}  // namespace coffer

#endif  // COFFER_TOOLS_REGISTRY_CHILD_H_
