#include "chunkstore/status.h"

#include <cerrno>
#include <cstring>

namespace chunkstore {

const char* CodeName(Code c) {
  switch (c) {
    case Code::kOk:
      return "OK";
    case Code::kNotFound:
      return "NotFound";
    case Code::kInvalidArgument:
      return "InvalidArgument";
    case Code::kFailedPrecondition:
      return "FailedPrecondition";
    case Code::kUnavailable:
      return "Unavailable";
    case Code::kCorruption:
      return "Corruption";
    case Code::kIOError:
      return "IOError";
    case Code::kPermissionDenied:
      return "PermissionDenied";
    case Code::kAlreadyExists:
      return "AlreadyExists";
  }
  return "Unknown";
}

Status Status::FromErrno(std::string_view what, int err) {
  std::string msg(what);
  msg += ": ";
  msg += std::strerror(err);
  switch (err) {
    case ENOENT:
      return Status(Code::kNotFound, std::move(msg), err);
    case EEXIST:
      return Status(Code::kAlreadyExists, std::move(msg), err);
    case EACCES:
    case EPERM:
      return Status(Code::kPermissionDenied, std::move(msg), err);
    case EINVAL:
      return Status(Code::kInvalidArgument, std::move(msg), err);
    default:
      return Status(Code::kIOError, std::move(msg), err);
  }
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(CodeName(code_)) + ": " + msg_;
}

Status Status::Annotate(std::string_view context) const {
  if (ok()) return *this;
  return Status(code_, std::string(context) + ": " + msg_, errno_);
}

}  // namespace chunkstore
