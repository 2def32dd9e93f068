// Helpers shared by the cofferlayer tests: temporary directories, shell
// commands, random file trees. Test-only; not part of the library.
#ifndef COFFERLAYER_LAYER_TEST_UTIL_H_
#define COFFERLAYER_LAYER_TEST_UTIL_H_

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

namespace cofferlayer::testing {

inline std::string Shell(const std::string& cmd, int* rc = nullptr) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = pclose(p);
  if (rc) *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

inline std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/cofferlayer-test-XXXXXX";
    const char* d = mkdtemp(tmpl);
    path_ = d ? d : "/tmp";
  }
  ~TempDir() { Shell("rm -rf " + Quote(path_)); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Compressible pseudo-random text: words from a small vocabulary, so encoders
// find matches the way they do on real files.
inline std::string RandomText(std::mt19937_64& rng, size_t n) {
  static const char* kWords[] = {"layer",   "coffer", "chunk",  "deflate", "the",    "of",
                                 "usr/lib", "0x7f",   "static", "int",     "return", "{\n",
                                 "}\n",     "zstd",   "tar",    "\t",      "1234",   "name"};
  std::string s;
  while (s.size() < n) {
    s += kWords[rng() % (sizeof kWords / sizeof *kWords)];
    s += (rng() % 7 == 0) ? '\n' : ' ';
    if (rng() % 50 == 0) s += static_cast<char>(rng());
  }
  s.resize(n);
  return s;
}

// A directory of n random files (text and binary) in a few subdirectories.
inline void MakeRandomTree(const std::string& dir, uint64_t seed, int n, size_t max_size) {
  std::mt19937_64 rng(seed);
  for (int i = 0; i < n; ++i) {
    std::string sub = dir + "/d" + std::to_string(rng() % 4);
    mkdir(sub.c_str(), 0755);
    size_t size = rng() % (max_size + 1);
    std::string data = RandomText(rng, size);
    if (rng() % 4 == 0) {
      for (char& c : data) c = static_cast<char>(rng());
    }
    WriteAll(sub + "/f" + std::to_string(i) + ".txt", data);
  }
}

}  // namespace cofferlayer::testing

#endif  // COFFERLAYER_LAYER_TEST_UTIL_H_
