// Throughput of the FastCDC chunker alone: no hashing, no copying of chunks.
//
//   chunker_bench --benchmark_repetitions=5
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "fastcdc.h"

namespace chunkstore {
namespace {

constexpr size_t kBufferSize = size_t{64} << 20;

// Random data: the worst case for a CDC chunker, since no run of bytes makes the
// hash settle, and the case the speed target is quoted for.
const std::vector<uint8_t>& RandomBuffer() {
  static const std::vector<uint8_t>* buf = [] {
    auto* b = new std::vector<uint8_t>(kBufferSize);
    std::mt19937_64 rng(42);
    for (size_t i = 0; i < b->size(); i += 8) {
      const uint64_t v = rng();
      std::memcpy(b->data() + i, &v, 8);
    }
    return b;
  }();
  return *buf;
}

void BM_FastCdc(benchmark::State& state) {
  const std::vector<uint8_t>& buf = RandomBuffer();
  const FastCdc cdc(ChunkerParams{}, GearTableFromSeed("bench seed"));
  size_t chunks = 0;
  for (auto _ : state) {
    size_t off = 0;
    while (off < buf.size()) {
      const size_t len = cdc.NextChunk(buf.data() + off, buf.size() - off, true);
      benchmark::DoNotOptimize(len);
      off += len;
      ++chunks;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * buf.size()));
  state.counters["avg_chunk"] = benchmark::Counter(
      static_cast<double>(state.iterations() * buf.size()) / static_cast<double>(chunks));
}
BENCHMARK(BM_FastCdc)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace chunkstore
