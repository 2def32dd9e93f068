#include "zstd_layer.h"

#include <zstd.h>

#include <string>

namespace cofferlayer {
namespace {

constexpr std::string_view kZstdMagic("\x28\xb5\x2f\xfd", 4);

uint64_t LeN(std::string_view b, size_t off, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i)
    v |= static_cast<uint64_t>(static_cast<uint8_t>(b[off + i])) << (8 * i);
  return v;
}

// Frames, each decoded whole by libzstd; the frame bytes are what the encoder
// must reproduce (zstd has no separate container header).
class ZstdDecoder : public internal::SteppingDecoder {
 public:
  explicit ZstdDecoder(DecodeSink* sink) : sink_(sink), dctx_(ZSTD_createDCtx()) {}
  ~ZstdDecoder() override { ZSTD_freeDCtx(dctx_); }

  Status End() override {
    if (state_ == State::kFrame) return Err("stream truncated");
    return buf_.empty() ? Status::OK() : sink_->OnTail(buf_);
  }

 private:
  enum class State { kNext, kFrame, kTail };

  Status Err(std::string_view what) const {
    return Status::Corruption("zstd frame " + std::to_string(frame_) + " at offset " +
                              std::to_string(frame_offset_) + ": " + std::string(what));
  }

  Status Step(std::string_view& in) override {
    if (!dctx_) return Status::Unavailable("ZSTD_createDCtx: out of memory");
    if (state_ == State::kTail) {
      RETURN_IF_ERROR(sink_->OnTail(in));
      in = {};
      return Status::OK();
    }
    if (state_ == State::kFrame) return StepFrame(in);
    size_t take = std::min(in.size(), 4 - buf_.size());
    buf_.append(in.substr(0, take));
    in.remove_prefix(take);
    offset_ += take;
    if (buf_.size() < 4) return Status::OK();
    std::string head;
    head.swap(buf_);
    if (head != kZstdMagic) {
      state_ = State::kTail;
      return sink_->OnTail(head);
    }
    frame_offset_ = offset_ - 4;
    state_ = State::kFrame;
    ZSTD_DCtx_reset(dctx_, ZSTD_reset_session_only);
    RETURN_IF_ERROR(sink_->OnMemberBegin({}));
    std::string_view h(head);
    offset_ -= 4;
    return StepFrame(h);
  }

  Status StepFrame(std::string_view& in) {
    ZSTD_inBuffer ib{in.data(), in.size(), 0};
    out_.resize(ZSTD_DStreamOutSize());
    ZSTD_outBuffer ob{out_.data(), out_.size(), 0};
    size_t rc = ZSTD_decompressStream(dctx_, &ob, &ib);
    if (ZSTD_isError(rc)) return Err(ZSTD_getErrorName(rc));
    RETURN_IF_ERROR(sink_->OnCompressed(in.substr(0, ib.pos)));
    in.remove_prefix(ib.pos);
    offset_ += ib.pos;
    if (ob.pos) RETURN_IF_ERROR(sink_->OnPlain(std::string_view(out_.data(), ob.pos)));
    if (rc == 0) {
      ++frame_;
      state_ = State::kNext;
      return sink_->OnMemberEnd({});
    }
    return Status::OK();
  }

  DecodeSink* sink_;
  ZSTD_DCtx* dctx_;
  State state_ = State::kNext;
  std::string buf_, out_;
  uint64_t offset_ = 0, frame_offset_ = 0;
  int frame_ = 0;
};

}  // namespace

Result<std::optional<ZstdFrameHeader>> ParseZstdFrameHeader(std::string_view d) {
  using Opt = std::optional<ZstdFrameHeader>;
  if (d.size() < 5) return Opt();
  if (d.substr(0, 4) != kZstdMagic) return Status::Corruption("not a zstd frame (magic)");
  uint8_t fhd = static_cast<uint8_t>(d[4]);
  if (fhd & 0x08) return Status::Corruption("zstd frame header: reserved bit set");
  ZstdFrameHeader h;
  h.single_segment = fhd & 0x20;
  h.checksum = fhd & 0x04;
  static constexpr size_t kDidBytes[] = {0, 1, 2, 4};
  size_t fcs_code = fhd >> 6;
  size_t fcs_bytes = fcs_code == 0 ? (h.single_segment ? 1 : 0) : size_t{1} << fcs_code;
  size_t did_bytes = kDidBytes[fhd & 3];
  size_t p = 5;
  size_t need = p + (h.single_segment ? 0 : 1) + did_bytes + fcs_bytes;
  if (d.size() < need) return Opt();
  if (!h.single_segment)
    h.window_log = static_cast<uint8_t>(10 + (static_cast<uint8_t>(d[p++]) >> 3));
  h.dict_id = static_cast<uint32_t>(LeN(d, p, did_bytes));
  p += did_bytes;
  h.has_content_size = fcs_bytes > 0;
  h.content_size = LeN(d, p, fcs_bytes) + (fcs_bytes == 2 ? 256 : 0);
  h.length = need;
  return Opt(h);
}

std::unique_ptr<Decoder> NewZstdDecoder(DecodeSink* sink) {
  return std::make_unique<ZstdDecoder>(sink);
}

}  // namespace cofferlayer
