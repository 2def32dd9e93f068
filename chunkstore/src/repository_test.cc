// Repository tests on the in-memory Env (crash model) and on real directories.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "chunkstore/env.h"
#include "chunkstore/store.h"
#include "crypto.h"

namespace chunkstore {
namespace {

namespace fs = std::filesystem;
constexpr char kSecret[] = "correct horse battery staple";
const KeyCost kFastKdf{4, 8192, 1};

std::string RandomData(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  return s;
}

Repository::ReadFn FromString(const std::string& s) {
  auto pos = std::make_shared<size_t>(0);
  return [&s, pos](char* buf, size_t n) -> Result<size_t> {
    size_t k = std::min(n, s.size() - *pos);
    std::memcpy(buf, s.data() + *pos, k);
    *pos += k;
    return k;
  };
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/coffer-repo-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A repository on a MemEnv (behind a FaultEnv), with its index and key header in a
// real temporary directory.
class MemRepoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_ = NewMemEnv();
    fault_ = NewFaultEnv(mem_.get());
    opts_.env = fault_.get();
    opts_.local_dir = local_.path();
    RepoParams p;
    p.pack_size = 1 << 20;  // several packs even for small tests
    p.frame_size = 128 << 10;
    ASSERT_TRUE(Repository::Init("/repo", kSecret, "passphrase", p, kFastKdf, opts_).ok());
  }
  std::unique_ptr<Repository> OpenOrDie(bool read_only = false) {
    OpenOptions o = opts_;
    o.read_only = read_only;
    auto r = Repository::Open("/repo", kSecret, o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  std::string ReadBlob(Repository* r, const std::string& digest) {
    auto b = r->OpenBlob(digest);
    if (!b.ok()) return "ERROR: " + b.status().ToString();
    std::string out((*b)->size(), '\0');
    auto n = (*b)->ReadAt(0, out.size(), out.data());
    if (!n.ok()) return "ERROR: " + n.status().ToString();
    out.resize(*n);
    return out;
  }

  TempDir local_;
  std::unique_ptr<MemEnv> mem_;
  std::unique_ptr<FaultEnv> fault_;
  OpenOptions opts_;
};

TEST_F(MemRepoTest, PutThenReadAnyRange) {
  auto repo = OpenOrDie();
  std::string data = RandomData(3 << 20, 1);
  auto info = repo->PutBlob(FromString(data), nullptr);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->digest, "sha256:" + ToHex(Sha256(data)));
  EXPECT_EQ(info->size, data.size());
  auto blob = repo->OpenBlob(info->digest);
  ASSERT_TRUE(blob.ok());
  std::mt19937_64 rng(7);
  for (int i = 0; i < 50; ++i) {
    uint64_t off = rng() % (data.size() + 10);
    size_t len = rng() % 200000;
    std::string buf(len, '\0');
    auto n = (*blob)->ReadAt(off, len, buf.data());
    ASSERT_TRUE(n.ok());
    std::string want = off < data.size() ? data.substr(off, len) : "";
    EXPECT_EQ(buf.substr(0, *n), want) << "offset " << off << " length " << len;
  }
}

TEST_F(MemRepoTest, SecondPutOfSameDataStoresNothingNew) {
  auto repo = OpenOrDie();
  std::string data = RandomData(2 << 20, 2);
  ASSERT_TRUE(repo->PutBlob(FromString(data), nullptr).ok());
  auto again = repo->PutBlob(FromString(data), nullptr);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->new_bytes, 0u);
}

TEST_F(MemRepoTest, InsertAtFrontChangesOnlyAFewChunks) {
  auto repo = OpenOrDie();
  std::string data = RandomData(16 << 20, 3);
  ASSERT_TRUE(repo->PutBlob(FromString(data), nullptr).ok());
  std::string shifted = "inserted bytes at the front" + data;
  auto info = repo->PutBlob(FromString(shifted), nullptr);
  ASSERT_TRUE(info.ok());
  EXPECT_LE(info->new_bytes, 3u * 64 * 1024) << "a front insert re-stored too much";
  EXPECT_EQ(ReadBlob(repo.get(), info->digest), shifted);
}

TEST_F(MemRepoTest, WrongPassphraseIsPermissionDeniedAndTouchesNothing) {
  uint64_t before = fault_->mutation_count();
  auto r = Repository::Open("/repo", "not the passphrase", opts_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
  EXPECT_NE(r.status().message().find("wrong passphrase"), std::string::npos);
  EXPECT_EQ(fault_->mutation_count(), before);
}

TEST_F(MemRepoTest, SecondWriterIsBusy) {
  auto repo = OpenOrDie();
  auto second = Repository::Open("/repo", kSecret, opts_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
  EXPECT_NE(second.status().message().find("busy"), std::string::npos);
}

TEST_F(MemRepoTest, FlippedByteInAnyPackIsFoundByBothChecks) {
  std::string digest;
  {
    auto repo = OpenOrDie();
    auto info = repo->PutBlob(FromString(RandomData(3 << 20, 4)), nullptr);
    ASSERT_TRUE(info.ok());
    digest = info->digest;
  }
  auto subs = mem_->GetChildren("/repo/packs");
  ASSERT_TRUE(subs.ok());
  std::vector<std::string> packs;
  for (auto& s : *subs) {
    auto files = mem_->GetChildren("/repo/packs/" + s);
    ASSERT_TRUE(files.ok());
    for (auto& f : *files) packs.push_back("/repo/packs/" + s + "/" + f);
  }
  ASSERT_GE(packs.size(), 2u);
  std::mt19937_64 rng(5);
  for (const std::string& p : packs) {
    std::string orig;
    ASSERT_TRUE(mem_->ReadFileToString(p, &orig).ok());
    for (size_t off :
         {size_t(3), size_t(40), orig.size() / 2, size_t(rng() % orig.size()), orig.size() - 3}) {
      std::string bad = orig;
      bad[off] ^= 0x01;
      ASSERT_TRUE(mem_->WriteFileAtomic(p, bad).ok());
      auto st = Repository::CheckStructure("/repo", opts_, nullptr);
      ASSERT_TRUE(st.ok());
      EXPECT_FALSE(st->ok()) << "check missed a flip at " << p << "+" << off;
      auto repo = OpenOrDie(true);
      auto data = repo->CheckData(nullptr);
      ASSERT_TRUE(data.ok());
      EXPECT_FALSE(data->ok()) << "check --read-data missed a flip at " << p << "+" << off;
      ASSERT_TRUE(mem_->WriteFileAtomic(p, orig).ok());
    }
  }
  auto repo = OpenOrDie(true);
  auto clean = repo->CheckData(nullptr);
  ASSERT_TRUE(clean.ok());
  EXPECT_TRUE(clean->ok()) << clean->problems[0];
}

TEST_F(MemRepoTest, ReadDataNamesTheDamagedBlob) {
  std::string a, b;
  {
    auto repo = OpenOrDie();
    a = repo->PutBlob(FromString(RandomData(1 << 20, 10)), nullptr)->digest;
    b = repo->PutBlob(FromString(RandomData(1 << 20, 11)), nullptr)->digest;
  }
  // Damage the middle of the first pack: belongs to blob a (written first).
  // The pack written first holds blob a's chunks.
  auto subs = mem_->GetChildren("/repo/packs");
  ASSERT_TRUE(subs.ok());
  std::string victim;
  for (auto& s : *subs) {
    auto files = mem_->GetChildren("/repo/packs/" + s);
    ASSERT_TRUE(files.ok());
    if (!files->empty() && victim.empty()) victim = "/repo/packs/" + s + "/" + files->front();
  }
  std::string d;
  ASSERT_TRUE(mem_->ReadFileToString(victim, &d).ok());
  d[d.size() / 2] ^= 0x80;
  ASSERT_TRUE(mem_->WriteFileAtomic(victim, d).ok());
  auto repo = OpenOrDie(true);
  auto r = repo->CheckData(nullptr);
  ASSERT_TRUE(r.ok());
  bool named = false;
  for (auto& p : r->problems) named = named || p.find("blob sha256:") != std::string::npos;
  EXPECT_TRUE(named) << "no damaged blob named";
}

// The crash test: fail the Nth file-system mutation of a put (and every one after,
// as a dying process would), drop everything unsynced, reopen. For every N: the
// repository opens, checks clean, still holds what was stored before, and holds
// the new blob if and only if PutBlob reported success.
TEST_F(MemRepoTest, CrashAtEveryMutationOfAPutLosesNothingReported) {
  std::string old_data = RandomData(1 << 20, 20), new_data = RandomData(3 << 20, 21);
  std::string old_digest;
  {
    auto repo = OpenOrDie();
    old_digest = repo->PutBlob(FromString(old_data), nullptr)->digest;
  }
  uint64_t total;
  {
    // Count the mutations of a clean run on a scratch copy of the state.
    uint64_t start = fault_->mutation_count();
    auto repo = OpenOrDie();
    ASSERT_TRUE(repo->PutBlob(FromString(RandomData(3 << 20, 22)), nullptr).ok());
    total = fault_->mutation_count() - start;
  }
  ASSERT_GT(total, 10u);
  for (uint64_t n = 1; n <= total + 1; n += (n < 40 ? 1 : 5)) {
    bool reported = false;
    std::string digest;
    {
      auto repo = OpenOrDie();
      ASSERT_NE(repo, nullptr);
      fault_->FailAt(n, EIO, /*sticky=*/true);
      auto info = repo->PutBlob(FromString(new_data), nullptr);
      reported = info.ok();
      if (reported) digest = info->digest;
    }
    mem_->SimulateCrash();
    fault_->ClearFaults();
    auto repo = OpenOrDie();
    ASSERT_NE(repo, nullptr) << "repository does not open after a crash at mutation " << n;
    EXPECT_EQ(ReadBlob(repo.get(), old_digest), old_data) << "lost old data at " << n;
    if (reported) {
      EXPECT_EQ(ReadBlob(repo.get(), digest), new_data) << "lost reported put at " << n;
    }
    auto check = repo->CheckData(nullptr);
    ASSERT_TRUE(check.ok());
    EXPECT_TRUE(check->ok()) << "after crash at " << n << ": " << check->problems[0];
  }
}

// A full disk fails the put with ENOSPC; once space is back, the same repository
// object finishes the next put and nothing already stored is lost.
TEST_F(MemRepoTest, FullDiskFailsCleanlyAndRecovers) {
  auto repo = OpenOrDie();
  std::string a = RandomData(2 << 20, 70), b = RandomData(2 << 20, 71);
  auto ia = repo->PutBlob(FromString(a), nullptr);
  ASSERT_TRUE(ia.ok());
  fault_->FailAt(3, ENOSPC, /*sticky=*/true);
  auto ib = repo->PutBlob(FromString(b), nullptr);
  ASSERT_FALSE(ib.ok());
  EXPECT_EQ(ib.status().sys_errno(), ENOSPC) << ib.status().ToString();
  fault_->ClearFaults();
  ib = repo->PutBlob(FromString(b), nullptr);
  ASSERT_TRUE(ib.ok()) << ib.status().ToString();
  EXPECT_EQ(ReadBlob(repo.get(), ia->digest), a);
  EXPECT_EQ(ReadBlob(repo.get(), ib->digest), b);
  auto check = repo->CheckData(nullptr);
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->ok()) << check->problems[0];
}

TEST_F(MemRepoTest, GcKeepsLiveBlobsAndFreesDeletedOnes) {
  std::string keep = RandomData(2 << 20, 30), drop = RandomData(2 << 20, 31);
  auto repo = OpenOrDie();
  auto k = repo->PutBlob(FromString(keep), nullptr);
  auto d = repo->PutBlob(FromString(drop), nullptr);
  ASSERT_TRUE(k.ok() && d.ok());
  ASSERT_TRUE(repo->DeleteBlob(d->digest).ok());
  auto before = repo->GetStats();
  auto gc = repo->Gc(nullptr);
  ASSERT_TRUE(gc.ok()) << gc.status().ToString();
  EXPECT_GT(gc->bytes_freed, 1u << 20);
  auto after = repo->GetStats();
  EXPECT_LT(after->stored_bytes, before->stored_bytes);
  EXPECT_EQ(ReadBlob(repo.get(), k->digest), keep);
  EXPECT_TRUE(repo->OpenBlob(d->digest).status().IsNotFound());
  auto check = repo->CheckData(nullptr);
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->ok());
  // A second gc has nothing to do.
  auto gc2 = repo->Gc(nullptr);
  ASSERT_TRUE(gc2.ok());
  EXPECT_EQ(gc2->packs_deleted, 0u);
}

TEST_F(MemRepoTest, IndexRebuiltFromPacksAlone) {
  std::string data = RandomData(2 << 20, 40), digest;
  {
    auto repo = OpenOrDie();
    digest = repo->PutBlob(FromString(data), nullptr)->digest;
  }
  fs::remove_all(local_.path() + "/index");
  auto ro = Repository::Open("/repo", kSecret, [&] {
    auto o = opts_;
    o.read_only = true;
    return o;
  }());
  EXPECT_FALSE(ro.ok()) << "a read-only open without an index should say so";
  auto rep = Repository::RebuildIndex("/repo", opts_, nullptr);
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_GE(rep->packs, 2u);
  EXPECT_TRUE(rep->problems.empty());
  auto repo = OpenOrDie(true);
  EXPECT_EQ(ReadBlob(repo.get(), digest), data);
}

std::string ReadFile(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void WriteFile(const std::string& p, const std::string& d) {
  std::ofstream f(p, std::ios::binary);
  f << d;
}

class DiskRepoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_dir_ = tmp_.path() + "/repo";
    src_ = tmp_.path() + "/src";
    fs::create_directories(src_ + "/d/e");
    ASSERT_TRUE(
        Repository::Init(repo_dir_, kSecret, "passphrase", RepoParams(), kFastKdf, {}).ok());
  }
  std::unique_ptr<Repository> Open(bool ro = false) {
    OpenOptions o;
    o.read_only = ro;
    auto r = Repository::Open(repo_dir_, kSecret, o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return std::move(r).value();
  }
  TempDir tmp_;
  std::string repo_dir_, src_;
};

TEST_F(DiskRepoTest, BackupRestoreKeepsContentAndMetadata) {
  WriteFile(src_ + "/a", RandomData(300000, 50));
  WriteFile(src_ + "/d/empty", "");
  WriteFile(src_ + "/d/e/small", "hello");
  ASSERT_EQ(chmod((src_ + "/d/e/small").c_str(), 04751), 0);
  ASSERT_EQ(symlink("../a", (src_ + "/d/link").c_str()), 0);
  ASSERT_EQ(link((src_ + "/a").c_str(), (src_ + "/d/e/hard").c_str()), 0);
  ASSERT_EQ(mkfifo((src_ + "/d/fifo").c_str(), 0640), 0);
  ASSERT_EQ(setxattr((src_ + "/a").c_str(), "user.test", "v1", 2, 0), 0);
  struct timespec ts[2] = {{1000, 5}, {1600000000, 123456789}};
  ASSERT_EQ(utimensat(AT_FDCWD, (src_ + "/d/e/small").c_str(), ts, 0), 0);
  auto repo = Open();
  auto snap = repo->Backup({src_}, "t", nullptr);
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_EQ(snap->files, 3u);  // a, empty, small (hard is a second name of a)
  repo.reset();
  auto ro = Open(true);
  std::string out = tmp_.path() + "/out";
  ASSERT_TRUE(ro->Restore("t", out, {}, nullptr).ok());
  std::string r = out + src_;
  EXPECT_EQ(ReadFile(r + "/a"), ReadFile(src_ + "/a"));
  EXPECT_EQ(ReadFile(r + "/d/e/small"), "hello");
  struct stat a, b;
  ASSERT_EQ(lstat((r + "/d/e/small").c_str(), &a), 0);
  EXPECT_EQ(a.st_mode & 07777, 04751u);
  EXPECT_EQ(a.st_mtim.tv_sec, 1600000000);
  EXPECT_EQ(a.st_mtim.tv_nsec, 123456789);
  ASSERT_EQ(lstat((r + "/a").c_str(), &a), 0);
  ASSERT_EQ(lstat((r + "/d/e/hard").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_nlink, 2u);
  EXPECT_EQ(fs::read_symlink(r + "/d/link"), "../a");
  ASSERT_EQ(lstat((r + "/d/fifo").c_str(), &a), 0);
  EXPECT_TRUE(S_ISFIFO(a.st_mode));
  char v[8] = {};
  EXPECT_EQ(getxattr((r + "/a").c_str(), "user.test", v, sizeof v), 2);
  EXPECT_STREQ(v, "v1");
}

// A path inside another given path is backed up once, even when a sibling sorts
// between them ("a" < "a-x" < "a/f").
TEST_F(DiskRepoTest, NestedAndRepeatedPathsAreBackedUpOnce) {
  fs::create_directories(src_ + "/a");
  fs::create_directories(src_ + "/a-x");
  WriteFile(src_ + "/a/f", "inside");
  WriteFile(src_ + "/a-x/g", "beside");
  auto repo = Open();
  auto s = repo->Backup({src_ + "/a", src_ + "/a-x", src_ + "/a/f", src_ + "/a"}, "t", nullptr);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->files, 2u);
  std::string out = tmp_.path() + "/o";
  ASSERT_TRUE(repo->Restore("t", out, {}, nullptr).ok());
  EXPECT_EQ(ReadFile(out + src_ + "/a/f"), "inside");
  EXPECT_EQ(ReadFile(out + src_ + "/a-x/g"), "beside");
  EXPECT_EQ(repo->FindSnapshot("t@").status().code(), Code::kInvalidArgument);
}

TEST_F(DiskRepoTest, UnchangedTreeIsNotReadAgain) {
  for (int i = 0; i < 50; ++i) WriteFile(src_ + "/f" + std::to_string(i), RandomData(20000, i));
  auto repo = Open();
  auto s1 = repo->Backup({src_}, "t", nullptr);
  ASSERT_TRUE(s1.ok());
  EXPECT_EQ(s1->files_read, 50u);
  auto s2 = repo->Backup({src_}, "t", nullptr);
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(s2->files_read, 0u);
  EXPECT_LT(s2->new_bytes, 64u * 1024);
  WriteFile(src_ + "/f7", "changed");
  auto s3 = repo->Backup({src_}, "t", nullptr);
  ASSERT_TRUE(s3.ok());
  EXPECT_EQ(s3->files_read, 1u);
  std::string out = tmp_.path() + "/o1";
  ASSERT_TRUE(repo->Restore("t@" + s1->id, out, {}, nullptr).ok());
  EXPECT_EQ(ReadFile(out + src_ + "/f7"), RandomData(20000, 7));
  out = tmp_.path() + "/o3";
  ASSERT_TRUE(repo->Restore("t@" + s3->id.substr(0, 6), out, {}, nullptr).ok());
  EXPECT_EQ(ReadFile(out + src_ + "/f7"), "changed");
}

TEST_F(DiskRepoTest, NoPlaintextOnDisk) {
  const std::string marker = "coffer-unit-marker-7f3a9c-plaintext";
  std::string body;
  for (int i = 0; i < 1000; ++i) body += marker + " line " + std::to_string(i) + "\n";
  WriteFile(src_ + "/" + marker + ".txt", body);
  ASSERT_EQ(setxattr((src_ + "/d").c_str(), "user.note", marker.data(), marker.size(), 0), 0);
  auto repo = Open();
  ASSERT_TRUE(repo->Backup({src_}, "t", nullptr).ok());
  ASSERT_TRUE(repo->PutBlob(FromString(body), nullptr).ok());
  repo.reset();
  for (auto& e : fs::recursive_directory_iterator(repo_dir_)) {
    if (!e.is_regular_file()) continue;
    EXPECT_EQ(ReadFile(e.path()).find(marker), std::string::npos) << e.path();
    EXPECT_EQ(e.path().string().find("marker"), std::string::npos) << e.path();
  }
}

TEST_F(DiskRepoTest, ForgetThenGcFreesSpaceAndKeepsTheRest) {
  WriteFile(src_ + "/big", RandomData(4 << 20, 60));
  auto repo = Open();
  auto s1 = repo->Backup({src_}, "t", nullptr);
  WriteFile(src_ + "/big", RandomData(4 << 20, 61));
  auto s2 = repo->Backup({src_}, "t", nullptr);
  ASSERT_TRUE(s1.ok() && s2.ok());
  ASSERT_TRUE(repo->Forget("t@" + s1->id).ok());
  EXPECT_TRUE(repo->Forget("t").code() == Code::kInvalidArgument);
  auto gc = repo->Gc(nullptr);
  ASSERT_TRUE(gc.ok()) << gc.status().ToString();
  EXPECT_GE(gc->bytes_freed, 3u << 20);
  std::string out = tmp_.path() + "/o";
  ASSERT_TRUE(repo->Restore("t", out, {}, nullptr).ok());
  EXPECT_EQ(ReadFile(out + src_ + "/big"), RandomData(4 << 20, 61));
  auto check = repo->CheckData(nullptr);
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->ok());
}

}  // namespace
}  // namespace chunkstore
