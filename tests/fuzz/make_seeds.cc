// Writes the checked-in seed corpus: one valid instance of each structure, so the
// fuzzers start from inputs that pass the checksums. Run by tests/fuzz_test.sh
// when a corpus directory is empty; the output is deterministic except nonces.
#include <filesystem>
#include <fstream>
#include <string>

#include "format.h"
#include "roots.h"
#include "tree.h"

using namespace chunkstore;

static void Write(const std::string& dir, const std::string& name, const std::string& data) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/" + name, std::ios::binary) << data;
}

int main(int argc, char** argv) {
  std::string out = argc > 1 ? argv[1] : "corpus";
  Aead data_key(std::string(32, 'k')), root_key(std::string(32, 'r'));
  std::string plain(5000, 'x'), rec;
  ChunkRef c{Sha256(plain), 5000};
  EncodeRecord(RecordKind::kData, {c}, plain, 3, data_key, &rec);
  Write(out + "/record", "zstd", rec);
  rec.clear();
  EncodeRecord(RecordKind::kTree, {c}, plain, 0, data_key, &rec);
  Write(out + "/record", "raw", rec);
  TreeEntry e;
  e.path = "etc/hosts";
  e.mode = 0644;
  e.size = 5000;
  e.xattrs = {{"user.a", "b"}};
  e.chunks = {c};
  std::string tree;
  EncodeEntry(e, &tree);
  e.path = "etc/hosts2";
  e.type = EntryType::kHardlink;
  e.link = "etc/hosts";
  EncodeEntry(e, &tree);
  Write(out + "/tree", "two", tree);
  BlobRoot b{"sha256:" + std::string(64, 'a'), 5000, {c}};
  std::string bp;
  EncodeBlobRoot(b, &bp);
  Write(out + "/roots", "blob-plain", bp);
  Write(out + "/roots", "blob-sealed", SealRoot(RootKind::kBlob, "roots/blobs/x", bp, root_key));
  PackId id{};
  Write(out + "/roots", "pack", EncodePackHeader(id) + EncodePackTrailer({{32, 100}}));
  return 0;
}
