// The Env helpers that are the same for every implementation: they use only the
// virtual calls, so a MemEnv or FaultEnv sees exactly the calls a PosixEnv would.
#include "chunkstore/env.h"

#include <utility>

namespace chunkstore {

Status Env::ReadFileToString(const std::string& path, std::string* out) {
  out->clear();
  ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> file, NewRandomAccessFile(path));
  ASSIGN_OR_RETURN(uint64_t size, file->Size());
  out->resize(size);
  ASSIGN_OR_RETURN(size_t got, file->Read(0, out->size(), out->data()));
  out->resize(got);
  if (got < size) return Status::OK();
  // Size() is a hint: keep reading until a short read, so a file that grew
  // meanwhile is returned whole rather than silently cut.
  char tail[4096];
  for (;;) {
    ASSIGN_OR_RETURN(size_t n, file->Read(out->size(), sizeof(tail), tail));
    out->append(tail, n);
    if (n < sizeof(tail)) break;
  }
  return Status::OK();
}

Status Env::WriteFileAtomic(const std::string& path, std::string_view data) {
  const std::string tmp = path + ".tmp";
  const std::string context = "write `" + path + "` atomically";
  Status s;
  {
    auto file = NewWritableFile(tmp);
    if (!file.ok()) return file.status().Annotate(context);
    s = (*file)->Append(data);
    if (s.ok()) s = (*file)->Sync();
    if (s.ok()) s = (*file)->Close();
    // The file object is destroyed here, before the clean-up below.
  }
  if (s.ok()) s = RenameFile(tmp, path);
  if (!s.ok()) {
    // Best effort: do not leave a half-written .tmp behind. Its failure changes
    // nothing for the caller (the original error is what matters), and a stray
    // .tmp is overwritten by the next attempt anyway.
    static_cast<void>(RemoveFile(tmp));
    return s.Annotate(context);
  }
  // The rename is only durable once the directory entry is; without this a
  // crash can bring back the old contents after we reported success.
  s = SyncDir(DirName(path));
  if (!s.ok()) return s.Annotate(context);
  return Status::OK();
}

std::string JoinPath(std::string_view a, std::string_view b) {
  if (a.empty()) return std::string(b);
  if (b.empty()) return std::string(a);
  size_t a_end = a.size();
  while (a_end > 0 && a[a_end - 1] == '/') --a_end;
  size_t b_begin = 0;
  while (b_begin < b.size() && b[b_begin] == '/') ++b_begin;
  std::string out(a.substr(0, a_end));
  out += '/';
  out += b.substr(b_begin);
  return out;
}

std::string DirName(std::string_view path) {
  // POSIX dirname(3) semantics, without modifying the argument.
  size_t end = path.size();
  while (end > 1 && path[end - 1] == '/') --end;  // "a/b/" names "a/b"
  path = path.substr(0, end);
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return ".";
  while (slash > 0 && path[slash - 1] == '/') --slash;  // "a//b" -> "a"
  if (slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

}  // namespace chunkstore
