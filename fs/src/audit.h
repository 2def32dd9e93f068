// AuditLog: an append-only JSON-lines log of security-relevant events (unlock,
// mount, unmount, snapshot, forget, gc, key changes). Each line carries
// "prev": the SHA-256 of the previous line, so removing or editing a line breaks
// the chain (`coffer audit verify` checks it). Thread-safe.
#ifndef COFFER_FS_AUDIT_H_
#define COFFER_FS_AUDIT_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "chunkstore/status.h"

namespace cofferfs {

class AuditLog {
 public:
  // Opens (creating) the log at `path` and reads the hash of its last line.
  static chunkstore::Result<std::unique_ptr<AuditLog>> Open(const std::string& path);
  ~AuditLog();

  // Appends {"time":..., "event":event, <fields>, "pid":..., "prev":...} and fsyncs.
  chunkstore::Status Record(const std::string& event,
                            const std::map<std::string, std::string>& fields);

  // Record, with a failure reported on stderr: an event that cannot be logged
  // must not fail the operation it describes.
  void Note(const std::string& event, const std::map<std::string, std::string>& fields);

  // Checks the whole chain; Corruption naming the first bad line.
  static chunkstore::Status Verify(const std::string& path, size_t* lines);

 private:
  AuditLog(int fd, std::string path, std::string prev);
  std::mutex mu_;
  int fd_;
  std::string path_;
  std::string prev_;  // hex SHA-256 of the last line (64 zeros for an empty log)
};

}  // namespace cofferfs

#endif  // COFFER_FS_AUDIT_H_
