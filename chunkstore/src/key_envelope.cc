// Key envelope on top of libcryptsetup, used on a regular file and never
// activated.
//
// Layout of the header file (exactly kHeaderFileSize bytes, see below):
//   [0, 16 KiB)           primary LUKS2 binary header + JSON area (12 KiB of JSON)
//   [16 KiB, 32 KiB)      secondary copy of the same
//   [32 KiB, 2 MiB)       keyslots area: 8 areas of 258048 bytes (64-byte key x
//                         4000 AF stripes, rounded up to 4 KiB)
// The LUKS2 data segment starts at 2 MiB, i.e. at the end of the file: there is no
// data area, so the header cannot be activated even by accident ("too small for
// activation"). Only crypt_volume_key_get() is used to get the key out, which runs
// argon2id and the AF merge in user space (OpenSSL backend); nothing here opens a
// loop device or talks to device-mapper.
//
// Labels: LUKS2 has no per-keyslot free text, so each label lives in a LUKS2 token
// of our own type, {"type":"coffer-label","keyslots":["N"],"label":"..."}. The
// token is tied to its keyslot by libcryptsetup itself: destroying the keyslot
// unassigns it in the same header write, and a token left with no keyslot is
// removed by the next AddKey/RemoveKey.
//
// Crash safety: Create formats "<path>.tmp", fsyncs it and renames it into place
// without replacing, so `path` is either absent or complete. AddKey/RemoveKey
// edit the header in place, which LUKS2 makes safe on its own: the keyslot area is
// written before the header, and the header is written as two copies with a
// sequence id, so a torn write leaves one good copy (libcryptsetup repairs the
// other on the next load). RestoreHeader builds the restored file beside `path`
// and renames it over.
#include "key_envelope.h"

#include <fcntl.h>
#include <libcryptsetup.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace chunkstore {
namespace {

constexpr char kLabelTokenType[] = "coffer-label";
constexpr size_t kMaxLabelSize = 256;

// Per-copy LUKS2 metadata size (binary header + JSON area); the smallest allowed.
constexpr uint64_t kMetadataSize = 16 * 1024;
constexpr uint64_t kAfStripes = 4000;  // fixed for LUKS2 keyslots
constexpr uint64_t kMaxKeyslots = 8;
constexpr uint64_t RoundUp4K(uint64_t n) { return (n + 4095) / 4096 * 4096; }
constexpr uint64_t kKeyslotAreaSize = RoundUp4K(kMasterKeySize * kAfStripes);
constexpr uint64_t kKeyslotsAreaSize = kMaxKeyslots * kKeyslotAreaSize;
constexpr uint64_t kHeaderFileSize = 2 * kMetadataSize + kKeyslotsAreaSize;
static_assert(kKeyslotAreaSize == 258048);
static_assert(kHeaderFileSize == 2 * 1024 * 1024);

std::string Quote(std::string_view path) { return "`" + std::string(path) + "`"; }

// ---- libcryptsetup log capture ---------------------------------------------

// libcryptsetup prints to stderr unless given a callback. Messages are kept per
// thread (the library calls back on the calling thread) so that concurrent users
// of different header files do not see each other's errors.
thread_local std::string t_last_error;

void LogSink(int level, const char* msg, void* /*usrptr*/) {
  // Warnings (e.g. "keyslots area is very small") and debug output are dropped;
  // only errors explain a failure.
  if (level != CRYPT_LOG_ERROR || msg == nullptr) return;
  std::string m(msg);
  while (!m.empty() && (m.back() == '\n' || m.back() == '.' || m.back() == ' ')) m.pop_back();
  t_last_error = std::move(m);
}

void InitLibraryOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    // The default callback also covers messages logged before a crypt_device
    // exists (crypt_init). This is process-wide; coffer is its only user.
    crypt_set_log_callback(nullptr, LogSink, nullptr);
    // Our token type has no plugin; without this every token call tries to
    // dlopen libcryptsetup-token-coffer-label.so.
    crypt_token_external_disable();
  });
}

// libcryptsetup's last error message, or strerror of its return code.
std::string CryptReason(int r) {
  if (!t_last_error.empty()) return t_last_error;
  return std::strerror(r < 0 ? -r : r);
}

// Generic mapping of a libcryptsetup return code; callers handle the codes whose
// meaning depends on the operation (-EPERM after a passphrase, -EINVAL on load).
Status CryptError(std::string_view what, int r) {
  std::string msg = std::string(what) + ": " + CryptReason(r);
  switch (-r) {
    case ENOENT:
      return Status::NotFound(std::move(msg));
    case EBUSY:
    case EAGAIN:
      return Status::Unavailable(std::move(msg));
    case EINVAL:
      return Status::InvalidArgument(std::move(msg));
    case EACCES:
      return Status::PermissionDenied(std::move(msg));
    default:
      return Status::IOError(std::move(msg), -r);
  }
}

Status WrongSecret(const std::string& path) {
  return Status::PermissionDenied("wrong passphrase or key file for " + Quote(path) +
                                  ": no keyslot matched");
}

// Owns a crypt_device. Move-only.
class CryptHandle {
 public:
  CryptHandle() = default;
  explicit CryptHandle(crypt_device* cd) : cd_(cd) {}
  ~CryptHandle() {
    if (cd_ != nullptr) crypt_free(cd_);
  }
  CryptHandle(CryptHandle&& o) noexcept : cd_(std::exchange(o.cd_, nullptr)) {}
  CryptHandle& operator=(CryptHandle&& o) noexcept {
    std::swap(cd_, o.cd_);
    return *this;
  }
  CryptHandle(const CryptHandle&) = delete;
  CryptHandle& operator=(const CryptHandle&) = delete;
  crypt_device* get() const { return cd_; }

 private:
  crypt_device* cd_ = nullptr;
};

// ---- small file helpers ----------------------------------------------------

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Status FsyncFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open " + Quote(path) + " for fsync", errno);
  int r = fsync(fd);
  int err = errno;
  close(fd);
  if (r != 0) return Status::FromErrno("fsync " + Quote(path), err);
  return Status::OK();
}

// Makes a rename or creation in the directory of `path` durable.
Status FsyncDirOf(const std::string& path) {
  std::string dir = DirOf(path);
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open directory " + Quote(dir) + " for fsync", errno);
  int r = fsync(fd);
  int err = errno;
  close(fd);
  if (r != 0) return Status::FromErrno("fsync directory " + Quote(dir), err);
  return Status::OK();
}

// Creates `path` (mode 0600), replacing a leftover from an interrupted run, and
// sizes it: libcryptsetup does not grow a file it treats as a device.
Status CreateSizedFile(const std::string& path, uint64_t size) {
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno("remove stale " + Quote(path), errno);
  }
  int fd = open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno("create " + Quote(path), errno);
  int r = ftruncate(fd, static_cast<off_t>(size));
  int err = errno;
  close(fd);
  if (r != 0) return Status::FromErrno("resize " + Quote(path), err);
  return Status::OK();
}

// rename() that fails with AlreadyExists instead of replacing `to`.
Status RenameNoReplace(const std::string& from, const std::string& to) {
  if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) {
    return Status::OK();
  }
  if (errno != EINVAL && errno != ENOSYS) {
    return Status::FromErrno("rename " + Quote(from) + " to " + Quote(to), errno);
  }
  // File system without RENAME_NOREPLACE: link() also refuses an existing target.
  if (link(from.c_str(), to.c_str()) != 0) {
    return Status::FromErrno("link " + Quote(from) + " to " + Quote(to), errno);
  }
  (void)unlink(from.c_str());  // a leftover .tmp is replaced by the next Create
  return Status::OK();
}

// Size of `path`, which must be an existing regular file: pointed at a block
// device, libcryptsetup would happily rewrite it.
Result<uint64_t> RegularFileSize(const std::string& path, std::string_view what) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return Status::FromErrno(std::string(what), errno);
  if (!S_ISREG(st.st_mode)) {
    return Status::InvalidArgument(std::string(what) + ": " + Quote(path) +
                                   " is not a regular file");
  }
  return static_cast<uint64_t>(st.st_size);
}

Status CheckAbsent(const std::string& path, std::string_view what) {
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    return Status::AlreadyExists(std::string(what) + ": " + Quote(path) + " already exists");
  }
  if (errno != ENOENT) return Status::FromErrno(std::string(what), errno);
  return Status::OK();
}

// ---- opening headers -------------------------------------------------------

Result<CryptHandle> InitDevice(const std::string& path, std::string_view what) {
  InitLibraryOnce();
  t_last_error.clear();
  crypt_device* cd = nullptr;
  int r = crypt_init(&cd, path.c_str());
  if (r < 0) return CryptError(what, r);
  CryptHandle handle(cd);
  crypt_set_log_callback(cd, LogSink, nullptr);
  return handle;
}

// Opens and parses the LUKS2 header in `path`; `op` says what for ("unlock").
// A file that is not a (readable) LUKS2 header is Corruption: libcryptsetup
// reports bad magic, checksums and JSON all as -EINVAL, mostly without a message.
Result<CryptHandle> LoadHeader(const std::string& path, std::string_view op) {
  const std::string what = std::string(op) + " " + Quote(path);
  ASSIGN_OR_RETURN(uint64_t size, RegularFileSize(path, what));
  ASSIGN_OR_RETURN(CryptHandle handle, InitDevice(path, what));
  t_last_error.clear();
  int r = crypt_load(handle.get(), CRYPT_LUKS2, nullptr);
  if (r == 0) return handle;
  const std::string prefix = what + ": not a valid LUKS2 header: ";
  if (r == -EINVAL) {
    return Status::Corruption(prefix + (t_last_error.empty()
                                            ? "no intact copy (bad magic, checksum or JSON)"
                                            : t_last_error));
  }
  if (r == -EIO && size < 2 * kMetadataSize) {
    // -EIO is also what a file too short for both header copies gives; tell that
    // apart from a real read error.
    return Status::Corruption(prefix + "the file is only " + std::to_string(size) + " bytes long");
  }
  return CryptError(what + ": load LUKS2 header", r);
}

crypt_pbkdf_type MakePbkdf(const KdfParams& kdf) {
  crypt_pbkdf_type pbkdf{};
  pbkdf.type = CRYPT_KDF_ARGON2ID;
  pbkdf.hash = "sha256";  // used by the AF splitter
  pbkdf.iterations = kdf.iterations;
  pbkdf.max_memory_kb = kdf.memory_kib;
  pbkdf.parallel_threads = kdf.parallel;
  pbkdf.flags = CRYPT_PBKDF_NO_BENCHMARK;  // take the costs as given, no 2 s target
  return pbkdf;
}

// Sets the argon2id costs for keyslots added through `cd` from now on.
Status ApplyKdf(crypt_device* cd, const KdfParams& kdf, std::string_view what) {
  crypt_pbkdf_type pbkdf = MakePbkdf(kdf);
  t_last_error.clear();
  int r = crypt_set_pbkdf_type(cd, &pbkdf);
  if (r < 0) {
    return Status::InvalidArgument(
        std::string(what) + ": argon2id iterations=" + std::to_string(kdf.iterations) +
        " memory_kib=" + std::to_string(kdf.memory_kib) +
        " parallel=" + std::to_string(kdf.parallel) + ": " + CryptReason(r));
  }
  return Status::OK();
}

// Runs the KDF over active keyslots until one opens with `secret`.
Result<SecretBytes> GetVolumeKey(crypt_device* cd, const std::string& path, std::string_view secret,
                                 std::string_view what, int* slot) {
  int key_size = crypt_get_volume_key_size(cd);
  if (key_size != static_cast<int>(kMasterKeySize)) {
    return Status::Corruption(std::string(what) + ": " + Quote(path) + " holds a " +
                              std::to_string(key_size) + "-byte volume key, expected " +
                              std::to_string(kMasterKeySize));
  }
  SecretBytes key(kMasterKeySize);
  size_t size = key.size();
  t_last_error.clear();
  int r = crypt_volume_key_get(cd, CRYPT_ANY_SLOT, reinterpret_cast<char*>(key.data()), &size,
                               secret.data(), secret.size());
  if (r == -EPERM) return WrongSecret(path);
  if (r == -ENOENT) {
    return Status::FailedPrecondition(std::string(what) + ": " + Quote(path) +
                                      " has no usable keyslot");
  }
  if (r < 0) return CryptError(std::string(what) + ": open keyslot in " + Quote(path), r);
  if (size != kMasterKeySize) {
    return Status::Corruption(std::string(what) + ": keyslot " + std::to_string(r) + " of " +
                              Quote(path) + " gave a " + std::to_string(size) + "-byte key");
  }
  if (slot != nullptr) *slot = r;
  return key;
}

// ---- label tokens ----------------------------------------------------------

std::string JsonEscape(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    *out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    *out += static_cast<char>(0xC0 | (cp >> 6));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *out += static_cast<char>(0xE0 | (cp >> 12));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    *out += static_cast<char>(0xF0 | (cp >> 18));
    *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Just enough JSON to read one string member of the flat object libcryptsetup
// hands back for a token (json-c output of what we stored). Linking json-c for
// this would add a dependency for twenty lines of work.
class JsonReader {
 public:
  explicit JsonReader(std::string_view s) : s_(s) {}

  // Finds top-level member `key` and decodes its value, which must be a string.
  bool FindString(std::string_view key, std::string* out) {
    if (!Consume('{')) return false;
    if (Consume('}')) return false;
    do {
      std::string name;
      if (!ParseString(&name) || !Consume(':')) return false;
      if (name == key) return ParseString(out);
      if (!SkipValue()) return false;
    } while (Consume(','));
    return false;
  }

 private:
  void SkipWs() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }
  bool Consume(char c) {
    SkipWs();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool ParseHex4(uint32_t* v) {
    if (i_ + 4 > s_.size()) return false;
    *v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_++];
      *v <<= 4;
      if (c >= '0' && c <= '9')
        *v |= c - '0';
      else if (c >= 'a' && c <= 'f')
        *v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        *v |= c - 'A' + 10;
      else
        return false;
    }
    return true;
  }
  bool ParseEscape(std::string* out) {
    if (i_ >= s_.size()) return false;
    char c = s_[i_++];
    switch (c) {
      case '"':
      case '\\':
      case '/':
        *out += c;
        return true;
      case 'b':
        *out += '\b';
        return true;
      case 'f':
        *out += '\f';
        return true;
      case 'n':
        *out += '\n';
        return true;
      case 'r':
        *out += '\r';
        return true;
      case 't':
        *out += '\t';
        return true;
      case 'u':
        break;
      default:
        return false;
    }
    uint32_t cp;
    if (!ParseHex4(&cp)) return false;
    if (cp >= 0xD800 && cp < 0xDC00 && s_.substr(i_, 2) == "\\u") {
      i_ += 2;
      uint32_t lo;
      if (!ParseHex4(&lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    AppendUtf8(cp, out);
    return true;
  }
  bool ParseString(std::string* out) {
    if (!Consume('"')) return false;
    out->clear();
    while (i_ < s_.size()) {
      char c = s_[i_++];
      if (c == '"') return true;
      if (c != '\\') {
        *out += c;
      } else if (!ParseEscape(out)) {
        return false;
      }
    }
    return false;
  }
  bool SkipValue() {
    SkipWs();
    if (i_ >= s_.size()) return false;
    std::string ignored;
    char c = s_[i_];
    if (c == '"') return ParseString(&ignored);
    if (c == '[' || c == '{') {
      char close = c == '[' ? ']' : '}';
      ++i_;
      if (Consume(close)) return true;
      do {
        if (c == '{' && (!ParseString(&ignored) || !Consume(':'))) return false;
        if (!SkipValue()) return false;
      } while (Consume(','));
      return Consume(close);
    }
    // number, true, false, null
    size_t start = i_;
    while (i_ < s_.size() && s_[i_] != ',' && s_[i_] != '}' && s_[i_] != ']' && s_[i_] != ' ') ++i_;
    return i_ > start;
  }

  std::string_view s_;
  size_t i_ = 0;
};

// Calls fn(token, json) for every coffer-label token.
template <typename Fn>
void ForEachLabelToken(crypt_device* cd, Fn fn) {
  for (int token = 0; token < crypt_token_max(CRYPT_LUKS2); ++token) {
    const char* type = nullptr;
    crypt_token_info info = crypt_token_status(cd, token, &type);
    if (info == CRYPT_TOKEN_INVALID || info == CRYPT_TOKEN_INACTIVE) continue;
    if (type == nullptr || std::strcmp(type, kLabelTokenType) != 0) continue;
    const char* json = nullptr;
    if (crypt_token_json_get(cd, token, &json) < 0 || json == nullptr) continue;
    fn(token, std::string_view(json));
  }
}

// Removes label tokens that no longer belong to any keyslot: the keyslot was
// destroyed (libcryptsetup unassigns it) and we crashed or failed before deleting
// the token, or `slot` is about to get a new label.
Status DropStaleLabels(crypt_device* cd, int slot, std::string_view what) {
  std::vector<int> stale;
  ForEachLabelToken(cd, [&](int token, std::string_view) {
    bool orphan = true;
    for (int ks = 0; ks < crypt_keyslot_max(CRYPT_LUKS2); ++ks) {
      if (crypt_token_is_assigned(cd, token, ks) == 0) orphan = orphan && ks == slot;
    }
    if (orphan) stale.push_back(token);
  });
  for (int token : stale) {
    t_last_error.clear();
    int r = crypt_token_json_set(cd, token, nullptr);
    if (r < 0)
      return CryptError(std::string(what) + ": remove label token " + std::to_string(token), r);
  }
  return Status::OK();
}

Status ValidateLabel(std::string_view label, std::string_view what) {
  if (label.size() > kMaxLabelSize) {
    return Status::InvalidArgument(std::string(what) + ": label is " +
                                   std::to_string(label.size()) + " bytes, at most " +
                                   std::to_string(kMaxLabelSize) + " allowed");
  }
  if (label.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument(std::string(what) + ": label contains a NUL byte");
  }
  return Status::OK();
}

Status SetLabel(crypt_device* cd, int slot, std::string_view label, std::string_view what) {
  RETURN_IF_ERROR(DropStaleLabels(cd, slot, what));
  std::string json = std::string("{\"type\":\"") + kLabelTokenType + "\",\"keyslots\":[\"" +
                     std::to_string(slot) + "\"],\"label\":\"" + JsonEscape(label) + "\"}";
  t_last_error.clear();
  int r = crypt_token_json_set(cd, CRYPT_ANY_TOKEN, json.c_str());
  if (r < 0) {
    return CryptError(std::string(what) + ": store label of keyslot " + std::to_string(slot), r);
  }
  return Status::OK();
}

std::string LabelOf(crypt_device* cd, int slot) {
  std::string label;
  ForEachLabelToken(cd, [&](int token, std::string_view json) {
    if (crypt_token_is_assigned(cd, token, slot) != 0) return;
    std::string value;
    if (JsonReader(json).FindString("label", &value)) label = std::move(value);
  });
  return label;
}

// Slots that open the data segment, i.e. that can produce the master key.
std::vector<int> ActiveSlots(crypt_device* cd) {
  std::vector<int> slots;
  for (int slot = 0; slot < crypt_keyslot_max(CRYPT_LUKS2); ++slot) {
    crypt_keyslot_info info = crypt_keyslot_status(cd, slot);
    if (info == CRYPT_SLOT_ACTIVE || info == CRYPT_SLOT_ACTIVE_LAST) slots.push_back(slot);
  }
  return slots;
}

// Formats the already sized file `tmp`, adds keyslot 0 and reads the key back,
// which also proves the new keyslot opens before the file is published.
Result<SecretBytes> FormatEnvelope(const std::string& tmp, std::string_view secret,
                                   const KdfParams& kdf, std::string_view label,
                                   std::string_view what) {
  ASSIGN_OR_RETURN(CryptHandle handle, InitDevice(tmp, what));
  crypt_device* cd = handle.get();
  int r = crypt_set_metadata_size(cd, kMetadataSize, kKeyslotsAreaSize);
  if (r < 0) return CryptError(std::string(what) + ": set LUKS2 metadata size", r);
  // Data segment at the end of the file: the header has no data area.
  r = crypt_set_data_offset(cd, kHeaderFileSize / 512);
  if (r < 0) return CryptError(std::string(what) + ": set data offset", r);
  RETURN_IF_ERROR(ApplyKdf(cd, kdf, what));

  // crypt_format() resets the context's PBKDF from params; pass our own copy
  // (crypt_get_pbkdf_type() would alias the struct being reset).
  crypt_pbkdf_type pbkdf = MakePbkdf(kdf);
  crypt_params_luks2 params{};
  params.pbkdf = &pbkdf;
  params.sector_size = 512;
  params.label = "coffer";
  params.subsystem = "coffer-key-envelope";
  t_last_error.clear();
  // volume_key == nullptr: libcryptsetup generates 64 random bytes.
  r = crypt_format(cd, CRYPT_LUKS2, "aes", "xts-plain64", nullptr, nullptr, kMasterKeySize,
                   &params);
  if (r < 0) return CryptError(std::string(what) + ": format LUKS2 header", r);
  t_last_error.clear();
  r = crypt_keyslot_add_by_volume_key(cd, CRYPT_ANY_SLOT, nullptr, 0, secret.data(), secret.size());
  if (r < 0) return CryptError(std::string(what) + ": add keyslot", r);
  RETURN_IF_ERROR(SetLabel(cd, r, label, what));
  return GetVolumeKey(cd, tmp, secret, what, nullptr);
}

}  // namespace

Result<SecretBytes> KeyEnvelope::Create(const std::string& path, std::string_view secret,
                                        const KdfParams& kdf, std::string_view label) {
  const std::string what = "create key envelope " + Quote(path);
  if (secret.empty()) return Status::InvalidArgument(what + ": empty passphrase or key file");
  RETURN_IF_ERROR(ValidateLabel(label, what));
  RETURN_IF_ERROR(CheckAbsent(path, what));

  const std::string tmp = path + ".tmp";
  RETURN_IF_ERROR(CreateSizedFile(tmp, kHeaderFileSize).Annotate(what));
  Result<SecretBytes> key = FormatEnvelope(tmp, secret, kdf, label, what);
  Status st = key.ok() ? FsyncFile(tmp) : key.status();
  if (st.ok()) st = RenameNoReplace(tmp, path);
  if (!st.ok()) {
    (void)unlink(tmp.c_str());  // best effort; the next Create replaces it anyway
    return st;
  }
  RETURN_IF_ERROR(FsyncDirOf(path));
  return key;
}

Result<SecretBytes> KeyEnvelope::Unlock(const std::string& path, std::string_view secret,
                                        int* slot) {
  const std::string what = "unlock " + Quote(path);
  ASSIGN_OR_RETURN(CryptHandle handle, LoadHeader(path, "unlock"));
  return GetVolumeKey(handle.get(), path, secret, what, slot);
}

Result<int> KeyEnvelope::AddKey(const std::string& path, std::string_view existing_secret,
                                std::string_view new_secret, const KdfParams& kdf,
                                std::string_view label) {
  const std::string what = "add key to " + Quote(path);
  if (new_secret.empty()) {
    return Status::InvalidArgument(what + ": empty passphrase or key file");
  }
  RETURN_IF_ERROR(ValidateLabel(label, what));
  ASSIGN_OR_RETURN(CryptHandle handle, LoadHeader(path, "add key to"));
  crypt_device* cd = handle.get();
  ASSIGN_OR_RETURN(SecretBytes key, GetVolumeKey(cd, path, existing_secret, what, nullptr));
  RETURN_IF_ERROR(ApplyKdf(cd, kdf, what));

  t_last_error.clear();
  int slot =
      crypt_keyslot_add_by_volume_key(cd, CRYPT_ANY_SLOT, reinterpret_cast<const char*>(key.data()),
                                      key.size(), new_secret.data(), new_secret.size());
  if (slot < 0) {
    if (ActiveSlots(cd).size() >= kMaxKeyslots) {
      return Status::FailedPrecondition(what + ": all " + std::to_string(kMaxKeyslots) +
                                        " keyslots are in use (" + CryptReason(slot) + ")");
    }
    return CryptError(what + ": add keyslot", slot);
  }
  Status st = SetLabel(cd, slot, label, what);
  if (!st.ok()) {
    // Do not leave a keyslot the caller was told was not added.
    (void)crypt_keyslot_destroy(cd, slot);
    return st;
  }
  return slot;
}

Status KeyEnvelope::RemoveKey(const std::string& path, std::string_view existing_secret, int slot) {
  const std::string what = "remove keyslot " + std::to_string(slot) + " from " + Quote(path);
  if (slot < 0 || slot >= crypt_keyslot_max(CRYPT_LUKS2)) {
    return Status::InvalidArgument(what + ": no such keyslot number");
  }
  ASSIGN_OR_RETURN(CryptHandle handle, LoadHeader(path, "remove key from"));
  crypt_device* cd = handle.get();
  // Authenticate before revealing anything about the keyslots.
  ASSIGN_OR_RETURN(SecretBytes key, GetVolumeKey(cd, path, existing_secret, what, nullptr));

  std::vector<int> active = ActiveSlots(cd);
  bool in_use = false;
  for (int s : active) in_use = in_use || s == slot;
  if (!in_use) return Status::NotFound(what + ": keyslot is not in use");
  if (active.size() == 1) {
    return Status::FailedPrecondition("refusing to remove keyslot " + std::to_string(slot) +
                                      ": it is the last one; the repository would become "
                                      "unreadable");
  }
  t_last_error.clear();
  int r = crypt_keyslot_destroy(cd, slot);
  if (r < 0) return CryptError(what, r);
  // The label token lost its keyslot in the write above. Dropping it is tidying
  // only: a token without a keyslot is ignored by List() and removed by the next
  // AddKey/RemoveKey, so a failure here does not undo the removal.
  (void)DropStaleLabels(cd, -1, what);
  return Status::OK();
}

Result<std::vector<KeySlotInfo>> KeyEnvelope::List(const std::string& path) {
  ASSIGN_OR_RETURN(CryptHandle handle, LoadHeader(path, "list keyslots of"));
  crypt_device* cd = handle.get();
  std::vector<KeySlotInfo> out;
  for (int slot : ActiveSlots(cd)) {
    KeySlotInfo info;
    info.slot = slot;
    info.label = LabelOf(cd, slot);
    crypt_pbkdf_type pbkdf{};
    if (crypt_keyslot_get_pbkdf(cd, slot, &pbkdf) == 0 && pbkdf.type != nullptr) {
      info.kdf = pbkdf.type;
    }
    out.push_back(std::move(info));
  }
  return out;
}

Status KeyEnvelope::ExportHeader(const std::string& path, const std::string& dest) {
  const std::string what = "export header " + Quote(path) + " to " + Quote(dest);
  RETURN_IF_ERROR(CheckAbsent(dest, what));
  ASSIGN_OR_RETURN(CryptHandle handle, LoadHeader(path, "export header"));
  t_last_error.clear();
  // Copies binary headers, JSON and keyslot areas as they are on disk; creates
  // `dest` with O_EXCL and mode 0400.
  int r = crypt_header_backup(handle.get(), CRYPT_LUKS2, dest.c_str());
  if (r < 0) {
    if (r == -EEXIST) return Status::AlreadyExists(what + ": " + CryptReason(r));
    (void)unlink(dest.c_str());  // we checked it was absent: this is our partial copy
    return CryptError(what, r);
  }
  RETURN_IF_ERROR(FsyncFile(dest));
  return FsyncDirOf(dest);
}

Status KeyEnvelope::RestoreHeader(const std::string& path, const std::string& backup) {
  const std::string what = "restore header " + Quote(path) + " from " + Quote(backup);
  ASSIGN_OR_RETURN(uint64_t backup_size, RegularFileSize(backup, what));

  // Restore into a fresh file beside `path`, check it loads, then rename it over:
  // a crash leaves either the old (damaged) file or the restored one.
  const std::string tmp = path + ".tmp";
  RETURN_IF_ERROR(CreateSizedFile(tmp, backup_size).Annotate(what));
  Status result = [&]() -> Status {
    ASSIGN_OR_RETURN(CryptHandle handle, InitDevice(tmp, what));
    t_last_error.clear();
    int r = crypt_header_restore(handle.get(), CRYPT_LUKS2, backup.c_str());
    if (r == -EINVAL) {
      return Status::Corruption(what + ": " + Quote(backup) + " is not a valid LUKS2 header" +
                                (t_last_error.empty() ? "" : ": " + t_last_error));
    }
    if (r < 0) return CryptError(what, r);
    handle = CryptHandle();
    RETURN_IF_ERROR(LoadHeader(tmp, "check restored header").status());
    RETURN_IF_ERROR(FsyncFile(tmp));
    if (rename(tmp.c_str(), path.c_str()) != 0) {
      return Status::FromErrno("rename " + Quote(tmp) + " to " + Quote(path), errno);
    }
    return FsyncDirOf(path);
  }();
  if (!result.ok()) (void)unlink(tmp.c_str());
  return result;
}

}  // namespace chunkstore
