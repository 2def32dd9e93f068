#include "format.h"

#include <xxhash.h>
#include <zstd.h>

#include <cstring>
#include <memory>

#include "coding.h"

namespace chunkstore {
namespace {

void EncodeHeaderAndTable(const RecordHeader& h, const std::vector<ChunkRef>& chunks,
                          std::string* out) {
  out->push_back(static_cast<char>(h.kind));
  out->push_back(static_cast<char>(h.flags));
  PutFixed16(out, h.n_chunks);
  PutFixed32(out, h.plain_len);
  PutFixed32(out, h.body_len);
  PutFixed32(out, 0);
  for (const ChunkRef& c : chunks) {
    out->append(reinterpret_cast<const char*>(c.id.data()), c.id.size());
    PutFixed32(out, c.length);
  }
}

// Compresses into a per-thread buffer with a per-thread context, both reused:
// ZSTD_compress would set up a fresh context for every frame, and a
// std::string of ZSTD_compressBound bytes is zero-filled before zstd writes
// it. The view is valid until the thread's next call; empty on error.
std::string_view Compress(std::string_view plain, int level) {
  struct Scratch {
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    std::unique_ptr<char[]> buf;
    size_t cap = 0;
    ~Scratch() { ZSTD_freeCCtx(cctx); }
  };
  thread_local Scratch s;
  const size_t bound = ZSTD_compressBound(plain.size());
  if (s.cap < bound) {
    s.buf = std::make_unique_for_overwrite<char[]>(bound);
    s.cap = bound;
  }
  if (s.cctx == nullptr) return {};
  size_t n = ZSTD_compressCCtx(s.cctx, s.buf.get(), bound, plain.data(), plain.size(), level);
  if (ZSTD_isError(n)) return {};
  return {s.buf.get(), n};
}

}  // namespace

void EncodeRecord(RecordKind kind, const std::vector<ChunkRef>& chunks, std::string_view plain,
                  int zstd_level, const Aead& aead, std::string* out) {
  RecordHeader h;
  h.kind = kind;
  h.n_chunks = static_cast<uint16_t>(chunks.size());
  h.plain_len = static_cast<uint32_t>(plain.size());
  std::string_view z = zstd_level > 0 ? Compress(plain, zstd_level) : std::string_view();
  // Keep the compressed form only when it saves at least 1/32: below that the
  // decompression cost on every read buys almost nothing.
  bool use_z = !z.empty() && z.size() + plain.size() / 32 < plain.size();
  std::string_view payload = use_z ? z : plain;
  h.flags = use_z ? kRecordFlagZstd : 0;
  h.body_len = static_cast<uint32_t>(payload.size() + Aead::kOverhead);
  size_t start = out->size();
  EncodeHeaderAndTable(h, chunks, out);
  std::string aad = out->substr(start);  // header and table are authenticated too
  aead.Seal(payload, aad, out);
  PutFixed64(out, XXH3_64bits(out->data() + start, out->size() - start));
}

Status DecodeRecordMeta(std::string_view in, RecordMeta* meta, std::string_view what) {
  auto bad = [&](const char* why) { return Status::Corruption(std::string(what) + ": " + why); };
  if (in.size() < RecordHeader::kSize) return bad("truncated record header");
  RecordHeader& h = meta->header;
  uint8_t kind = static_cast<uint8_t>(in[0]);
  if (kind != 1 && kind != 2) return bad("unknown record kind");
  h.kind = static_cast<RecordKind>(kind);
  h.flags = static_cast<uint8_t>(in[1]);
  h.n_chunks = DecodeFixed16(in.data() + 2);
  h.plain_len = DecodeFixed32(in.data() + 4);
  h.body_len = DecodeFixed32(in.data() + 8);
  if ((h.flags & ~kRecordFlagZstd) != 0 || DecodeFixed32(in.data() + 12) != 0)
    return bad("reserved bits set in record header");
  if (h.n_chunks == 0 || h.n_chunks > RecordHeader::kMaxChunks) return bad("bad chunk count");
  if (h.body_len < Aead::kOverhead) return bad("bad body length");
  size_t table = RecordHeader::kTableEntrySize * h.n_chunks;
  if (in.size() < RecordHeader::kSize + table) return bad("truncated chunk table");
  meta->chunks.resize(h.n_chunks);
  uint64_t sum = 0;
  const char* p = in.data() + RecordHeader::kSize;
  for (ChunkRef& c : meta->chunks) {
    std::memcpy(c.id.data(), p, 32);
    c.length = DecodeFixed32(p + 32);
    sum += c.length;
    p += RecordHeader::kTableEntrySize;
  }
  if (sum != h.plain_len) return bad("chunk lengths do not add up to the frame length");
  return Status::OK();
}

Status VerifyRecordChecksum(std::string_view record, const RecordMeta& meta,
                            std::string_view what) {
  size_t n = meta.header.RecordSize();
  if (record.size() < n) return Status::Corruption(std::string(what) + ": truncated record");
  uint64_t want = DecodeFixed64(record.data() + n - 8);
  if (XXH3_64bits(record.data(), n - 8) != want)
    return Status::Corruption(std::string(what) + ": checksum mismatch (bytes damaged)");
  return Status::OK();
}

Status OpenRecord(std::string_view record, const RecordMeta& meta, const Aead& aead,
                  std::string* plain, std::string_view what) {
  ByteBuffer out, scratch;
  RETURN_IF_ERROR(OpenRecord(record, meta, aead, &out, &scratch, what));
  plain->assign(out.data(), out.size());
  return Status::OK();
}

// plain_len comes from the header, which GCM authenticates only with the body:
// nothing is sized by it before that (a damaged header must not allocate GiBs).
Status OpenRecord(std::string_view record, const RecordMeta& meta, const Aead& aead,
                  ByteBuffer* plain, ByteBuffer* scratch, std::string_view what) {
  const RecordHeader& h = meta.header;
  size_t aad_len = RecordHeader::kSize + RecordHeader::kTableEntrySize * h.n_chunks;
  std::string_view aad = record.substr(0, aad_len);
  std::string_view body = record.substr(aad_len, h.body_len);
  size_t sealed_plain = body.size() < Aead::kOverhead ? 0 : body.size() - Aead::kOverhead;
  if (!(h.flags & kRecordFlagZstd)) {
    if (sealed_plain != h.plain_len)
      return Status::Corruption(std::string(what) + ": frame length mismatch");
    plain->Resize(h.plain_len);  // bounded by the record's length
    return aead.Open(body, aad, plain->data(), what);
  }
  scratch->Resize(sealed_plain);
  RETURN_IF_ERROR(aead.Open(body, aad, scratch->data(), what));
  plain->Resize(h.plain_len);  // authenticated now
  size_t n = ZSTD_decompress(plain->data(), h.plain_len, scratch->data(), scratch->size());
  if (ZSTD_isError(n) || n != h.plain_len)
    return Status::Corruption(std::string(what) + ": zstd frame does not decompress");
  return Status::OK();
}

std::string EncodePackHeader(const PackId& id) {
  std::string s(kPackMagic, 8);
  PutFixed32(&s, kPackVersion);
  PutFixed32(&s, 0);
  s.append(reinterpret_cast<const char*>(id.data()), id.size());
  return s;
}

Status DecodePackHeader(std::string_view in, PackId* id, std::string_view what) {
  if (in.size() < kPackHeaderSize || std::memcmp(in.data(), kPackMagic, 8) != 0)
    return Status::Corruption(std::string(what) + ": not a coffer pack (bad magic)");
  if (DecodeFixed32(in.data() + 8) != kPackVersion)
    return Status::Corruption(std::string(what) + ": unsupported pack version");
  std::memcpy(id->data(), in.data() + 16, 16);
  return Status::OK();
}

std::string EncodePackTrailer(const std::vector<PackRecordPos>& records) {
  std::string s;
  for (const PackRecordPos& r : records) {
    PutFixed64(&s, r.offset);
    PutFixed32(&s, r.length);
  }
  PutFixed32(&s, static_cast<uint32_t>(records.size()));
  PutFixed64(&s, XXH3_64bits(s.data(), s.size()));
  s.append(kTrailerMagic, 8);
  return s;
}

Result<uint32_t> DecodeTrailerTail(std::string_view tail, std::string_view what) {
  if (tail.size() != kTrailerFixedSize || std::memcmp(tail.data() + 12, kTrailerMagic, 8) != 0)
    return Status::Corruption(std::string(what) + ": pack trailer missing or damaged");
  return DecodeFixed32(tail.data());
}

Status DecodeTrailerEntries(std::string_view trailer, uint32_t n, std::vector<PackRecordPos>* out,
                            std::string_view what) {
  size_t body = 12 * static_cast<size_t>(n) + 4;
  if (trailer.size() != body + 16)
    return Status::Corruption(std::string(what) + ": pack trailer has the wrong size");
  if (XXH3_64bits(trailer.data(), body) != DecodeFixed64(trailer.data() + body))
    return Status::Corruption(std::string(what) + ": pack trailer checksum mismatch");
  out->resize(n);
  for (uint32_t i = 0; i < n; ++i) {
    (*out)[i].offset = DecodeFixed64(trailer.data() + 12 * i);
    (*out)[i].length = DecodeFixed32(trailer.data() + 12 * i + 8);
  }
  return Status::OK();
}

std::string PackPath(const PackId& id) {
  std::string hex = ToHex(id.data(), id.size());
  return "packs/" + hex.substr(0, 2) + "/" + hex;
}

}  // namespace chunkstore
