#include "encoders.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <utility>

#include "gnuflate.h"
#include "goflate.h"

namespace cofferlayer {
namespace {

constexpr size_t kOutStep = 64 * 1024;
constexpr size_t kDictBytes = 32 * 1024;

// One zlib raw deflate state; the caller decides when to reset it.
class ZlibStream {
 public:
  ZlibStream() = default;
  ZlibStream(const ZlibStream&) = delete;
  ZlibStream& operator=(const ZlibStream&) = delete;
  ~ZlibStream() {
    if (init_) deflateEnd(&zs_);
  }

  Status Init(const EncoderSpec& s) {
    int rc = deflateInit2(&zs_, s.level, Z_DEFLATED, -static_cast<int>(s.window_bits), s.mem_level,
                          s.strategy);
    if (rc != Z_OK) return Status::InvalidArgument("deflateInit2 for " + s.ToString() + " failed");
    init_ = true;
    return Status::OK();
  }
  Status Reset() { return Check(deflateReset(&zs_), "deflateReset"); }
  Status SetDictionary(std::string_view d) {
    return Check(deflateSetDictionary(&zs_, reinterpret_cast<const Bytef*>(d.data()),
                                      static_cast<uInt>(d.size())),
                 "deflateSetDictionary");
  }

  // Runs deflate over `in` with `flush` until the input is consumed and no
  // more output is pending.
  Status Run(std::string_view in, int flush, std::string* out) {
    zs_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs_.avail_in = static_cast<uInt>(in.size());
    for (;;) {
      size_t old = out->size();
      out->resize(old + kOutStep);
      zs_.next_out = reinterpret_cast<Bytef*>(out->data() + old);
      zs_.avail_out = static_cast<uInt>(kOutStep);
      int rc = deflate(&zs_, flush);
      out->resize(old + kOutStep - zs_.avail_out);
      if (rc == Z_STREAM_END) return Status::OK();
      if (rc != Z_OK && rc != Z_BUF_ERROR) return Check(rc, "deflate");
      if (zs_.avail_in == 0 && zs_.avail_out != 0) return Status::OK();
    }
  }

  // Pads a Z_BLOCK-ended stream to a byte boundary the way pigz output shows.
  Status AlignToByte(std::string* out) {
    int bits = 0;
    RETURN_IF_ERROR(Check(deflatePending(&zs_, nullptr, &bits), "deflatePending"));
    if (bits & 1) return Run({}, Z_SYNC_FLUSH, out);
    if ((bits & 7) == 0) return Status::OK();
    while (bits & 7) {
      // An empty static block: BFINAL 0, BTYPE 01, end-of-block code 0000000.
      RETURN_IF_ERROR(Check(deflatePrime(&zs_, 10, 2), "deflatePrime"));
      bits += 10;
    }
    return Run({}, Z_BLOCK, out);
  }

 private:
  Status Check(int rc, const char* op) {
    if (rc == Z_OK) return Status::OK();
    return Status::Corruption(std::string("zlib ") + op + " failed: " + std::to_string(rc));
  }
  z_stream zs_{};
  bool init_ = false;
};

class ZlibEncoder : public Encoder {
 public:
  Status Init(const EncoderSpec& s) { return zs_.Init(s); }
  Status Write(std::string_view in, std::string* out) override {
    return zs_.Run(in, Z_NO_FLUSH, out);
  }
  Status Finish(std::string* out) override { return zs_.Run({}, Z_FINISH, out); }

 private:
  ZlibStream zs_;
};

// Holds one block of input until it knows whether the block is the last.
class PigzEncoder : public Encoder {
 public:
  explicit PigzEncoder(const EncoderSpec& s) : spec_(s) {}
  Status Init() {
    if (spec_.block_size < kDictBytes) {
      return Status::InvalidArgument("pigz block size below 32 KiB: " + spec_.ToString());
    }
    return zs_.Init(spec_);
  }
  Status Write(std::string_view in, std::string* out) override {
    while (!in.empty()) {
      if (block_.size() == spec_.block_size) RETURN_IF_ERROR(CompressBlock(false, out));
      size_t take = std::min(in.size(), spec_.block_size - block_.size());
      block_.append(in.substr(0, take));
      in.remove_prefix(take);
    }
    return Status::OK();
  }
  Status Finish(std::string* out) override { return CompressBlock(true, out); }

 private:
  Status CompressBlock(bool last, std::string* out) {
    RETURN_IF_ERROR(zs_.Reset());
    if (!dict_.empty() && !spec_.independent) RETURN_IF_ERROR(zs_.SetDictionary(dict_));
    if (last) return zs_.Run(block_, Z_FINISH, out);
    if (spec_.independent) {
      // pigz -i: a sync flush, then a full flush (a second empty stored block).
      RETURN_IF_ERROR(zs_.Run(block_, Z_SYNC_FLUSH, out));
      RETURN_IF_ERROR(zs_.Run({}, Z_FULL_FLUSH, out));
    } else {
      RETURN_IF_ERROR(zs_.Run(block_, Z_BLOCK, out));
      RETURN_IF_ERROR(zs_.AlignToByte(out));
    }
    dict_.assign(block_, block_.size() - std::min(block_.size(), kDictBytes));
    block_.clear();
    return Status::OK();
  }
  EncoderSpec spec_;
  ZlibStream zs_;
  std::string block_, dict_;
};

class ZstdEncoder : public Encoder {
 public:
  ~ZstdEncoder() override { ZSTD_freeCCtx(cctx_); }
  Status Init(const EncoderSpec& s) {
    cctx_ = ZSTD_createCCtx();
    if (!cctx_) return Status::Unavailable("ZSTD_createCCtx: out of memory");
    RETURN_IF_ERROR(Set(ZSTD_c_compressionLevel, s.level, s));
    RETURN_IF_ERROR(Set(ZSTD_c_checksumFlag, s.checksum ? 1 : 0, s));
    RETURN_IF_ERROR(Set(ZSTD_c_contentSizeFlag, s.content_size ? 1 : 0, s));
    if (s.window_log) RETURN_IF_ERROR(Set(ZSTD_c_windowLog, s.window_log, s));
    if (s.long_distance) RETURN_IF_ERROR(Set(ZSTD_c_enableLongDistanceMatching, 1, s));
    if (s.multithread) RETURN_IF_ERROR(Set(ZSTD_c_nbWorkers, 1, s));
    if (s.content_size) {
      size_t rc = ZSTD_CCtx_setPledgedSrcSize(cctx_, s.source_size);
      if (ZSTD_isError(rc)) return Status::InvalidArgument("zstd pledged size: " + s.ToString());
    }
    return Status::OK();
  }
  Status Write(std::string_view in, std::string* out) override {
    return Run(in, ZSTD_e_continue, out);
  }
  Status Finish(std::string* out) override { return Run({}, ZSTD_e_end, out); }

 private:
  Status Set(ZSTD_cParameter p, int v, const EncoderSpec& s) {
    if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx_, p, v))) {
      return Status::InvalidArgument("zstd parameter refused for " + s.ToString());
    }
    return Status::OK();
  }
  Status Run(std::string_view in, ZSTD_EndDirective mode, std::string* out) {
    ZSTD_inBuffer ib{in.data(), in.size(), 0};
    for (;;) {
      size_t old = out->size();
      out->resize(old + kOutStep);
      ZSTD_outBuffer ob{out->data() + old, kOutStep, 0};
      size_t rc = ZSTD_compressStream2(cctx_, &ob, &ib, mode);
      out->resize(old + ob.pos);
      if (ZSTD_isError(rc)) {
        return Status::Corruption(std::string("zstd compress: ") + ZSTD_getErrorName(rc));
      }
      bool done = mode == ZSTD_e_end ? rc == 0 : ib.pos == ib.size && ob.pos < kOutStep;
      if (done) return Status::OK();
    }
  }
  ZSTD_CCtx* cctx_ = nullptr;
};

// Adapts GoFlateWriter's sink to the append-to-*out interface.
class GoFlateEncoder : public Encoder {
 public:
  // `checkpoints`: when set, the writer's checkpoints every `interval` plain
  // bytes are appended there (ingestion records them in the recipe).
  GoFlateEncoder(int level, uint64_t interval = 0,
                 std::vector<GoFlateCheckpoint>* checkpoints = nullptr,
                 std::vector<std::string>* hints = nullptr)
      : w_(level,
           [this](const uint8_t* d, size_t n) {
             out_->append(reinterpret_cast<const char*>(d), n);
             return Status::OK();
           }),
        hints_(hints) {
    if (checkpoints)
      w_.SetCheckpointObserver(interval, [this, checkpoints](const GoFlateCheckpoint& cp) {
        checkpoints->push_back(cp);
        if (hints_) hints_->push_back(std::exchange(cur_hints_, std::string()));
      });
    if (hints_) w_.RecordHints(&cur_hints_);
  }
  Status Write(std::string_view in, std::string* out) override {
    out_ = out;
    return w_.Write(reinterpret_cast<const uint8_t*>(in.data()), in.size());
  }
  Status Finish(std::string* out) override {
    out_ = out;
    RETURN_IF_ERROR(w_.Close());
    if (hints_) hints_->push_back(std::move(cur_hints_));
    return Status::OK();
  }

 private:
  std::string* out_ = nullptr;
  GoFlateWriter w_;
  std::vector<std::string>* hints_;
  std::string cur_hints_;  // the current segment's
};

class GnuGzipEncoder : public Encoder {
 public:
  explicit GnuGzipEncoder(int level) : w_(level) {}
  Status Write(std::string_view in, std::string* out) override { return w_.Write(in, out); }
  Status Finish(std::string* out) override { return w_.Finish(out); }

 private:
  GnuFlateWriter w_;
};

}  // namespace

std::unique_ptr<Encoder> NewCheckpointingGoFlate(int level, uint64_t interval,
                                                 std::vector<GoFlateCheckpoint>* checkpoints,
                                                 std::vector<std::string>* hints) {
  return std::make_unique<GoFlateEncoder>(level, interval, checkpoints, hints);
}

std::string EncoderName(EncoderId id) {
  switch (id) {
    case EncoderId::kZlib:
      return "zlib";
    case EncoderId::kPigz:
      return "pigz";
    case EncoderId::kGoFlate:
      return "go-flate";
    case EncoderId::kGnuGzip:
      return "gzip(1)";
    case EncoderId::kTokens:
      return "deflate tokens";
    case EncoderId::kZstd:
      return "zstd";
  }
  return "encoder " + std::to_string(static_cast<int>(id));
}

std::string EncoderSpec::ToString() const {
  const std::string name = EncoderName(id);
  switch (id) {
    case EncoderId::kZlib:
      return name + " level " + std::to_string(level) +
             (window_bits != 15 || mem_level != 8 || strategy != 0
                  ? " wbits " + std::to_string(window_bits) + " memlevel " +
                        std::to_string(mem_level) + " strategy " + std::to_string(strategy)
                  : "");
    case EncoderId::kPigz:
      return name + " level " + std::to_string(level) + " block " + std::to_string(block_size) +
             (independent ? " independent" : "");
    case EncoderId::kZstd:
      return name + " level " + std::to_string(level) + (multithread ? " mt" : "") +
             (checksum ? " checksum" : "") +
             (content_size ? " size " + std::to_string(source_size) : "") +
             (window_log ? " wlog " + std::to_string(window_log) : "") +
             (long_distance ? " long" : "");
    case EncoderId::kTokens:
      return name;
    case EncoderId::kGoFlate:
    case EncoderId::kGnuGzip:
      break;
  }
  return name + " level " + std::to_string(level);
}

Result<std::unique_ptr<Encoder>> NewEncoder(const EncoderSpec& spec) {
  switch (spec.id) {
    case EncoderId::kZlib: {
      auto e = std::make_unique<ZlibEncoder>();
      RETURN_IF_ERROR(e->Init(spec));
      return std::unique_ptr<Encoder>(std::move(e));
    }
    case EncoderId::kPigz: {
      auto e = std::make_unique<PigzEncoder>(spec);
      RETURN_IF_ERROR(e->Init());
      return std::unique_ptr<Encoder>(std::move(e));
    }
    case EncoderId::kZstd: {
      auto e = std::make_unique<ZstdEncoder>();
      RETURN_IF_ERROR(e->Init(spec));
      return std::unique_ptr<Encoder>(std::move(e));
    }
    case EncoderId::kGoFlate:
      if (!GoFlateWriter::IsSupportedLevel(spec.level)) {
        return Status::InvalidArgument("unsupported level for " + spec.ToString());
      }
      return std::unique_ptr<Encoder>(std::make_unique<GoFlateEncoder>(spec.level));
    case EncoderId::kGnuGzip:
      if (!GnuFlateWriter::IsSupportedLevel(spec.level)) {
        return Status::InvalidArgument("unsupported level for " + spec.ToString());
      }
      return std::unique_ptr<Encoder>(std::make_unique<GnuGzipEncoder>(spec.level));
    case EncoderId::kTokens:
      return Status::InvalidArgument(
          "deflate tokens are written from their frames, not by NewEncoder");
  }
  return Status::InvalidArgument("unknown encoder id " + std::to_string(static_cast<int>(spec.id)));
}

}  // namespace cofferlayer
