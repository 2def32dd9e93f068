// libFuzzer target: the streaming tar scanner (fs/layer/tar.h) on hostile input
// fed in random-sized pieces. Must never crash or hang; when the scan succeeds,
// the segments concatenate to the input exactly, and when it fails, what was
// handed out is a prefix of the input. Member data arrives only between a
// member's begin and end.
//
// The first 8 bytes seed the piece sizes; the rest is the tar stream.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tar.h"

namespace {

using cofferlayer::Status;
using cofferlayer::TarMember;

class CheckingSink : public cofferlayer::TarSink {
 public:
  Status OnRaw(std::string_view b) override {
    if (in_member_) abort();
    out.append(b);
    return Status::OK();
  }
  Status OnMemberBegin(const TarMember& m) override {
    if (in_member_ || m.data_offset != out.size()) abort();
    in_member_ = true;
    left_ = m.size;
    (void)cofferlayer::ValidateEntryName(m.path);
    std::string target;
    (void)cofferlayer::ClassifyWhiteout(m.path, &target);
    return Status::OK();
  }
  Status OnMemberData(std::string_view b) override {
    if (!in_member_ || b.size() > left_ || b.empty()) abort();
    left_ -= b.size();
    out.append(b);
    return Status::OK();
  }
  Status OnMemberEnd() override {
    if (!in_member_ || left_ != 0) abort();
    in_member_ = false;
    return Status::OK();
  }
  std::string out;

 private:
  bool in_member_ = false;
  uint64_t left_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint64_t seed = 0x9e3779b97f4a7c15ull;
  size_t skip = size < 8 ? size : 8;
  for (size_t i = 0; i < skip; ++i) seed = seed * 131 + data[i];
  std::string_view in(reinterpret_cast<const char*>(data) + skip, size - skip);
  CheckingSink sink;
  cofferlayer::TarScanner scanner(&sink);
  std::string_view rest = in;
  Status s;
  while (s.ok() && !rest.empty()) {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    size_t n = 1 + seed % (seed & 1 ? 700 : 5000);
    if (n > rest.size()) n = rest.size();
    s = scanner.Feed(rest.substr(0, n));
    rest.remove_prefix(n);
  }
  if (s.ok()) s = scanner.Finish();
  if (s.ok()) {
    if (sink.out != in) abort();
  } else if (in.substr(0, sink.out.size()) != sink.out || s.message().empty()) {
    abort();
  }
  return 0;
}
