#include "key_envelope.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace chunkstore {
namespace {

// Cheap argon2id so the whole binary stays fast; the default costs are exercised
// once, in DefaultKdfUnlockTime.
constexpr KdfParams kFastKdf{/*iterations=*/4, /*memory_kib=*/8 * 1024, /*parallel=*/1};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
}

// Overwrites `len` bytes at `offset` with zeros, in place.
void ZeroRange(const std::string& path, std::streamoff offset, size_t len) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  ASSERT_TRUE(f.good()) << path;
  f.seekp(offset);
  std::string zeros(len, '\0');
  f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  ASSERT_TRUE(f.good());
}

class KeyEnvelopeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/coffer-key-envelope-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/luks2.hdr";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Creates path_ protected by "correct horse" in slot 0 and returns the key.
  std::string CreateDefault() {
    auto key = KeyEnvelope::Create(path_, "correct horse", kFastKdf, "passphrase");
    EXPECT_TRUE(key.ok()) << key.status().ToString();
    if (!key.ok()) return "";
    return std::string(key->view());
  }

  std::string UnlockOrDie(std::string_view secret, int* slot = nullptr) {
    auto key = KeyEnvelope::Unlock(path_, secret, slot);
    EXPECT_TRUE(key.ok()) << key.status().ToString();
    return key.ok() ? std::string(key->view()) : "";
  }

  std::string dir_;
  std::string path_;
};

TEST_F(KeyEnvelopeTest, CreateUnlockRoundTrip) {
  std::string key = CreateDefault();
  ASSERT_EQ(key.size(), kMasterKeySize);
  EXPECT_NE(key, std::string(kMasterKeySize, '\0'));

  int slot = -1;
  EXPECT_EQ(UnlockOrDie("correct horse", &slot), key);
  EXPECT_EQ(slot, 0);

  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 2 * 1024 * 1024);  // 2 x 16 KiB metadata + 8 keyslot areas
  EXPECT_FALSE(std::filesystem::exists(path_ + ".tmp"));
  // The key is not stored in the clear.
  EXPECT_EQ(ReadAll(path_).find(key), std::string::npos);
}

TEST_F(KeyEnvelopeTest, TwoEnvelopesHaveDifferentKeys) {
  std::string a = CreateDefault();
  path_ = dir_ + "/other.hdr";
  std::string b = CreateDefault();
  EXPECT_NE(a, b);
}

TEST_F(KeyEnvelopeTest, CreateRefusesExistingFile) {
  WriteAll(path_, "precious");
  auto key = KeyEnvelope::Create(path_, "pw", kFastKdf, "passphrase");
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), Code::kAlreadyExists) << key.status().ToString();
  EXPECT_NE(key.status().message().find(path_), std::string::npos);
  EXPECT_EQ(ReadAll(path_), "precious");
}

TEST_F(KeyEnvelopeTest, CreateReplacesStaleTmpFromCrash) {
  WriteAll(path_ + ".tmp", "half-written header");
  std::string key = CreateDefault();
  EXPECT_EQ(UnlockOrDie("correct horse"), key);
  EXPECT_FALSE(std::filesystem::exists(path_ + ".tmp"));
}

TEST_F(KeyEnvelopeTest, CreateRejectsBadArguments) {
  auto empty = KeyEnvelope::Create(path_, "", kFastKdf, "passphrase");
  EXPECT_EQ(empty.status().code(), Code::kInvalidArgument);
  KdfParams bad = kFastKdf;
  bad.memory_kib = 0;
  auto bad_kdf = KeyEnvelope::Create(path_, "pw", bad, "passphrase");
  EXPECT_EQ(bad_kdf.status().code(), Code::kInvalidArgument) << bad_kdf.status().ToString();
  auto long_label = KeyEnvelope::Create(path_, "pw", kFastKdf, std::string(1000, 'x'));
  EXPECT_EQ(long_label.status().code(), Code::kInvalidArgument);
  // Nothing left behind by the failures.
  EXPECT_FALSE(std::filesystem::exists(path_));
  EXPECT_FALSE(std::filesystem::exists(path_ + ".tmp"));
}

TEST_F(KeyEnvelopeTest, WrongSecretIsPermissionDenied) {
  CreateDefault();
  auto key = KeyEnvelope::Unlock(path_, "battery staple");
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(key.status().message(),
            "wrong passphrase or key file for `" + path_ + "`: no keyslot matched");
}

TEST_F(KeyEnvelopeTest, AddKeyBothSecretsGiveSameKeyAndListShowsLabels) {
  std::string key = CreateDefault();
  std::string key_file(4096, '\0');
  for (size_t i = 0; i < key_file.size(); ++i) key_file[i] = static_cast<char>(i * 7);
  auto slot = KeyEnvelope::AddKey(path_, "correct horse", key_file, kFastKdf, "key-file");
  ASSERT_TRUE(slot.ok()) << slot.status().ToString();
  EXPECT_EQ(*slot, 1);

  int matched = -1;
  EXPECT_EQ(UnlockOrDie(key_file, &matched), key);
  EXPECT_EQ(matched, 1);
  EXPECT_EQ(UnlockOrDie("correct horse", &matched), key);
  EXPECT_EQ(matched, 0);

  auto list = KeyEnvelope::List(path_);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].slot, 0);
  EXPECT_EQ((*list)[0].label, "passphrase");
  EXPECT_EQ((*list)[0].kdf, "argon2id");
  EXPECT_EQ((*list)[1].slot, 1);
  EXPECT_EQ((*list)[1].label, "key-file");
  EXPECT_EQ((*list)[1].kdf, "argon2id");
}

TEST_F(KeyEnvelopeTest, AddKeyWithWrongExistingSecretIsPermissionDenied) {
  CreateDefault();
  auto slot = KeyEnvelope::AddKey(path_, "nope", "new", kFastKdf, "passphrase");
  ASSERT_FALSE(slot.ok());
  EXPECT_EQ(slot.status().code(), Code::kPermissionDenied);
  auto list = KeyEnvelope::List(path_);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 1u);
}

TEST_F(KeyEnvelopeTest, LabelsRoundTripArbitraryText) {
  CreateDefault();
  const std::string label = "laptop \"work\" / back\\slash\nnew line \xc3\xa9\xe2\x82\xac";
  auto slot = KeyEnvelope::AddKey(path_, "correct horse", "second", kFastKdf, label);
  ASSERT_TRUE(slot.ok()) << slot.status().ToString();
  auto list = KeyEnvelope::List(path_);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[1].label, label);
}

TEST_F(KeyEnvelopeTest, RemoveKey) {
  std::string key = CreateDefault();
  ASSERT_TRUE(KeyEnvelope::AddKey(path_, "correct horse", "second", kFastKdf, "b").ok());

  // Authorised by the other slot.
  Status st = KeyEnvelope::RemoveKey(path_, "correct horse", 1);
  ASSERT_TRUE(st.ok()) << st.ToString();
  auto list = KeyEnvelope::List(path_);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].slot, 0);
  EXPECT_EQ((*list)[0].label, "passphrase");
  EXPECT_EQ(KeyEnvelope::Unlock(path_, "second").status().code(), Code::kPermissionDenied);

  // Removing it again: not in use.
  EXPECT_EQ(KeyEnvelope::RemoveKey(path_, "correct horse", 1).code(), Code::kNotFound);
  EXPECT_EQ(KeyEnvelope::RemoveKey(path_, "correct horse", -1).code(), Code::kInvalidArgument);
  EXPECT_EQ(KeyEnvelope::RemoveKey(path_, "correct horse", 1000).code(), Code::kInvalidArgument);

  // The freed slot and its label are reused cleanly.
  auto slot = KeyEnvelope::AddKey(path_, "correct horse", "third", kFastKdf, "c");
  ASSERT_TRUE(slot.ok());
  EXPECT_EQ(*slot, 1);
  list = KeyEnvelope::List(path_);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[1].label, "c");
  EXPECT_EQ(UnlockOrDie("third"), key);
}

TEST_F(KeyEnvelopeTest, RemoveLastKeyIsRefused) {
  std::string key = CreateDefault();
  Status st = KeyEnvelope::RemoveKey(path_, "correct horse", 0);
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_EQ(st.message(),
            "refusing to remove keyslot 0: it is the last one; the repository would become "
            "unreadable");
  // Authentication comes first.
  EXPECT_EQ(KeyEnvelope::RemoveKey(path_, "wrong", 0).code(), Code::kPermissionDenied);
  EXPECT_EQ(UnlockOrDie("correct horse"), key);
}

TEST_F(KeyEnvelopeTest, RemoveSlotZeroWithItsOwnSecret) {
  std::string key = CreateDefault();
  ASSERT_TRUE(KeyEnvelope::AddKey(path_, "correct horse", "second", kFastKdf, "b").ok());
  EXPECT_EQ(KeyEnvelope::RemoveKey(path_, "wrong", 0).code(), Code::kPermissionDenied);
  Status st = KeyEnvelope::RemoveKey(path_, "correct horse", 0);
  ASSERT_TRUE(st.ok()) << st.ToString();

  EXPECT_EQ(KeyEnvelope::Unlock(path_, "correct horse").status().code(), Code::kPermissionDenied);
  int slot = -1;
  EXPECT_EQ(UnlockOrDie("second", &slot), key);
  EXPECT_EQ(slot, 1);
  EXPECT_EQ(KeyEnvelope::RemoveKey(path_, "second", 1).code(), Code::kFailedPrecondition);
}

TEST_F(KeyEnvelopeTest, AllKeyslotsInUse) {
  std::string key = CreateDefault();
  for (int i = 1; i < 8; ++i) {
    std::string label(200, static_cast<char>('a' + i));  // long labels fit the JSON area
    auto slot =
        KeyEnvelope::AddKey(path_, "correct horse", "pw" + std::to_string(i), kFastKdf, label);
    ASSERT_TRUE(slot.ok()) << i << ": " << slot.status().ToString();
    EXPECT_EQ(*slot, i);
  }
  auto full = KeyEnvelope::AddKey(path_, "correct horse", "pw8", kFastKdf, "x");
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), Code::kFailedPrecondition) << full.status().ToString();
  auto list = KeyEnvelope::List(path_);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 8u);
  EXPECT_EQ((*list)[7].label, std::string(200, 'h'));
  EXPECT_EQ(UnlockOrDie("pw7"), key);
}

TEST_F(KeyEnvelopeTest, ExportAndRestoreHeader) {
  std::string key = CreateDefault();
  const std::string backup = dir_ + "/backup.hdr";
  Status st = KeyEnvelope::ExportHeader(path_, backup);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(ReadAll(backup), ReadAll(path_));  // byte-exact
  EXPECT_EQ(KeyEnvelope::ExportHeader(path_, backup).code(), Code::kAlreadyExists);

  // Zeroing only the primary binary header is not damage LUKS2 cares about: the
  // next load repairs it from the secondary copy at 16 KiB.
  ZeroRange(path_, 0, 4096);
  EXPECT_EQ(UnlockOrDie("correct horse"), key);

  // Both copies gone: unreadable, and not mistaken for a wrong passphrase.
  ZeroRange(path_, 0, 4096);
  ZeroRange(path_, 16384, 4096);
  auto broken = KeyEnvelope::Unlock(path_, "correct horse");
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.status().code(), Code::kCorruption) << broken.status().ToString();
  EXPECT_NE(broken.status().message().find(path_), std::string::npos);

  st = KeyEnvelope::RestoreHeader(path_, backup);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(UnlockOrDie("correct horse"), key);
  EXPECT_EQ(ReadAll(path_), ReadAll(backup));
  EXPECT_FALSE(std::filesystem::exists(path_ + ".tmp"));
  struct stat sb;
  ASSERT_EQ(stat(path_.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_mode & 0777, 0600u);
}

TEST_F(KeyEnvelopeTest, RestoreFromInvalidBackupLeavesHeaderAlone) {
  std::string key = CreateDefault();
  const std::string bogus = dir_ + "/bogus.hdr";
  WriteAll(bogus, std::string(64 * 1024, 'x'));
  Status st = KeyEnvelope::RestoreHeader(path_, bogus);
  EXPECT_EQ(st.code(), Code::kCorruption) << st.ToString();
  EXPECT_NE(st.message().find(bogus), std::string::npos);
  EXPECT_EQ(UnlockOrDie("correct horse"), key);
  EXPECT_FALSE(std::filesystem::exists(path_ + ".tmp"));

  EXPECT_EQ(KeyEnvelope::RestoreHeader(path_, dir_ + "/missing").code(), Code::kNotFound);
}

TEST_F(KeyEnvelopeTest, NonLuksFileIsCorruption) {
  WriteAll(path_, std::string(2 * 1024 * 1024, 'z'));
  auto key = KeyEnvelope::Unlock(path_, "pw");
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), Code::kCorruption) << key.status().ToString();
  EXPECT_NE(key.status().message().find(path_), std::string::npos);
  EXPECT_EQ(KeyEnvelope::List(path_).status().code(), Code::kCorruption);
  EXPECT_EQ(KeyEnvelope::AddKey(path_, "a", "b", kFastKdf, "x").status().code(), Code::kCorruption);
  EXPECT_EQ(KeyEnvelope::ExportHeader(path_, dir_ + "/b").code(), Code::kCorruption);

  WriteAll(path_, "");  // empty file
  key = KeyEnvelope::Unlock(path_, "pw");
  EXPECT_EQ(key.status().code(), Code::kCorruption) << key.status().ToString();
}

TEST_F(KeyEnvelopeTest, MissingFileIsNotFound) {
  auto key = KeyEnvelope::Unlock(path_, "pw");
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), Code::kNotFound);
  EXPECT_NE(key.status().message().find(path_), std::string::npos) << key.status().ToString();
  EXPECT_EQ(KeyEnvelope::List(path_).status().code(), Code::kNotFound);
  EXPECT_EQ(KeyEnvelope::AddKey(path_, "a", "b", kFastKdf, "x").status().code(), Code::kNotFound);
  EXPECT_EQ(KeyEnvelope::RemoveKey(path_, "a", 0).code(), Code::kNotFound);
  EXPECT_EQ(KeyEnvelope::ExportHeader(path_, dir_ + "/b").code(), Code::kNotFound);
}

TEST_F(KeyEnvelopeTest, DirectoryIsRejected) {
  auto key = KeyEnvelope::Unlock(dir_, "pw");
  EXPECT_EQ(key.status().code(), Code::kInvalidArgument) << key.status().ToString();
}

TEST_F(KeyEnvelopeTest, DefaultKdfUnlockTime) {
  auto created = KeyEnvelope::Create(path_, "correct horse", KdfParams{}, "passphrase");
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  auto start = std::chrono::steady_clock::now();
  auto key = KeyEnvelope::Unlock(path_, "correct horse");
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(key->view(), created->view());
  auto list = KeyEnvelope::List(path_);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ((*list)[0].kdf, "argon2id");
  RecordProperty("unlock_seconds", std::to_string(seconds));
  std::printf("unlock with default KdfParams: %.3f s\n", seconds);
  EXPECT_LT(seconds, 2.0);
}

}  // namespace
}  // namespace chunkstore
