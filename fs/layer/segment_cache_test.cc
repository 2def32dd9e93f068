// SegmentCache alone: single flight, least-recently-used eviction by bytes,
// failures not kept, Drop by digest, off at capacity 0.
#include "segment_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace cofferlayer {
namespace {

using chunkstore::Result;
using chunkstore::Status;

// The test binary runs with the process's cache off, so that every test of
// re-creation re-creates (a segment a test made before with the same digest
// would otherwise be served); the tests of the cache turn it on themselves.
class SegmentCacheOff : public ::testing::Environment {
 public:
  void SetUp() override { SegmentCache::Global().SetCapacity(0); }
};
[[maybe_unused]] ::testing::Environment* const kCacheOff =
    ::testing::AddGlobalTestEnvironment(new SegmentCacheOff);

std::function<Result<std::string>()> Maker(std::string bytes, int* calls) {
  return [bytes, calls]() -> Result<std::string> {
    ++*calls;
    return bytes;
  };
}

TEST(SegmentCache, KeepsWhatItMadeAndServesItAgain) {
  SegmentCache c(1 << 20);
  int calls = 0;
  EXPECT_EQ(*c.Get("sha256:a", 0, 8, Maker("abc", &calls)), "abc");
  EXPECT_EQ(*c.Get("sha256:a", 0, 8, Maker("xyz", &calls)), "abc");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(*c.Get("sha256:a", 8, 16, Maker("def", &calls)), "def");  // another range
  EXPECT_EQ(calls, 2);
  SegmentCache::Counters k = c.counters();
  EXPECT_EQ(k.hits, 1u);
  EXPECT_EQ(k.made, 2u);
  EXPECT_EQ(k.hit_bytes, 3u);
  EXPECT_EQ(k.bytes, 6u);
  EXPECT_EQ(k.entries, 2u);
}

TEST(SegmentCache, EvictsTheLeastRecentlyUsedPastItsCapacity) {
  SegmentCache c(10);
  int calls = 0;
  ASSERT_TRUE(c.Get("d", 0, 1, Maker("1111", &calls)).ok());
  ASSERT_TRUE(c.Get("d", 1, 2, Maker("2222", &calls)).ok());
  ASSERT_TRUE(c.Get("d", 0, 1, Maker("", &calls)).ok());      // 0-1 is now the most recent
  ASSERT_TRUE(c.Get("d", 2, 3, Maker("3333", &calls)).ok());  // 12 bytes: 1-2 goes
  EXPECT_EQ(c.counters().bytes, 8u);
  EXPECT_EQ(*c.Get("d", 0, 1, Maker("new", &calls)), "1111");
  EXPECT_EQ(*c.Get("d", 1, 2, Maker("new", &calls)), "new");
  // Larger than the capacity: made, returned, not kept.
  EXPECT_EQ(*c.Get("d", 5, 6, Maker(std::string(11, 'x'), &calls)), std::string(11, 'x'));
  EXPECT_LE(c.counters().bytes, 10u);
  c.SetCapacity(4);
  EXPECT_LE(c.counters().bytes, 4u);
}

TEST(SegmentCache, OneCallerMakesWhileTheOthersWait) {
  SegmentCache c(1 << 20);
  std::atomic<int> calls{0};
  std::atomic<bool> release{false};
  auto slow = [&]() -> Result<std::string> {
    ++calls;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return std::string("made once");
  };
  std::vector<std::thread> readers;
  std::vector<std::string> got(4);
  for (int i = 0; i < 4; ++i)
    readers.emplace_back([&, i] { got[i] = *c.Get("sha256:x", 0, 100, slow); });
  while (calls == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the others are waiting now
  release = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(calls, 1);
  for (const std::string& s : got) EXPECT_EQ(s, "made once");
  EXPECT_EQ(c.counters().hits, 3u);
}

TEST(SegmentCache, AFailureIsNotKeptAndTheWaiterMakesItItself) {
  SegmentCache c(1 << 20);
  std::atomic<bool> release{false}, first_in{false};
  auto failing = [&]() -> Result<std::string> {
    first_in = true;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return Status::Corruption("segment 3: bad");
  };
  Result<std::string> a = std::string(), b = std::string();
  std::thread t1([&] { a = c.Get("d", 0, 1, failing); });
  while (!first_in) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  int calls = 0;
  std::thread t2([&] { b = c.Get("d", 0, 1, Maker("good", &calls)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  release = true;
  t1.join();
  t2.join();
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().message(), "segment 3: bad");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, "good");
  EXPECT_EQ(calls, 1);
}

TEST(SegmentCache, DropForgetsOneDigestOnly) {
  SegmentCache c(1 << 20);
  int calls = 0;
  ASSERT_TRUE(c.Get("sha256:ab", 0, 1, Maker("x", &calls)).ok());
  ASSERT_TRUE(c.Get("sha256:abc", 0, 1, Maker("y", &calls)).ok());
  c.Put("sha256:ab", 1, 2, "z");
  c.Drop("sha256:ab");
  EXPECT_EQ(c.counters().entries, 1u);
  EXPECT_EQ(*c.Get("sha256:abc", 0, 1, Maker("new", &calls)), "y");
  EXPECT_EQ(*c.Get("sha256:ab", 0, 1, Maker("new", &calls)), "new");
}

TEST(SegmentCache, DropWhileMakingKeepsNothing) {
  SegmentCache c(1 << 20);
  std::atomic<bool> release{false}, in{false};
  std::thread t([&] {
    ASSERT_TRUE(c.Get("d", 0, 1, [&]() -> Result<std::string> {
                   in = true;
                   while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
                   return std::string("stale");
                 }).ok());
  });
  while (!in) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  c.Drop("d");
  release = true;
  t.join();
  EXPECT_EQ(c.counters().entries, 0u);
}

TEST(SegmentCache, CapacityZeroMakesEveryTime) {
  SegmentCache c(0);
  int calls = 0;
  EXPECT_EQ(*c.Get("d", 0, 1, Maker("a", &calls)), "a");
  EXPECT_EQ(*c.Get("d", 0, 1, Maker("a", &calls)), "a");
  c.Put("d", 0, 1, "a");
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(c.counters().entries, 0u);
  EXPECT_EQ(c.counters().hits, 0u);
}

}  // namespace
}  // namespace cofferlayer
