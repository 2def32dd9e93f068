// I/O faults a repository must survive without losing anything it reported as
// stored, beyond the dying-process model of repository_test.cc (where every call
// after the fault fails too):
//  - one transient EIO (on an append, an fsync, a rename, ...) in a process that
//    keeps running: the failed put reports the error, and the same Repository
//    object goes on storing, including the same data again, which must not be
//    deduplicated against chunks that never became durable;
//  - EIO on reading a pack: an IOError naming the pack, never Corruption, and no
//    lasting harm once the device reads again;
//  - torn leftovers of a crash in the middle of a write (a partial pack in tmp/,
//    a partial `.tmp` root file): the repository opens, checks clean, keeps data.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "chunkstore/env.h"
#include "chunkstore/store.h"

namespace chunkstore {
namespace {

constexpr char kSecret[] = "fault io secret";
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

class FaultIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/coffer-fault-io-test-XXXXXX";
    local_ = ::mkdtemp(tmpl);
    mem_ = NewMemEnv();
    fault_ = NewFaultEnv(mem_.get());
    opts_.env = fault_.get();
    opts_.local_dir = local_;
    RepoParams p;
    p.pack_size = 1 << 20;
    p.frame_size = 128 << 10;
    ASSERT_TRUE(Repository::Init("/repo", kSecret, "passphrase", p, kFastKdf, opts_).ok());
  }
  void TearDown() override { std::filesystem::remove_all(local_); }

  std::unique_ptr<Repository> OpenOrDie(bool read_only = false) {
    OpenOptions o = opts_;
    o.read_only = read_only;
    auto r = Repository::Open("/repo", kSecret, o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }
  // The blob's bytes, or "ERROR: <status>".
  static std::string ReadBlob(Repository* r, const std::string& digest) {
    auto b = r->OpenBlob(digest);
    if (!b.ok()) return "ERROR: " + b.status().ToString();
    std::string out((*b)->size(), '\0');
    auto n = (*b)->ReadAt(0, out.size(), out.data());
    if (!n.ok()) return "ERROR: " + n.status().ToString();
    out.resize(*n);
    return out;
  }
  void ExpectCleanCheck(Repository* r, const std::string& when) {
    auto check = r->CheckData(nullptr);
    ASSERT_TRUE(check.ok()) << when << ": " << check.status().ToString();
    EXPECT_TRUE(check->ok()) << when << ": " << (check->problems.empty() ? "" : check->problems[0]);
  }
  std::vector<std::string> Packs() {
    std::vector<std::string> out;
    auto subs = mem_->GetChildren("/repo/packs");
    if (!subs.ok()) return out;
    for (auto& s : *subs) {
      auto files = mem_->GetChildren("/repo/packs/" + s);
      if (files.ok())
        for (auto& f : *files) out.push_back("/repo/packs/" + s + "/" + f);
    }
    return out;
  }

  std::string local_;
  std::unique_ptr<MemEnv> mem_;
  std::unique_ptr<FaultEnv> fault_;
  OpenOptions opts_;
};

// For every mutation N of a put: that one call fails with EIO (the disk
// recovers at once). The process goes on: it puts the same data again (which
// must be stored for real, not deduplicated against chunks whose pack never
// became durable) and one more blob. Then the machine crashes. Everything
// reported stored reads back, and the repository checks clean.
TEST_F(FaultIoTest, TransientEioAtEveryMutationThenTheSameDataAgain) {
  const std::string old_data = RandomData(1 << 20, 1);
  std::string old_digest;
  {
    auto repo = OpenOrDie();
    old_digest = repo->PutBlob(FromString(old_data), nullptr)->digest;
  }
  uint64_t total;
  {
    uint64_t start = fault_->mutation_count();
    auto repo = OpenOrDie();
    ASSERT_TRUE(repo->PutBlob(FromString(RandomData(3 << 20, 3)), nullptr).ok());
    total = fault_->mutation_count() - start;
  }
  ASSERT_GT(total, 10u);
  int failed = 0;
  for (uint64_t n = 1; n <= total + 1; n += (n < 40 ? 1 : 3)) {
    SCOPED_TRACE("EIO at mutation " + std::to_string(n) + " of " + std::to_string(total));
    std::vector<std::pair<std::string, const std::string*>> reported;
    const std::string data = RandomData(3 << 20, 1000 + n);  // new chunks every round
    const std::string extra = RandomData(200000, 100 + n);
    {
      auto repo = OpenOrDie();
      ASSERT_NE(repo, nullptr);
      fault_->FailAt(n, EIO, /*sticky=*/false);
      auto first = repo->PutBlob(FromString(data), nullptr);
      if (first.ok()) {
        reported.emplace_back(first->digest, &data);
      } else {
        ++failed;

        EXPECT_EQ(first.status().sys_errno(), EIO) << first.status().ToString();
        EXPECT_FALSE(first.status().IsCorruption()) << first.status().ToString();
      }
      fault_->ClearFaults();
      auto again = repo->PutBlob(FromString(data), nullptr);
      ASSERT_TRUE(again.ok()) << "the put after a transient EIO: " << again.status().ToString();
      reported.emplace_back(again->digest, &data);
      auto more = repo->PutBlob(FromString(extra), nullptr);
      ASSERT_TRUE(more.ok()) << more.status().ToString();
      reported.emplace_back(more->digest, &extra);
    }
    mem_->SimulateCrash();
    auto repo = OpenOrDie();
    ASSERT_NE(repo, nullptr) << "the repository does not open after the crash";
    EXPECT_EQ(ReadBlob(repo.get(), old_digest), old_data) << "lost the blob stored before";
    for (const auto& [digest, want] : reported)
      EXPECT_TRUE(ReadBlob(repo.get(), digest) == *want) << "lost reported blob " << digest;
    ExpectCleanCheck(repo.get(), "after the crash");
  }
  EXPECT_GT(failed, 5) << "the injected EIO reached too few puts to mean anything";
}

// A pack that cannot be read (EIO from the device): reading a blob in it fails
// with an IOError that names the pack, not with Corruption; check --read-data
// reports it; nothing is changed, and once the device reads again all is well.
TEST_F(FaultIoTest, EioOnReadingAPackNamesItAndHarmsNothing) {
  const std::string a = RandomData(3 << 20, 7);
  std::string digest;
  {
    auto repo = OpenOrDie();
    digest = repo->PutBlob(FromString(a), nullptr)->digest;
  }
  const std::vector<std::string> packs = Packs();
  ASSERT_GE(packs.size(), 2u);
  const std::string victim = packs.front();
  const std::string name = victim.substr(victim.rfind('/') + 1);
  fault_->FailReadsOf(name);
  {
    auto repo = OpenOrDie(true);
    ASSERT_NE(repo, nullptr);
    auto b = repo->OpenBlob(digest);
    Status st = b.ok() ? Status::OK() : b.status();
    if (b.ok()) {
      std::string out((*b)->size(), '\0');
      auto n = (*b)->ReadAt(0, out.size(), out.data());
      st = n.ok() ? Status::OK() : n.status();
    }
    ASSERT_FALSE(st.ok()) << "a blob in an unreadable pack read back";
    EXPECT_FALSE(st.IsCorruption()) << "EIO reported as corruption: " << st.ToString();
    EXPECT_EQ(st.sys_errno(), EIO) << st.ToString();
    EXPECT_NE(st.message().find(name), std::string::npos)
        << "does not name the pack: " << st.ToString();
    auto check = repo->CheckData(nullptr);
    ASSERT_TRUE(check.ok()) << check.status().ToString();
    ASSERT_FALSE(check->ok()) << "check --read-data read an unreadable pack";
    bool named = false;
    for (const auto& p : check->problems) named = named || p.find(name) != std::string::npos;
    EXPECT_TRUE(named) << "check --read-data does not name the pack: " << check->problems[0];
  }
  {
    // A writer opened while the pack is unreadable must not drop it either.
    auto repo = OpenOrDie();
    ASSERT_NE(repo, nullptr);
    ASSERT_TRUE(repo->PutBlob(FromString(RandomData(100000, 8)), nullptr).ok());
  }
  fault_->ClearFaults();
  auto repo = OpenOrDie();
  EXPECT_TRUE(ReadBlob(repo.get(), digest) == a) << "the blob is damaged after the EIO passed";
  ExpectCleanCheck(repo.get(), "after the device recovered");
}

// What a crash in the middle of writing leaves behind, written byte by byte as
// a torn write would: half a pack in tmp/ and half a root file in `.tmp`. The
// next writer opens, stores, and everything checks clean.
TEST_F(FaultIoTest, TornLeftoversOfACrashAreHarmless) {
  const std::string a = RandomData(2 << 20, 9);
  std::string digest;
  {
    auto repo = OpenOrDie();
    digest = repo->PutBlob(FromString(a), nullptr)->digest;
  }
  const std::vector<std::string> packs = Packs();
  ASSERT_FALSE(packs.empty());
  std::string pack;
  ASSERT_TRUE(mem_->ReadFileToString(packs.front(), &pack).ok());
  for (size_t cut : {size_t(1), size_t(37), pack.size() / 2, pack.size() - 1}) {
    SCOPED_TRACE("torn at byte " + std::to_string(cut));
    std::string torn_pack = "/repo/tmp/" + std::string(32, 'a') + ".pack";
    ASSERT_TRUE(mem_->WriteFileAtomic(torn_pack, pack.substr(0, cut)).ok());
    auto roots = mem_->GetChildren("/repo/roots/blobs");
    ASSERT_TRUE(roots.ok() && !roots->empty());
    std::string root;
    ASSERT_TRUE(mem_->ReadFileToString("/repo/roots/blobs/" + roots->front(), &root).ok());
    ASSERT_TRUE(mem_->WriteFileAtomic("/repo/roots/blobs/" + std::string(64, 'b') + ".tmp",
                                      root.substr(0, std::min(cut, root.size() / 2)))
                    .ok());
    {
      auto ro = OpenOrDie(true);
      ASSERT_NE(ro, nullptr);
      EXPECT_TRUE(ReadBlob(ro.get(), digest) == a);
      auto st = Repository::CheckStructure("/repo", opts_, nullptr);
      ASSERT_TRUE(st.ok()) << st.status().ToString();
      EXPECT_TRUE(st->ok()) << "check fails on crash leftovers: " << st->problems[0];
    }
    auto repo = OpenOrDie();
    ASSERT_NE(repo, nullptr);
    EXPECT_FALSE(mem_->FileExists(torn_pack)) << "the next writer left the torn pack in tmp/";
    auto b = repo->PutBlob(FromString(RandomData(300000, cut)), nullptr);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    EXPECT_TRUE(ReadBlob(repo.get(), digest) == a);
    ExpectCleanCheck(repo.get(), "with torn leftovers");
  }
}

}  // namespace
}  // namespace chunkstore
