// Status and Result<T>: how every chunkstore function reports failure.
//
// No exceptions cross a library boundary. A Status carries a code, a message that
// names the object and the operation ("open `packs/3f/3f9a…` for reading: No such
// file or directory"), and, for errors that came from the kernel, the errno so the
// FUSE layer can pass it through unchanged (ENOSPC stays ENOSPC).
#ifndef CHUNKSTORE_STATUS_H_
#define CHUNKSTORE_STATUS_H_

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace chunkstore {

enum class Code {
  kOk = 0,
  kNotFound,
  kInvalidArgument,
  kFailedPrecondition,
  kUnavailable,       // busy or temporarily unreachable: retrying may help
  kCorruption,        // stored bytes fail a checksum or do not parse; never IOError
  kIOError,           // the OS refused an operation; errno() tells which
  kPermissionDenied,  // wrong passphrase/key, or the OS said EACCES/EPERM
  kAlreadyExists,
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status OK() { return Status(); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status InvalidArgument(std::string msg) {
    return Status(Code::kInvalidArgument, std::move(msg));
  }
  static Status FailedPrecondition(std::string msg) {
    return Status(Code::kFailedPrecondition, std::move(msg));
  }
  static Status Unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }
  static Status Corruption(std::string msg) { return Status(Code::kCorruption, std::move(msg)); }
  static Status IOError(std::string msg, int err = 0) {
    return Status(Code::kIOError, std::move(msg), err);
  }
  static Status PermissionDenied(std::string msg) {
    return Status(Code::kPermissionDenied, std::move(msg));
  }
  static Status AlreadyExists(std::string msg) {
    return Status(Code::kAlreadyExists, std::move(msg));
  }
  // "`what`: strerror(err)" with the code chosen from err (ENOENT -> NotFound, ...).
  static Status FromErrno(std::string_view what, int err);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  int sys_errno() const { return errno_; }
  const std::string& message() const { return msg_; }
  // "Corruption: <message>"; "OK" when ok().
  std::string ToString() const;
  // Prefixes the message with context: "while X: <message>". Keeps code and errno.
  Status Annotate(std::string_view context) const;

  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }

 private:
  Status(Code c, std::string msg, int err = 0) : code_(c), errno_(err), msg_(std::move(msg)) {}
  Code code_ = Code::kOk;
  int errno_ = 0;
  std::string msg_;
};

const char* CodeName(Code c);

// Result<T>: a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status s) : v_(std::move(s)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT
  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace chunkstore

#define CS_CONCAT_INNER_(a, b) a##b
#define CS_CONCAT_(a, b) CS_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)          \
  do {                                 \
    ::chunkstore::Status _st = (expr); \
    if (!_st.ok()) return _st;         \
  } while (0)

#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) ASSIGN_OR_RETURN_IMPL_(CS_CONCAT_(_res_, __LINE__), lhs, expr)

#endif  // CHUNKSTORE_STATUS_H_
