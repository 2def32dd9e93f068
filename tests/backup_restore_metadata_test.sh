#!/usr/bin/env bash
# Backup and restore keep everything a file system says about a tree: contents,
# types (symlinks, dangling ones too, hardlinks, fifo, char device), modes with
# setuid/setgid/sticky, owners, mtimes to the nanosecond, xattrs, POSIX ACLs,
# and holes (a sparse file comes back sparse). Also the snapshots --json fields.
source "$(dirname "$0")/lib.sh"
command -v setfattr >/dev/null && command -v getfacl >/dev/null ||
  fail "needs setfattr/getfattr (package attr) and setfacl/getfacl (package acl)"
[[ $(id -u) == 0 ]] || fail "needs root (mknod, chown)"

R=$T/repo
new_repo "$R"
S=$T/src
mkdir -p "$S/dir/sub/deeper" "$S/empty-dir" "$S/sticky"
echo "hello" >"$S/plain"
: >"$S/empty"
rand_file "$S/dir/big" $((5 * 1024 * 1024))
printf 'nested\n' >"$S/dir/sub/deeper/leaf"
# 100 MiB sparse file whose only data is at the end (and a little at 50 MiB).
truncate -s $((100 * 1024 * 1024)) "$S/sparse"
printf 'in the middle' | dd of="$S/sparse" bs=1 seek=$((50 * 1024 * 1024)) conv=notrunc status=none
printf 'tail data at the very end' | dd of="$S/sparse" bs=1 seek=$((100 * 1024 * 1024 - 25)) conv=notrunc status=none
# symlinks: relative, absolute-looking, dangling, to a directory
ln -s plain "$S/link-to-plain"
ln -s ../plain "$S/dir/link-up"
ln -s /nonexistent/target/x "$S/dangling"
ln -s dir/sub "$S/link-to-dir"
# three names of one inode, in different directories
printf 'linked content\n' >"$S/hard1"
ln "$S/hard1" "$S/dir/hard2"
ln "$S/hard1" "$S/dir/sub/hard3"
mkfifo "$S/fifo"
mknod "$S/null-dev" c 1 3
# owners, then modes (chown clears setuid)
chown 1234:5678 "$S/plain" "$S/dir/big" "$S/fifo"
chown -h 1234:5678 "$S/link-to-plain"
chown 4321:8765 "$S/dir/sub"
printf '#!/bin/sh\n' >"$S/setuid"
chmod 4755 "$S/setuid"
printf 'x\n' >"$S/setgid"
chmod 2750 "$S/setgid"
chmod 1777 "$S/sticky"
chmod 0600 "$S/dir/big"
chmod 0444 "$S/empty"
chmod 0751 "$S/dir/sub"
chmod 0640 "$S/fifo"
# xattrs (binary value too) and an ACL
setfattr -n user.comment -v "a comment" "$S/plain"
setfattr -n user.binary -v 0x00ff10ab "$S/plain"
setfattr -n user.on-dir -v "dir value" "$S/dir"
setfattr -n user.empty-value "$S/empty"
setfattr -n user.on-hardlink -v shared "$S/hard1"
setfacl -m u:1234:rw "$S/plain"
setfacl -m u:1234:rwx,g:5678:rx "$S/dir/sub"
setfacl -d -m u:1234:r "$S/dir/sub"   # a default ACL on a directory
# mtimes with nanoseconds, directories last (creating entries changes them)
touch -d '2001-02-03 04:05:06.123456789' "$S/plain" "$S/hard1"
touch -d '1999-12-31 23:59:59.999999999' "$S/dir/big"
touch -d '2010-01-01 00:00:00.000000001' "$S/sparse"
touch -h -d '2005-05-05 05:05:05.555555555' "$S/link-to-plain" "$S/dangling"
touch -d '2015-06-07 08:09:10.111111111' "$S/fifo" "$S/null-dev"
touch -d '2020-02-29 12:00:00.987654321' "$S/dir/sub/deeper" "$S/dir/sub" "$S/dir" "$S/empty-dir" "$S/sticky"
touch -d '2021-03-04 05:06:07.000000042' "$S"

manifest_src=$(tree_manifest "$S")
xattrs_src=$(cd "$S" && find . -print0 | sort -z | xargs -0 getfattr -h -d -e hex -m - -- 2>/dev/null)
acls_src=$(cd "$S" && find . ! -type l -print0 | sort -z | xargs -0 getfacl -n -- 2>/dev/null)
[[ $xattrs_src == *user.binary=0x00ff10ab* ]] || fail "setup: the xattr was not set (no xattr support in /tmp?)"
[[ $acls_src == *user:1234:rw-* ]] || fail "setup: the ACL was not set (no ACL support in /tmp?)"

expect_ok "backup" cf "$R" --json backup --set meta "$S"
snap=$OUT
id=$(jq -r .id <<<"$snap")
[[ $id =~ ^[0-9a-f]{16}$ ]] || fail "backup --json id '$id' is not 16 hex digits"

# snapshots --json: set, id, files, dirs, bytes, paths.
expect_ok "snapshots --json" cf "$R" --json snapshots
[[ $(jq length <<<"$OUT") == 1 ]] || fail "snapshots --json lists $(jq length <<<"$OUT") snapshots, want 1"
s=$(jq '.[0]' <<<"$OUT")
[[ $(jq -r .set <<<"$s") == meta ]] || fail "snapshot set is '$(jq -r .set <<<"$s")', want meta"
[[ $(jq -r .id <<<"$s") == "$id" ]] || fail "snapshots lists id $(jq -r .id <<<"$s"), backup said $id"
[[ $(jq -c .paths <<<"$s") == "[\"$S\"]" ]] || fail "snapshot paths $(jq -c .paths <<<"$s"), want [\"$S\"]"
want_files=$(find "$S" -type f -printf '%i\n' | sort -u | wc -l)   # hardlinks once
want_dirs=$(find "$S" -type d | wc -l)
want_bytes=$(find "$S" -type f -printf '%i %s\n' | sort -u | awk '{ s += $2 } END { print s }')
[[ $(jq -r .files <<<"$s") == "$want_files" ]] || fail "snapshot files = $(jq -r .files <<<"$s"), want $want_files"
[[ $(jq -r .dirs <<<"$s") == "$want_dirs" ]] || fail "snapshot dirs = $(jq -r .dirs <<<"$s"), want $want_dirs"
[[ $(jq -r .bytes <<<"$s") == "$want_bytes" ]] || fail "snapshot bytes = $(jq -r .bytes <<<"$s"), want $want_bytes"
[[ $(jq -r .files_read <<<"$s") == "$want_files" ]] || fail "first backup files_read = $(jq -r .files_read <<<"$s"), want $want_files"
[[ $(jq -r .time <<<"$s") =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$ ]] || fail "snapshot time '$(jq -r .time <<<"$s")'"
# The sparse file's 100 MiB of zeros must dedup to almost nothing.
nb=$(jq -r .new_bytes <<<"$snap")
((nb < 8 * 1024 * 1024)) || fail "backup stored $nb new bytes for 5 MiB of data plus a sparse file"

O=$T/out
expect_ok "restore meta@$id" cf "$R" restore "meta@$id" "$O"
RS=$(restored_root "$O" "$S")
same_tree "$S" "$RS" "restore"

manifest_out=$(tree_manifest "$RS")
[[ $manifest_out == "$manifest_src" ]] ||
  fail "metadata differs after restore (path|mode|uid|gid|mtime|links|dev|size|type):
$(diff <(echo "$manifest_src") <(echo "$manifest_out"))"
xattrs_out=$(cd "$RS" && find . -print0 | sort -z | xargs -0 getfattr -h -d -e hex -m - -- 2>/dev/null)
[[ $xattrs_out == "$xattrs_src" ]] ||
  fail "xattrs differ after restore:
$(diff <(echo "$xattrs_src") <(echo "$xattrs_out"))"
acls_out=$(cd "$RS" && find . ! -type l -print0 | sort -z | xargs -0 getfacl -n -- 2>/dev/null)
[[ $acls_out == "$acls_src" ]] ||
  fail "ACLs differ after restore:
$(diff <(echo "$acls_src") <(echo "$acls_out"))"

# Individual promises, so a failure names the exact property.
[[ $(readlink "$RS/dangling") == /nonexistent/target/x ]] || fail "dangling symlink target not kept"
[[ $(stat -c %h "$RS/dir/sub/hard3") == 3 ]] || fail "hardlink count $(stat -c %h "$RS/dir/sub/hard3"), want 3"
[[ $(stat -c %i "$RS/hard1") == $(stat -c %i "$RS/dir/sub/hard3") ]] || fail "hardlinks are not one inode"
[[ $(stat -c %a "$RS/setuid") == 4755 ]] || fail "setuid mode $(stat -c %a "$RS/setuid"), want 4755"
[[ $(stat -c %a "$RS/setgid") == 2750 ]] || fail "setgid mode $(stat -c %a "$RS/setgid"), want 2750"
[[ $(stat -c %a "$RS/sticky") == 1777 ]] || fail "sticky mode $(stat -c %a "$RS/sticky"), want 1777"
[[ $(stat -c '%u:%g' "$RS/plain") == 1234:5678 ]] || fail "owner of plain $(stat -c '%u:%g' "$RS/plain"), want 1234:5678"
[[ $(stat -c '%u:%g' "$RS/link-to-plain") == 1234:5678 ]] || fail "owner of a symlink not restored"
[[ $(stat -c %F "$RS/fifo") == fifo ]] || fail "fifo restored as $(stat -c %F "$RS/fifo")"
[[ $(stat -c '%F %t:%T' "$RS/null-dev") == "character special file 1:3" ]] || fail "char device restored as $(stat -c '%F %t:%T' "$RS/null-dev")"
[[ $(stat -c %.9Y "$RS/dir/big") == "$(stat -c %.9Y "$S/dir/big")" && $(stat -c %.9Y "$RS/dir/big") == *.999999999 ]] ||
  fail "mtime of dir/big $(stat -c %.9Y "$RS/dir/big"), want $(stat -c %.9Y "$S/dir/big")"
[[ $(getfattr -h --only-values -n user.binary "$RS/plain" 2>/dev/null | od -An -tx1 | tr -d ' \n') == 00ff10ab ]] || fail "binary xattr value not kept"
# sparse: same bytes, far fewer blocks than its size
cmp -s "$S/sparse" "$RS/sparse" || fail "sparse file content differs"
alloc=$(du -k "$RS/sparse" | cut -f1)
((alloc < 1024)) || fail "restored sparse 100 MiB file occupies $alloc KiB: not sparse"
pass
