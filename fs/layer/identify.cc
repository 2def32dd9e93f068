#include "identify.h"

#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_getCParams: the window log a level picks
#include <zstd.h>

#include <algorithm>

#include "candidates.h"
#include "gnuflate.h"
#include "goflate.h"
#include "gzip.h"
#include "zstd_layer.h"

namespace cofferlayer {
namespace {

constexpr uint32_t kPigzBlock = 128 * 1024;
constexpr size_t kDeflateWave = 4;
constexpr size_t kZstdWave = 2;  // level 19 states are ~100 MiB each

// Levels in the order to try: the hinted ones first, then the rest.
std::vector<int> LevelOrder(std::vector<int> first, int lo, int hi) {
  for (int l = lo; l <= hi; ++l) {
    if (std::find(first.begin(), first.end(), l) == first.end()) first.push_back(l);
  }
  return first;
}

// Go's compress/gzip writes OS 255, XFL 2 at level 9 and 4 at level 1; its
// default level is 6. Levels goflate does not implement are skipped.
std::vector<EncoderSpec> GoCandidates(const GzipHeader& h) {
  int hint = h.xfl == 2 ? 9 : h.xfl == 4 ? 1 : 6;
  std::vector<EncoderSpec> out;
  for (int level : LevelOrder({hint}, 1, 9)) {
    if (level == 1 && !GoFlateWriter::IsSupportedLevel(1)) continue;
    EncoderSpec g;
    g.id = EncoderId::kGoFlate;
    g.level = level;
    out.push_back(g);
  }
  for (int level : {-2, 0}) {
    out.push_back(out.back());
    out.back().level = level;
  }
  return out;
}

// zlib and pigz write XFL 2 only at level 9 and 4 only at level 1.
// GNU gzip(1) writes OS 3 (as zlib and pigz do on Unix) and XFL 4 at level 1,
// 2 at level 9, 0 otherwise: for an OS 3 header its candidate at each level
// follows zlib's and pigz's at that level (they keep winning the layers they
// reproduced before), ahead of pigz's rare variants; its levels the XFL rules
// out come last, for a header rewritten by another tool.
std::vector<EncoderSpec> GzipCandidates(const GzipHeader& h) {
  std::vector<int> hint = h.xfl == 2   ? std::vector<int>{9}
                          : h.xfl == 4 ? std::vector<int>{1}
                                       : std::vector<int>{6, 5, 7, 8, 4, 3, 2};
  const bool gnu = h.os == 3;
  std::vector<EncoderSpec> out, go = GoCandidates(h), gnu_unlikely;
  if (h.os == 255) out = go;  // Go first when the header looks like Go's
  for (int level : LevelOrder(hint, 1, 9)) {
    EncoderSpec z;
    z.id = EncoderId::kZlib;
    z.level = level;
    out.push_back(z);
    EncoderSpec p = z;
    p.id = EncoderId::kPigz;
    p.block_size = kPigzBlock;
    out.push_back(p);
    if (gnu) {
      EncoderSpec g;
      g.id = EncoderId::kGnuGzip;
      g.level = level;
      (GnuFlateWriter::HeaderXfl(level) == h.xfl ? out : gnu_unlikely).push_back(g);
    }
    if (level == hint.front()) {
      // pigz's -i and -b variants, at the hinted level only (rarely used).
      p.independent = true;
      out.push_back(p);
      p.independent = false;
      for (uint32_t kib : {64, 256, 32, 512, 1024}) {
        p.block_size = kib * 1024;
        out.push_back(p);
      }
    }
  }
  if (h.os != 255) out.insert(out.end(), go.begin(), go.end());
  out.insert(out.end(), gnu_unlikely.begin(), gnu_unlikely.end());
  return out;
}

// The CLI's default level (3) and the popular ones first, and its
// multithreaded mode before the single-threaded one; frame parameters as the
// header says. Levels whose window log is the header's go before the others:
// a wrong multithreaded candidate shows nothing until its first job (up to
// 4 << window_log bytes) is done, so trying the likely ones first matters.
std::vector<EncoderSpec> ZstdCandidates(const ZstdFrameHeader& h) {
  std::vector<int> levels = LevelOrder({3, 19, 1, 9}, 1, 19);
  if (h.window_log) {
    uint64_t size = h.has_content_size ? h.content_size : 0;
    std::stable_partition(levels.begin(), levels.end(), [&](int l) {
      return ZSTD_getCParams(l, size, 0).windowLog == h.window_log;
    });
  }
  // Long distance matching (the CLI's --long[=27]) shows in the header as a
  // window of 128 MiB or more (no level's default), or, when the CLI knew the
  // size, as a single segment frame (window grown to the content): tried
  // first when the content exceeds the level's own window (only --long makes
  // that single segment), after the plain candidate otherwise.
  std::vector<EncoderSpec> out;
  for (int level : levels) {
    const uint64_t own_window = uint64_t(1) << ZSTD_getCParams(level, 0, 0).windowLog;
    const bool ss = h.single_segment && h.has_content_size;
    std::vector<bool> ldm_order = h.window_log >= 27                  ? std::vector<bool>{true}
                                  : ss && h.content_size > own_window ? std::vector<bool>{true}
                                  : ss ? std::vector<bool>{false, true}
                                       : std::vector<bool>{false};
    for (bool ldm : ldm_order) {
      for (bool mt : {true, false}) {
        EncoderSpec z;
        z.id = EncoderId::kZstd;
        z.level = level;
        z.multithread = mt;
        z.checksum = h.checksum;
        z.content_size = h.has_content_size;
        z.source_size = h.content_size;
        if (ldm) {
          z.long_distance = true;
          z.window_log = h.window_log >= 27 ? h.window_log : 27;
        }
        out.push_back(z);
      }
    }
  }
  return out;
}

}  // namespace

class LayerAnalyzer::Impl : public DecodeSink {
 public:
  explicit Impl(PlainSink plain) : plain_(std::move(plain)) {}
  void RecordSegments(uint64_t interval) { cp_interval_ = interval; }

  Status Feed(std::string_view in) {
    a_.compressed_bytes += in.size();
    if (!decoder_ && !tar_) {
      head_.append(in);
      if (head_.size() < 4) return Status::OK();
      RETURN_IF_ERROR(Start());
      std::string h;
      h.swap(head_);
      return Route(h);
    }
    return Route(in);
  }

  Result<Analysis> Finish() {
    if (!decoder_ && !tar_) {
      RETURN_IF_ERROR(Start());
      std::string h;
      h.swap(head_);
      RETURN_IF_ERROR(Route(h));
    }
    if (tar_) return a_;
    RETURN_IF_ERROR(decoder_->Finish());
    if (failed_) {
      a_.recipe.reset();
    } else {
      recipe_.compression = a_.compression;
      a_.recipe = std::move(recipe_);
      a_.segments = std::move(segments_);
    }
    return a_;
  }

  // DecodeSink
  Status OnMemberBegin(std::string_view header) override {
    member_ = MemberRecipe();
    member_.header = std::string(header);
    zhead_.clear();
    matcher_.reset();
    if (failed_) return Status::OK();
    if (a_.compression == LayerCompression::kGzip) {
      auto h = ParseGzipHeader(header);
      if (!h.ok() || !h->has_value()) return Status::Corruption("gzip header vanished");
      matcher_ = std::make_unique<internal::MemberMatcher>(GzipCandidates(**h), kDeflateWave,
                                                           kReplayBytes, cp_interval_);
    }
    return Status::OK();
  }
  Status OnCompressed(std::string_view b) override {
    if (failed_) return Status::OK();
    if (matcher_) {
      matcher_->AddCompressed(b);
      return Status::OK();
    }
    // zstd: the candidates depend on the frame header, which is in these bytes.
    zhead_.append(b);
    auto h = ParseZstdFrameHeader(zhead_);
    if (!h.ok()) return h.status();
    if (!h->has_value()) return Status::OK();
    matcher_ =
        std::make_unique<internal::MemberMatcher>(ZstdCandidates(**h), kZstdWave, kZstdReplayBytes);
    matcher_->AddCompressed(zhead_);
    zhead_.clear();
    return Status::OK();
  }
  Status OnPlain(std::string_view b) override {
    member_.plain_size += b.size();
    a_.plain_bytes += b.size();
    if (matcher_) {
      matcher_->AddPlain(b);
      if (matcher_->exhausted()) GiveUp();  // decode on, but stop encoding
    }
    return plain_ ? plain_(b) : Status::OK();
  }
  Status OnMemberEnd(std::string_view trailer) override {
    member_.trailer = std::string(trailer);
    if (failed_) return Status::OK();
    auto won = matcher_ ? matcher_->Finish() : std::nullopt;
    if (!won) {
      GiveUp();
      return Status::OK();
    }
    EncoderSpec& spec = won->spec;
    if (spec.content_size) spec.source_size = member_.plain_size;
    member_.encoder = spec;
    recipe_.members.push_back(std::move(member_));
    if (cp_interval_ > 0) segments_.push_back(std::move(won->segments));
    matcher_.reset();
    return Status::OK();
  }
  Status OnTail(std::string_view b) override {
    if (recipe_.tail.size() + b.size() > kMaxTailBytes) {
      if (!failed_) a_.why_not = "more than 1 MiB of bytes after the last member";
      failed_ = true;
      return Status::OK();
    }
    recipe_.tail.append(b);
    return Status::OK();
  }

 private:
  Status Start() {
    a_.compression = DetectCompression(head_);
    if (a_.compression == LayerCompression::kTar) {
      tar_ = true;
      a_.why_not = "not compressed";
      return Status::OK();
    }
    ASSIGN_OR_RETURN(decoder_, NewDecoder(a_.compression, this));
    return Status::OK();
  }
  // The current member cannot be reproduced, so neither can the layer.
  void GiveUp() {
    failed_ = true;
    a_.why_not = std::string(CompressionName(a_.compression)) + " member " +
                 std::to_string(recipe_.members.size()) + ": no encoder reproduces it (" +
                 (matcher_ ? matcher_->report() : "no frame header") + ")";
    matcher_.reset();
  }
  Status Route(std::string_view in) {
    if (tar_) {
      a_.plain_bytes += in.size();
      return plain_ && !in.empty() ? plain_(in) : Status::OK();
    }
    return decoder_->Feed(in);
  }

  PlainSink plain_;
  Analysis a_;
  std::string head_, zhead_;
  bool tar_ = false, failed_ = false;
  std::unique_ptr<Decoder> decoder_;
  std::unique_ptr<internal::MemberMatcher> matcher_;
  LayerRecipe recipe_;
  MemberRecipe member_;
  uint64_t cp_interval_ = 0;  // RecordSegments
  std::vector<RecordedSegments> segments_;
};

LayerAnalyzer::LayerAnalyzer(PlainSink plain) : impl_(std::make_unique<Impl>(std::move(plain))) {}
LayerAnalyzer::~LayerAnalyzer() = default;
void LayerAnalyzer::RecordSegments(uint64_t interval) { impl_->RecordSegments(interval); }
Status LayerAnalyzer::Feed(std::string_view compressed) { return impl_->Feed(compressed); }
Result<Analysis> LayerAnalyzer::Finish() { return impl_->Finish(); }

Result<Analysis> AnalyzeLayer(std::string_view blob, const LayerAnalyzer::PlainSink& plain) {
  LayerAnalyzer an(plain);
  constexpr size_t kPiece = 1 << 20;
  for (size_t off = 0; off < blob.size(); off += kPiece) {
    RETURN_IF_ERROR(an.Feed(blob.substr(off, kPiece)));
  }
  return an.Finish();
}

}  // namespace cofferlayer
