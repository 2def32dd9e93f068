#include "chunkstore/env.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace chunkstore {
namespace {

// Substring check that prints both strings on failure (gmock is not linked).
#define EXPECT_CONTAINS(haystack, needle)                            \
  do {                                                               \
    const std::string _h = (haystack), _n = (needle);                \
    EXPECT_NE(_h.find(_n), std::string::npos)                        \
        << "\"" << _h << "\"\n does not contain\n \"" << _n << "\""; \
  } while (0)

#define ASSERT_OK(expr)                                     \
  do {                                                      \
    const ::chunkstore::Status _s = (expr);                 \
    ASSERT_TRUE(_s.ok()) << #expr << ": " << _s.ToString(); \
  } while (0)
#define EXPECT_OK(expr)                                     \
  do {                                                      \
    const ::chunkstore::Status _s = (expr);                 \
    EXPECT_TRUE(_s.ok()) << #expr << ": " << _s.ToString(); \
  } while (0)

// A fresh directory under /tmp, removed with everything in it afterwards.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/coffer-env-test-XXXXXX";
    char* p = ::mkdtemp(tmpl);
    if (p == nullptr) ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
    path_ = p != nullptr ? p : "/tmp";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

Status WriteFile(Env* env, const std::string& path, std::string_view data, bool sync) {
  ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> f, env->NewWritableFile(path));
  RETURN_IF_ERROR(f->Append(data));
  if (sync) RETURN_IF_ERROR(f->Sync());
  return f->Close();
}

std::string ReadOrDie(Env* env, const std::string& path) {
  std::string out;
  Status s = env->ReadFileToString(path, &out);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

// ---------------------------------------------------------------------------
// Helpers without an Env.

TEST(PathTest, JoinPath) {
  EXPECT_EQ(JoinPath("a", "b"), "a/b");
  EXPECT_EQ(JoinPath("a/", "b"), "a/b");
  EXPECT_EQ(JoinPath("a", "/b"), "a/b");
  EXPECT_EQ(JoinPath("a//", "//b/c"), "a/b/c");
  EXPECT_EQ(JoinPath("/", "b"), "/b");
  EXPECT_EQ(JoinPath("", "b"), "b");
  EXPECT_EQ(JoinPath("a", ""), "a");
}

TEST(PathTest, DirName) {
  EXPECT_EQ(DirName("a/b/c"), "a/b");
  EXPECT_EQ(DirName("c"), ".");
  EXPECT_EQ(DirName("/c"), "/");
  EXPECT_EQ(DirName("/"), "/");
  EXPECT_EQ(DirName("a/b/"), "a");
  EXPECT_EQ(DirName("a//b"), "a");
  EXPECT_EQ(DirName("/repo/packs/3f/3f9a"), "/repo/packs/3f");
  EXPECT_EQ(DirName(""), ".");
}

// ---------------------------------------------------------------------------
// Conformance: every Env behaves the same for these.

enum class EnvKind { kPosix, kMem };

class EnvTest : public ::testing::TestWithParam<EnvKind> {
 protected:
  void SetUp() override {
    if (GetParam() == EnvKind::kPosix) {
      env_ = Env::Default();
      root_ = tmp_.path();
    } else {
      mem_ = NewMemEnv();
      env_ = mem_.get();
      root_ = "/repo";
      ASSERT_OK(env_->CreateDirs(root_));
    }
  }
  std::string P(std::string_view name) const { return JoinPath(root_, name); }

  TempDir tmp_;
  std::unique_ptr<MemEnv> mem_;
  Env* env_ = nullptr;
  std::string root_;
};

TEST_P(EnvTest, WriteReadRoundTrip) {
  auto f = env_->NewWritableFile(P("a"));
  ASSERT_OK(f.status());
  ASSERT_OK((*f)->Append("hello, "));
  ASSERT_OK((*f)->Append(""));
  ASSERT_OK((*f)->Append("world"));
  EXPECT_EQ((*f)->Size(), 12u);
  ASSERT_OK((*f)->Sync());
  ASSERT_OK((*f)->Close());
  ASSERT_OK((*f)->Close());  // idempotent

  auto r = env_->NewRandomAccessFile(P("a"));
  ASSERT_OK(r.status());
  auto size = (*r)->Size();
  ASSERT_OK(size.status());
  EXPECT_EQ(*size, 12u);
  char buf[32];
  auto n = (*r)->Read(7, 5, buf);
  ASSERT_OK(n.status());
  EXPECT_EQ(std::string(buf, *n), "world");

  auto fs = env_->GetFileSize(P("a"));
  ASSERT_OK(fs.status());
  EXPECT_EQ(*fs, 12u);
  EXPECT_EQ(ReadOrDie(env_, P("a")), "hello, world");
}

TEST_P(EnvTest, LargeAppendsCrossTheBuffer) {
  std::string big(3 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 4093) big[i] = static_cast<char>('a' + i % 26);
  auto f = env_->NewWritableFile(P("big"));
  ASSERT_OK(f.status());
  ASSERT_OK((*f)->Append(big.substr(0, 100)));
  ASSERT_OK((*f)->Append(big.substr(100, 2 << 20)));  // larger than the buffer
  for (size_t off = 100 + (2 << 20); off < big.size(); off += 70000) {
    ASSERT_OK((*f)->Append(big.substr(off, 70000)));
  }
  EXPECT_EQ((*f)->Size(), big.size());
  ASSERT_OK((*f)->Close());
  EXPECT_EQ(ReadOrDie(env_, P("big")), big);
}

TEST_P(EnvTest, ShortReadAtEof) {
  ASSERT_OK(WriteFile(env_, P("a"), "0123456789", true));
  auto r = env_->NewRandomAccessFile(P("a"));
  ASSERT_OK(r.status());
  char buf[16];
  auto n = (*r)->Read(6, 16, buf);
  ASSERT_OK(n.status());
  EXPECT_EQ(std::string(buf, *n), "6789");
  n = (*r)->Read(10, 4, buf);
  ASSERT_OK(n.status());
  EXPECT_EQ(*n, 0u);
  n = (*r)->Read(1000, 4, buf);
  ASSERT_OK(n.status());
  EXPECT_EQ(*n, 0u);
}

// ReadDirect (O_DIRECT on PosixEnv, Read elsewhere) returns what Read does,
// including bytes written but not yet synced and a short read at EOF.
TEST_P(EnvTest, ReadDirectMatchesRead) {
  constexpr size_t kA = RandomAccessFile::kDirectAlign;
  std::string data(3 * kA + 1000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 13 + i / 7);
  ASSERT_OK(WriteFile(env_, P("d"), data, /*sync=*/false));
  auto r = env_->NewRandomAccessFile(P("d"));
  ASSERT_OK(r.status());
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  std::unique_ptr<char, Free> buf(static_cast<char*>(std::aligned_alloc(kA, 4 * kA)));
  auto n = (*r)->ReadDirect(kA, 4 * kA, buf.get());  // runs past EOF
  ASSERT_OK(n.status());
  EXPECT_EQ(std::string(buf.get(), *n), data.substr(kA));
  n = (*r)->ReadDirect(0, kA, buf.get());
  ASSERT_OK(n.status());
  EXPECT_EQ(std::string(buf.get(), *n), data.substr(0, kA));
  n = (*r)->ReadDirect(8 * kA, kA, buf.get());
  ASSERT_OK(n.status());
  EXPECT_EQ(*n, 0u);
}

TEST_P(EnvTest, ConcurrentReads) {
  std::string data(1 << 16, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  ASSERT_OK(WriteFile(env_, P("a"), data, true));
  auto r = env_->NewRandomAccessFile(P("a"));
  ASSERT_OK(r.status());
  const RandomAccessFile* file = r->get();
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      char buf[512];
      for (size_t off = t * 512; off + 512 <= data.size(); off += 4 * 512) {
        auto n = file->Read(off, sizeof(buf), buf);
        if (!n.ok() || *n != sizeof(buf) || std::string_view(buf, *n) != data.substr(off, 512)) {
          ++mismatches;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST_P(EnvTest, NewWritableFileTruncates) {
  ASSERT_OK(WriteFile(env_, P("a"), "long old contents", true));
  ASSERT_OK(WriteFile(env_, P("a"), "new", true));
  EXPECT_EQ(ReadOrDie(env_, P("a")), "new");
}

TEST_P(EnvTest, OpenMissingForReadingIsNotFound) {
  auto r = env_->NewRandomAccessFile(P("missing"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsNotFound()) << r.status().ToString();
  EXPECT_EQ(r.status().sys_errno(), ENOENT);
  EXPECT_CONTAINS(r.status().message(), "open `" + P("missing") + "` for reading");
  EXPECT_CONTAINS(r.status().message(), "No such file or directory");

  std::string out = "junk";
  Status s = env_->ReadFileToString(P("missing"), &out);
  EXPECT_TRUE(s.IsNotFound());
  auto size = env_->GetFileSize(P("missing"));
  EXPECT_TRUE(size.status().IsNotFound());
}

TEST_P(EnvTest, OpenForWritingInMissingDirIsNotFound) {
  auto f = env_->NewWritableFile(P("nodir/a"));
  ASSERT_FALSE(f.ok());
  EXPECT_TRUE(f.status().IsNotFound()) << f.status().ToString();
  EXPECT_CONTAINS(f.status().message(), "open `" + P("nodir/a") + "` for writing");
}

TEST_P(EnvTest, OpenDirectoryFails) {
  ASSERT_OK(env_->CreateDirs(P("d")));
  auto r = env_->NewRandomAccessFile(P("d"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().sys_errno(), EISDIR);
  auto w = env_->NewWritableFile(P("d"));
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().sys_errno(), EISDIR);
}

TEST_P(EnvTest, RenameOverExisting) {
  ASSERT_OK(WriteFile(env_, P("a"), "new", true));
  ASSERT_OK(WriteFile(env_, P("b"), "old", true));
  ASSERT_OK(env_->RenameFile(P("a"), P("b")));
  EXPECT_FALSE(env_->FileExists(P("a")));
  EXPECT_TRUE(env_->FileExists(P("b")));
  EXPECT_EQ(ReadOrDie(env_, P("b")), "new");

  Status s = env_->RenameFile(P("a"), P("c"));
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_CONTAINS(s.message(), "rename `" + P("a") + "` to `" + P("c") + "`");
}

TEST_P(EnvTest, RenameAcrossDirectories) {
  ASSERT_OK(env_->CreateDirs(P("x")));
  ASSERT_OK(env_->CreateDirs(P("y")));
  ASSERT_OK(WriteFile(env_, P("x/f"), "data", true));
  ASSERT_OK(env_->RenameFile(P("x/f"), P("y/g")));
  EXPECT_EQ(ReadOrDie(env_, P("y/g")), "data");
  EXPECT_FALSE(env_->FileExists(P("x/f")));
}

TEST_P(EnvTest, GetChildren) {
  ASSERT_OK(WriteFile(env_, P("a"), "", false));
  ASSERT_OK(WriteFile(env_, P("b"), "x", false));
  ASSERT_OK(env_->CreateDirs(P("sub")));
  ASSERT_OK(WriteFile(env_, P("sub/c"), "x", false));
  auto c = env_->GetChildren(root_);
  ASSERT_OK(c.status());
  EXPECT_EQ(Sorted(*c), (std::vector<std::string>{"a", "b", "sub"}));
  auto sub = env_->GetChildren(P("sub"));
  ASSERT_OK(sub.status());
  EXPECT_EQ(*sub, std::vector<std::string>{"c"});

  auto missing = env_->GetChildren(P("nope"));
  EXPECT_TRUE(missing.status().IsNotFound());
  EXPECT_CONTAINS(missing.status().message(), "list directory `" + P("nope") + "`");
  auto of_file = env_->GetChildren(P("a"));
  ASSERT_FALSE(of_file.ok());
  EXPECT_EQ(of_file.status().sys_errno(), ENOTDIR);
}

TEST_P(EnvTest, RemoveFile) {
  ASSERT_OK(WriteFile(env_, P("a"), "x", true));
  ASSERT_OK(env_->RemoveFile(P("a")));
  EXPECT_FALSE(env_->FileExists(P("a")));
  Status s = env_->RemoveFile(P("a"));
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_EQ(s.sys_errno(), ENOENT);
  EXPECT_CONTAINS(s.message(), "remove `" + P("a") + "`");
}

TEST_P(EnvTest, OpenFileSurvivesUnlink) {
  ASSERT_OK(WriteFile(env_, P("a"), "still here", true));
  auto r = env_->NewRandomAccessFile(P("a"));
  ASSERT_OK(r.status());
  ASSERT_OK(env_->RemoveFile(P("a")));
  char buf[16];
  auto n = (*r)->Read(0, sizeof(buf), buf);
  ASSERT_OK(n.status());
  EXPECT_EQ(std::string(buf, *n), "still here");
}

TEST_P(EnvTest, CreateDirsNestedAndRemoveDir) {
  ASSERT_OK(env_->CreateDirs(P("a/b/c")));
  ASSERT_OK(env_->CreateDirs(P("a/b/c")));  // exists: OK
  ASSERT_OK(env_->CreateDirs(P("a/b/c/")));
  EXPECT_TRUE(env_->FileExists(P("a/b/c")));
  ASSERT_OK(WriteFile(env_, P("a/b/c/f"), "x", true));
  EXPECT_EQ(ReadOrDie(env_, P("a/b/c/f")), "x");

  ASSERT_OK(WriteFile(env_, P("file"), "x", true));
  Status s = env_->CreateDirs(P("file/sub"));
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.sys_errno(), ENOTDIR) << s.ToString();
  EXPECT_CONTAINS(s.message(), "create directory `");

  s = env_->RemoveDir(P("a/b"));
  EXPECT_EQ(s.sys_errno(), ENOTEMPTY) << s.ToString();
  EXPECT_CONTAINS(s.message(), "remove directory `" + P("a/b") + "`");
  ASSERT_OK(env_->RemoveFile(P("a/b/c/f")));
  ASSERT_OK(env_->RemoveDir(P("a/b/c")));
  EXPECT_FALSE(env_->FileExists(P("a/b/c")));
  EXPECT_TRUE(env_->RemoveDir(P("a/b/c")).IsNotFound());
}

TEST_P(EnvTest, SyncDir) {
  ASSERT_OK(env_->SyncDir(root_));
  Status s = env_->SyncDir(P("missing"));
  EXPECT_TRUE(s.IsNotFound()) << s.ToString();
  EXPECT_CONTAINS(s.message(), "sync directory `" + P("missing") + "`");
}

TEST_P(EnvTest, WriteFileAtomic) {
  ASSERT_OK(env_->WriteFileAtomic(P("config"), "v1"));
  EXPECT_EQ(ReadOrDie(env_, P("config")), "v1");
  ASSERT_OK(env_->WriteFileAtomic(P("config"), "version two"));
  EXPECT_EQ(ReadOrDie(env_, P("config")), "version two");
  EXPECT_FALSE(env_->FileExists(P("config.tmp")));
  auto c = env_->GetChildren(root_);
  ASSERT_OK(c.status());
  EXPECT_EQ(*c, std::vector<std::string>{"config"});

  Status s = env_->WriteFileAtomic(P("nodir/config"), "x");
  EXPECT_TRUE(s.IsNotFound());
  EXPECT_CONTAINS(s.message(), "write `" + P("nodir/config") + "` atomically");
}

TEST_P(EnvTest, ReadFileToStringEmpty) {
  ASSERT_OK(WriteFile(env_, P("empty"), "", true));
  std::string out = "junk";
  ASSERT_OK(env_->ReadFileToString(P("empty"), &out));
  EXPECT_EQ(out, "");
}

TEST_P(EnvTest, NowMicros) {
  uint64_t a = env_->NowMicros();
  EXPECT_GT(a, uint64_t{1600000000} * 1000000);  // after 2020
  uint64_t b = env_->NowMicros();
  EXPECT_GE(b + 1000000, a);  // wall clock; allow a small step back
}

TEST_P(EnvTest, LockFileExcludesSecondLocker) {
  int stale = -1;
  auto lock = env_->LockFile(P("lock"), &stale);
  ASSERT_OK(lock.status());
  EXPECT_EQ(stale, 0);

  int stale2 = -1;
  auto second = env_->LockFile(P("lock"), &stale2);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kUnavailable) << second.status().ToString();
  EXPECT_CONTAINS(second.status().message(), "`" + P("lock") + "`: repository busy");
  EXPECT_CONTAINS(second.status().message(), "(held by pid " + std::to_string(::getpid()) + ")");
  EXPECT_EQ(ReadOrDie(env_, P("lock")), std::to_string(::getpid()) + "\n");

  lock->reset();                              // released
  EXPECT_EQ(ReadOrDie(env_, P("lock")), "");  // a clean release leaves no pid
  auto third = env_->LockFile(P("lock"), &stale);
  ASSERT_OK(third.status());
  EXPECT_EQ(stale, 0);
}

TEST_P(EnvTest, LockFileInMissingDir) {
  int stale = -1;
  auto lock = env_->LockFile(P("nodir/lock"), &stale);
  ASSERT_FALSE(lock.ok());
  EXPECT_TRUE(lock.status().IsNotFound()) << lock.status().ToString();
  EXPECT_CONTAINS(lock.status().message(), "`" + P("nodir/lock") + "`");
}

INSTANTIATE_TEST_SUITE_P(All, EnvTest, ::testing::Values(EnvKind::kPosix, EnvKind::kMem),
                         [](const ::testing::TestParamInfo<EnvKind>& info) {
                           return info.param == EnvKind::kPosix ? "Posix" : "Mem";
                         });

// ---------------------------------------------------------------------------
// MemEnv crash semantics.

class MemEnvCrashTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_OK(env_->CreateDirs("/r")); }
  std::unique_ptr<MemEnv> env_ = NewMemEnv();
};

TEST_F(MemEnvCrashTest, UnsyncedAppendsAreLostSyncedKept) {
  auto f = env_->NewWritableFile("/r/a");
  ASSERT_OK(f.status());
  ASSERT_OK((*f)->Append("hello"));
  ASSERT_OK((*f)->Sync());
  ASSERT_OK(env_->SyncDir("/r"));
  ASSERT_OK((*f)->Append(" world"));
  EXPECT_EQ(ReadOrDie(env_.get(), "/r/a"), "hello world");  // visible before the crash

  env_->SimulateCrash();
  EXPECT_EQ(ReadOrDie(env_.get(), "/r/a"), "hello");
}

TEST_F(MemEnvCrashTest, NeverSyncedFileIsEmptyAfterCrash) {
  ASSERT_OK(WriteFile(env_.get(), "/r/a", "data", /*sync=*/false));
  ASSERT_OK(env_->SyncDir("/r"));
  env_->SimulateCrash();
  EXPECT_TRUE(env_->FileExists("/r/a"));
  EXPECT_EQ(ReadOrDie(env_.get(), "/r/a"), "");
}

TEST_F(MemEnvCrashTest, FileInUnsyncedDirectoryDisappears) {
  ASSERT_OK(WriteFile(env_.get(), "/r/a", "data", /*sync=*/true));  // data synced, entry not
  env_->SimulateCrash();
  EXPECT_FALSE(env_->FileExists("/r/a"));
  auto c = env_->GetChildren("/r");
  ASSERT_OK(c.status());
  EXPECT_TRUE(c->empty());
}

TEST_F(MemEnvCrashTest, UnsyncedRenameIsReverted) {
  ASSERT_OK(WriteFile(env_.get(), "/r/a", "old", true));
  ASSERT_OK(WriteFile(env_.get(), "/r/b", "new", true));
  ASSERT_OK(env_->SyncDir("/r"));
  ASSERT_OK(env_->RenameFile("/r/b", "/r/a"));
  EXPECT_EQ(ReadOrDie(env_.get(), "/r/a"), "new");
  EXPECT_FALSE(env_->FileExists("/r/b"));

  env_->SimulateCrash();
  EXPECT_EQ(ReadOrDie(env_.get(), "/r/a"), "old");
  EXPECT_EQ(ReadOrDie(env_.get(), "/r/b"), "new");
}

TEST_F(MemEnvCrashTest, SyncedRenameSurvives) {
  ASSERT_OK(WriteFile(env_.get(), "/r/a", "old", true));
  ASSERT_OK(WriteFile(env_.get(), "/r/b", "new", true));
  ASSERT_OK(env_->SyncDir("/r"));
  ASSERT_OK(env_->RenameFile("/r/b", "/r/a"));
  ASSERT_OK(env_->SyncDir("/r"));
  env_->SimulateCrash();
  EXPECT_EQ(ReadOrDie(env_.get(), "/r/a"), "new");
  EXPECT_FALSE(env_->FileExists("/r/b"));
}

TEST_F(MemEnvCrashTest, RenameBetweenDirectoriesNeedsBothSynced) {
  ASSERT_OK(env_->CreateDirs("/r/x"));
  ASSERT_OK(env_->CreateDirs("/r/y"));
  ASSERT_OK(WriteFile(env_.get(), "/r/x/f", "data", true));
  ASSERT_OK(env_->SyncDir("/r/x"));
  ASSERT_OK(env_->RenameFile("/r/x/f", "/r/y/f"));
  ASSERT_OK(env_->SyncDir("/r/y"));  // but not /r/x
  env_->SimulateCrash();
  // Conservatively, the file may now be reachable under both names.
  EXPECT_EQ(ReadOrDie(env_.get(), "/r/y/f"), "data");
  EXPECT_EQ(ReadOrDie(env_.get(), "/r/x/f"), "data");
}

TEST_F(MemEnvCrashTest, UnsyncedRemoveIsReverted) {
  ASSERT_OK(WriteFile(env_.get(), "/r/a", "data", true));
  ASSERT_OK(env_->SyncDir("/r"));
  ASSERT_OK(env_->RemoveFile("/r/a"));
  EXPECT_FALSE(env_->FileExists("/r/a"));
  env_->SimulateCrash();
  EXPECT_EQ(ReadOrDie(env_.get(), "/r/a"), "data");
}

TEST_F(MemEnvCrashTest, UnsyncedTruncationIsReverted) {
  ASSERT_OK(WriteFile(env_.get(), "/r/a", "old", true));
  ASSERT_OK(env_->SyncDir("/r"));
  ASSERT_OK(WriteFile(env_.get(), "/r/a", "newer", /*sync=*/false));
  env_->SimulateCrash();
  EXPECT_EQ(ReadOrDie(env_.get(), "/r/a"), "old");
}

TEST_F(MemEnvCrashTest, WriteFileAtomicSurvivesCrash) {
  ASSERT_OK(env_->WriteFileAtomic("/r/config", "v1"));
  env_->SimulateCrash();
  EXPECT_EQ(ReadOrDie(env_.get(), "/r/config"), "v1");
  ASSERT_OK(env_->WriteFileAtomic("/r/config", "v2"));
  env_->SimulateCrash();
  EXPECT_EQ(ReadOrDie(env_.get(), "/r/config"), "v2");
  EXPECT_FALSE(env_->FileExists("/r/config.tmp"));
}

TEST_F(MemEnvCrashTest, CreateDirsIsDurable) {
  ASSERT_OK(env_->CreateDirs("/r/a/b/c"));
  env_->SimulateCrash();
  EXPECT_TRUE(env_->FileExists("/r/a/b/c"));
}

TEST_F(MemEnvCrashTest, CreateDirsDoesNotPersistSiblingEntries) {
  ASSERT_OK(WriteFile(env_.get(), "/r/unsynced", "x", true));
  ASSERT_OK(env_->CreateDirs("/r/d"));
  env_->SimulateCrash();
  EXPECT_TRUE(env_->FileExists("/r/d"));
  EXPECT_FALSE(env_->FileExists("/r/unsynced"));
}

TEST_F(MemEnvCrashTest, UnsyncedRemoveDirIsReverted) {
  ASSERT_OK(env_->CreateDirs("/r/d"));
  ASSERT_OK(env_->RemoveDir("/r/d"));
  env_->SimulateCrash();
  EXPECT_TRUE(env_->FileExists("/r/d"));
}

TEST_F(MemEnvCrashTest, OpenFilesAreInvalidated) {
  ASSERT_OK(WriteFile(env_.get(), "/r/b", "x", true));
  ASSERT_OK(env_->SyncDir("/r"));
  auto w = env_->NewWritableFile("/r/a");
  ASSERT_OK(w.status());
  auto r = env_->NewRandomAccessFile("/r/b");
  ASSERT_OK(r.status());
  env_->SimulateCrash();

  Status s = (*w)->Append("x");
  EXPECT_EQ(s.code(), Code::kIOError);
  EXPECT_CONTAINS(s.message(), "file invalidated by simulated crash");
  EXPECT_CONTAINS(s.message(), "`/r/a`");
  EXPECT_EQ((*w)->Sync().code(), Code::kIOError);
  EXPECT_EQ((*w)->Close().code(), Code::kIOError);
  char buf[4];
  auto n = (*r)->Read(0, 1, buf);
  ASSERT_FALSE(n.ok());
  EXPECT_CONTAINS(n.status().message(), "file invalidated by simulated crash");
  EXPECT_FALSE((*r)->Size().ok());

  // Files opened after the crash work.
  ASSERT_OK(WriteFile(env_.get(), "/r/c", "ok", true));
  EXPECT_EQ(ReadOrDie(env_.get(), "/r/c"), "ok");
}

TEST_F(MemEnvCrashTest, RelativeAndAbsolutePathsShareOneRoot) {
  ASSERT_OK(WriteFile(env_.get(), "r/rel", "x", true));
  EXPECT_TRUE(env_->FileExists("/r/rel"));
  EXPECT_TRUE(env_->FileExists("./r//rel"));
  EXPECT_EQ(ReadOrDie(env_.get(), "/r/../r/rel"), "x");
}

TEST_F(MemEnvCrashTest, LockIsDroppedByCrashAndReportedStale) {
  int stale = -1;
  auto lock = env_->LockFile("/r/lock", &stale);
  ASSERT_OK(lock.status());
  ASSERT_OK(env_->SyncDir("/r"));  // the lock file's entry is durable
  env_->SimulateCrash();

  auto again = env_->LockFile("/r/lock", &stale);
  ASSERT_OK(again.status());
  EXPECT_EQ(stale, static_cast<int>(::getpid()));
  lock->reset();  // the pre-crash lock must not release the new holder
  int stale2 = -1;
  auto third = env_->LockFile("/r/lock", &stale2);
  EXPECT_EQ(third.status().code(), Code::kUnavailable);
}

TEST_F(MemEnvCrashTest, ConcurrentWritersAreSafe) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < 50; ++i) {
        std::string path = "/r/t" + std::to_string(t) + "-" + std::to_string(i);
        EXPECT_OK(WriteFile(env_.get(), path, path, true));
        EXPECT_OK(env_->SyncDir("/r"));
      }
    });
  }
  for (auto& t : threads) t.join();
  env_->SimulateCrash();
  auto c = env_->GetChildren("/r");
  ASSERT_OK(c.status());
  EXPECT_EQ(c->size(), 200u);
}

// ---------------------------------------------------------------------------
// FaultEnv, over both bases.

class FaultEnvTest : public EnvTest {
 protected:
  void SetUp() override {
    EnvTest::SetUp();
    fault_ = NewFaultEnv(env_);
  }
  std::unique_ptr<FaultEnv> fault_;
};

TEST_P(FaultEnvTest, CountsMutationsOnly) {
  uint64_t c0 = fault_->mutation_count();
  auto f = fault_->NewWritableFile(P("a"));  // 1
  ASSERT_OK(f.status());
  ASSERT_OK((*f)->Append("x"));                   // 2
  ASSERT_OK((*f)->Sync());                        // 3
  ASSERT_OK((*f)->Close());                       // not counted
  ASSERT_OK(fault_->SyncDir(root_));              // 4
  ASSERT_OK(fault_->RenameFile(P("a"), P("b")));  // 5
  ASSERT_OK(fault_->CreateDirs(P("d")));          // 6
  ASSERT_OK(fault_->RemoveDir(P("d")));           // 7
  ASSERT_OK(fault_->RemoveFile(P("b")));          // 8
  EXPECT_EQ(fault_->mutation_count() - c0, 8u);

  // Reads and queries are not mutations.
  ASSERT_OK(WriteFile(env_, P("r"), "x", true));
  std::string out;
  ASSERT_OK(fault_->ReadFileToString(P("r"), &out));
  EXPECT_TRUE(fault_->FileExists(P("r")));
  ASSERT_OK(fault_->GetChildren(root_).status());
  ASSERT_OK(fault_->GetFileSize(P("r")).status());
  EXPECT_EQ(fault_->mutation_count() - c0, 8u);
}

TEST_P(FaultEnvTest, NthMutationFailsAndDoesNothing) {
  fault_->FailAt(1, ENOSPC, /*sticky=*/false);
  auto f = fault_->NewWritableFile(P("a"));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), Code::kIOError);
  EXPECT_EQ(f.status().sys_errno(), ENOSPC);
  EXPECT_CONTAINS(f.status().message(), "open `" + P("a") + "` for writing (injected fault)");
  EXPECT_CONTAINS(f.status().message(), "No space left on device");
  EXPECT_FALSE(env_->FileExists(P("a")));  // not created

  // Not sticky: the next call works.
  f = fault_->NewWritableFile(P("a"));
  ASSERT_OK(f.status());
  fault_->FailAt(2, EIO, false);
  ASSERT_OK((*f)->Append("first"));
  Status s = (*f)->Append("second");
  EXPECT_EQ(s.sys_errno(), EIO);
  EXPECT_CONTAINS(s.message(), "write `" + P("a") + "` (injected fault)");
  ASSERT_OK((*f)->Append("third"));
  ASSERT_OK((*f)->Close());
  EXPECT_EQ(ReadOrDie(env_, P("a")), "firstthird");
}

TEST_P(FaultEnvTest, FailedRenameAndRemoveDoNothing) {
  ASSERT_OK(WriteFile(env_, P("a"), "A", true));
  ASSERT_OK(WriteFile(env_, P("b"), "B", true));
  fault_->FailAt(1, EIO, false);
  EXPECT_EQ(fault_->RenameFile(P("a"), P("b")).sys_errno(), EIO);
  EXPECT_EQ(ReadOrDie(env_, P("a")), "A");
  EXPECT_EQ(ReadOrDie(env_, P("b")), "B");
  fault_->FailAt(1, EROFS, false);
  EXPECT_EQ(fault_->RemoveFile(P("a")).sys_errno(), EROFS);
  EXPECT_TRUE(env_->FileExists(P("a")));
  fault_->FailAt(1, EIO, false);
  EXPECT_EQ(fault_->CreateDirs(P("d")).sys_errno(), EIO);
  EXPECT_FALSE(env_->FileExists(P("d")));
}

TEST_P(FaultEnvTest, StickyFailsEveryLaterMutation) {
  fault_->FailAt(2, ENOSPC, /*sticky=*/true);
  ASSERT_OK(fault_->CreateDirs(P("d1")));                      // 1
  EXPECT_EQ(fault_->CreateDirs(P("d2")).sys_errno(), ENOSPC);  // 2
  EXPECT_EQ(fault_->CreateDirs(P("d3")).sys_errno(), ENOSPC);  // 3
  EXPECT_EQ(fault_->SyncDir(root_).sys_errno(), ENOSPC);       // 4
  EXPECT_EQ(fault_->NewWritableFile(P("f")).status().sys_errno(), ENOSPC);
  EXPECT_TRUE(env_->FileExists(P("d1")));
  EXPECT_FALSE(env_->FileExists(P("d2")));
  EXPECT_FALSE(env_->FileExists(P("d3")));
  EXPECT_FALSE(env_->FileExists(P("f")));

  fault_->ClearFaults();
  ASSERT_OK(fault_->CreateDirs(P("d2")));
}

TEST_P(FaultEnvTest, NonStickyFailsOnlyOnce) {
  fault_->FailAt(2, EIO, /*sticky=*/false);
  ASSERT_OK(fault_->CreateDirs(P("d1")));
  EXPECT_FALSE(fault_->CreateDirs(P("d2")).ok());
  ASSERT_OK(fault_->CreateDirs(P("d3")));
  ASSERT_OK(fault_->CreateDirs(P("d4")));
}

TEST_P(FaultEnvTest, FailAtCountsFromTheCall) {
  for (int i = 0; i < 5; ++i) ASSERT_OK(fault_->SyncDir(root_));
  fault_->FailAt(1, EIO, false);
  EXPECT_FALSE(fault_->SyncDir(root_).ok());
}

// WriteFileAtomic makes 5 mutations: open, append, sync, rename, sync dir.
// Failing any of the first four leaves the old contents and no .tmp behind.
TEST_P(FaultEnvTest, WriteFileAtomicFailsCleanlyAtEveryStep) {
  ASSERT_OK(env_->WriteFileAtomic(P("config"), "old"));
  for (uint64_t n = 1; n <= 5; ++n) {
    SCOPED_TRACE("fault at mutation " + std::to_string(n));
    fault_->FailAt(n, ENOSPC, false);
    Status s = fault_->WriteFileAtomic(P("config"), "new");
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.sys_errno(), ENOSPC);
    EXPECT_CONTAINS(s.message(), "write `" + P("config") + "` atomically");
    EXPECT_EQ(ReadOrDie(env_, P("config")), n <= 4 ? "old" : "new");
    EXPECT_FALSE(env_->FileExists(P("config.tmp")));
    fault_->ClearFaults();
    ASSERT_OK(env_->WriteFileAtomic(P("config"), "old"));
  }
  ASSERT_OK(fault_->WriteFileAtomic(P("config"), "new"));
  EXPECT_EQ(ReadOrDie(env_, P("config")), "new");
}

TEST_P(FaultEnvTest, ReadFaults) {
  ASSERT_OK(env_->CreateDirs(P("packs/3f")));
  ASSERT_OK(WriteFile(env_, P("packs/3f/3f9a"), "pack", true));
  ASSERT_OK(WriteFile(env_, P("index"), "index", true));
  auto r = fault_->NewRandomAccessFile(P("packs/3f/3f9a"));
  ASSERT_OK(r.status());
  fault_->FailReadsOf("packs/");  // also affects files already open
  char buf[8];
  auto n = (*r)->Read(0, 4, buf);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().sys_errno(), EIO);
  EXPECT_EQ(n.status().code(), Code::kIOError);
  EXPECT_CONTAINS(n.status().message(), "read `" + P("packs/3f/3f9a") + "` (injected fault)");
  std::string out;
  EXPECT_EQ(fault_->ReadFileToString(P("packs/3f/3f9a"), &out).sys_errno(), EIO);
  ASSERT_OK(fault_->ReadFileToString(P("index"), &out));
  EXPECT_EQ(out, "index");

  fault_->ClearFaults();
  n = (*r)->Read(0, 4, buf);
  ASSERT_OK(n.status());
  EXPECT_EQ(std::string(buf, *n), "pack");
}

INSTANTIATE_TEST_SUITE_P(All, FaultEnvTest, ::testing::Values(EnvKind::kPosix, EnvKind::kMem),
                         [](const ::testing::TestParamInfo<EnvKind>& info) {
                           return info.param == EnvKind::kPosix ? "Posix" : "Mem";
                         });

TEST(FaultEnvOverMemTest, CrashAfterInjectedSyncFailureLosesData) {
  auto mem = NewMemEnv();
  auto fault = NewFaultEnv(mem.get());
  ASSERT_OK(fault->CreateDirs("/r"));
  auto f = fault->NewWritableFile("/r/a");
  ASSERT_OK(f.status());
  ASSERT_OK(fault->SyncDir("/r"));
  ASSERT_OK((*f)->Append("data"));
  fault->FailAt(1, EIO, false);
  EXPECT_FALSE((*f)->Sync().ok());
  mem->SimulateCrash();
  EXPECT_EQ(ReadOrDie(mem.get(), "/r/a"), "");
}

// ---------------------------------------------------------------------------
// PosixEnv lock file across processes.

class PosixLockTest : public ::testing::Test {
 protected:
  std::string LockPath() const { return JoinPath(tmp_.path(), "lock"); }
  TempDir tmp_;
  Env* env_ = Env::Default();
};

TEST_F(PosixLockTest, SecondOpenInSameProcessConflicts) {
  // flock locks belong to the open file description, so a second open() in the
  // same process conflicts: the one-writer rule holds within a process too.
  int stale = -1;
  auto first = env_->LockFile(LockPath(), &stale);
  ASSERT_OK(first.status());
  auto second = env_->LockFile(LockPath(), &stale);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
  EXPECT_EQ(second.status().message(), "`" + LockPath() + "`: repository busy (held by pid " +
                                           std::to_string(::getpid()) + ")");
}

TEST_F(PosixLockTest, LockOfKilledHolderIsTakenOverAndReportedStale) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) {
    int stale = -1;
    auto lock = Env::Default()->LockFile(LockPath(), &stale);
    if (!lock.ok()) ::_exit(2);
    ::kill(::getpid(), SIGKILL);  // die holding the lock, pid left in the file
    ::_exit(3);
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFSIGNALED(wstatus)) << "child exit status " << WEXITSTATUS(wstatus);
  ASSERT_EQ(WTERMSIG(wstatus), SIGKILL);
  EXPECT_EQ(ReadOrDie(env_, LockPath()), std::to_string(child) + "\n");

  int stale = -1;
  auto lock = env_->LockFile(LockPath(), &stale);
  ASSERT_OK(lock.status());
  EXPECT_EQ(stale, child);
  EXPECT_EQ(ReadOrDie(env_, LockPath()), std::to_string(::getpid()) + "\n");
}

TEST_F(PosixLockTest, LockHeldByLiveChildIsBusy) {
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipefd[0]);
    int stale = -1;
    auto lock = Env::Default()->LockFile(LockPath(), &stale);
    char c = lock.ok() ? 'y' : 'n';
    if (::write(pipefd[1], &c, 1) != 1) ::_exit(2);
    ::pause();  // hold the lock until killed
    ::_exit(0);
  }
  ::close(pipefd[1]);
  char c = 0;
  ASSERT_EQ(::read(pipefd[0], &c, 1), 1);
  ::close(pipefd[0]);
  EXPECT_EQ(c, 'y');

  int stale = -1;
  auto lock = env_->LockFile(LockPath(), &stale);
  EXPECT_FALSE(lock.ok());
  EXPECT_EQ(lock.status().code(), Code::kUnavailable);
  EXPECT_CONTAINS(lock.status().message(), "(held by pid " + std::to_string(child) + ")");

  ::kill(child, SIGKILL);
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  lock = env_->LockFile(LockPath(), &stale);
  ASSERT_OK(lock.status());
  EXPECT_EQ(stale, child);
}

TEST_F(PosixLockTest, CleanReleaseIsNotStale) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int stale = -1;
    {
      auto lock = Env::Default()->LockFile(LockPath(), &stale);
      if (!lock.ok()) ::_exit(2);
    }
    ::_exit(0);
  }
  int wstatus = 0;
  ASSERT_EQ(::waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
  int stale = -1;
  auto lock = env_->LockFile(LockPath(), &stale);
  ASSERT_OK(lock.status());
  EXPECT_EQ(stale, 0);
}

TEST(PosixEnvTest, ErrorsNamePathOperationAndErrno) {
  TempDir tmp;
  const std::string file = JoinPath(tmp.path(), "file");
  ASSERT_OK(WriteFile(Env::Default(), file, "x", true));
  const std::string below = JoinPath(file, "b");
  auto f = Env::Default()->NewWritableFile(below);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), Code::kIOError);
  EXPECT_EQ(f.status().sys_errno(), ENOTDIR);
  EXPECT_EQ(f.status().message(), "open `" + below + "` for writing: Not a directory");
}

// Root ignores directory permissions, so the open runs in a child that has
// dropped to an unprivileged uid; the child reports through its exit code.
TEST(PosixEnvTest, PermissionDenied) {
  TempDir tmp;
  ASSERT_EQ(::chmod(tmp.path().c_str(), 0755), 0);
  const std::string dir = JoinPath(tmp.path(), "ro");
  ASSERT_EQ(::mkdir(dir.c_str(), 0555), 0);
  const std::string path = JoinPath(dir, "b");
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(10);
    auto f = Env::Default()->NewWritableFile(path);
    if (f.ok()) ::_exit(11);
    if (f.status().code() != Code::kPermissionDenied) ::_exit(12);
    if (f.status().message() != "open `" + path + "` for writing: Permission denied") ::_exit(13);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10: setuid failed, 11: open succeeded, 12: wrong code, "
                                       "13: wrong message";
}

}  // namespace
}  // namespace chunkstore
