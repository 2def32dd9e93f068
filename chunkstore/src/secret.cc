#include "secret.h"

#include <openssl/crypto.h>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace chunkstore {

SecretBytes::SecretBytes(size_t n) : size_(n) {
  if (n == 0) return;
  data_ = static_cast<uint8_t*>(std::calloc(1, n));
  if (data_ == nullptr) throw std::bad_alloc();
  // Best effort: mlock fails without CAP_IPC_LOCK beyond RLIMIT_MEMLOCK; the key is
  // still wiped on destruction.
  (void)mlock(data_, n);
}

SecretBytes::SecretBytes(const void* data, size_t n) : SecretBytes(n) {
  if (n) std::memcpy(data_, data, n);
}

SecretBytes::~SecretBytes() { Release(); }

SecretBytes::SecretBytes(SecretBytes&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& o) noexcept {
  if (this != &o) {
    Release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

void SecretBytes::Release() {
  if (data_ == nullptr) return;
  OPENSSL_cleanse(data_, size_);
  (void)munlock(data_, size_);
  std::free(data_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace chunkstore
