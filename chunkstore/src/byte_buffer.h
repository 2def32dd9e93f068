// A growable byte buffer whose Resize does not zero-fill (std::string's resize
// does, and on the read path every frame would be written twice: once with
// zeros, once by pread, decrypt or zstd). Internal to chunkstore.
#ifndef CHUNKSTORE_BYTE_BUFFER_H_
#define CHUNKSTORE_BYTE_BUFFER_H_

#include <cstddef>
#include <memory>
#include <new>
#include <string_view>

#include "chunkstore/env.h"

namespace chunkstore {

class ByteBuffer {
 public:
  ByteBuffer() = default;
  explicit ByteBuffer(size_t n) { Resize(n); }

  // The contents are undefined afterwards: every user overwrites them whole.
  void Resize(size_t n) {
    if (n > cap_) {
      // Default-initialised (no memset), and aligned for RandomAccessFile::ReadDirect.
      p_.reset(new (std::align_val_t{kAlign}) char[n]);
      cap_ = n;
    }
    size_ = n;
  }
  char* data() { return p_.get(); }
  const char* data() const { return p_.get(); }
  size_t size() const { return size_; }
  std::string_view view() const { return {p_.get(), size_}; }

 private:
  static constexpr size_t kAlign = RandomAccessFile::kDirectAlign;
  struct AlignedDelete {
    void operator()(char* p) const { ::operator delete[](p, std::align_val_t{kAlign}); }
  };
  std::unique_ptr<char[], AlignedDelete> p_;
  size_t size_ = 0, cap_ = 0;
};

}  // namespace chunkstore

#endif  // CHUNKSTORE_BYTE_BUFFER_H_
