#include "acl.h"

#include <cstdint>
#include <cstring>
#include <vector>

namespace cofferfs {
namespace {

constexpr uint16_t kUserObj = 0x01, kUser = 0x02, kGroupObj = 0x04, kGroup = 0x08, kMask = 0x10,
                   kOther = 0x20;

struct Entry {
  uint16_t tag, perm;
  uint32_t id;
};

bool Parse(const std::string& s, std::vector<Entry>* out) {
  if (s.size() < 4 || (s.size() - 4) % 8 != 0) return false;
  uint32_t version;
  std::memcpy(&version, s.data(), 4);
  if (version != 2) return false;
  for (size_t off = 4; off < s.size(); off += 8) {
    Entry e;
    std::memcpy(&e.tag, s.data() + off, 2);
    std::memcpy(&e.perm, s.data() + off + 2, 2);
    std::memcpy(&e.id, s.data() + off + 4, 4);
    out->push_back(e);
  }
  return true;
}

std::string Encode(const std::vector<Entry>& v) {
  std::string s(4 + 8 * v.size(), '\0');
  uint32_t version = 2;
  std::memcpy(s.data(), &version, 4);
  for (size_t i = 0; i < v.size(); ++i) {
    std::memcpy(s.data() + 4 + 8 * i, &v[i].tag, 2);
    std::memcpy(s.data() + 6 + 8 * i, &v[i].perm, 2);
    std::memcpy(s.data() + 8 + 8 * i, &v[i].id, 4);
  }
  return s;
}

bool HasMask(const std::vector<Entry>& v) {
  for (const Entry& e : v)
    if (e.tag == kMask) return true;
  return false;
}

// Applies `mode` to the owner/group-or-mask/other entries with `op`.
template <typename Op>
void ApplyMode(std::vector<Entry>* v, mode_t mode, Op op) {
  bool mask = HasMask(*v);
  for (Entry& e : *v) {
    if (e.tag == kUserObj)
      e.perm = op(e.perm, (mode >> 6) & 7);
    else if (e.tag == kOther)
      e.perm = op(e.perm, mode & 7);
    else if (e.tag == (mask ? kMask : kGroupObj))
      e.perm = op(e.perm, (mode >> 3) & 7);
  }
}

}  // namespace

void AclChmod(std::map<std::string, std::string>* xattrs, mode_t mode) {
  auto it = xattrs->find(kAclAccess);
  std::vector<Entry> v;
  if (it == xattrs->end() || !Parse(it->second, &v)) return;
  ApplyMode(&v, mode, [](uint16_t, uint16_t m) { return m; });
  it->second = Encode(v);
}

bool AclInherit(const std::map<std::string, std::string>& parent, bool is_dir, mode_t mode,
                std::map<std::string, std::string>* child, mode_t* new_mode) {
  auto it = parent.find(kAclDefault);
  std::vector<Entry> v;
  if (it == parent.end() || !Parse(it->second, &v) || v.empty()) return false;
  if (is_dir) (*child)[kAclDefault] = it->second;
  ApplyMode(&v, mode, [](uint16_t p, uint16_t m) { return static_cast<uint16_t>(p & m); });
  mode_t bits = 0;
  bool mask = HasMask(v), extended = false;
  for (const Entry& e : v) {
    if (e.tag == kUserObj)
      bits |= (e.perm & 7) << 6;
    else if (e.tag == kOther)
      bits |= e.perm & 7;
    else if (e.tag == (mask ? kMask : kGroupObj))
      bits |= (e.perm & 7) << 3;
    if (e.tag == kUser || e.tag == kGroup || e.tag == kMask) extended = true;
  }
  // An ACL of only the three base entries says no more than the mode: not stored.
  if (extended) (*child)[kAclAccess] = Encode(v);
  *new_mode = (mode & ~0777) | bits;
  return true;
}

bool AclSetAccess(const std::string& value, uint32_t* mode, bool* keep) {
  std::vector<Entry> v;
  if (!Parse(value, &v)) return false;
  bool mask = HasMask(v);
  uint32_t bits = 0;
  *keep = false;
  for (const Entry& e : v) {
    if (e.tag == kUserObj)
      bits |= (e.perm & 7u) << 6;
    else if (e.tag == kOther)
      bits |= e.perm & 7u;
    else if (e.tag == (mask ? kMask : kGroupObj))
      bits |= (e.perm & 7u) << 3;
    if (e.tag == kUser || e.tag == kGroup || e.tag == kMask) *keep = true;
  }
  *mode = (*mode & ~0777u) | bits;
  return true;
}

}  // namespace cofferfs
