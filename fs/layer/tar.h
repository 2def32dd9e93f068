// Streaming tar scanner: splits an uncompressed tar stream into RAW segments
// (header blocks, pax and GNU extension blocks with their data, padding, the
// end-of-archive blocks and anything after them) and FILE-CONTENT segments (each
// member's data bytes, with the member's resolved metadata).
//
// Invariant: the bytes handed to the sink, in call order, are exactly the bytes
// fed, as long as every call returned OK. The scanner keeps at most one header
// block, one extension payload (bounded by kMaxExtensionBytes) and a small raw
// buffer, so it runs over streams of any length in bounded memory.
//
// Formats: v7, ustar (prefix+name), GNU (L/K long names, old 'S' sparse with its
// extension blocks), pax ('x' local and 'g' global records, SCHILY.xattr.*,
// GNU.sparse.*). Numeric fields in octal or base-256. The first all-zero header
// block ends the archive; everything after it (more zero blocks, a record's
// padding, garbage) is one trailing RAW run. A stream that ends cleanly on a
// header boundary without zero blocks is accepted (saw_end_marker() is false).
#ifndef COFFERLAYER_TAR_H_
#define COFFERLAYER_TAR_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chunkstore/status.h"

namespace cofferlayer {

using chunkstore::Result;
using chunkstore::Status;

inline constexpr size_t kTarBlock = 512;
// A pax or GNU long-name payload larger than this is refused (Corruption).
inline constexpr uint64_t kMaxExtensionBytes = 8 << 20;

struct TarMember {
  std::string path;      // pax path > GNU.sparse.name > GNU 'L' > ustar prefix/name > name
  std::string linkname;  // pax linkpath > GNU 'K' > header linkname
  char type = '0';       // the header's typeflag ('\0' is reported as '0')
  uint32_t mode = 0;
  int64_t uid = 0, gid = 0;
  int64_t mtime = 0;  // seconds; a pax fractional part is dropped
  std::string uname, gname;
  uint64_t size = 0;       // data bytes stored in the archive = the content segment
  uint64_t real_size = 0;  // logical file size (differs from size for sparse members)
  bool sparse = false;     // GNU 'S' or pax GNU.sparse.*: the content is the stored data
  std::vector<std::pair<std::string, std::string>> xattrs;  // SCHILY.xattr.<name>, in order
  uint64_t header_offset = 0;  // first raw byte of this member (its first extension block)
  uint64_t data_offset = 0;    // first byte of the content segment
};

// Receives the segments. A content segment is OnMemberBegin, any number of
// OnMemberData pieces (none for an empty member) and OnMemberEnd; every member,
// directories and links included, gets one. Raw runs may arrive in several
// OnRaw pieces. A non-OK return stops the scanner with that Status.
class TarSink {
 public:
  virtual ~TarSink() = default;
  virtual Status OnRaw(std::string_view bytes) = 0;
  virtual Status OnMemberBegin(const TarMember& member) = 0;
  virtual Status OnMemberData(std::string_view bytes) = 0;
  virtual Status OnMemberEnd() = 0;
};

// One scanner per stream; not thread-safe. After an error every call returns
// that error again and the sink has seen a prefix of the input only.
class TarScanner {
 public:
  explicit TarScanner(TarSink* sink) : sink_(sink) {}
  TarScanner(const TarScanner&) = delete;
  TarScanner& operator=(const TarScanner&) = delete;

  // Pieces of any size, in stream order.
  Status Feed(std::string_view data);
  // End of input: flushes the raw buffer; Corruption if the stream stopped
  // inside a header or a member.
  Status Finish();

  uint64_t offset() const { return offset_; }
  bool saw_end_marker() const { return state_ == State::kTrailer; }
  uint64_t member_count() const { return members_; }

 private:
  enum class State { kHeader, kExtension, kSparseExt, kData, kPadding, kTrailer };
  Status Step(std::string_view& in);
  Status FillBlock(std::string_view& in);
  Status OnHeaderBlock();
  Status OnExtensionDone();
  Status BuildMember();
  Status ApplyPax(TarMember* m) const;
  Status StartMember();
  Status Consume(std::string_view& in, bool as_data);
  Status EmitRaw(std::string_view bytes);
  Status FlushRaw();
  Status Fail(Status s);
  Status Error(std::string_view what) const;
  std::string CurrentName() const;

  TarSink* sink_;
  State state_ = State::kHeader;
  Status error_;
  uint64_t offset_ = 0;  // bytes consumed
  uint64_t members_ = 0;
  std::string block_;        // the block being assembled
  std::string raw_;          // raw bytes not yet handed to the sink
  std::string ext_payload_;  // data of the current 'x'/'g'/'L'/'K' member
  char ext_type_ = 0;
  uint64_t remaining_ = 0;       // bytes left in the current data/extension/padding
  uint64_t pad_after_ = 0;       // padding that follows the current data/extension
  uint64_t block_start_ = 0;     // offset of the header block being parsed
  uint64_t member_start_ = 0;    // offset of the member's first raw block
  bool member_started_ = false;  // a pending member has consumed some raw blocks
  std::string long_name_, long_link_;
  std::vector<std::pair<std::string, std::string>> pax_local_, pax_global_;
  TarMember member_;  // the member being read
};

// Entry names that must not reach a file tree: empty, absolute, a ".." component,
// or a NUL byte. OK for a safe name; InvalidArgument saying why otherwise.
Status ValidateEntryName(std::string_view name);

enum class WhiteoutKind { kNone, kFile, kOpaque };
// ".wh..wh..opq" in a directory -> kOpaque; "dir/.wh.name" -> kFile with
// *target = "dir/name"; anything else -> kNone. target may be null.
WhiteoutKind ClassifyWhiteout(std::string_view path, std::string* target);

}  // namespace cofferlayer

#endif  // COFFERLAYER_TAR_H_
