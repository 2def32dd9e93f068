// Test helpers: a handler over a temporary plain directory, driven with strings.
#ifndef COFFER_REGISTRY_TEST_UTIL_H_
#define COFFER_REGISTRY_TEST_UTIL_H_

#include <unistd.h>

#include <filesystem>
#include <string>

#include "handler.h"
#include "manifest.h"

namespace cofferregistry {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/coffer-registry-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
    std::filesystem::create_directories(path_ + "/blobs/sha256");
    std::filesystem::create_directories(path_ + "/uploads");
    std::filesystem::create_directories(path_ + "/repos");
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The whole body of a response, file-backed or not.
inline std::string BodyOf(const Response& r) {
  if (!r.file) return r.body;
  std::string out(r.file->length(), '\0');
  ssize_t n = ::pread(r.file->fd(), out.data(), out.size(), static_cast<off_t>(r.file->offset()));
  out.resize(n < 0 ? 0 : static_cast<size_t>(n));
  return out;
}

inline std::string Digest(const std::string& data) { return "sha256:" + Sha256Hex(data); }

}  // namespace cofferregistry

#endif  // COFFER_REGISTRY_TEST_UTIL_H_
