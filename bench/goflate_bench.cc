// Throughput of goflate (Go 1.19 compress/flate, bit for bit) at docker's
// default level: the CPU a pull of a re-stored Go layer spends (issue "Layers").
//
//   coffer_bench --benchmark_filter=GoFlate --benchmark_repetitions=5
//
// Input: the first 64 MiB of COFFER_BENCH_TAR (default: the corpus' tools.tar,
// /work/shared/bench/make-corpus.sh), or, without it, 64 MiB of generated
// text-and-binary data so the benchmark always runs.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "goflate.h"
#include "reconstruct.h"

namespace cofferlayer {
namespace {

constexpr size_t kInputSize = size_t{64} << 20;

std::string Generated() {
  // Words from a small vocabulary (long hash chains, like text and code)
  // mixed with runs of random bytes (like binaries and compressed files).
  std::mt19937_64 rng(7);
  std::string out;
  out.reserve(kInputSize);
  const char* words[] = {"static ", "const ",   "return ", "int ",   "(void) ", "{\n",
                         "}\n",     "usr/lib/", ".so.1",   "x86_64", "debian",  "package "};
  while (out.size() < kInputSize) {
    if (rng() % 4 == 0) {
      for (int i = 0; i < 512; ++i) out.push_back(char(rng()));
    } else {
      for (int i = 0; i < 64; ++i) out += words[rng() % 12];
    }
  }
  out.resize(kInputSize);
  return out;
}

const std::string& Input() {
  static const std::string* in = [] {
    const char* env = getenv("COFFER_BENCH_TAR");
    std::string path = env ? env : "/tmp/coffer-bench-corpus/tars/tools.tar";
    auto* s = new std::string;
    if (FILE* f = fopen(path.c_str(), "rb")) {
      s->resize(kInputSize);
      s->resize(fread(s->data(), 1, kInputSize, f));
      fclose(f);
    }
    if (s->size() < (1 << 20)) *s = Generated();
    return s;
  }();
  return *in;
}

void BM_GoFlateDefault(benchmark::State& state) {
  const std::string& in = Input();
  size_t out_bytes = 0;
  for (auto _ : state) {
    out_bytes = 0;
    GoFlateWriter w(-1, [&](const uint8_t*, size_t n) {
      out_bytes += n;
      return chunkstore::Status::OK();
    });
    for (size_t off = 0; off < in.size(); off += 32 << 10) {
      const size_t n = std::min<size_t>(32 << 10, in.size() - off);
      if (!w.Write(reinterpret_cast<const uint8_t*>(in.data()) + off, n).ok()) abort();
    }
    if (!w.Close().ok()) abort();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * in.size()));
  state.counters["ratio"] = benchmark::Counter(double(out_bytes) / double(in.size()));
}
BENCHMARK(BM_GoFlateDefault)->Unit(benchmark::kMillisecond);

// What a pull of a re-stored layer runs: the stream re-created segment by
// segment from checkpoints 4 MiB apart, without and with the search hints
// recorded at ingestion (arg 1). "hint_ratio": hint bytes as stored
// (CompressHints) per DEFLATE byte.
struct Recorded {
  std::vector<GoFlateCheckpoint> cps;
  std::vector<std::string> hints;
  size_t deflate_bytes = 0;
};

const Recorded& RecordedInput() {
  static const Recorded* r = [] {
    auto* rec = new Recorded;
    const std::string& in = Input();
    std::string cur;
    GoFlateWriter w(-1, [rec](const uint8_t*, size_t n) {
      rec->deflate_bytes += n;
      return chunkstore::Status::OK();
    });
    w.SetCheckpointObserver(4 << 20, [rec, &cur](const GoFlateCheckpoint& cp) {
      rec->cps.push_back(cp);
      rec->hints.push_back(std::move(cur));
      cur.clear();
    });
    w.RecordHints(&cur);
    if (!w.Write(reinterpret_cast<const uint8_t*>(in.data()), in.size()).ok() || !w.Close().ok())
      abort();
    rec->hints.push_back(std::move(cur));
    return rec;
  }();
  return *r;
}

void BM_GoFlateSegments(benchmark::State& state) {
  const std::string& in = Input();
  const Recorded& rec = RecordedInput();
  const bool hinted = state.range(0) != 0;
  for (auto _ : state) {
    for (size_t i = 0; i <= rec.cps.size(); ++i) {
      const GoFlateCheckpoint* from = i > 0 ? &rec.cps[i - 1] : nullptr;
      const GoFlateCheckpoint* to = i < rec.cps.size() ? &rec.cps[i] : nullptr;
      const uint64_t begin = from ? from->window_base : 0;
      const uint64_t end =
          to ? std::min<uint64_t>(in.size(), to->plain_offset + kGoFlateSegmentLookahead)
             : in.size();
      auto seg = GoFlateSegment(-1, from, to, std::string_view(in).substr(begin, end - begin),
                                hinted ? std::string_view(rec.hints[i]) : std::string_view());
      if (!seg.ok()) abort();
      benchmark::DoNotOptimize(seg->data());
    }
  }
  size_t z = 0;
  for (const std::string& h : rec.hints) z += CompressHints(h).size();
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * in.size()));
  state.counters["hint_ratio"] = benchmark::Counter(double(z) / double(rec.deflate_bytes));
}
BENCHMARK(BM_GoFlateSegments)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace cofferlayer
