// The scanner is a small state machine over 512-byte blocks. A member is
//   [extension header + payload + padding]* header [GNU sparse ext blocks]*
//   data padding
// and everything but `data` is raw. Extension payloads (pax records, GNU long
// names) are kept until the member's own header arrives, because they describe
// it. Which types carry data follows the common readers (Go's archive/tar, which
// tar-split uses): links, devices, directories and FIFOs never do, whatever
// their size field says.
#include "tar.h"

#include <algorithm>
#include <cstring>
#include <optional>

namespace cofferlayer {
namespace {

constexpr size_t kRawFlush = 64 * 1024;  // hand raw bytes over in pieces of this size

std::string_view Field(const std::string& block, size_t off, size_t len) {
  std::string_view f(block.data() + off, len);
  size_t nul = f.find('\0');
  return nul == std::string_view::npos ? f : f.substr(0, nul);
}

// Octal (space/NUL padded) or GNU base-256 (high bit of the first byte set).
std::optional<int64_t> ParseNumeric(std::string_view f) {
  if (!f.empty() && (static_cast<unsigned char>(f[0]) & 0x80)) {
    bool neg = (static_cast<unsigned char>(f[0]) & 0x40) != 0;
    uint64_t v = static_cast<unsigned char>(f[0]) & 0x3f;
    if (neg) v = 0x3f ^ v;
    for (size_t i = 1; i < f.size(); ++i) {
      if (v >> 55) return std::nullopt;  // would not fit in 63 bits
      uint8_t b = static_cast<unsigned char>(f[i]);
      v = (v << 8) | (neg ? uint8_t(~b) : b);
    }
    return neg ? -static_cast<int64_t>(v) - 1 : static_cast<int64_t>(v);
  }
  size_t i = 0;
  while (i < f.size() && (f[i] == ' ' || f[i] == '\0')) ++i;
  uint64_t v = 0;
  for (; i < f.size() && f[i] >= '0' && f[i] <= '7'; ++i) {
    if (v >> 60) return std::nullopt;
    v = v * 8 + (f[i] - '0');
  }
  for (; i < f.size(); ++i) {
    if (f[i] != ' ' && f[i] != '\0') return std::nullopt;
  }
  return static_cast<int64_t>(v);
}

// pax decimal: an optional sign, digits, an optional fraction (dropped).
std::optional<int64_t> ParseDecimal(std::string_view s) {
  bool neg = !s.empty() && s[0] == '-';
  if (neg) s.remove_prefix(1);
  if (size_t dot = s.find('.'); dot != std::string_view::npos) s = s.substr(0, dot);
  if (s.empty() || s.size() > 18) return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return neg ? -v : v;
}

bool IsZeroBlock(const std::string& b) {
  return std::all_of(b.begin(), b.end(), [](char c) { return c == 0; });
}

// The stored checksum must equal the sum of the header bytes with the checksum
// field counted as spaces; old tars summed signed chars, so accept both.
bool ChecksumOk(const std::string& b) {
  auto stored = ParseNumeric(std::string_view(b.data() + 148, 8));
  if (!stored) return false;
  int64_t usum = 0, ssum = 0;
  for (size_t i = 0; i < kTarBlock; ++i) {
    char c = (i >= 148 && i < 156) ? ' ' : b[i];
    usum += static_cast<unsigned char>(c);
    ssum += static_cast<signed char>(c);
  }
  return *stored == usum || *stored == ssum;
}

uint64_t PadOf(uint64_t n) { return (kTarBlock - n % kTarBlock) % kTarBlock; }

bool HeaderOnlyType(char t) { return t >= '1' && t <= '6'; }

std::string Printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 256)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 256) out += "...";
  return out;
}

using Records = std::vector<std::pair<std::string, std::string>>;

// "<len> <key>=<value>\n" records; len counts the whole record.
Status ParsePaxRecords(std::string_view data, Records* out) {
  while (!data.empty()) {
    size_t sp = data.find(' ');
    if (sp == std::string_view::npos || sp == 0 || sp > 20) {
      return Status::Corruption("malformed pax record length");
    }
    auto len = ParseDecimal(data.substr(0, sp));
    if (!len || *len <= static_cast<int64_t>(sp) + 2 || static_cast<uint64_t>(*len) > data.size() ||
        data[*len - 1] != '\n') {
      return Status::Corruption("malformed pax record");
    }
    std::string_view kv = data.substr(sp + 1, *len - sp - 2);
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos || eq == 0)
      return Status::Corruption("pax record without key");
    out->emplace_back(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    data.remove_prefix(*len);
  }
  return Status::OK();
}

// The value in force for key: the member's own records, then the globals. An
// empty value deletes (POSIX), so it reads as absent.
std::optional<std::string> Lookup(const Records& local, const Records& global,
                                  std::string_view key) {
  for (const Records* r : {&local, &global}) {
    for (auto it = r->rbegin(); it != r->rend(); ++it) {
      if (it->first == key) {
        if (it->second.empty()) return std::nullopt;
        return it->second;
      }
    }
  }
  return std::nullopt;
}

}  // namespace

Status TarScanner::Feed(std::string_view data) {
  if (!error_.ok()) return error_;
  while (!data.empty()) {
    Status s = Step(data);
    if (!s.ok()) return Fail(std::move(s));
  }
  if (raw_.size() >= kRawFlush) return Fail(FlushRaw());
  return Status::OK();
}

Status TarScanner::Finish() {
  if (!error_.ok()) return error_;
  bool clean =
      state_ == State::kTrailer || (state_ == State::kHeader && block_.empty() && !member_started_);
  if (!clean) {
    const char* where = state_ == State::kData        ? "inside member data"
                        : state_ == State::kHeader    ? "inside a header"
                        : state_ == State::kExtension ? "inside an extension header"
                        : state_ == State::kSparseExt ? "inside a GNU sparse header"
                                                      : "inside padding";
    return Fail(Error(std::string("stream truncated ") + where));
  }
  return Fail(FlushRaw());
}

Status TarScanner::Fail(Status s) {
  if (!s.ok()) error_ = s;
  return s;
}

std::string TarScanner::CurrentName() const {
  if (state_ == State::kData || state_ == State::kSparseExt) return member_.path;
  if (!long_name_.empty()) return long_name_;
  if (auto p = Lookup(pax_local_, {}, "path")) return *p;
  if (block_.size() == kTarBlock) return std::string(Field(block_, 0, 100));
  return member_.path;
}

Status TarScanner::Error(std::string_view what) const {
  std::string name = CurrentName();
  std::string msg = "tar: ";
  if (!name.empty()) msg += "member '" + Printable(name) + "' ";
  msg += "at offset " + std::to_string(block_start_) + ": ";
  msg += what;
  return Status::Corruption(msg);
}

Status TarScanner::EmitRaw(std::string_view bytes) {
  raw_.append(bytes);
  return Status::OK();
}

Status TarScanner::FlushRaw() {
  if (raw_.empty()) return Status::OK();
  Status s = sink_->OnRaw(raw_);
  raw_.clear();
  return s;
}

Status TarScanner::FillBlock(std::string_view& in) {
  size_t take = std::min(kTarBlock - block_.size(), in.size());
  block_.append(in.data(), take);
  in.remove_prefix(take);
  offset_ += take;
  return Status::OK();
}

// Moves up to remaining_ bytes of `in` to the sink (data) or the raw buffer.
Status TarScanner::Consume(std::string_view& in, bool as_data) {
  size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size()));
  std::string_view piece = in.substr(0, take);
  in.remove_prefix(take);
  offset_ += take;
  remaining_ -= take;
  if (as_data) return piece.empty() ? Status::OK() : sink_->OnMemberData(piece);
  if (state_ == State::kExtension) ext_payload_.append(piece);
  RETURN_IF_ERROR(EmitRaw(piece));
  return raw_.size() >= kRawFlush ? FlushRaw() : Status::OK();
}

Status TarScanner::Step(std::string_view& in) {
  switch (state_) {
    case State::kHeader:
    case State::kSparseExt:
      if (block_.empty()) block_start_ = offset_;
      RETURN_IF_ERROR(FillBlock(in));
      if (block_.size() < kTarBlock) return Status::OK();
      if (state_ == State::kHeader) return OnHeaderBlock();
      RETURN_IF_ERROR(EmitRaw(block_));
      if (block_[504] == 0) {
        block_.clear();
        return StartMember();
      }
      block_.clear();
      return Status::OK();
    case State::kExtension:
      RETURN_IF_ERROR(Consume(in, false));
      if (remaining_ == 0) return OnExtensionDone();
      return Status::OK();
    case State::kData:
      RETURN_IF_ERROR(Consume(in, true));
      if (remaining_ > 0) return Status::OK();
      RETURN_IF_ERROR(sink_->OnMemberEnd());
      remaining_ = pad_after_;
      state_ = remaining_ ? State::kPadding : State::kHeader;
      return Status::OK();
    case State::kPadding:
      RETURN_IF_ERROR(Consume(in, false));
      if (remaining_ == 0) state_ = State::kHeader;
      return Status::OK();
    case State::kTrailer:
      RETURN_IF_ERROR(EmitRaw(in));
      offset_ += in.size();
      in = {};
      return raw_.size() >= kRawFlush ? FlushRaw() : Status::OK();
  }
  return Status::OK();
}

Status TarScanner::OnHeaderBlock() {
  if (IsZeroBlock(block_)) {
    // End of archive: this block and everything after it stay raw.
    RETURN_IF_ERROR(EmitRaw(block_));
    block_.clear();
    state_ = State::kTrailer;
    return Status::OK();
  }
  if (!ChecksumOk(block_)) return Error("header checksum mismatch");
  if (!member_started_) {
    member_start_ = block_start_;
    member_started_ = true;
  }
  RETURN_IF_ERROR(EmitRaw(block_));
  auto size = ParseNumeric(std::string_view(block_.data() + 124, 12));
  if (!size || *size < 0) return Error("invalid size field");
  char type = block_[156];
  if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
    if (static_cast<uint64_t>(*size) > kMaxExtensionBytes) {
      return Error("extension header of " + std::to_string(*size) + " bytes is too large");
    }
    ext_type_ = type;
    ext_payload_.clear();
    remaining_ = *size;
    pad_after_ = PadOf(*size);
    block_.clear();
    state_ = State::kExtension;
    return remaining_ == 0 ? OnExtensionDone() : Status::OK();
  }
  RETURN_IF_ERROR(BuildMember());
  bool extended = type == 'S' && block_[482] != 0;
  block_.clear();
  if (extended) {
    state_ = State::kSparseExt;
    return Status::OK();
  }
  return StartMember();
}

Status TarScanner::OnExtensionDone() {
  if (ext_type_ == 'L' || ext_type_ == 'K') {
    std::string_view v(ext_payload_);
    v = v.substr(0, v.find('\0'));
    (ext_type_ == 'L' ? long_name_ : long_link_) = std::string(v);
  } else {
    Records recs;
    Status s = ParsePaxRecords(ext_payload_, &recs);
    if (!s.ok()) return Error(s.message());
    Records& dst = ext_type_ == 'g' ? pax_global_ : pax_local_;
    dst.insert(dst.end(), recs.begin(), recs.end());
  }
  ext_payload_.clear();
  remaining_ = pad_after_;
  state_ = remaining_ ? State::kPadding : State::kHeader;
  return Status::OK();
}

// Resolves the member described by the header in block_ and the pending
// extension records.
Status TarScanner::BuildMember() {
  const std::string& b = block_;
  TarMember m;
  m.header_offset = member_start_;
  m.type = b[156] == '\0' ? '0' : b[156];
  m.path = std::string(Field(b, 0, 100));
  m.linkname = std::string(Field(b, 157, 100));
  bool posix_ustar = std::memcmp(b.data() + 257, "ustar\0", 6) == 0;
  if (posix_ustar && b[345] != '\0') m.path = std::string(Field(b, 345, 155)) + "/" + m.path;
  auto num = [&](size_t off, size_t len) {
    return ParseNumeric(std::string_view(b.data() + off, len));
  };
  auto mode = num(100, 8), uid = num(108, 8), gid = num(116, 8), size = num(124, 12),
       mtime = num(136, 12);
  if (!mode || !uid || !gid || !size || !mtime) return Error("invalid numeric field");
  m.mode = static_cast<uint32_t>(*mode);
  m.uid = *uid;
  m.gid = *gid;
  m.mtime = *mtime;
  m.size = m.real_size = *size;
  m.uname = std::string(Field(b, 265, 32));
  m.gname = std::string(Field(b, 297, 32));
  if (!long_name_.empty()) m.path = long_name_;
  if (!long_link_.empty()) m.linkname = long_link_;
  if (m.type == 'S') {
    m.sparse = true;
    auto real = num(483, 12);
    if (!real) return Error("invalid GNU sparse real size");
    m.real_size = *real;
  }
  RETURN_IF_ERROR(ApplyPax(&m));
  if (HeaderOnlyType(m.type)) m.size = 0;
  member_ = std::move(m);
  return Status::OK();
}

// The pax records in force (the member's, then the globals) override the
// header fields; GNU.sparse.* marks a pax sparse member.
Status TarScanner::ApplyPax(TarMember* m) const {
  const Records& loc = pax_local_;
  const Records& glob = pax_global_;
  auto dec = [&](std::string_view key, int64_t* out) -> Status {
    auto v = Lookup(loc, glob, key);
    if (!v) return Status::OK();
    auto d = ParseDecimal(*v);
    if (!d) return Error("invalid pax " + std::string(key) + " '" + Printable(*v) + "'");
    *out = *d;
    return Status::OK();
  };
  if (auto v = Lookup(loc, glob, "path")) m->path = *v;
  if (auto v = Lookup(loc, glob, "linkpath")) m->linkname = *v;
  if (auto v = Lookup(loc, glob, "uname")) m->uname = *v;
  if (auto v = Lookup(loc, glob, "gname")) m->gname = *v;
  int64_t psize = static_cast<int64_t>(m->size);
  RETURN_IF_ERROR(dec("size", &psize));
  RETURN_IF_ERROR(dec("uid", &m->uid));
  RETURN_IF_ERROR(dec("gid", &m->gid));
  RETURN_IF_ERROR(dec("mtime", &m->mtime));
  if (psize < 0) return Error("negative pax size");
  m->size = static_cast<uint64_t>(psize);
  if (m->type != 'S') m->real_size = m->size;
  for (const Records* r : {&glob, &loc}) {
    for (const auto& [k, v] : *r) {
      if (k.rfind("SCHILY.xattr.", 0) == 0) m->xattrs.emplace_back(k.substr(13), v);
      if (k.rfind("GNU.sparse.", 0) == 0) m->sparse = true;
    }
  }
  if (auto v = Lookup(loc, glob, "GNU.sparse.name")) m->path = *v;
  int64_t real = static_cast<int64_t>(m->real_size);
  RETURN_IF_ERROR(dec("GNU.sparse.size", &real));
  RETURN_IF_ERROR(dec("GNU.sparse.realsize", &real));
  m->real_size = static_cast<uint64_t>(real);
  return Status::OK();
}

Status TarScanner::StartMember() {
  member_.data_offset = offset_;
  long_name_.clear();
  long_link_.clear();
  pax_local_.clear();
  member_started_ = false;
  ++members_;
  RETURN_IF_ERROR(FlushRaw());
  RETURN_IF_ERROR(sink_->OnMemberBegin(member_));
  remaining_ = member_.size;
  pad_after_ = PadOf(member_.size);
  if (remaining_ > 0) {
    state_ = State::kData;
    return Status::OK();
  }
  RETURN_IF_ERROR(sink_->OnMemberEnd());
  state_ = State::kHeader;
  return Status::OK();
}

Status ValidateEntryName(std::string_view name) {
  auto bad = [&](std::string_view why) {
    return Status::InvalidArgument("tar entry name '" + Printable(name) + "': " + std::string(why));
  };
  if (name.empty()) return bad("empty");
  if (name.find('\0') != std::string_view::npos) return bad("contains a NUL byte");
  if (name[0] == '/') return bad("absolute path");
  size_t pos = 0;
  while (pos <= name.size()) {
    size_t end = name.find('/', pos);
    if (end == std::string_view::npos) end = name.size();
    if (name.substr(pos, end - pos) == "..") return bad("has a '..' component");
    pos = end + 1;
  }
  return Status::OK();
}

WhiteoutKind ClassifyWhiteout(std::string_view path, std::string* target) {
  std::string_view p = path;
  while (!p.empty() && p.back() == '/') p.remove_suffix(1);
  size_t slash = p.rfind('/');
  std::string_view dir = slash == std::string_view::npos ? "" : p.substr(0, slash + 1);
  std::string_view base = slash == std::string_view::npos ? p : p.substr(slash + 1);
  if (base == ".wh..wh..opq") return WhiteoutKind::kOpaque;
  constexpr std::string_view kPrefix = ".wh.";
  if (base.size() <= kPrefix.size() || base.substr(0, kPrefix.size()) != kPrefix) {
    return WhiteoutKind::kNone;
  }
  if (target) *target = std::string(dir) + std::string(base.substr(kPrefix.size()));
  return WhiteoutKind::kFile;
}

}  // namespace cofferlayer
