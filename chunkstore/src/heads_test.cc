// Tests of the FUSE layer's building blocks: content writers, pending reads,
// blob commits and heads.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "chunkstore/env.h"
#include "chunkstore/store.h"
#include "crypto.h"

namespace chunkstore {
namespace {

constexpr char kSecret[] = "heads test";

std::string Random(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

class HeadsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/coffer-heads-test-XXXXXX";
    local_ = mkdtemp(tmpl);
    mem_ = NewMemEnv();
    opts_.env = mem_.get();
    opts_.local_dir = local_;
    ASSERT_TRUE(
        Repository::Init("/r", kSecret, "p", RepoParams(), KeyCost{4, 8192, 1}, opts_).ok());
    auto r = Repository::Open("/r", kSecret, opts_);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    repo_ = std::move(r).value();
  }
  void TearDown() override {
    repo_.reset();
    std::filesystem::remove_all(local_);
  }
  std::string ReadAll(const std::vector<ChunkRef>& chunks) {
    std::string out;
    for (const ChunkRef& c : chunks) EXPECT_TRUE(repo_->ReadChunk(c.id, &out).ok());
    return out;
  }

  std::string local_;
  std::unique_ptr<MemEnv> mem_;
  OpenOptions opts_;
  std::unique_ptr<Repository> repo_;
};

TEST_F(HeadsTest, ContentWriterChunksLikeAOneShotPutAndIsReadableBeforeSync) {
  std::string data = Random(5 << 20, 1);
  auto w = repo_->NewContentWriter();
  std::mt19937_64 rng(2);
  for (size_t off = 0; off < data.size();) {
    size_t n = std::min<size_t>(data.size() - off, 1 + rng() % 300000);
    ASSERT_TRUE(w->Append(std::string_view(data).substr(off, n)).ok());
    off += n;
  }
  auto chunks = w->Finish();
  ASSERT_TRUE(chunks.ok());
  EXPECT_EQ(ReadAll(*chunks), data) << "pending chunks must be readable";
  // The same bytes put as a blob give no new chunks: identical boundaries.
  size_t pos = 0;
  auto info = repo_->PutBlob(
      [&](char* b, size_t n) -> Result<size_t> {
        size_t k = std::min(n, data.size() - pos);
        std::memcpy(b, data.data() + pos, k);
        pos += k;
        return k;
      },
      nullptr);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->new_bytes, 0u);
}

TEST_F(HeadsTest, CommitBlobPublishesUnderTheDigest) {
  std::string data = Random(300000, 3);
  auto w = repo_->NewContentWriter();
  ASSERT_TRUE(w->Append(data).ok());
  auto chunks = w->Finish();
  ASSERT_TRUE(chunks.ok());
  std::string digest = "sha256:" + ToHex(Sha256(data));
  ASSERT_TRUE(repo_->CommitBlob(digest, *chunks).ok());
  auto b = repo_->OpenBlob(digest);
  ASSERT_TRUE(b.ok());
  std::string back(data.size(), '\0');
  ASSERT_EQ(*(*b)->ReadAt(0, back.size(), back.data()), data.size());
  EXPECT_EQ(back, data);
}

TEST_F(HeadsTest, BoundaryStartsANewChunk) {
  // The same file after different prefixes gives the same chunks when the
  // writer is told where it starts and ends.
  std::string file = Random(400000, 7);
  std::vector<ChunkRef> seen[2];
  for (int i = 0; i < 2; ++i) {
    auto w = repo_->NewContentWriter();
    ASSERT_TRUE(w->Append(Random(1000 + 777 * i, 8 + i)).ok());
    ASSERT_TRUE(w->Boundary().ok());
    size_t before = w->chunks().size();
    ASSERT_TRUE(w->Append(file).ok());
    ASSERT_TRUE(w->Boundary().ok());
    ASSERT_TRUE(w->Append("trailer").ok());
    auto all = w->Finish();
    ASSERT_TRUE(all.ok());
    seen[i].assign(all->begin() + before, all->end() - 1);
    EXPECT_EQ(ReadAll(seen[i]), file);
  }
  ASSERT_EQ(seen[0].size(), seen[1].size());
  for (size_t k = 0; k < seen[0].size(); ++k) EXPECT_TRUE(seen[0][k].id == seen[1][k].id);
}

// A toy encoding: the stored form is the blob in lower case.
Result<std::unique_ptr<BlobReader>> UpperDecoder(std::string_view digest, uint64_t size,
                                                 std::string_view encoding,
                                                 std::unique_ptr<BlobReader> stored) {
  struct Upper : BlobReader {
    std::unique_ptr<BlobReader> in;
    uint64_t n;
    uint64_t size() const override { return n; }
    Result<size_t> ReadAt(uint64_t off, size_t len, char* buf) override {
      ASSIGN_OR_RETURN(size_t got, in->ReadAt(off, len, buf));
      for (size_t i = 0; i < got; ++i) buf[i] = static_cast<char>(std::toupper(buf[i]));
      return got;
    }
  };
  if (encoding != "upper") return Status::InvalidArgument("unknown encoding");
  auto r = std::make_unique<Upper>();
  r->in = std::move(stored);
  r->n = size;
  return std::unique_ptr<BlobReader>(std::move(r));
}

TEST_F(HeadsTest, ReplaceBlobWithAnEncodedForm) {
  std::string upper(200000, 'A'), lower(200000, 'a');
  for (size_t i = 0; i < upper.size(); i += 7) upper[i] = 'Q', lower[i] = 'q';
  std::string digest = "sha256:" + ToHex(Sha256(upper));
  auto put = [&](const std::string& data) {
    auto w = repo_->NewContentWriter();
    EXPECT_TRUE(w->Append(data).ok());
    return *w->Finish();
  };
  ASSERT_TRUE(repo_->CommitBlob(digest, put(upper)).ok());
  // Refused: wrong size; an empty encoding whose chunks are not the blob's size.
  EXPECT_FALSE(repo_->ReplaceBlob(digest, 5, "upper", put(lower)).ok());
  EXPECT_FALSE(repo_->ReplaceBlob(digest, upper.size(), "", put("short")).ok());
  EXPECT_TRUE(
      repo_->ReplaceBlob("sha256:" + ToHex(Sha256("x")), 1, "upper", put("x")).IsNotFound());
  ASSERT_TRUE(repo_->ReplaceBlob(digest, upper.size(), "upper", put(lower)).ok());

  SetBlobDecoder(nullptr);
  auto b = repo_->OpenBlob(digest);
  EXPECT_EQ(b.status().code(), Code::kFailedPrecondition) << b.status().ToString();
  SetBlobDecoder(UpperDecoder);
  b = repo_->OpenBlob(digest);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  std::string back(upper.size(), '\0');
  ASSERT_EQ(*(*b)->ReadAt(0, back.size(), back.data()), upper.size());
  EXPECT_EQ(back, upper);
  auto layout = repo_->GetBlobLayout(digest);
  ASSERT_TRUE(layout.ok());
  EXPECT_EQ(layout->encoding, "upper");
  EXPECT_EQ(layout->size, upper.size());
  EXPECT_EQ(ReadAll(layout->chunks), lower);
  auto stats = repo_->GetStats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->encoded_blobs, 1u);
  EXPECT_EQ(stats->encoded_blob_bytes, upper.size());
  ASSERT_EQ(stats->encoded_by_kind.size(), 1u);
  EXPECT_EQ(stats->encoded_by_kind["encoded"].blobs, 1u);
  SetBlobEncodingKind([](std::string_view e) { return "kind " + std::string(e); });
  stats = repo_->GetStats();
  SetBlobEncodingKind(nullptr);
  ASSERT_TRUE(stats.ok());
  ASSERT_EQ(stats->encoded_by_kind.count("kind upper"), 1u);
  EXPECT_EQ(stats->encoded_by_kind["kind upper"].blobs, 1u);
  EXPECT_EQ(stats->encoded_by_kind["kind upper"].bytes, upper.size());

  // Durable across a reopen; gc keeps the new form and frees the old one.
  repo_.reset();
  auto r = Repository::Open("/r", kSecret, opts_);
  ASSERT_TRUE(r.ok());
  repo_ = std::move(r).value();
  auto gc = repo_->Gc(nullptr);
  ASSERT_TRUE(gc.ok()) << gc.status().ToString();
  EXPECT_GT(gc->dead_chunks, 0u);
  b = repo_->OpenBlob(digest);
  ASSERT_TRUE(b.ok());
  ASSERT_EQ(*(*b)->ReadAt(0, back.size(), back.data()), upper.size());
  EXPECT_EQ(back, upper);
  auto check = repo_->CheckData(nullptr);
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->ok());
  SetBlobDecoder(nullptr);
}

TEST_F(HeadsTest, HeadSaveLoadSnapshotAndGcKeepsIt) {
  std::string content = Random(200000, 4);
  auto w = repo_->NewContentWriter();
  ASSERT_TRUE(w->Append(content).ok());
  auto chunks = w->Finish();
  ASSERT_TRUE(chunks.ok());
  std::vector<TreeEntry> entries(2);
  entries[0].path = "d";
  entries[0].type = EntryType::kDir;
  entries[0].mode = 0755;
  entries[1].path = "d/f";
  entries[1].type = EntryType::kFile;
  entries[1].mode = 0644;
  entries[1].size = content.size();
  entries[1].chunks = *chunks;
  auto produce = [&](const Repository::EmitFn& emit) -> Status {
    for (const TreeEntry& e : entries) RETURN_IF_ERROR(emit(e));
    return Status::OK();
  };
  ASSERT_TRUE(repo_->SaveHead("vol", produce).ok());
  std::vector<std::string> paths;
  ASSERT_TRUE(repo_
                  ->LoadHead("vol",
                             [&](TreeEntry& e) {
                               paths.push_back(e.path);
                               return Status::OK();
                             })
                  .ok());
  EXPECT_EQ(paths, (std::vector<std::string>{"d", "d/f"}));
  EXPECT_TRUE(repo_->LoadHead("other", [](TreeEntry&) { return Status::OK(); }).IsNotFound());
  auto heads = repo_->ListHeads();
  ASSERT_TRUE(heads.ok());
  EXPECT_EQ(*heads, std::vector<std::string>{"vol"});

  auto snap = repo_->SnapshotHead("vol", "before-upgrade");
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_EQ(repo_->SnapshotHead("vol", "before-upgrade").status().code(), Code::kAlreadyExists);
  auto found = repo_->FindSnapshot("vol@before-upgrade");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->id, snap->id);
  // gc must keep the head's and the snapshot's chunks.
  ASSERT_TRUE(repo_->Gc(nullptr).ok());
  std::string file;
  ASSERT_TRUE(repo_
                  ->ForEachSnapshotEntry("vol@" + snap->id,
                                         [&](TreeEntry& e) {
                                           if (e.path == "d/f") file = ReadAll(e.chunks);
                                           return Status::OK();
                                         })
                  .ok());
  EXPECT_EQ(file, content);
  auto check = repo_->CheckData(nullptr);
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->ok());
}

}  // namespace
}  // namespace chunkstore
