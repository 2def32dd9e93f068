#include "roots.h"

#include <xxhash.h>

#include "coding.h"

namespace chunkstore {
namespace {

constexpr char kRootMagic[8] = {'C', 'O', 'F', 'F', 'R', 'O', 'O', 'T'};
constexpr uint32_t kRootVersion = 1;
constexpr size_t kRootHeader = 16;

void EncodeChunkList(const std::vector<ChunkRef>& v, std::string* out) {
  PutVarint64(out, v.size());
  for (const ChunkRef& c : v) {
    out->append(reinterpret_cast<const char*>(c.id.data()), 32);
    PutVarint64(out, c.length);
  }
}

bool DecodeChunkList(std::string_view* in, std::vector<ChunkRef>* v) {
  uint64_t n;
  if (!GetVarint64(in, &n) || n > in->size() / 33) return false;
  v->resize(n);
  for (ChunkRef& c : *v) {
    std::string_view id;
    uint64_t len;
    if (!GetBytes(in, 32, &id) || !GetVarint64(in, &len) || len > UINT32_MAX) return false;
    std::memcpy(c.id.data(), id.data(), 32);
    c.length = static_cast<uint32_t>(len);
  }
  return true;
}

bool GetString(std::string_view* in, std::string* s) {
  std::string_view v;
  if (!GetLengthPrefixed(in, &v)) return false;
  s->assign(v);
  return true;
}

}  // namespace

uint64_t BlobRoot::stored_size() const {
  uint64_t sum = 0;
  for (const ChunkRef& c : chunks) sum += c.length;
  return sum;
}

// An encoded blob appends its encoding; a plain one ends after the chunk list
// (the format of roots written before encodings existed).
void EncodeBlobRoot(const BlobRoot& r, std::string* out) {
  PutLengthPrefixed(out, r.digest);
  PutVarint64(out, r.size);
  EncodeChunkList(r.chunks, out);
  if (!r.encoding.empty()) PutLengthPrefixed(out, r.encoding);
}

Status DecodeBlobRoot(std::string_view in, BlobRoot* r, std::string_view what) {
  if (!GetString(&in, &r->digest) || !GetVarint64(&in, &r->size) ||
      !DecodeChunkList(&in, &r->chunks))
    return Status::Corruption(std::string(what) + ": malformed blob root");
  r->encoding.clear();
  if (!in.empty() && (!GetString(&in, &r->encoding) || r->encoding.empty() || !in.empty()))
    return Status::Corruption(std::string(what) + ": malformed blob root encoding");
  if (r->encoding.empty() && r->stored_size() != r->size)
    return Status::Corruption(std::string(what) + ": blob size mismatch");
  return Status::OK();
}

void EncodeSnapshotRoot(const SnapshotRoot& r, std::string* out) {
  const SnapshotInfo& i = r.info;
  PutLengthPrefixed(out, i.id);
  PutLengthPrefixed(out, i.set);
  PutLengthPrefixed(out, i.tag);
  PutVarsint64(out, i.time_ns);
  PutLengthPrefixed(out, i.host);
  PutVarint64(out, i.paths.size());
  for (const std::string& p : i.paths) PutLengthPrefixed(out, p);
  for (uint64_t v : {i.files, i.dirs, i.bytes, i.new_bytes, i.files_read}) PutVarint64(out, v);
  PutVarint64(out, r.tree_len);
  EncodeChunkList(r.tree, out);
}

Status DecodeSnapshotRoot(std::string_view in, SnapshotRoot* r, std::string_view what) {
  SnapshotInfo& i = r->info;
  uint64_t npaths = 0;
  bool ok = GetString(&in, &i.id) && GetString(&in, &i.set) && GetString(&in, &i.tag) &&
            GetVarsint64(&in, &i.time_ns) && GetString(&in, &i.host) && GetVarint64(&in, &npaths) &&
            npaths <= in.size();
  i.paths.resize(ok ? npaths : 0);
  for (std::string& p : i.paths) ok = ok && GetString(&in, &p);
  for (uint64_t* v : {&i.files, &i.dirs, &i.bytes, &i.new_bytes, &i.files_read})
    ok = ok && GetVarint64(&in, v);
  ok = ok && GetVarint64(&in, &r->tree_len) && DecodeChunkList(&in, &r->tree) && in.empty();
  if (!ok) return Status::Corruption(std::string(what) + ": malformed snapshot root");
  return Status::OK();
}

std::string SealRoot(RootKind kind, std::string_view name, std::string_view plain,
                     const Aead& aead) {
  std::string out(kRootMagic, 8);
  PutFixed32(&out, kRootVersion);
  out.push_back(static_cast<char>(kind));
  out.append(3, '\0');
  std::string aad = out + std::string(name);  // a root cannot be renamed undetected
  aead.Seal(plain, aad, &out);
  PutFixed64(&out, XXH3_64bits(out.data(), out.size()));
  return out;
}

Status VerifyRootChecksum(std::string_view file, std::string_view name) {
  std::string what = "root `" + std::string(name) + "`";
  if (file.size() < kRootHeader + Aead::kOverhead + 8 ||
      std::memcmp(file.data(), kRootMagic, 8) != 0)
    return Status::Corruption(what + ": not a coffer root file (bad magic or too short)");
  if (DecodeFixed32(file.data() + 8) != kRootVersion)
    return Status::Corruption(what + ": unsupported root version");
  if (XXH3_64bits(file.data(), file.size() - 8) != DecodeFixed64(file.data() + file.size() - 8))
    return Status::Corruption(what + ": checksum mismatch (bytes damaged)");
  return Status::OK();
}

Status OpenRoot(std::string_view file, std::string_view name, RootKind kind, const Aead& aead,
                std::string* plain) {
  RETURN_IF_ERROR(VerifyRootChecksum(file, name));
  std::string what = "root `" + std::string(name) + "`";
  if (static_cast<uint8_t>(file[12]) != static_cast<uint8_t>(kind))
    return Status::Corruption(what + ": wrong root kind");
  std::string aad = std::string(file.substr(0, kRootHeader)) + std::string(name);
  return aead.Open(file.substr(kRootHeader, file.size() - kRootHeader - 8), aad, plain, what);
}

}  // namespace chunkstore
