// Garbage collection: mark every chunk a root names, then sweep pack by pack.
//
//  - A pack none of whose chunk copies is live is dropped: index entries first,
//    then the file (a crash in between leaves an unindexed pack that the next
//    open indexes again: nothing lost, space reclaimed by the next gc).
//  - A pack with a fifth or more of its bytes dead is repacked: its live
//    chunks are re-stored through the ChunkWriter into new packs, which become
//    durable and indexed (index now points at the new copies) before the old pack
//    is dropped as above.
//
// Any root that cannot be read aborts gc before anything is deleted: a chunk is
// only dead when we are sure nothing names it. The writer lock keeps other
// processes (backups, puts) out for the duration; they wait with --lock-wait.
#include <unordered_set>

#include "repo_impl.h"

namespace chunkstore {

Status RepositoryImpl::MarkLive(std::vector<std::string>* problems, bool strict,
                                std::function<void(const ChunkId&)> mark) {
  ASSIGN_OR_RETURN(auto blobs, LoadBlobRoots());
  for (const BlobRoot& b : blobs)
    for (const ChunkRef& c : b.chunks) mark(c.id);
  ASSIGN_OR_RETURN(auto snaps, LoadSnapshotRoots());
  ASSIGN_OR_RETURN(auto heads, LoadHeadRoots());
  for (SnapshotRoot& h : heads) snaps.push_back(std::move(h));
  for (const SnapshotRoot& s : snaps) {
    for (const ChunkRef& c : s.tree) mark(c.id);
    Status st = ForEachEntry(s, [&](TreeEntry& e) {
      for (const ChunkRef& c : e.chunks) mark(c.id);
      return Status::OK();
    });
    if (!st.ok()) {
      if (strict)
        return st.Annotate("gc: cannot read snapshot " + s.info.set + "@" + s.info.id +
                           "; nothing was deleted");
      problems->push_back(st.message());
    }
  }
  return Status::OK();
}

Result<GcReport> RepositoryImpl::Gc(const ProgressFn& progress,
                                    const std::vector<ChunkId>& also_live) {
  RETURN_IF_ERROR(RequireWriter());
  RETURN_IF_ERROR(writer_->Flush());
  std::unordered_set<ChunkId, ChunkIdHash> live(also_live.begin(), also_live.end());
  std::vector<std::string> problems;
  RETURN_IF_ERROR(MarkLive(&problems, true, [&](const ChunkId& id) { live.insert(id); }));
  GcReport rep;
  rep.live_chunks = live.size();
  ASSIGN_OR_RETURN(auto files, ListPackFiles(env_, dir_));
  Progress p{"gc", 0, files.size()};
  struct Victim {
    PackId id;
    std::vector<ChunkId> chunks;
    uint64_t size;
  };
  std::vector<Victim> drop;
  for (const std::string& rel : files) {
    PackId id;
    ParsePackName(rel.substr(rel.rfind('/') + 1), &id);
    Victim v{id, {}, 0};
    uint64_t live_bytes = 0, all_bytes = 0;
    std::vector<std::pair<ChunkRef, RecordKind>> keep;
    Status bad;
    Status st = ScanPack(
        env_, dir_, rel,
        [&](const ScannedRecord& r) {
          if (!r.status.ok() || !r.meta_ok) {
            if (bad.ok())
              bad = r.status.ok() ? Status::Corruption(rel + ": unreadable record") : r.status;
            return;
          }
          for (const ChunkRef& c : r.meta.chunks) {
            v.chunks.push_back(c.id);
            all_bytes += c.length;
            auto loc = index_->Get(c.id);
            if (!loc.ok() && bad.ok()) bad = loc.status();
            bool useful = live.count(c.id) && loc.ok() && loc->has_value() && (*loc)->pack == id;
            if (useful) {
              live_bytes += c.length;
              keep.push_back({c, r.meta.header.kind});
            } else {
              ++rep.dead_chunks;
            }
          }
        },
        &v.size);
    ++p.items_done;
    p.current = rel;
    if (progress) progress(p);
    // With a damaged pack, "dead" may only mean "its live copy is unreadable":
    // stop before deleting anything and let check/repair speak first.
    if (st.ok()) st = bad;
    if (!st.ok())
      return st.Annotate("gc stopped before deleting anything; run `coffer check --read-data`");
    if (live_bytes == 0) {
      drop.push_back(std::move(v));
    } else if (live_bytes * 5 <= all_bytes * 4) {  // a fifth or more dead: rewrite it
      std::string data;
      for (const auto& [c, kind] : keep) {
        data.clear();
        RETURN_IF_ERROR(reader_->Read(c.id, &data).Annotate("gc: repack " + rel));
        RETURN_IF_ERROR(writer_->AddForced(kind, c.id, data));
      }
      ++rep.packs_repacked;
      drop.push_back(std::move(v));
    }
  }
  RETURN_IF_ERROR(writer_->Flush());  // new copies durable and indexed first
  for (const Victim& v : drop) {
    RETURN_IF_ERROR(index_->RemovePack(v.id, v.chunks));
    reader_->Evict(v.id);
    std::string path = JoinPath(dir_, PackPath(v.id));
    RETURN_IF_ERROR(env_->RemoveFile(path));
    RETURN_IF_ERROR(env_->SyncDir(DirName(path)));
    ++rep.packs_deleted;
    rep.bytes_freed += v.size;
  }
  return rep;
}

}  // namespace chunkstore
