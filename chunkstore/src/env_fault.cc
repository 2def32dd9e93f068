// FaultEnv: an Env wrapper that fails chosen calls, for testing error paths.
//
// Mutating calls (NewWritableFile, Append, Sync, RenameFile, RemoveFile,
// CreateDirs, RemoveDir, SyncDir) are numbered as they arrive. FailAt(n, err,
// sticky) arms a fault on the n-th mutation after the call to FailAt (and, if
// sticky, every later one). A failed call does nothing at all: it returns
// FromErrno("<op> `<path>` (injected fault)", err) without reaching the base Env,
// so a test can tell exactly which effects happened. Close() is not counted: it
// is cleanup that callers issue on error paths too.
//
// Thread safety: the counter and the armed fault are atomics; read faults are
// under mu_. The FaultEnv must outlive the file objects it returned.
#include <atomic>
#include <cerrno>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "chunkstore/env.h"

namespace chunkstore {
namespace {

std::string Quote(const std::string& path) { return "`" + path + "`"; }

class FaultEnvImpl final : public FaultEnv {
 public:
  explicit FaultEnvImpl(Env* base) : base_(base) {}

  // Counts one mutation; returns the injected failure for it, or OK to proceed.
  Status CountMutation(const std::string& what) {
    const uint64_t n = count_.fetch_add(1, std::memory_order_relaxed) + 1;
    const uint64_t fail_at = fail_at_.load(std::memory_order_acquire);
    if (fail_at == 0 || n < fail_at) return Status::OK();
    if (n > fail_at && !sticky_.load(std::memory_order_relaxed)) return Status::OK();
    return Status::FromErrno(what + " (injected fault)", errno_.load(std::memory_order_relaxed));
  }

  Status CheckRead(const std::string& path) const {
    std::lock_guard<std::mutex> l(mu_);
    for (const std::string& s : read_faults_) {
      if (path.find(s) != std::string::npos) {
        return Status::FromErrno("read " + Quote(path) + " (injected fault)", EIO);
      }
    }
    return Status::OK();
  }

  // ---- FaultEnv ----

  void FailAt(uint64_t nth_mutation, int errno_to_inject, bool sticky) override {
    if (nth_mutation == 0) nth_mutation = 1;  // "the 0th" can only mean the next one
    errno_.store(errno_to_inject, std::memory_order_relaxed);
    sticky_.store(sticky, std::memory_order_relaxed);
    // Published last (release) so a mutation that sees it also sees the above.
    fail_at_.store(count_.load(std::memory_order_relaxed) + nth_mutation,
                   std::memory_order_release);
  }

  void FailReadsOf(std::string substr) override {
    std::lock_guard<std::mutex> l(mu_);
    read_faults_.push_back(std::move(substr));
  }

  void ClearFaults() override {
    fail_at_.store(0, std::memory_order_release);
    std::lock_guard<std::mutex> l(mu_);
    read_faults_.clear();
  }

  uint64_t mutation_count() const override { return count_.load(std::memory_order_relaxed); }

  // ---- Env ----

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;
  Result<std::unique_ptr<RandomAccessFile>> NewRandomAccessFile(const std::string& path) override;

  Status RenameFile(const std::string& from, const std::string& to) override {
    RETURN_IF_ERROR(CountMutation("rename " + Quote(from) + " to " + Quote(to)));
    return base_->RenameFile(from, to);
  }
  Status RemoveFile(const std::string& path) override {
    RETURN_IF_ERROR(CountMutation("remove " + Quote(path)));
    return base_->RemoveFile(path);
  }
  Status CreateDirs(const std::string& path) override {
    RETURN_IF_ERROR(CountMutation("create directory " + Quote(path)));
    return base_->CreateDirs(path);
  }
  Status RemoveDir(const std::string& path) override {
    RETURN_IF_ERROR(CountMutation("remove directory " + Quote(path)));
    return base_->RemoveDir(path);
  }
  Status SyncDir(const std::string& path) override {
    RETURN_IF_ERROR(CountMutation("sync directory " + Quote(path)));
    return base_->SyncDir(path);
  }

  Result<std::vector<std::string>> GetChildren(const std::string& dir) override {
    return base_->GetChildren(dir);
  }
  bool FileExists(const std::string& path) override { return base_->FileExists(path); }
  Result<uint64_t> GetFileSize(const std::string& path) override {
    return base_->GetFileSize(path);
  }
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path, int* stale_pid) override {
    return base_->LockFile(path, stale_pid);
  }
  uint64_t NowMicros() override { return base_->NowMicros(); }

 private:
  Env* const base_;
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> fail_at_{0};  // absolute mutation number; 0 = no fault armed
  std::atomic<int> errno_{0};
  std::atomic<bool> sticky_{false};
  mutable std::mutex mu_;
  std::vector<std::string> read_faults_;  // guarded by mu_
};

class FaultWritableFile final : public WritableFile {
 public:
  FaultWritableFile(FaultEnvImpl* env, std::unique_ptr<WritableFile> base, std::string path)
      : env_(env), base_(std::move(base)), path_(std::move(path)) {}

  Status Append(std::string_view data) override {
    RETURN_IF_ERROR(env_->CountMutation("write " + Quote(path_)));
    return base_->Append(data);
  }
  Status Sync() override {
    RETURN_IF_ERROR(env_->CountMutation("sync " + Quote(path_)));
    return base_->Sync();
  }
  Status Close() override { return base_->Close(); }
  uint64_t Size() const override { return base_->Size(); }

 private:
  FaultEnvImpl* const env_;
  const std::unique_ptr<WritableFile> base_;
  const std::string path_;
};

class FaultRandomAccessFile final : public RandomAccessFile {
 public:
  FaultRandomAccessFile(const FaultEnvImpl* env, std::unique_ptr<RandomAccessFile> base,
                        std::string path)
      : env_(env), base_(std::move(base)), path_(std::move(path)) {}

  // Checked on every read, so FailReadsOf() also affects files already open.
  Result<size_t> Read(uint64_t offset, size_t n, char* buf) const override {
    RETURN_IF_ERROR(env_->CheckRead(path_));
    return base_->Read(offset, n, buf);
  }
  Result<uint64_t> Size() const override { return base_->Size(); }

 private:
  const FaultEnvImpl* const env_;
  const std::unique_ptr<RandomAccessFile> base_;
  const std::string path_;
};

Result<std::unique_ptr<WritableFile>> FaultEnvImpl::NewWritableFile(const std::string& path) {
  RETURN_IF_ERROR(CountMutation("open " + Quote(path) + " for writing"));
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> base, base_->NewWritableFile(path));
  std::unique_ptr<WritableFile> file =
      std::make_unique<FaultWritableFile>(this, std::move(base), path);
  return file;
}

Result<std::unique_ptr<RandomAccessFile>> FaultEnvImpl::NewRandomAccessFile(
    const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<RandomAccessFile> base, base_->NewRandomAccessFile(path));
  std::unique_ptr<RandomAccessFile> file =
      std::make_unique<FaultRandomAccessFile>(this, std::move(base), path);
  return file;
}

}  // namespace

std::unique_ptr<FaultEnv> NewFaultEnv(Env* base) { return std::make_unique<FaultEnvImpl>(base); }

}  // namespace chunkstore
