// POSIX ACLs as the kernel passes them in system.posix_acl_{access,default}
// xattrs (little-endian: u32 version 2, then {u16 tag, u16 perm, u32 id}
// entries). With FUSE_CAP_POSIX_ACL the kernel enforces ACLs but leaves two jobs
// to the filesystem, done here as ext4 does them: keeping the access ACL in step
// with chmod, and giving new entries the parent's default ACL.
#ifndef COFFER_FS_ACL_H_
#define COFFER_FS_ACL_H_

#include <sys/types.h>

#include <map>
#include <string>

namespace cofferfs {

inline constexpr char kAclAccess[] = "system.posix_acl_access";
inline constexpr char kAclDefault[] = "system.posix_acl_default";

// After a chmod: sets the owner, mask (or group, without a mask) and other
// entries of the access ACL in `xattrs` (if any) from `mode`.
void AclChmod(std::map<std::string, std::string>* xattrs, mode_t mode);

// For a new entry in a directory whose xattrs are `parent`: if the parent has a
// default ACL, fills `child` with the inherited ACLs (the access ACL, and the
// default ACL too when `is_dir`) and returns the mode they imply for the
// requested `mode`; returns false (nothing changed) when there is none.
bool AclInherit(const std::map<std::string, std::string>& parent, bool is_dir, mode_t mode,
                std::map<std::string, std::string>* child, mode_t* new_mode);

// Setting the access ACL `value` on an inode: updates the permission bits of
// `*mode` from it and says whether the xattr must be kept (false when the ACL is
// only the three base entries, i.e. says no more than the mode). Returns false for
// a malformed ACL (EINVAL).
bool AclSetAccess(const std::string& value, uint32_t* mode, bool* keep);

}  // namespace cofferfs

#endif  // COFFER_FS_ACL_H_
