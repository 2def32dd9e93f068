// check, check --read-data and repair --rebuild-index.
//
// Structure check (no key): every pack is read whole; its header, each record's
// XXH3 and the trailer are verified, and the index is compared with the packs.
// Data check (key): additionally every record is decrypted, every chunk id is
// recomputed, and every blob and snapshot is walked so each damaged chunk is
// reported as the blob, snapshot or file it belongs to.
#include <filesystem>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "coding.h"
#include "repo_impl.h"

namespace chunkstore {

bool ParsePackName(std::string_view name, PackId* id) {
  return FromHex(name, id->data(), id->size());
}

Result<std::vector<std::string>> ListPackFiles(Env* env, const std::string& dir) {
  std::vector<std::string> out;
  auto subs = env->GetChildren(JoinPath(dir, kPacksDir));
  if (!subs.ok())
    return subs.status().IsNotFound() ? out : Result<std::vector<std::string>>(subs.status());
  for (const std::string& s : *subs) {
    if (s.size() != 2) continue;
    ASSIGN_OR_RETURN(auto files, env->GetChildren(JoinPath(dir, std::string(kPacksDir) + "/" + s)));
    for (const std::string& f : files) {
      PackId id;
      if (ParsePackName(f, &id)) out.push_back(std::string(kPacksDir) + "/" + s + "/" + f);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Reads a pack into memory (packs are tens of MiB) and hands out its records. The
// trailer is preferred; if it is damaged, records are walked from the header on,
// each one's length taken from its own header, so one bad trailer loses nothing.
Status ScanPack(Env* env, const std::string& dir, const std::string& rel,
                const std::function<void(const ScannedRecord&)>& fn, uint64_t* size) {
  ASSIGN_OR_RETURN(auto f, env->NewRandomAccessFile(JoinPath(dir, rel)));
  ASSIGN_OR_RETURN(uint64_t n, f->Size());
  if (size) *size = n;
  std::string data(n, '\0');
  ASSIGN_OR_RETURN(size_t got, f->Read(0, n, data.data()));
  if (got != n) return Status::IOError("read pack `" + rel + "`: short read");
  PackId id;
  RETURN_IF_ERROR(DecodePackHeader(data, &id, "pack " + rel));
  PackId want;
  if (!ParsePackName(rel.substr(rel.rfind('/') + 1), &want) || want != id)
    return Status::Corruption("pack " + rel + ": header names a different pack");
  std::vector<PackRecordPos> pos;
  Status trailer = Status::Corruption("pack " + rel + ": too short for a trailer");
  if (n >= kPackHeaderSize + kTrailerFixedSize) {
    auto cnt =
        DecodeTrailerTail(std::string_view(data).substr(n - kTrailerFixedSize), "pack " + rel);
    trailer = cnt.status();
    if (cnt.ok()) {
      uint64_t tlen = 12ull * *cnt + kTrailerFixedSize;
      trailer = tlen > n - kPackHeaderSize
                    ? Status::Corruption("pack " + rel + ": trailer record count is impossible")
                    : DecodeTrailerEntries(std::string_view(data).substr(n - tlen), *cnt, &pos,
                                           "pack " + rel);
    }
  }
  if (!trailer.ok()) {
    pos.clear();
    for (uint64_t off = kPackHeaderSize; off + RecordHeader::kSize <= n;) {
      RecordMeta m;
      if (!DecodeRecordMeta(std::string_view(data).substr(off), &m, "").ok()) break;
      uint64_t len = m.header.RecordSize();
      if (off + len > n) break;
      pos.push_back({off, static_cast<uint32_t>(len)});
      off += len;
    }
  }
  for (const PackRecordPos& p : pos) {
    ScannedRecord r;
    r.offset = p.offset;
    std::string what = "pack " + rel + ": record at +" + std::to_string(p.offset);
    if (p.offset + p.length > n || p.offset < kPackHeaderSize) {
      r.status = Status::Corruption(what + ": lies outside the pack");
      fn(r);
      continue;
    }
    r.bytes = std::string_view(data).substr(p.offset, p.length);
    r.status = DecodeRecordMeta(r.bytes, &r.meta, what);
    r.meta_ok = r.status.ok() && r.meta.header.RecordSize() == p.length;
    if (r.status.ok() && !r.meta_ok) r.status = Status::Corruption(what + ": length mismatch");
    if (r.meta_ok) r.status = VerifyRecordChecksum(r.bytes, r.meta, what);
    fn(r);
  }
  return trailer;
}

namespace {

// Shared by both check modes: structure of packs, roots and index.
struct StructureCheck {
  Env* env;
  std::string dir;
  CheckReport report;
  std::set<PackId> packs_on_disk;
  // Called with each record that passed its checksum (for the data check).
  std::function<void(const std::string& rel, const ScannedRecord&)> on_record;
  std::function<void(const std::string& rel, const ScannedRecord&)> on_bad_record;
  ProgressFn progress;

  Status Run(Index* index) {
    ASSIGN_OR_RETURN(auto files, ListPackFiles(env, dir));
    Progress p{"check", 0, files.size()};
    for (const std::string& rel : files) {
      PackId id;
      ParsePackName(rel.substr(rel.rfind('/') + 1), &id);
      packs_on_disk.insert(id);
      uint64_t size = 0;
      Status st = ScanPack(
          env, dir, rel,
          [&](const ScannedRecord& r) {
            ++report.records;
            if (!r.status.ok()) {
              report.problems.push_back(r.status.message());
              if (on_bad_record) on_bad_record(rel, r);
              return;
            }
            report.chunks += r.meta.chunks.size();
            if (on_record) on_record(rel, r);
          },
          &size);
      if (!st.ok()) report.problems.push_back(st.message());
      ++report.packs;
      report.bytes_read += size;
      p.items_done++;
      p.bytes_done += size;
      p.current = rel;
      if (progress) progress(p);
    }
    CheckRoots();
    if (index != nullptr) RETURN_IF_ERROR(CheckIndex(index));
    return Status::OK();
  }

  void CheckRoots() {
    for (const char* d : {kBlobRootsDir, kSnapshotRootsDir, kHeadRootsDir}) {
      auto names = env->GetChildren(JoinPath(dir, d));
      if (!names.ok()) {
        if (names.status().IsNotFound() && std::string(d) == kHeadRootsDir) continue;
        report.problems.push_back(names.status().message());
        continue;
      }
      for (const std::string& n : *names) {
        if (n.find('.') != std::string::npos) continue;  // *.tmp of an interrupted write
        std::string rel = std::string(d) + "/" + n, file;
        Status st = env->ReadFileToString(JoinPath(dir, rel), &file);
        if (st.ok()) st = VerifyRootChecksum(file, rel);
        if (!st.ok()) report.problems.push_back(st.message());
      }
    }
  }

  Status CheckIndex(Index* index) {
    std::set<PackId> missing;
    RETURN_IF_ERROR(index->ForEachChunk([&](const ChunkId&, const ChunkLoc& l) {
      if (!packs_on_disk.count(l.pack)) missing.insert(l.pack);
    }));
    for (const PackId& id : missing)
      report.problems.push_back("index refers to pack " + PackPath(id) +
                                ", which is missing (run `coffer repair --rebuild-index`)");
    return Status::OK();
  }
};

}  // namespace

Result<CheckReport> Repository::CheckStructure(const std::string& dir, const OpenOptions& opts,
                                               const ProgressFn& progress) {
  Env* env = opts.env ? opts.env : Env::Default();
  RepoConfig cfg;
  RETURN_IF_ERROR(ReadConfig(env, dir, &cfg));
  StructureCheck c{env, dir};
  c.progress = progress;
  std::unique_ptr<Index> index;
  auto idx = Index::Open(IndexPath(dir, opts), true, false);
  if (idx.ok())
    index = std::move(idx).value();
  else
    c.report.problems.push_back(idx.status().message() + " (run `coffer repair --rebuild-index`)");
  RETURN_IF_ERROR(c.Run(index.get()));
  return c.report;
}

Result<CheckReport> RepositoryImpl::CheckData(const ProgressFn& progress) {
  if (writer_) RETURN_IF_ERROR(writer_->Flush());
  StructureCheck c{env_, dir_};
  c.progress = progress;
  std::unordered_set<ChunkId, ChunkIdHash> good, bad;
  std::string plain;
  c.on_record = [&](const std::string& rel, const ScannedRecord& r) {
    std::string what = "pack " + rel + ": record at +" + std::to_string(r.offset);
    Status st = OpenRecord(r.bytes, r.meta, keys_->data, &plain, what);
    size_t off = 0;
    for (const ChunkRef& ch : r.meta.chunks) {
      bool ok = st.ok() &&
                keys_->chunk_id.Compute(std::string_view(plain).substr(off, ch.length)) == ch.id;
      off += ch.length;
      (ok ? good : bad).insert(ch.id);
      if (st.ok() && !ok)
        c.report.problems.push_back(what + ": chunk " + ToHex(ch.id) + " has wrong content");
    }
    if (!st.ok()) c.report.problems.push_back(st.message());
  };
  c.on_bad_record = [&](const std::string&, const ScannedRecord& r) {
    if (r.meta_ok)
      for (const ChunkRef& ch : r.meta.chunks) bad.insert(ch.id);
  };
  RETURN_IF_ERROR(c.Run(index_.get()));
  // A chunk is damaged if no intact copy of it exists anywhere.
  auto damaged = [&](const ChunkId& id) { return !good.count(id); };
  std::vector<std::string>& out = c.report.problems;
  auto blobs = LoadBlobRoots();
  if (!blobs.ok())
    out.push_back(blobs.status().message());
  else
    for (const BlobRoot& b : *blobs) {
      size_t n = 0;
      for (const ChunkRef& ch : b.chunks) n += damaged(ch.id);
      if (n)
        out.push_back("blob " + b.digest + ": " + std::to_string(n) + " of " +
                      std::to_string(b.chunks.size()) + " chunks damaged or missing");
    }
  auto snaps = LoadSnapshotRoots();
  auto heads = LoadHeadRoots();
  if (!heads.ok())
    out.push_back(heads.status().message());
  else if (snaps.ok())
    for (SnapshotRoot& h : *heads) {
      h.info.id = "current";
      snaps->push_back(std::move(h));
    }
  if (!snaps.ok())
    out.push_back(snaps.status().message());
  else
    for (const SnapshotRoot& s : *snaps) {
      std::string name = "snapshot " + s.info.set + "@" + s.info.id;
      bool tree_ok = true;
      for (const ChunkRef& ch : s.tree) tree_ok = tree_ok && !damaged(ch.id);
      if (!tree_ok) {
        out.push_back(name + ": its tree is damaged; the whole snapshot is unreadable");
        continue;
      }
      Status st = ForEachEntry(s, [&](TreeEntry& e) {
        size_t n = 0;
        for (const ChunkRef& ch : e.chunks) n += damaged(ch.id);
        if (n)
          out.push_back(name + ": file `" + e.path + "` damaged (" + std::to_string(n) +
                        " chunks)");
        return Status::OK();
      });
      if (!st.ok()) out.push_back(name + ": " + st.message());
    }
  return c.report;
}

Result<RepairReport> Repository::RebuildIndex(const std::string& dir, const OpenOptions& opts,
                                              const ProgressFn& progress) {
  Env* env = opts.env ? opts.env : Env::Default();
  RepoConfig cfg;
  RETURN_IF_ERROR(ReadConfig(env, dir, &cfg));
  int stale = 0;
  ASSIGN_OR_RETURN(auto lock, env->LockFile(JoinPath(dir, kLockFile), &stale));
  std::string ipath = IndexPath(dir, opts);
  std::error_code ec;
  std::filesystem::remove_all(ipath, ec);
  if (ec) return Status::IOError("remove old index `" + ipath + "`: " + ec.message());
  ASSIGN_OR_RETURN(auto index, Index::Open(ipath, false, true));
  ASSIGN_OR_RETURN(auto files, ListPackFiles(env, dir));
  RepairReport rep;
  Progress p{"repair", 0, files.size()};
  for (const std::string& rel : files) {
    PackId id;
    ParsePackName(rel.substr(rel.rfind('/') + 1), &id);
    std::vector<std::pair<ChunkId, ChunkLoc>> chunks;
    PackEntry e;
    Status st = ScanPack(
        env, dir, rel,
        [&](const ScannedRecord& r) {
          if (!r.status.ok()) {
            rep.problems.push_back(r.status.message() + " (record skipped)");
            return;
          }
          ++e.records;
          uint32_t off = 0;
          for (const ChunkRef& c : r.meta.chunks) {
            chunks.push_back({c.id, ChunkLoc{id, r.offset, static_cast<uint32_t>(r.bytes.size()),
                                             off, c.length, r.meta.header.kind}});
            off += c.length;
          }
        },
        &e.size);
    if (!st.ok()) rep.problems.push_back(st.message());
    if (st.ok() || !chunks.empty()) {
      e.chunks = static_cast<uint32_t>(chunks.size());
      RETURN_IF_ERROR(index->AddPack(id, e, chunks));
      ++rep.packs;
      rep.chunks += chunks.size();
    }
    ++p.items_done;
    p.current = rel;
    if (progress) progress(p);
  }
  return rep;
}

}  // namespace chunkstore
