// libFuzzer target: a snapshot tree stream (entries with paths, xattrs, chunk
// lists). Decoding must reject unsafe paths and never crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "tree.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  while (!in.empty()) {
    chunkstore::TreeEntry e;
    if (!chunkstore::DecodeEntry(&in, &e).ok()) break;
    bool root = e.path.empty() && e.type == chunkstore::EntryType::kDir;  // a head's root
    if (!root && !chunkstore::IsSafeRelativePath(e.path)) std::abort();   // decoder let one through
  }
  return 0;
}
