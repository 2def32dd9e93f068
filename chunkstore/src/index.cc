#include "index.h"

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include "coding.h"

namespace chunkstore {
namespace {

constexpr char kChunkPrefix = 'c';
constexpr char kPackPrefix = 'p';
constexpr size_t kLocSize = 16 + 8 + 4 + 4 + 4 + 1;

std::string ChunkKey(const ChunkId& id) {
  std::string k(1, kChunkPrefix);
  k.append(reinterpret_cast<const char*>(id.data()), id.size());
  return k;
}

std::string PackKey(const PackId& id) {
  std::string k(1, kPackPrefix);
  k.append(reinterpret_cast<const char*>(id.data()), id.size());
  return k;
}

std::string EncodeLoc(const ChunkLoc& l) {
  std::string s(reinterpret_cast<const char*>(l.pack.data()), l.pack.size());
  PutFixed64(&s, l.record_offset);
  PutFixed32(&s, l.record_len);
  PutFixed32(&s, l.offset_in_frame);
  PutFixed32(&s, l.length);
  s.push_back(static_cast<char>(l.kind));
  return s;
}

bool DecodeLoc(std::string_view v, ChunkLoc* l) {
  if (v.size() != kLocSize) return false;
  std::memcpy(l->pack.data(), v.data(), 16);
  l->record_offset = DecodeFixed64(v.data() + 16);
  l->record_len = DecodeFixed32(v.data() + 24);
  l->offset_in_frame = DecodeFixed32(v.data() + 28);
  l->length = DecodeFixed32(v.data() + 32);
  l->kind = static_cast<RecordKind>(v[36]);
  return true;
}

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::OK();
  std::string msg = std::string(what) + ": " + s.ToString();
  if (s.IsCorruption()) return Status::Corruption(msg);
  if (s.IsIOError() && s.ToString().find("lock") != std::string::npos)
    return Status::Unavailable(msg);
  if (s.IsNotFound() || s.IsPathNotFound()) return Status::NotFound(msg);
  return Status::IOError(msg);
}

}  // namespace

Index::Index(std::unique_ptr<rocksdb::DB> db, std::string path)
    : db_(std::move(db)), path_(std::move(path)) {}
Index::~Index() = default;

Result<std::unique_ptr<Index>> Index::Open(const std::string& path, bool read_only, bool create) {
  rocksdb::Options o;
  o.create_if_missing = create;
  o.max_open_files = 256;
  o.compression = rocksdb::kNoCompression;  // keys and values are random bytes
  o.info_log_level = rocksdb::InfoLogLevel::ERROR_LEVEL;
  o.keep_log_file_num = 2;
  rocksdb::BlockBasedTableOptions t;
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s =
      read_only ? rocksdb::DB::OpenForReadOnly(o, path, &raw) : rocksdb::DB::Open(o, path, &raw);
  if (!s.ok()) return FromRocks(s, "open index `" + path + "`");
  return std::unique_ptr<Index>(new Index(std::unique_ptr<rocksdb::DB>(raw), path));
}

Result<std::optional<ChunkLoc>> Index::Get(const ChunkId& id) const {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), ChunkKey(id), &v);
  if (s.IsNotFound()) return std::optional<ChunkLoc>();
  if (!s.ok()) return FromRocks(s, "look up chunk " + ToHex(id) + " in the index");
  ChunkLoc l;
  if (!DecodeLoc(v, &l))
    return Status::Corruption("index entry of chunk " + ToHex(id) + " is malformed");
  return std::optional<ChunkLoc>(l);
}

Status Index::AddPack(const PackId& pack, const PackEntry& entry,
                      const std::vector<std::pair<ChunkId, ChunkLoc>>& chunks) {
  rocksdb::WriteBatch b;
  for (const auto& [id, loc] : chunks) b.Put(ChunkKey(id), EncodeLoc(loc));
  std::string v;
  PutFixed64(&v, entry.size);
  PutFixed32(&v, entry.records);
  PutFixed32(&v, entry.chunks);
  b.Put(PackKey(pack), v);
  rocksdb::WriteOptions wo;
  wo.sync = true;  // the root that refers to these chunks is written next
  return FromRocks(db_->Write(wo, &b), "add pack " + PackPath(pack) + " to the index");
}

Status Index::RemovePack(const PackId& pack, const std::vector<ChunkId>& chunks) {
  rocksdb::WriteBatch b;
  for (const ChunkId& id : chunks) {
    auto loc = Get(id);
    if (!loc.ok()) return loc.status();
    if (loc->has_value() && (*loc)->pack == pack) b.Delete(ChunkKey(id));
  }
  b.Delete(PackKey(pack));
  rocksdb::WriteOptions wo;
  wo.sync = true;  // the pack file is deleted next
  return FromRocks(db_->Write(wo, &b), "remove pack " + PackPath(pack) + " from the index");
}

Status Index::ForEachPack(const std::function<void(const PackId&, const PackEntry&)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(std::string(1, kPackPrefix)); it->Valid() && it->key()[0] == kPackPrefix;
       it->Next()) {
    if (it->key().size() != 17 || it->value().size() != 16)
      return Status::Corruption("index `" + path_ + "`: malformed pack entry");
    PackId id;
    std::memcpy(id.data(), it->key().data() + 1, 16);
    PackEntry e;
    e.size = DecodeFixed64(it->value().data());
    e.records = DecodeFixed32(it->value().data() + 8);
    e.chunks = DecodeFixed32(it->value().data() + 12);
    fn(id, e);
  }
  return FromRocks(it->status(), "scan packs in index `" + path_ + "`");
}

Status Index::ForEachChunk(const std::function<void(const ChunkId&, const ChunkLoc&)>& fn) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(std::string(1, kChunkPrefix)); it->Valid() && it->key()[0] == kChunkPrefix;
       it->Next()) {
    ChunkId id;
    ChunkLoc loc;
    if (it->key().size() != 33 || !DecodeLoc(it->value().ToStringView(), &loc))
      return Status::Corruption("index `" + path_ + "`: malformed chunk entry");
    std::memcpy(id.data(), it->key().data() + 1, 32);
    fn(id, loc);
  }
  return FromRocks(it->status(), "scan chunks in index `" + path_ + "`");
}

}  // namespace chunkstore
