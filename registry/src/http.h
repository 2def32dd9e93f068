// Socket-free HTTP types: what the handler sees and returns. The session
// (server.cc) converts between these and Boost.Beast messages; nothing here
// includes Beast, so handler translation units compile quickly and tests drive
// the handler with plain strings.
#ifndef COFFER_REGISTRY_HTTP_H_
#define COFFER_REGISTRY_HTTP_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chunkstore/status.h"

namespace cofferregistry {

// A request head (the body, if any, is fed to a BodySink).
struct Request {
  std::string method;                          // "GET", "HEAD", ...
  std::string target;                          // raw request target, "/v2/x/tags/list?n=1"
  std::map<std::string, std::string> headers;  // lower-cased names
  std::optional<uint64_t> content_length;      // absent: chunked or no body
  std::string remote;                          // peer address, for logs

  const std::string* Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? nullptr : &it->second;
  }
};

// An open file whose bytes [offset, offset+length) are the response body.
// Owns the descriptor.
class FileRange {
 public:
  FileRange(int fd, uint64_t offset, uint64_t length) : fd_(fd), offset_(offset), length_(length) {}
  ~FileRange();
  FileRange(const FileRange&) = delete;
  FileRange& operator=(const FileRange&) = delete;
  int fd() const { return fd_; }
  uint64_t offset() const { return offset_; }
  uint64_t length() const { return length_; }

 private:
  int fd_;
  uint64_t offset_, length_;
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;                 // used when `file` is null
  std::shared_ptr<FileRange> file;  // streamed body
  // HEAD: Content-Length is `head_length` (the size a GET would send), no body.
  bool head = false;
  uint64_t head_length = 0;
  // Close the connection after this response.
  bool close = false;

  void Set(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
  }
  const std::string* Get(std::string_view name) const;  // case-insensitive
  uint64_t ContentLength() const {
    return head ? head_length : file ? file->length() : body.size();
  }
};

// Receives a request body as it arrives. Write() is called with consecutive
// pieces (at most the session's buffer size each), then Finish() once, after
// the last byte. A non-OK Write() stops the transfer: the session calls
// Finish() no more and sends Abort()'s response instead (and closes the
// connection, the rest of the body being unread).
class BodySink {
 public:
  virtual ~BodySink() = default;
  virtual chunkstore::Status Write(const char* data, size_t n) = 0;
  // True: the server may collect the body into large pieces before Write (an
  // upload, where each Write is a write to the mount). False: every piece as it
  // arrives (a sink that enforces a size limit must see bytes early).
  virtual bool Batched() const { return false; }
  virtual Response Finish() = 0;
  virtual Response Abort(const chunkstore::Status& why) = 0;
};

// The handler's answer to a request head: a response now, or a sink for the body.
struct Dispatch {
  std::optional<Response> response;
  std::unique_ptr<BodySink> sink;
};

}  // namespace cofferregistry

#endif  // COFFER_REGISTRY_HTTP_H_
