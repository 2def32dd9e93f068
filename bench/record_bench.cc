// Micro-benchmarks of the per-chunk work on the write and read paths: chunk id
// (HMAC-SHA-256), blob digest (SHA-256), record checksum (XXH3), and sealing /
// opening a 1 MiB frame (zstd + AES-256-GCM). Build Release to measure:
//   build/bin/coffer_bench --benchmark_filter='Hmac|Sha|Xxh|Record' --benchmark_repetitions=5
#include <benchmark/benchmark.h>
#include <xxhash.h>

#include <random>
#include <string>

#include "crypto.h"
#include "format.h"

namespace chunkstore {
namespace {

// Text-like data that compresses roughly as a rootfs does (~3x with zstd -3).
std::string MakeData(size_t n) {
  std::mt19937_64 rng(42);
  static const char* words[] = {"usr",       "lib",        "share", "doc", "the ",
                                "and ",      "copyright",  "\n",    "0x",  "ELF",
                                "libc.so.6", "GLIBC_2.34", "    "};
  std::string s;
  while (s.size() < n) {
    if (rng() % 4 == 0)
      s.push_back(static_cast<char>(rng()));
    else
      s += words[rng() % 13];
  }
  s.resize(n);
  return s;
}

void BM_ChunkIdHmac(benchmark::State& state) {
  Hmac256 h(std::string(32, 'k'));
  std::string d = MakeData(16 << 10);
  for (auto _ : state) benchmark::DoNotOptimize(h.Compute(d));
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(d.size()));
}
BENCHMARK(BM_ChunkIdHmac);

void BM_Sha256Stream(benchmark::State& state) {
  std::string d = MakeData(1 << 20);
  for (auto _ : state) {
    Sha256Stream s;
    s.Update(d);
    benchmark::DoNotOptimize(s.Finish());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(d.size()));
}
BENCHMARK(BM_Sha256Stream);

void BM_Xxh3(benchmark::State& state) {
  std::string d = MakeData(1 << 20);
  for (auto _ : state) benchmark::DoNotOptimize(XXH3_64bits(d.data(), d.size()));
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(d.size()));
}
BENCHMARK(BM_Xxh3);

std::vector<ChunkRef> Chunks(const std::string& d) {
  std::vector<ChunkRef> v;
  for (size_t off = 0; off < d.size(); off += 16384) {
    ChunkRef r;
    r.id = Sha256(std::string_view(d).substr(off, 16384));
    r.length = static_cast<uint32_t>(std::min<size_t>(16384, d.size() - off));
    v.push_back(r);
  }
  return v;
}

void BM_RecordEncode(benchmark::State& state) {
  Aead aead(std::string(32, 'k'));
  std::string d = MakeData(1 << 20);
  auto chunks = Chunks(d);
  int level = static_cast<int>(state.range(0));
  std::string out;
  for (auto _ : state) {
    out.clear();
    EncodeRecord(RecordKind::kData, chunks, d, level, aead, &out);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(d.size()));
  state.counters["ratio"] = double(d.size()) / double(out.size());
}
BENCHMARK(BM_RecordEncode)->Arg(0)->Arg(1)->Arg(3);

// Incompressible data (a gzip layer as pushed): zstd gives up on it, so what
// it costs is mostly the frame's fixed work.
void BM_RecordEncodeRandom(benchmark::State& state) {
  Aead aead(std::string(32, 'k'));
  std::mt19937_64 rng(7);
  std::string d(1 << 20, '\0');
  for (char& c : d) c = static_cast<char>(rng());
  auto chunks = Chunks(d);
  std::string out;
  for (auto _ : state) {
    out.clear();
    EncodeRecord(RecordKind::kData, chunks, d, 3, aead, &out);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(d.size()));
}
BENCHMARK(BM_RecordEncodeRandom);

void BM_RecordDecode(benchmark::State& state) {
  Aead aead(std::string(32, 'k'));
  std::string d = MakeData(1 << 20);
  auto chunks = Chunks(d);
  std::string rec, plain;
  EncodeRecord(RecordKind::kData, chunks, d, static_cast<int>(state.range(0)), aead, &rec);
  RecordMeta meta;
  if (!DecodeRecordMeta(rec, &meta, "bench").ok()) state.SkipWithError("decode");
  for (auto _ : state) {
    if (!VerifyRecordChecksum(rec, meta, "bench").ok() ||
        !OpenRecord(rec, meta, aead, &plain, "bench").ok())
      state.SkipWithError("open");
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(d.size()));
}
BENCHMARK(BM_RecordDecode)->Arg(0)->Arg(3);

}  // namespace
}  // namespace chunkstore
