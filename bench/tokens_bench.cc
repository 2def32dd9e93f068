// Token recipes (tokens.h): what a gzip layer no encoder reproduces costs to
// analyse at ingestion and to re-create on a pull, and how large its frames
// are against the DEFLATE stream they replace.
//
//   COFFER_BENCH_GZ=layer.gz coffer_bench --benchmark_filter=Tokens --benchmark_repetitions=3
//
// Input: the first gzip member of COFFER_BENCH_GZ (e.g. a layer `skopeo copy
// --dest-compress` wrote with pgzip), or, without it, the first 64 MiB of the
// corpus' tools.tar compressed by zlib -6 with a sync flush every 1 MiB.
#include <benchmark/benchmark.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "decode.h"
#include "reconstruct.h"
#include "tokens.h"

namespace cofferlayer {
namespace {

struct Member {
  std::string deflate, plain;
};

class FirstMember : public DecodeSink {
 public:
  explicit FirstMember(Member* m) : m_(m) {}
  Status OnMemberBegin(std::string_view) override {
    ++members_;
    return Status::OK();
  }
  Status OnCompressed(std::string_view b) override {
    if (members_ == 1) m_->deflate.append(b);
    return Status::OK();
  }
  Status OnPlain(std::string_view b) override {
    if (members_ == 1) m_->plain.append(b);
    return Status::OK();
  }
  Status OnMemberEnd(std::string_view) override { return Status::OK(); }
  Status OnTail(std::string_view) override { return Status::OK(); }

 private:
  Member* m_;
  int members_ = 0;
};

// At most `max` bytes of `path`, read in 1 MiB pieces: a buffer of `max` bytes
// up front would be zero-filled (4 GiB of page faults dominated profiles).
std::string ReadFile(const char* path, size_t max) {
  std::string s;
  if (FILE* f = fopen(path, "rb")) {
    std::string piece(1 << 20, '\0');
    size_t n;
    while (s.size() < max &&
           (n = fread(piece.data(), 1, std::min(piece.size(), max - s.size()), f)) > 0)
      s.append(piece, 0, n);
    fclose(f);
  }
  return s;
}

std::string ZlibSyncFlushed(const std::string& in) {
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, in.size()) + (in.size() >> 20) * 16 + 64, '\0');
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  for (size_t off = 0; off < in.size(); off += 1 << 20) {
    const size_t n = std::min<size_t>(1 << 20, in.size() - off);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + off));
    z.avail_in = static_cast<uInt>(n);
    deflate(&z, off + n == in.size() ? Z_FINISH : Z_SYNC_FLUSH);
  }
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

const Member& Input() {
  static const Member* m = [] {
    auto* mm = new Member;
    if (const char* gz = getenv("COFFER_BENCH_GZ")) {
      std::string blob = ReadFile(gz, size_t{4} << 30);
      FirstMember sink(mm);
      auto dec = NewDecoder(LayerCompression::kGzip, &sink);
      if (!dec.ok() || !(*dec)->Feed(blob).ok() || !(*dec)->Finish().ok()) abort();
    } else {
      mm->plain = ReadFile("/tmp/coffer-bench-corpus/tars/tools.tar", size_t{64} << 20);
      if (mm->plain.empty()) mm->plain.assign(size_t{16} << 20, 'x');
      mm->deflate = ZlibSyncFlushed(mm->plain);
    }
    return mm;
  }();
  return *m;
}

std::vector<std::string> Analyze(const Member& m) {
  TokenAnalyzer a;
  std::vector<std::string> frames;
  for (size_t off = 0; off < m.deflate.size(); off += 1 << 20) {
    if (!a.Feed(std::string_view(m.deflate).substr(off, 1 << 20)).ok()) abort();
    for (std::string& f : a.TakeFrames()) frames.push_back(std::move(f));
  }
  if (!a.Finish().ok()) abort();
  for (std::string& f : a.TakeFrames()) frames.push_back(std::move(f));
  return frames;
}

void BM_TokensAnalyze(benchmark::State& state) {
  const Member& m = Input();
  size_t stored = 0;
  for (auto _ : state) {
    stored = 0;
    for (const std::string& f : Analyze(m)) stored += CompressHints(f).size();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * m.plain.size()));
  // Frames as stored (zstd) against the DEFLATE stream they stand for.
  state.counters["frame_ratio"] = double(stored) / double(m.deflate.size());
  state.counters["deflate_ratio"] = double(m.deflate.size()) / double(m.plain.size());
  // Each stream compressed alone (tokens.h's frame layout), against the
  // DEFLATE stream: where the frames' bytes go.
  static const char* kNames[5] = {"ops", "lits", "lens", "ranks", "dists"};
  double part[5] = {0};
  for (const std::string& f : Analyze(m)) {
    std::string_view v(f);
    uint64_t sizes[5];
    for (uint64_t& n : sizes) {
      n = 0;
      for (int shift = 0;; shift += 7) {
        const uint8_t b = static_cast<uint8_t>(v[0]);
        v.remove_prefix(1);
        n |= uint64_t(b & 0x7f) << shift;
        if (!(b & 0x80)) break;
      }
    }
    for (int i = 0; i < 5; ++i) {
      part[i] += double(CompressHints(v.substr(0, sizes[i])).size());
      v.remove_prefix(sizes[i]);
    }
  }
  for (int i = 0; i < 5; ++i)
    state.counters[std::string(kNames[i]) + "_ratio"] = part[i] / double(m.deflate.size());
}
BENCHMARK(BM_TokensAnalyze)->Unit(benchmark::kMillisecond);

void BM_TokensRecreate(benchmark::State& state) {
  const Member& m = Input();
  const std::vector<std::string> frames = Analyze(m);
  for (auto _ : state) {
    auto enc =
        NewTokenEncoder(frames.size(), [&](size_t i) -> Result<std::string> { return frames[i]; });
    std::string out;
    out.reserve(m.deflate.size() + 1024);
    for (size_t off = 0; off < m.plain.size(); off += 256 << 10)
      if (!enc->Write(std::string_view(m.plain).substr(off, 256 << 10), &out).ok()) abort();
    if (!enc->Finish(&out).ok() || out != m.deflate) abort();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * m.plain.size()));
}
BENCHMARK(BM_TokensRecreate)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace cofferlayer
