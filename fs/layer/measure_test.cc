// Measurements for docs/layers.md on the bench corpus (not run by default):
//   cofferlayer_test --gtest_also_run_disabled_tests --gtest_filter='*Measure*'
// COFFER_LAYER_CORPUS names the tars to use (default: base.tar of
// /tmp/coffer-bench-corpus, built by /work/shared/bench/make-corpus.sh), separated
// by ':'; COFFER_LAYER_MEASURE_SLOW=1 adds zstd -19 (about a minute per 100 MB).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "identify.h"
#include "layer_test_util.h"
#include "reconstruct.h"
#include "tar.h"

namespace cofferlayer {
namespace {

using testing::Quote;
using testing::ReadAll;
using testing::Shell;
using testing::TempDir;

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

class NullTarSink : public TarSink {
 public:
  Status OnRaw(std::string_view) override { return Status::OK(); }
  Status OnMemberBegin(const TarMember&) override { return Status::OK(); }
  Status OnMemberData(std::string_view) override { return Status::OK(); }
  Status OnMemberEnd() override { return Status::OK(); }
};

void MeasureOne(const std::string& tar_path, const std::string& name, const std::string& cmd,
                const std::string& tar) {
  std::string blob = Shell(cmd + " < " + Quote(tar_path));
  auto t0 = std::chrono::steady_clock::now();
  auto a = AnalyzeLayer(blob);
  double analyze = Seconds(t0);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  double mb = tar.size() / 1e6;
  std::string outcome = a->recipe ? a->recipe->members[0].encoder.ToString() : "not reproduced";
  double rebuild = 0;
  size_t recipe_bytes = 0;
  if (a->recipe) {
    recipe_bytes = a->recipe->Encode().size();
    VerifyingReconstructor vr(*a->recipe, Sha256Digest(blob), nullptr);
    t0 = std::chrono::steady_clock::now();
    for (size_t off = 0; off < tar.size(); off += 1 << 20) {
      ASSERT_TRUE(vr.Feed(std::string_view(tar).substr(off, 1 << 20)).ok());
    }
    Status s = vr.Finish();
    rebuild = Seconds(t0);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  printf("| %s | %s | %.1f MB | %.2f s (%.1f MB/s) | %s | %zu |\n", name.c_str(), outcome.c_str(),
         blob.size() / 1e6, analyze, mb / analyze,
         rebuild ? (std::to_string(rebuild).substr(0, 5) + " s").c_str() : "-", recipe_bytes);
  fflush(stdout);
}

TEST(CorpusTest, DISABLED_Measure) {
  const char* env = getenv("COFFER_LAYER_CORPUS");
  std::string list = env ? env : "/tmp/coffer-bench-corpus/tars/base.tar";
  TempDir dir;
  Shell(
      "printf 'package main\\nimport (\"compress/gzip\";\"io\";\"os\")\\nfunc main() { w := "
      "gzip.NewWriter(os.Stdout); io.Copy(w, os.Stdin); w.Close() }\\n' > " +
      Quote(dir / "g.go") + " && cd " + Quote(dir.path()) + " && GOCACHE=" + Quote(dir / "gc") +
      " go build -o gogz g.go");
  std::istringstream in(list);
  for (std::string tar_path; std::getline(in, tar_path, ':');) {
    std::string tar = ReadAll(tar_path);
    if (tar.empty()) GTEST_SKIP() << "no corpus tar " << tar_path;
    NullTarSink null_sink;
    TarScanner sc(&null_sink);
    auto t0 = std::chrono::steady_clock::now();
    ASSERT_TRUE(sc.Feed(tar).ok());
    ASSERT_TRUE(sc.Finish().ok());
    printf("%s: %.1f MB, %llu members, tar scan %.0f MB/s\n", tar_path.c_str(), tar.size() / 1e6,
           static_cast<unsigned long long>(sc.member_count()), tar.size() / 1e6 / Seconds(t0));
    printf(
        "| encoder | identified as | compressed | analyze (decode+identify) | rebuild+verify | "
        "recipe bytes |\n|---|---|---|---|---|---|\n");
    MeasureOne(tar_path, "gzip -6 -n", "gzip -6 -n", tar);
    MeasureOne(tar_path, "pigz -6", "pigz -6", tar);
    MeasureOne(tar_path, "go gzip default", Quote(dir / "gogz"), tar);
    MeasureOne(tar_path, "python gzip 6",
               "python3 -c 'import gzip,sys; "
               "sys.stdout.buffer.write(gzip.compress(sys.stdin.buffer.read(),6,mtime=0))'",
               tar);
    MeasureOne(tar_path, "zstd -3", "zstd -q -c -3", tar);
    if (getenv("COFFER_LAYER_MEASURE_SLOW")) {
      MeasureOne(tar_path, "zstd -19", "zstd -q -c -19", tar);
    }
  }
}

}  // namespace
}  // namespace cofferlayer
