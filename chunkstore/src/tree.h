// Tree entries: what a snapshot records about each file, directory, link, device
// and fifo (docs/format.md §6), and the POSIX calls that read them from a live
// tree and apply them to a restored one.
//
// A snapshot's tree is a stream of entries in depth-first pre-order (a directory
// before its children, siblings sorted by name), so a restore can create each entry
// after its parent and a hardlink after its target.
#ifndef CHUNKSTORE_TREE_H_
#define CHUNKSTORE_TREE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chunkstore/status.h"
#include "format.h"

namespace chunkstore {

void EncodeEntry(const TreeEntry& e, std::string* out);
// Consumes one entry from the front of *in.
Status DecodeEntry(std::string_view* in, TreeEntry* e);

// True if `p` is a safe relative path: non-empty, no leading '/', no empty, "." or
// ".." components, no NUL.
bool IsSafeRelativePath(std::string_view p);

// Fills everything but `path`, `link` of hardlinks and `chunks` from lstat and
// l*xattr of `abs_path`.
Status ReadEntryMetadata(const std::string& abs_path, TreeEntry* e);

// Creates the non-file, non-dir entry (symlink, device, fifo) at abs_path.
Status CreateSpecial(const std::string& abs_path, const TreeEntry& e);
// Applies owner (if `owner`), mode, xattrs and times to abs_path (not following
// symlinks; symlinks get owner, xattrs and times only).
Status ApplyMetadata(const std::string& abs_path, const TreeEntry& e, bool owner);

}  // namespace chunkstore

#endif  // CHUNKSTORE_TREE_H_
