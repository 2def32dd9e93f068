// TreeSink: encodes tree entries into a stream and chunks it as it grows (with the
// repository's CDC, so an unchanged run of entries gives the same chunks), keeping
// memory bounded. Used by backup and by head saves.
#ifndef CHUNKSTORE_TREE_SINK_H_
#define CHUNKSTORE_TREE_SINK_H_

#include <string>
#include <vector>

#include "chunk_writer.h"
#include "fastcdc.h"
#include "tree.h"

namespace chunkstore {

class TreeSink {
 public:
  TreeSink(const FastCdc* cdc, ChunkWriter* w) : cdc_(cdc), w_(w) {}
  Status Add(const TreeEntry& e) {
    EncodeEntry(e, &buf_);
    if (buf_.size() >= 8 * cdc_->params().max_size) return Cut(false);
    return Status::OK();
  }
  Status Finish() { return Cut(true); }
  uint64_t length() const { return length_; }
  std::vector<ChunkRef>& chunks() { return chunks_; }

 private:
  Status Cut(bool eof) {
    size_t pos = 0;
    for (;;) {
      size_t n = cdc_->NextChunk(reinterpret_cast<const uint8_t*>(buf_.data()) + pos,
                                 buf_.size() - pos, eof);
      if (n == 0) break;
      std::string_view c(buf_.data() + pos, n);
      ASSIGN_OR_RETURN(ChunkRef ref, w_->Add(RecordKind::kTree, c));
      chunks_.push_back(ref);
      length_ += n;
      pos += n;
      if (!eof && buf_.size() - pos < cdc_->params().max_size) break;
    }
    buf_.erase(0, pos);
    return Status::OK();
  }
  const FastCdc* cdc_;
  ChunkWriter* w_;
  std::string buf_;
  std::vector<ChunkRef> chunks_;
  uint64_t length_ = 0;
};

}  // namespace chunkstore

#endif  // CHUNKSTORE_TREE_SINK_H_
