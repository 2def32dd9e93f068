#!/usr/bin/env bash
# Copying a tree into heads with cp -a, rsync -aHAX and tar -x, and reading it
# back: contents (diff -r) and metadata (type, mode, owner, size, link count,
# ns mtime, xattrs, ACLs) equal to the source, also after a remount. Then
# snapshots (coffer snapshot through the daemon; mkdir in snapshots/) show the
# same tree read-only, and do not change when the head does.
#
# The source holds fifos and device nodes too; GNU diff reports two fifos as
# different even on ext4, so diff -r skips them by name (fifo*, dev*) and the
# metadata listing (stat: type, mode, device numbers) compares them.
source "$(dirname "$0")/fs_lib.sh"
export LC_ALL=C

R=$T/repo M=$T/mnt S=$T/src
new_repo "$R"

# ---- the source tree -----------------------------------------------------------------
mkdir -p "$S/big" "$S/sizes" "$S/links" "$S/meta/private" "$S/meta/sticky" "$S/meta/sgid" "$S/acl/dflt" "$S/special"
rand_file "$S/big/r20m" $((20 * 1024 * 1024))
for n in 0 1 4095 4096 4097 65535 65536 65537 1048583 3000000; do rand_file "$S/sizes/s$n" "$n"; done
yes 'compressible line of text for coffer' | head -c $((5 * 1024 * 1024)) >"$S/sizes/text5m"
for d in $(seq 1 10); do
  mkdir -p "$S/many/d$d"
  for i in $(seq 1 20); do printf 'file %d/%d %s\n' "$d" "$i" "$RANDOM" >"$S/many/d$d/f$i"; done
done
ln -s ../sizes/s4096 "$S/links/rel"
ln -s /etc/hostname "$S/links/abs"
ln -s does/not/exist "$S/links/dangling"
ln -s ../many "$S/links/todir"
ln "$S/big/r20m" "$S/links/hard-r20m"
ln "$S/sizes/s65537" "$S/links/hard-a"
ln "$S/sizes/s65537" "$S/many/d1/hard-b"
printf 'secret\n' >"$S/meta/private/key" && chmod 0600 "$S/meta/private/key" && chmod 0700 "$S/meta/private"
printf 'ro\n' >"$S/meta/readonly" && chmod 0444 "$S/meta/readonly"
printf '#!/bin/sh\n' >"$S/meta/suid" && chmod 4755 "$S/meta/suid"
chmod 1777 "$S/meta/sticky" && chmod 2775 "$S/meta/sgid"
printf 'in sgid\n' >"$S/meta/sgid/f"
chown 1000:1000 "$S/meta/readonly"
chown 65534:65534 "$S/meta/private/key"
chown 123:456 "$S/meta/sgid" "$S/meta/sgid/f"
chown -h 77:88 "$S/links/rel"
setfattr -n user.plain -v hello "$S/sizes/s4096"
setfattr -n user.binary -v 0x00ff00fe7f80 "$S/sizes/s4096"
setfattr -n user.dir -v "on a dir" "$S/meta"
setfattr -n trusted.root -v only "$S/meta/readonly"
setfattr -n user.big -v "$(head -c 3000 /dev/zero | tr '\0' 'v')" "$S/big/r20m"
setfacl -m u:65534:rw,g:100:r "$S/acl" 2>/dev/null || true
printf 'acl file\n' >"$S/acl/file"
setfacl -m u:65534:rw,g:100:r,m::rw "$S/acl/file" || fail "setfacl on the source (ext4) failed"
setfacl -d -m u:65534:rwx,g::rx "$S/acl/dflt" || fail "setfacl -d on the source failed"
printf 'inherits\n' >"$S/acl/dflt/inherited"
mkfifo "$S/special/fifo1" && mkfifo -m 0600 "$S/special/fifo2"
mknod "$S/special/dev-null" c 1 3 && mknod -m 0640 "$S/special/dev-blk" b 7 5
# ns mtimes on everything, deepest first (so directory times stay as set)
python3 - "$S" <<'EOF'
import os, random, sys
rnd = random.Random(7)
paths = []
for root, dirs, files in os.walk(sys.argv[1]):
    paths += [os.path.join(root, n) for n in dirs + files]
paths.sort(key=lambda p: -p.count("/"))
for p in paths + [sys.argv[1]]:
    t = rnd.randrange(10**9, 2 * 10**9) * 10**9 + rnd.randrange(1, 10**9)
    os.utime(p, ns=(t, t), follow_symlinks=False)
EOF
[[ $(stat -c %h "$S/sizes/s65537") == 3 ]] || fail "source: hardlink setup"
[[ -n $(getfacl -n -p --omit-header "$S/acl/dflt/inherited" | grep 'user:65534') ]] || fail "source: default ACL not inherited on ext4"
note "source: $(du -sh "$S" | cut -f1), $(find "$S" | wc -l) paths"

# same_copy DIR WHAT: DIR equals the source in contents and metadata. Reports
# with fail_later, so that one copy method failing does not hide the others.
same_copy() {
  local d
  d=$(diff -r --no-dereference -x 'fifo*' -x 'dev-*' "$S" "$1" 2>&1)
  [[ -z $d ]] || fail_later "$2: diff -r: ${d:0:3000}"
  meta_listing "$S" >"$T/.meta.a"
  meta_listing "$1" >"$T/.meta.b"
  d=$(diff "$T/.meta.a" "$T/.meta.b")
  [[ -z $d ]] || fail_later "$2: metadata differs (< source, > $1): ${d:0:4000}"
  [[ $(stat -c '%F %t %T' "$1/special/fifo1" "$1/special/dev-null" "$1/special/dev-blk" | tr '\n' ' ') == \
    "fifo 0 0 character special file 1 3 block special file 7 5 " ]] || fail_later "$2: special files: $(stat -c '%F %t %T' "$1/special/"*)"
}

mount_fg "$R" "$M"
for set in acl cp rs tar; do mkdir "$M/backups/$set" || fail "mkdir backups/$set"; done

# ---- ACLs set the mode bits, and a minimal ACL is no xattr (as on ext4) ------------
# cp -a and tar --acls rely on both: cp creates a file 0600 and sets the final
# mode by setting the ACL; tar sets a minimal ACL on every file it extracts.
acl_probe() {  # acl_probe DIR: prints what ext4 would print
  printf 'x\n' >"$1/p1" && chmod 0644 "$1/p1" && setfacl -m u::r,g::-,o::- "$1/p1" && stat -c %a "$1/p1" &&
    getfattr -h -d -m - -e hex --absolute-names "$1/p1" | grep -c posix_acl_access
  printf 'x\n' >"$1/p2" && chmod 0600 "$1/p2" && setfacl -m u:65534:rwx,m::rx,o::r "$1/p2" && stat -c %a "$1/p2" &&
    getfacl -n -p --omit-header "$1/p2" | tr '\n' ' '
  echo
  mkdir "$1/p3" && chmod 0700 "$1/p3" && setfacl -b -m u::rwx,g::rx,o::rx "$1/p3" && stat -c %a "$1/p3"
}
mkdir -p "$T/aclref"
acl_probe "$T/aclref" >"$T/acl.ext4" 2>&1
acl_probe "$M/backups/acl/current" >"$T/acl.head" 2>&1
[[ $(cat "$T/acl.ext4") == "$(cat "$T/acl.head")" ]] ||
  fail_later "setfacl in a head: ext4 gives '$(cat "$T/acl.ext4")', the head '$(cat "$T/acl.head")' (modes after setfacl; count of stored system.posix_acl_access xattrs for a minimal ACL)"

# ---- cp -a ----------------------------------------------------------------------------------
expect_ok "cp -a into a head" cp -a "$S/." "$M/backups/cp/current/"
same_copy "$M/backups/cp/current" "cp -a"
note "cp -a: compared"

# ---- rsync -aHAX -----------------------------------------------------------------------------
HAVE_RSYNC=1
if command -v rsync >/dev/null; then
  expect_ok "rsync -aHAX into a head" rsync -aHAX --numeric-ids "$S/" "$M/backups/rs/current/"
  same_copy "$M/backups/rs/current" "rsync -aHAX"
  # a second rsync finds nothing to transfer
  expect_ok "second rsync" rsync -aHAX --numeric-ids -i "$S/" "$M/backups/rs/current/"
  [[ -z $OUT ]] || fail_later "a second rsync -aHAX transferred again: ${OUT:0:500}"
  note "rsync: compared"
else
  HAVE_RSYNC=0
  echo "SKIP [$TEST_NAME]: rsync is not installed (the tests may not install it); the rsync round trip did not run"
fi

# ---- tar -x ------------------------------------------------------------------------------------
expect_ok "tar -c of the source" tar --format=posix --xattrs --xattrs-include='*' --acls -C "$S" -cf "$T/src.tar" .
expect_ok "tar -x into a head" tar --xattrs --xattrs-include='*' --acls --numeric-owner -C "$M/backups/tar/current" -xpf "$T/src.tar"
same_copy "$M/backups/tar/current" "tar -x"
note "tar -x: compared"

# ---- snapshots ----------------------------------------------------------------------------------
expect_ok "coffer snapshot cp (through the daemon)" "$COFFER" --repo "$R" --json snapshot cp
id=$(jq -r .id <<<"$OUT")
[[ $id =~ ^[0-9a-f]{16}$ ]] || fail "coffer snapshot printed no id: $OUT"
SN=$M/backups/cp/snapshots/$id
[[ -d $SN ]] || fail "snapshot $id not listed under backups/cp/snapshots: $(ls "$M/backups/cp/snapshots")"
[[ $(ls "$M/backups/cp/snapshots") == "$id" ]] || fail "snapshots/ lists '$(ls "$M/backups/cp/snapshots")', want $id"
d=$(diff -r --no-dereference -x 'fifo*' -x 'dev-*' "$S" "$SN" 2>&1)
[[ -z $d ]] || fail "snapshot differs from the source: ${d:0:3000}"
MINDEPTH=1 meta_listing "$S" >"$T/meta.src"
MINDEPTH=1 meta_listing "$SN" >"$T/meta.snap"
d=$(diff "$T/meta.src" "$T/meta.snap")
[[ -z $d ]] || fail_later "snapshot metadata differs from the source: ${d:0:3000}"
# the snapshot's root keeps the head root's attributes (writes still get EROFS)
[[ $(stat -c '%a %u %g' "$SN") == $(stat -c '%a %u %g' "$M/backups/cp/current") ]] ||
  fail "snapshot root $(stat -c '%a %u %g' "$SN"), want the head's $(stat -c '%a %u %g' "$M/backups/cp/current")"
# read-only
expect_err "Read-only file system" "touch in a snapshot" touch "$SN/newfile"
expect_err "Read-only file system" "write into a snapshot file" dd if=/dev/zero of="$SN/sizes/s4096" bs=1 count=1 conv=notrunc status=none
expect_err "Read-only file system" "rm in a snapshot" rm -f "$SN/sizes/s1"
expect_err "Read-only file system" "mkdir in a snapshot" mkdir "$SN/newdir"
expect_err "Read-only file system" "chmod in a snapshot" chmod 777 "$SN/sizes/s1"
expect_err "Read-only file system" "setfattr in a snapshot" setfattr -n user.x -v 1 "$SN/sizes/s1"
expect_err "Read-only file system" "setfacl in a snapshot" setfacl -m u:1:r "$SN/sizes/s1"
expect_err "Read-only file system" "mv in a snapshot" mv "$SN/sizes/s1" "$SN/sizes/s1b"
e=$(errno_of 'os.rename(a[0], a[1])' "$SN/sizes/s1" "$M/backups/cp/current/x")
[[ $e == EXDEV || $e == EROFS ]] || fail "rename out of a snapshot into the head: $e, want EXDEV or EROFS"
[[ -f $SN/sizes/s1 && ! -e $M/backups/cp/current/x ]] || fail "a failed rename out of a snapshot moved the file"
# the head changes, the snapshot does not
rm "$M/backups/cp/current/big/r20m" && printf 'changed\n' >"$M/backups/cp/current/sizes/s1" ||
  fail "changing the head after the snapshot"
cmp -s "$S/big/r20m" "$SN/big/r20m" || fail "the snapshot changed with the head (big/r20m)"
cmp -s "$S/sizes/s1" "$SN/sizes/s1" || fail "the snapshot changed with the head (sizes/s1)"
[[ $(stat -c %h "$SN/links/hard-r20m") == 2 ]] || fail "hardlink count in the snapshot: $(stat -c %h "$SN/links/hard-r20m")"

# mkdir in snapshots/ takes a snapshot with that name
expect_ok "mkdir snapshots/mysnap" mkdir "$M/backups/tar/snapshots/mysnap"
[[ $(ls "$M/backups/tar/snapshots") == mysnap ]] || fail "snapshots/ of tar lists '$(ls "$M/backups/tar/snapshots")'"
d=$(diff -r --no-dereference -x 'fifo*' -x 'dev-*' "$S" "$M/backups/tar/snapshots/mysnap" 2>&1)
[[ -z $d ]] || fail "snapshot mysnap differs from the source: ${d:0:3000}"
expect_ok "coffer snapshots beside the daemon" cf "$R" --json snapshots --set tar
[[ $(jq -r '.[].tag' <<<"$OUT") == mysnap ]] || fail "coffer snapshots --set tar: $OUT"
expect_errno EEXIST "mkdir of an existing snapshot name" 'os.mkdir(a[0])' "$M/backups/tar/snapshots/mysnap"
expect_err "Read-only file system" "touch in snapshot mysnap" touch "$M/backups/tar/snapshots/mysnap/x"

# ---- everything again after a remount -------------------------------------------------------------
umount_clean "$M" "$DAEMON"
mount_fg "$R" "$M"
same_copy "$M/backups/tar/current" "tar -x, after remount"
((HAVE_RSYNC == 0)) || same_copy "$M/backups/rs/current" "rsync, after remount"
d=$(diff -r --no-dereference -x 'fifo*' -x 'dev-*' "$S" "$M/backups/cp/snapshots/$id" 2>&1)
[[ -z $d ]] || fail "snapshot $id after remount: ${d:0:3000}"
d=$(diff -r --no-dereference -x 'fifo*' -x 'dev-*' "$S" "$M/backups/tar/snapshots/mysnap" 2>&1)
[[ -z $d ]] || fail "snapshot mysnap after remount: ${d:0:3000}"
[[ ! -e $M/backups/cp/current/big/r20m && $(cat "$M/backups/cp/current/sizes/s1") == changed ]] ||
  fail "changes to the cp head after the snapshot were lost at remount"
umount_clean "$M" "$DAEMON"
expect_ok "restore of snapshot mysnap" cf "$R" restore tar@mysnap "$T/restored"
d=$(diff -r --no-dereference -x 'fifo*' -x 'dev-*' "$S" "$T/restored" 2>&1)
[[ -z $d ]] || fail "coffer restore of a snapshot taken through the mount: ${d:0:3000}"
expect_ok "check --read-data" cf "$R" check --read-data
pass
