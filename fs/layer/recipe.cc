#include "recipe.h"

#include <xxhash.h>
#include <zlib.h>

#include "tokens.h"

namespace cofferlayer {
namespace {

constexpr std::string_view kMagic = "CLRC";

void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

void PutBytes(std::string* out, std::string_view b) {
  PutVarint(out, b.size());
  out->append(b);
}

uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
int64_t UnZigZag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

// Reads the fields in order; the first failure names the field and offset.
class Reader {
 public:
  explicit Reader(std::string_view b) : b_(b) {}
  bool ok() const { return ok_; }
  size_t pos() const { return pos_; }
  const std::string& failed_field() const { return field_; }

  uint8_t U8(const char* field) {
    if (!ok_ || pos_ >= b_.size()) return Fail(field), 0;
    return static_cast<uint8_t>(b_[pos_++]);
  }
  uint64_t Varint(const char* field) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (!ok_ || pos_ >= b_.size()) return Fail(field), 0;
      uint8_t c = static_cast<uint8_t>(b_[pos_++]);
      v |= static_cast<uint64_t>(c & 0x7f) << shift;
      if (!(c & 0x80)) {
        // Canonical: no trailing zero group, no bits beyond 64.
        if ((c == 0 && shift > 0) || (shift == 63 && c > 1)) return Fail(field), 0;
        return v;
      }
    }
    return Fail(field), 0;
  }
  std::string Bytes(const char* field) {
    uint64_t n = Varint(field);
    if (!ok_ || n > b_.size() - pos_) return Fail(field), std::string();
    std::string s(b_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  void Invalid(const std::string& field) {
    if (ok_) field_ = field;
    ok_ = false;
  }

 private:
  void Fail(const char* field) { Invalid(field); }
  std::string_view b_;
  size_t pos_ = 0;
  bool ok_ = true;
  std::string field_;
};

void EncodeMember(const MemberRecipe& m, std::string* out) {
  const EncoderSpec& e = m.encoder;
  PutBytes(out, m.header);
  out->push_back(static_cast<char>(e.id));
  PutVarint(out, ZigZag(e.level));
  out->push_back(static_cast<char>(e.window_bits));
  out->push_back(static_cast<char>(e.mem_level));
  out->push_back(static_cast<char>(e.strategy));
  PutVarint(out, e.block_size);
  out->push_back(static_cast<char>((e.checksum ? 1 : 0) | (e.content_size ? 2 : 0) |
                                   (e.multithread ? 4 : 0) | (e.independent ? 8 : 0) |
                                   (e.long_distance ? 16 : 0)));
  out->push_back(static_cast<char>(e.window_log));
  PutVarint(out, m.plain_size);
  PutBytes(out, m.trailer);
}

void EncodeCheckpoints(const MemberRecipe& m, std::string* out) {
  PutVarint(out, m.checkpoints.size());
  GoFlateCheckpoint prev;
  prev.plain_offset = prev.bit_offset = 0;
  for (const GoFlateCheckpoint& cp : m.checkpoints) {
    PutVarint(out, cp.plain_offset - prev.plain_offset);
    PutVarint(out, cp.bit_offset - prev.bit_offset);
    PutVarint(out, cp.plain_offset - cp.window_base);
    out->push_back(static_cast<char>(cp.byte_pending ? 1 : 0));
    if (cp.byte_pending) {
      PutVarint(out, cp.match_length);
      PutVarint(out, cp.match_distance);
    }
    prev = cp;
  }
}

// Checkpoints are only meaningful for an encoder that has them, strictly
// increasing and inside the member; anything else is corruption.
void DecodeCheckpoints(Reader& r, MemberRecipe* m) {
  uint64_t n = r.Varint("checkpoint count");
  if (n > kMaxMemberCheckpoints) return r.Invalid("checkpoint count");
  const bool tokens = m->encoder.id == EncoderId::kTokens;  // frame boundaries
  if (n > 0 && !tokens &&
      (m->encoder.id != EncoderId::kGoFlate ||
       !GoFlateWriter::SupportsCheckpoints(m->encoder.level))) {
    return r.Invalid("checkpoints for an encoder without them");
  }
  uint64_t plain = 0, bits = 0;
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    GoFlateCheckpoint cp;
    uint64_t dp = r.Varint("checkpoint plain_delta"), db = r.Varint("checkpoint bit_delta");
    uint64_t back = r.Varint("checkpoint window_back");
    uint8_t flags = r.U8("checkpoint flags");
    if (dp == 0 || db == 0 || dp > m->plain_size - plain || back > 2 * 32768 || flags > 1 ||
        back > plain + dp || (plain + dp - back) % 32768 != 0) {
      return r.Invalid("checkpoint " + std::to_string(i));
    }
    cp.plain_offset = plain += dp;
    cp.bit_offset = bits += db;
    cp.window_base = cp.plain_offset - back;
    cp.byte_pending = flags & 1;
    if (cp.byte_pending) {
      uint64_t len = r.Varint("checkpoint match_length"),
               dist = r.Varint("checkpoint match_distance");
      if (len < 3 || len > 258 || dist > 32768) return r.Invalid("checkpoint " + std::to_string(i));
      cp.match_length = static_cast<uint16_t>(len);
      cp.match_distance = static_cast<uint16_t>(dist);
    }
    m->checkpoints.push_back(cp);
  }
}

void EncodeHints(const MemberRecipe& m, std::string* out) {
  out->push_back(static_cast<char>(m.hint_after));
  PutVarint(out, m.hint_sizes.size());
  for (uint64_t n : m.hint_sizes) PutVarint(out, n);
}

// Hints come one per segment, for a member with checkpoints' encoder; token
// frames, one or more, for a deflate-tokens member.
void DecodeHints(Reader& r, uint8_t version, MemberRecipe* m) {
  m->hint_after = r.U8("hint_after");
  uint64_t n = r.Varint("hint count");
  if (!r.ok()) return;
  if (m->encoder.id == EncoderId::kTokens) {
    if (version < kRecipeVersionTokens || m->hint_after != 0 || n == 0 ||
        (!m->checkpoints.empty() && m->checkpoints.size() + 1 != n) ||
        n > m->plain_size / kTokenFramePlain + 1)
      return r.Invalid("token frame count");
    for (uint64_t i = 0; i < n && r.ok(); ++i) {
      uint64_t size = r.Varint("token frame size");
      if (size == 0 || size > 2 * kMaxTokenFrame)
        return r.Invalid("token frame size " + std::to_string(i));
      m->hint_sizes.push_back(size);
    }
    return;
  }
  if (n == 0 && m->hint_after != 0) return r.Invalid("hint_after without hints");
  if (n == 0) return;
  if (m->hint_after == 0 || n != m->checkpoints.size() + 1 ||
      m->encoder.id != EncoderId::kGoFlate ||
      !GoFlateWriter::SupportsCheckpoints(m->encoder.level)) {
    return r.Invalid("hint count");
  }
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    uint64_t size = r.Varint("hint size");
    if (size == 0 || size > m->plain_size + 64) return r.Invalid("hint size " + std::to_string(i));
    m->hint_sizes.push_back(size);
  }
}

void EncodeChecks(const MemberRecipe& m, std::string* out) {
  PutVarint(out, m.segment_checks.size());
  for (const SegmentCheck& c : m.segment_checks) {
    for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(c.high >> (8 * i)));
    for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(c.low >> (8 * i)));
  }
  if (!m.segment_checks.empty()) out->append(m.seams);
}

// One check per segment of a member that has segments, and a seam byte per
// checkpoint that is 0 exactly where the checkpoint needs none.
void DecodeChecks(Reader& r, MemberRecipe* m) {
  uint64_t n = r.Varint("segment check count");
  if (!r.ok() || n == 0) return;
  if (m->checkpoints.empty() || n != m->checkpoints.size() + 1)
    return r.Invalid("segment check count");
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    SegmentCheck c;
    for (int b = 0; b < 8; ++b) c.high = c.high << 8 | r.U8("segment check");
    for (int b = 0; b < 8; ++b) c.low = c.low << 8 | r.U8("segment check");
    m->segment_checks.push_back(c);
  }
  for (size_t i = 0; i < m->checkpoints.size() && r.ok(); ++i) {
    uint8_t seam = r.U8("seam byte");
    if (m->checkpoints[i].bit_offset % 8 == 0 && seam != 0)
      return r.Invalid("seam byte " + std::to_string(i));
    m->seams.push_back(static_cast<char>(seam));
  }
}

MemberRecipe DecodeMember(Reader& r) {
  MemberRecipe m;
  EncoderSpec& e = m.encoder;
  m.header = r.Bytes("header");
  e.id = static_cast<EncoderId>(r.U8("encoder"));
  e.level = static_cast<int32_t>(UnZigZag(r.Varint("level")));
  e.window_bits = r.U8("window_bits");
  e.mem_level = r.U8("mem_level");
  e.strategy = r.U8("strategy");
  e.block_size = static_cast<uint32_t>(r.Varint("block_size"));
  uint8_t flags = r.U8("flags");
  e.checksum = flags & 1;
  e.content_size = flags & 2;
  e.multithread = flags & 4;
  e.independent = flags & 8;
  e.long_distance = flags & 16;
  if (flags & ~31) r.Invalid("flags");  // a newer encoder option: refuse, never guess
  e.window_log = r.U8("window_log");
  m.plain_size = r.Varint("plain_size");
  if (e.content_size) e.source_size = m.plain_size;
  m.trailer = r.Bytes("trailer");
  return m;
}

}  // namespace

SegmentCheck SegmentCheck::Of(std::string_view bytes) {
  XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  return SegmentCheck{h.high64, h.low64};
}

uint64_t MemberRecipe::HintBytes() const {
  uint64_t n = 0;
  for (uint64_t s : hint_sizes) n += s;
  return n;
}

uint64_t LayerRecipe::HintBytes() const {
  uint64_t n = 0;
  for (const auto& m : members) n += m.HintBytes();
  return n;
}

uint64_t LayerRecipe::PlainSize() const {
  uint64_t n = 0;
  for (const auto& m : members) n += m.plain_size;
  return n;
}

std::string LayerRecipe::Encode() const {
  bool checkpoints = false, hints = false, tokens = false, checks = false;
  for (const auto& m : members) {
    checks |= !m.segment_checks.empty();
    checkpoints |= !m.checkpoints.empty();
    hints |= !m.hint_sizes.empty();
    tokens |= m.encoder.id == EncoderId::kTokens;
  }
  hints |= tokens || checks;
  checkpoints |= hints;
  std::string out(kMagic);
  out.push_back(static_cast<char>(checks        ? kRecipeVersionChecks
                                  : tokens      ? kRecipeVersionTokens
                                  : hints       ? kRecipeVersionHints
                                  : checkpoints ? kRecipeVersionCheckpoints
                                                : kRecipeVersion));
  out.push_back(static_cast<char>(compression));
  PutVarint(&out, members.size());
  for (const auto& m : members) {
    EncodeMember(m, &out);
    if (checkpoints) EncodeCheckpoints(m, &out);
    if (hints) EncodeHints(m, &out);
    if (checks) EncodeChecks(m, &out);
  }
  PutBytes(&out, tail);
  uint32_t crc =
      crc32(0, reinterpret_cast<const Bytef*>(out.data()), static_cast<uInt>(out.size()));
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(crc >> (8 * i)));
  return out;
}

Result<LayerRecipe> LayerRecipe::Decode(std::string_view b) {
  auto bad = [](const std::string& why) { return Status::Corruption("layer recipe: " + why); };
  if (b.size() < kMagic.size() + 6 || b.substr(0, 4) != kMagic) return bad("bad magic");
  std::string_view body = b.substr(0, b.size() - 4);
  uint32_t crc =
      crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()));
  uint32_t stored = 0;
  for (int i = 0; i < 4; ++i)
    stored |= static_cast<uint32_t>(static_cast<uint8_t>(b[body.size() + i])) << (8 * i);
  if (crc != stored) return bad("CRC-32 mismatch");
  Reader r(body.substr(4));
  const uint8_t version = r.U8("version");
  if (version < kRecipeVersion || version > kRecipeVersionChecks) {
    return bad("unsupported version " + std::to_string(version));
  }
  LayerRecipe rec;
  uint8_t c = r.U8("compression");
  if (c != 1 && c != 2) return bad("unknown compression " + std::to_string(c));
  rec.compression = static_cast<LayerCompression>(c);
  uint64_t count = r.Varint("member count");
  if (count > kMaxRecipeMembers) return bad("too many members");
  for (uint64_t i = 0; i < count && r.ok(); ++i) {
    rec.members.push_back(DecodeMember(r));
    if (version >= kRecipeVersionCheckpoints) DecodeCheckpoints(r, &rec.members.back());
    if (version >= kRecipeVersionHints) DecodeHints(r, version, &rec.members.back());
    if (version >= kRecipeVersionChecks) DecodeChecks(r, &rec.members.back());
  }
  rec.tail = r.Bytes("tail");
  if (!r.ok()) return bad("truncated or malformed field '" + r.failed_field() + "'");
  if (r.pos() != body.size() - 4) return bad("trailing bytes");
  if (rec.Encode() != b) return bad("not in canonical form");
  return rec;
}

}  // namespace cofferlayer
