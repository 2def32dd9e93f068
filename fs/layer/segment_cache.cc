#include "segment_cache.h"

#include <condition_variable>
#include <list>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace cofferlayer {

using chunkstore::Result;
using chunkstore::Status;

namespace {

// The digest first, so Drop finds a layer's entries by prefix.
std::string Key(std::string_view digest, uint64_t begin, uint64_t end) {
  std::string k(digest);
  k.push_back('\0');
  k.append(std::to_string(begin)).push_back('-');
  k.append(std::to_string(end));
  return k;
}

bool OfDigest(const std::string& key, std::string_view digest) {
  return key.size() > digest.size() && key.compare(0, digest.size(), digest) == 0 &&
         key[digest.size()] == '\0';
}

}  // namespace

struct SegmentCache::Impl {
  // A segment being made; callers that want it wait for `done`.
  struct Flight {
    bool done = false;
    bool keep = true;  // false once Drop ran for its digest meanwhile
    Status status;
    std::shared_ptr<const std::string> data;
  };
  struct Entry {
    std::shared_ptr<const std::string> data;
    std::list<std::string>::iterator lru;
  };

  std::mutex mu;
  std::condition_variable landed;
  uint64_t capacity;
  std::unordered_map<std::string, Entry> ready;
  std::list<std::string> lru;  // most recent first
  std::unordered_map<std::string, std::shared_ptr<Flight>> flights;
  Counters c;

  void Evict() {  // REQUIRES: mu held
    while (c.bytes > capacity && !lru.empty()) Erase(ready.find(lru.back()));
  }
  void Erase(std::unordered_map<std::string, Entry>::iterator it) {
    c.bytes -= it->second.data->size();
    lru.erase(it->second.lru);
    ready.erase(it);
  }
  void Keep(const std::string& key, std::shared_ptr<const std::string> data) {
    if (data->size() > capacity) return;
    lru.push_front(key);
    c.bytes += data->size();
    ready.emplace(key, Entry{std::move(data), lru.begin()});
    Evict();
  }
};

SegmentCache::SegmentCache(uint64_t capacity_bytes) : impl_(std::make_unique<Impl>()) {
  impl_->capacity = capacity_bytes;
}
SegmentCache::~SegmentCache() = default;

SegmentCache& SegmentCache::Global() {
  static SegmentCache* cache = new SegmentCache(0);
  return *cache;
}

void SegmentCache::SetCapacity(uint64_t bytes) {
  std::lock_guard<std::mutex> l(impl_->mu);
  impl_->capacity = bytes;
  impl_->Evict();
}

Result<std::string> SegmentCache::Get(std::string_view digest, uint64_t begin, uint64_t end,
                                      const std::function<Result<std::string>()>& make) {
  Impl& m = *impl_;
  const std::string key = Key(digest, begin, end);
  std::unique_lock<std::mutex> l(m.mu);
  if (m.capacity == 0) {
    ++m.c.made;
    l.unlock();
    return make();
  }
  for (;;) {
    if (auto it = m.ready.find(key); it != m.ready.end()) {
      m.lru.splice(m.lru.begin(), m.lru, it->second.lru);
      std::shared_ptr<const std::string> data = it->second.data;
      ++m.c.hits;
      m.c.hit_bytes += data->size();
      l.unlock();
      return std::string(*data);
    }
    auto f = m.flights.find(key);
    if (f == m.flights.end()) break;
    std::shared_ptr<Impl::Flight> flight = f->second;
    m.landed.wait(l, [&] { return flight->done; });
    if (flight->status.ok()) {
      ++m.c.hits;
      m.c.hit_bytes += flight->data->size();
      l.unlock();
      return std::string(*flight->data);
    }
    // Its maker failed: try the cache again, then make it here.
  }
  auto flight = std::make_shared<Impl::Flight>();
  m.flights.emplace(key, flight);
  l.unlock();
  Result<std::string> r = make();
  l.lock();
  m.flights.erase(key);
  ++m.c.made;
  flight->done = true;
  if (r.ok()) {
    flight->data = std::make_shared<const std::string>(std::move(r).value());
    if (flight->keep) m.Keep(key, flight->data);
  } else {
    flight->status = r.status();
  }
  m.landed.notify_all();
  if (!flight->status.ok()) return flight->status;
  std::shared_ptr<const std::string> data = flight->data;
  l.unlock();
  return std::string(*data);
}

void SegmentCache::Put(std::string_view digest, uint64_t begin, uint64_t end,
                       const std::string& bytes) {
  Impl& m = *impl_;
  const std::string key = Key(digest, begin, end);
  std::lock_guard<std::mutex> l(m.mu);
  if (m.capacity == 0 || bytes.size() > m.capacity) return;
  if (auto it = m.ready.find(key); it != m.ready.end()) m.Erase(it);
  m.Keep(key, std::make_shared<const std::string>(bytes));
}

void SegmentCache::Drop(std::string_view digest) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> l(m.mu);
  for (auto it = m.ready.begin(); it != m.ready.end();) {
    auto next = std::next(it);
    if (OfDigest(it->first, digest)) m.Erase(it);
    it = next;
  }
  for (auto& [key, flight] : m.flights)
    if (OfDigest(key, digest)) flight->keep = false;
}

SegmentCache::Counters SegmentCache::counters() const {
  std::lock_guard<std::mutex> l(impl_->mu);
  Counters c = impl_->c;
  c.entries = impl_->ready.size();
  c.capacity = impl_->capacity;
  return c;
}

}  // namespace cofferlayer
