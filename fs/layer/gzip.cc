#include "gzip.h"

#include <zlib.h>

namespace cofferlayer {
namespace {

constexpr size_t kOutStep = 64 * 1024;

uint32_t Le32(std::string_view b, size_t off) {
  return static_cast<uint32_t>(static_cast<uint8_t>(b[off])) |
         static_cast<uint32_t>(static_cast<uint8_t>(b[off + 1])) << 8 |
         static_cast<uint32_t>(static_cast<uint8_t>(b[off + 2])) << 16 |
         static_cast<uint32_t>(static_cast<uint8_t>(b[off + 3])) << 24;
}

bool IsGzipStart(std::string_view b) {
  return b.size() >= 3 && b[0] == '\x1f' && b[1] == '\x8b' && b[2] == '\x08';
}

// Members, each: header (raw) -> deflate body (inflated) -> 8-byte trailer.
class GzipDecoder : public internal::SteppingDecoder {
 public:
  explicit GzipDecoder(DecodeSink* sink) : sink_(sink) {}
  ~GzipDecoder() override {
    if (zinit_) inflateEnd(&zs_);
  }

  Status End() override {
    if (state_ == State::kNext || state_ == State::kTail) {
      return buf_.empty() ? Status::OK() : sink_->OnTail(buf_);
    }
    return Err("stream truncated");
  }

 private:
  enum class State { kHeader, kBody, kTrailer, kNext, kTail };

  Status Err(std::string_view what) const {
    return Status::Corruption("gzip member " + std::to_string(member_) + " at offset " +
                              std::to_string(member_offset_) + ": " + std::string(what));
  }

  Status Step(std::string_view& in) override {
    switch (state_) {
      case State::kHeader:
        return StepHeader(in);
      case State::kBody:
        return StepBody(in);
      case State::kTrailer: {
        size_t take = std::min(in.size(), 8 - buf_.size());
        Take(in, take);
        return buf_.size() == 8 ? EndMember() : Status::OK();
      }
      case State::kNext: {
        size_t take = std::min(in.size(), 3 - buf_.size());
        Take(in, take);
        if (buf_.size() < 3) return Status::OK();
        if (IsGzipStart(buf_)) {
          ++member_;
          member_offset_ = offset_ - buf_.size();
          state_ = State::kHeader;
          return Status::OK();
        }
        state_ = State::kTail;
        std::string b;
        b.swap(buf_);
        return sink_->OnTail(b);
      }
      case State::kTail:
        offset_ += in.size();
        RETURN_IF_ERROR(sink_->OnTail(in));
        in = {};
        return Status::OK();
    }
    return Status::OK();
  }

  void Take(std::string_view& in, size_t n) {
    buf_.append(in.substr(0, n));
    in.remove_prefix(n);
    offset_ += n;
  }

  Status StepHeader(std::string_view& in) {
    // Take a bounded piece, parse; give back what follows the header.
    size_t take = std::min(in.size(), kOutStep);
    Take(in, take);
    auto h = ParseGzipHeader(buf_);
    if (!h.ok()) return Err(h.status().message());
    if (!h->has_value()) return Status::OK();
    size_t len = (*h)->length;
    RETURN_IF_ERROR(sink_->OnMemberBegin(std::string_view(buf_).substr(0, len)));
    std::string rest = buf_.substr(len);
    buf_.clear();
    offset_ -= rest.size();
    RETURN_IF_ERROR(StartInflate());
    state_ = State::kBody;
    std::string_view r(rest);
    while (!r.empty()) RETURN_IF_ERROR(Step(r));
    return Status::OK();
  }

  Status StartInflate() {
    crc_ = crc32(0, nullptr, 0);
    isize_ = 0;
    int rc = zinit_ ? inflateReset(&zs_) : inflateInit2(&zs_, -15);
    if (rc != Z_OK) return Err("inflateInit failed");
    zinit_ = true;
    return Status::OK();
  }

  Status StepBody(std::string_view& in) {
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs_.avail_in = static_cast<uInt>(std::min<size_t>(in.size(), 1u << 30));
    size_t given = zs_.avail_in;
    out_.resize(kOutStep);
    zs_.next_out = reinterpret_cast<Bytef*>(out_.data());
    zs_.avail_out = kOutStep;
    int rc = inflate(&zs_, Z_NO_FLUSH);
    size_t used = given - zs_.avail_in;
    size_t produced = kOutStep - zs_.avail_out;
    if (rc != Z_OK && rc != Z_STREAM_END && !(rc == Z_BUF_ERROR && used == 0 && produced == 0)) {
      return Err(std::string("inflate: ") + (zs_.msg ? zs_.msg : "error ") + std::to_string(rc));
    }
    RETURN_IF_ERROR(sink_->OnCompressed(in.substr(0, used)));
    in.remove_prefix(used);
    offset_ += used;
    if (produced) {
      crc_ = crc32(crc_, reinterpret_cast<const Bytef*>(out_.data()), static_cast<uInt>(produced));
      isize_ += produced;
      RETURN_IF_ERROR(sink_->OnPlain(std::string_view(out_.data(), produced)));
    }
    if (rc == Z_STREAM_END) state_ = State::kTrailer;
    return Status::OK();
  }

  Status EndMember() {
    if (Le32(buf_, 0) != crc_) return Err("CRC-32 mismatch");
    if (Le32(buf_, 4) != static_cast<uint32_t>(isize_)) return Err("ISIZE mismatch");
    RETURN_IF_ERROR(sink_->OnMemberEnd(buf_));
    buf_.clear();
    state_ = State::kNext;
    return Status::OK();
  }

  DecodeSink* sink_;
  State state_ = State::kHeader;
  std::string buf_, out_;
  z_stream zs_{};
  bool zinit_ = false;
  uint32_t crc_ = 0;
  uint64_t isize_ = 0, offset_ = 0, member_offset_ = 0;
  int member_ = 0;
};

}  // namespace

Result<std::optional<GzipHeader>> ParseGzipHeader(std::string_view d) {
  using Opt = std::optional<GzipHeader>;
  if (d.size() < 10) {
    if (!d.empty() && d[0] != '\x1f') return Status::Corruption("not a gzip header (magic)");
    return Opt();
  }
  if (!IsGzipStart(d)) return Status::Corruption("not a gzip header (magic or method)");
  GzipHeader h;
  h.flags = static_cast<uint8_t>(d[3]);
  if (h.flags & 0xe0) return Status::Corruption("gzip header: reserved flag bits set");
  h.mtime = Le32(d, 4);
  h.xfl = static_cast<uint8_t>(d[8]);
  h.os = static_cast<uint8_t>(d[9]);
  size_t p = 10;
  if (h.flags & 4) {
    if (d.size() < p + 2) return Opt();
    size_t xlen = static_cast<uint8_t>(d[p]) | static_cast<uint8_t>(d[p + 1]) << 8;
    if (d.size() < p + 2 + xlen) return Opt();
    h.extra = std::string(d.substr(p + 2, xlen));
    p += 2 + xlen;
  }
  for (auto [bit, field] : {std::pair{8, &h.name}, std::pair{16, &h.comment}}) {
    if (!(h.flags & bit)) continue;
    size_t nul = d.find('\0', p);
    if (nul == std::string_view::npos) {
      if (d.size() > kMaxGzipHeader) return Status::Corruption("gzip header too long");
      return Opt();
    }
    *field = std::string(d.substr(p, nul - p));
    p = nul + 1;
  }
  if (h.flags & 2) {
    if (d.size() < p + 2) return Opt();
    uint32_t crc = crc32(0, reinterpret_cast<const Bytef*>(d.data()), static_cast<uInt>(p));
    uint16_t stored = static_cast<uint8_t>(d[p]) | static_cast<uint8_t>(d[p + 1]) << 8;
    if ((crc & 0xffff) != stored) return Status::Corruption("gzip header CRC mismatch");
    p += 2;
  }
  if (p > kMaxGzipHeader) return Status::Corruption("gzip header too long");
  h.length = p;
  return Opt(std::move(h));
}

std::unique_ptr<Decoder> NewGzipDecoder(DecodeSink* sink) {
  return std::make_unique<GzipDecoder>(sink);
}

}  // namespace cofferlayer
