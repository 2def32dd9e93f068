// SecretBytes: key material in memory. Locked against swap where possible and
// wiped on destruction; never copied implicitly.
#ifndef CHUNKSTORE_SECRET_H_
#define CHUNKSTORE_SECRET_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace chunkstore {

class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(size_t n);
  SecretBytes(const void* data, size_t n);
  ~SecretBytes();
  SecretBytes(SecretBytes&& o) noexcept;
  SecretBytes& operator=(SecretBytes&& o) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::string_view view() const { return {reinterpret_cast<const char*>(data_), size_}; }

 private:
  void Release();
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace chunkstore

#endif  // CHUNKSTORE_SECRET_H_
