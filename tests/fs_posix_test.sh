#!/usr/bin/env bash
# POSIX semantics of a writable head (/backups/<set>/current), checked against
# ext4: every operation runs on a local directory under /tmp (ext4) AND on the
# head, and the results (exit status, error text, contents, types, modes, owners,
# sizes, link counts, xattrs, symlink targets) must be the same. Covers writes in
# the middle, appends, truncation, renames (incl. over a file, of a dir, into its
# own subdir), rmdir of a non-empty dir, links, symlinks, chmod/chown, ns mtimes,
# xattrs (incl. binary values), fifos and device nodes, sparse files, a random
# pwrite workload, empty files; EROFS in snapshots and /blobs; and that all of it
# survives a clean unmount and remount.
source "$(dirname "$0")/fs_lib.sh"
export TZ=UTC LC_ALL=C

R=$T/repo M=$T/mnt L=$T/local
new_repo "$R"
mkdir -p "$L"
mount_fg "$R" "$M"
mkdir "$M/backups/px" || fail "mkdir backups/px did not create a set"
H=$M/backups/px/current
[[ -d $H ]] || fail "no head at $H after mkdir backups/px"

# both FN: runs FN DIR on the local dir and on the head; exit status and stderr
# (with the directory replaced by D) must match. Sets BOTH_OUT (the head's stdout
# with D for the directory).
both() {
  local fn=$1 rl rh el eh ol
  "$fn" "$L" >"$T/.l.out" 2>"$T/.l.err"
  rl=$?
  "$fn" "$H" >"$T/.h.out" 2>"$T/.h.err"
  rh=$?
  el=$(sed "s#$L#D#g" "$T/.l.err")
  eh=$(sed "s#$H#D#g" "$T/.h.err")
  ol=$(sed "s#$L#D#g" "$T/.l.out")
  BOTH_OUT=$(sed "s#$H#D#g" "$T/.h.out")
  [[ $rl == "$rh" ]] || fail "$fn: exit $rh on the head, $rl on ext4 (head stderr: $eh; ext4 stderr: $el)"
  [[ $el == "$eh" ]] || fail "$fn: stderr on the head '$eh', on ext4 '$el'"
  [[ $ol == "$BOTH_OUT" ]] || fail "$fn: stdout on the head '${BOTH_OUT:0:1000}', on ext4 '${ol:0:1000}'"
  return 0
}

# state DIR: every path with type+mode, owner, size (not for directories), link
# count, device numbers, symlink target, content digest and xattrs.
state() {
  (
    cd "$1" || exit 1
    find . -mindepth 1 -print0 | sort -z | xargs -0r stat -c '%n|%f|%u|%g|%s|%h|%t:%T|%F' |
      awk -F'|' 'BEGIN { OFS = "|" } { if ($8 == "directory") $5 = "-"; print }'
    find . -type l -print0 | sort -z | xargs -0r -I{} sh -c 'printf "%s -> %s\n" "$1" "$(readlink "$1")"' _ {}
    find . -type f -print0 | sort -z | xargs -0r sha256sum
    find . -mindepth 1 -print0 | sort -z | xargs -0r getfattr -h -d -m - -e hex 2>/dev/null
  )
}

# same_state WHEN: the head and the local dir are equal by state().
same_state() {
  state "$L" >"$T/.state.l"
  state "$H" >"$T/.state.h"
  local d
  d=$(diff "$T/.state.l" "$T/.state.h")
  [[ -z $d ]] || fail "$1: the head differs from ext4 (< ext4, > head): ${d:0:3000}"
}

# ---- create, write, read; overwrite in the middle; append; truncate -------------
rand_file "$T/base1m" $((1024 * 1024 + 333))
rand_file "$T/patch" 5000
op_create() { printf 'hello, coffer\n' >"$1/hello" && cat "$1/hello" && cp "$T/base1m" "$1/f1"; }
both op_create
[[ $BOTH_OUT == "hello, coffer" ]] || fail "read back '$BOTH_OUT' from a new file"
cmp -s "$T/base1m" "$H/f1" || fail "1 MiB file reads back different"
same_state "create"

op_overwrite() {
  dd if="$T/patch" of="$1/f1" bs=5000 seek=300000 oflag=seek_bytes conv=notrunc status=none &&
    dd if="$T/patch" of="$1/f1" bs=5000 seek=65530 oflag=seek_bytes conv=notrunc status=none &&
    printf 'X' | dd of="$1/f1" bs=1 seek=0 conv=notrunc status=none
}
both op_overwrite
cmp "$L/f1" "$H/f1" || fail "f1 differs after dd conv=notrunc writes in the middle"
[[ $(stat -c %s "$H/f1") == $(stat -c %s "$T/base1m") ]] || fail "dd conv=notrunc changed the size of f1"
same_state "overwrite in the middle"

op_append() { printf 'appended line\n' >>"$1/f1" && cat "$T/patch" >>"$1/f1" && printf 'tail' >>"$1/hello"; }
both op_append
cmp "$L/f1" "$H/f1" || fail "f1 differs after appends"
[[ $(cat "$H/hello") == $'hello, coffer\ntail' ]] || fail "append to hello: '$(cat "$H/hello")'"
same_state "append"

op_truncate() {
  truncate -s 100001 "$1/f1" && stat -c %s "$1/f1" && sha256sum <"$1/f1" &&
    truncate -s 300007 "$1/f1" && stat -c %s "$1/f1" && sha256sum <"$1/f1" &&
    cp "$1/f1" "$1/f2" && truncate -s 0 "$1/f2" && stat -c %s "$1/f2" &&
    printf 'again' >>"$1/f2" && cat "$1/f2"
}
both op_truncate
cmp "$L/f1" "$H/f1" || fail "f1 differs after truncate down and up"
cmp -s <(head -c 100001 "$T/base1m" | tail -c 1000) <(head -c 100001 "$H/f1" | tail -c 1000) ||
  fail "the bytes before the truncation point changed"
[[ $(tail -c +100002 "$H/f1" | tr -d '\0' | wc -c) == 0 ]] || fail "the tail grown by truncate -s is not zeros"
same_state "truncate"

# ---- names: rename, rename over, rename a dir, into own subdir, rmdir, unlink ----
op_names() {
  mkdir -p "$1/d1/sub/deeper" && printf 'in d1\n' >"$1/d1/sub/deeper/file" &&
    printf 'a\n' >"$1/ra" && printf 'bb\n' >"$1/rb" &&
    mv "$1/ra" "$1/ra2" && mv -f "$1/ra2" "$1/rb" && cat "$1/rb" &&
    mv "$1/d1" "$1/d2" && cat "$1/d2/sub/deeper/file" &&
    mkdir "$1/empty" && rmdir "$1/empty" && mkdir "$1/gone" && printf 'x' >"$1/gone/x" &&
    rm "$1/gone/x" && rmdir "$1/gone" && ! test -e "$1/gone" &&
    mv "$1/d2/sub" "$1/sub-moved" && mv "$1/sub-moved" "$1/d2/sub" && ls "$1/d2/sub"
}
both op_names
[[ $BOTH_OUT == $'a\nin d1\ndeeper' ]] || fail "rename over a file / of a dir: $(echo $BOTH_OUT)"
same_state "renames"
op_into_own_subdir() { errno_of 'os.rename(a[0], a[0] + "/sub/deeper/x")' "$1/d2"; }
both op_into_own_subdir
[[ $BOTH_OUT == EINVAL ]] || fail "rename of a dir into its own subdir: $BOTH_OUT, want EINVAL"
op_rmdir_nonempty() { rmdir "$1/d2/sub"; }
both op_rmdir_nonempty
[[ $(cat "$T/.h.err") == *"Directory not empty"* ]] || fail "rmdir of a non-empty dir: '$(cat "$T/.h.err")'"
op_rmdir_nonempty_py() { errno_of 'os.rmdir(a[0])' "$1/d2/sub"; }
both op_rmdir_nonempty_py
[[ $BOTH_OUT == ENOTEMPTY ]] || fail "rmdir of a non-empty dir: $BOTH_OUT, want ENOTEMPTY"
op_rename_dir_over_nonempty() { mkdir "$1/tgt" && touch "$1/tgt/f" && mkdir "$1/srcd" && errno_of 'os.rename(a[0], a[1])' "$1/srcd" "$1/tgt"; }
both op_rename_dir_over_nonempty
[[ $BOTH_OUT == ENOTEMPTY ]] || fail "rename of a dir over a non-empty dir: $BOTH_OUT, want ENOTEMPTY"
op_rename_misc() {
  errno_of 'os.rename(a[0], a[1])' "$1/hello" "$1/tgt"       # file over a dir
  errno_of 'os.rename(a[0], a[1])' "$1/srcd" "$1/hello"      # dir over a file
  errno_of 'os.unlink(a[0])' "$1/srcd"                       # unlink of a dir
  errno_of 'os.rmdir(a[0])' "$1/hello"                       # rmdir of a file
  errno_of 'os.mkdir(a[0])' "$1/srcd"                        # mkdir over a dir
  errno_of 'os.unlink(a[0])' "$1/no-such"
  errno_of 'os.rename(a[0], a[1])' "$1/no-such" "$1/x"
  errno_of 'os.open(a[0], os.O_CREAT | os.O_EXCL | os.O_WRONLY)' "$1/hello"
  errno_of 'os.open(a[0] + "/x", os.O_RDONLY)' "$1/hello"  # a file as a dir
  rm -r "$1/tgt" "$1/srcd"
}
both op_rename_misc
[[ $BOTH_OUT == $'EISDIR\nENOTDIR\nEISDIR\nENOTDIR\nEEXIST\nENOENT\nENOENT\nEEXIST\nENOTDIR' ]] ||
  fail "errnos of bad renames/unlinks: $(echo $BOTH_OUT)"
same_state "after failed renames"

# ---- symlinks and hardlinks -------------------------------------------------------
op_symlinks() {
  ln -s hello "$1/sl" && ln -s d2/sub "$1/sldir" && ln -s /nonexistent/target "$1/dangling" &&
    readlink "$1/sl" "$1/sldir" "$1/dangling" && cat "$1/sl" && ls "$1/sldir/" &&
    stat -L -c %F "$1/sldir" && ! cat "$1/dangling" 2>/dev/null
}
both op_symlinks
[[ $BOTH_OUT == *$'hello\nd2/sub\n/nonexistent/target\n'* ]] || fail "readlink: $BOTH_OUT"
same_state "symlinks"

op_hardlinks() {
  printf 'shared v1\n' >"$1/h1" && stat -c %h "$1/h1" &&
    ln "$1/h1" "$1/h2" && stat -c %h "$1/h1" "$1/h2" &&
    ln "$1/h1" "$1/d2/h3" && stat -c %h "$1/h1" "$1/h2" "$1/d2/h3" &&
    rm "$1/h2" && stat -c %h "$1/h1" "$1/d2/h3" &&
    printf 'written via h3\n' >>"$1/d2/h3" && cat "$1/h1" &&
    printf 'REWRITE' | dd of="$1/h1" conv=notrunc status=none && cat "$1/d2/h3" &&
    [[ $(stat -c %i "$1/h1") == $(stat -c %i "$1/d2/h3") ]] && errno_of 'os.link(a[0], a[1])' "$1/d2" "$1/dirlink"
}
both op_hardlinks
[[ $BOTH_OUT == $'1\n2\n2\n3\n3\n3\n2\n2\nshared v1\nwritten via h3\nREWRITEv1\nwritten via h3\nEPERM' ]] ||
  fail "hardlink counts/contents: $(echo $BOTH_OUT)"
same_state "hardlinks"

# ---- attributes: chmod, chown, ns mtimes ----------------------------------------------
op_attrs() {
  printf 'attrs\n' >"$1/at" && mkdir "$1/atd" &&
    chown 1234:5678 "$1/at" && chown 42:43 "$1/atd" && chmod 4751 "$1/at" && chmod 1777 "$1/atd" &&
    chown -h 7:8 "$1/sl" &&
    touch -d '2001-02-03 04:05:06.123456789' "$1/at" && touch -m -d '1999-12-31 23:59:59.000000001' "$1/atd" &&
    touch -a -d '2010-01-01 00:00:00.5' "$1/at" &&
    stat -c '%a %u %g %y %x' "$1/at" && stat -c '%a %u %g %y' "$1/atd" && stat -c '%u %g' "$1/sl" &&
    chmod 0600 "$1/at" && stat -c %a "$1/at" &&
    touch -h -d '2003-03-03 03:03:03.333333333' "$1/sl" && stat -c %y "$1/sl"
}
both op_attrs
[[ $BOTH_OUT == *"4751 1234 5678 2001-02-03 04:05:06.123456789 +0000 2010-01-01 00:00:00.500000000 +0000"* ]] ||
  fail "chmod/chown/touch -d on a file: $BOTH_OUT"
[[ $BOTH_OUT == *"1777 42 43 1999-12-31 23:59:59.000000001 +0000"* ]] || fail "chmod/chown/touch on a dir: $BOTH_OUT"
[[ $BOTH_OUT == *"2003-03-03 03:03:03.333333333 +0000" ]] || fail "touch -h on a symlink: $BOTH_OUT"
same_state "chmod/chown/touch"
# mtimes in ns of everything set so far
mt() { stat -c '%n %.9Y' "$1/at" "$1/atd" "$1/sl" | sed "s#$1#D#"; }
[[ $(mt "$L") == $(mt "$H") ]] || fail "ns mtimes differ: $(mt "$H") vs $(mt "$L")"

# ---- xattrs ----------------------------------------------------------------------------
op_xattrs() {
  printf 'x\n' >"$1/xf" && mkdir "$1/xd" &&
    setfattr -n user.plain -v hello "$1/xf" &&
    setfattr -n user.binary -v 0x00ff10fe000102 "$1/xf" &&
    setfattr -n user.empty "$1/xf" &&
    setfattr -n user.ondir -v dirvalue "$1/xd" &&
    setfattr -n trusted.t -v root-only "$1/xf" &&
    getfattr -n user.plain --only-values "$1/xf" && echo &&
    getfattr -n user.binary --only-values "$1/xf" | od -An -tx1 &&
    getfattr --absolute-names -d -m - -e hex "$1/xf" "$1/xd" &&
    setfattr -n user.plain -v replaced "$1/xf" && getfattr -n user.plain --only-values "$1/xf" && echo &&
    setfattr -x user.plain "$1/xf" &&
    { getfattr -n user.plain "$1/xf" 2>&1; true; } &&
    { setfattr -x user.never "$1/xf" 2>&1; true; } &&
    python3 -c 'import os,sys; print(sorted(os.listxattr(sys.argv[1])))' "$1/xf" &&
    errno_of 'os.setxattr(a[0], "user.binary", b"x", os.XATTR_CREATE)' "$1/xf" &&
    errno_of 'os.setxattr(a[0], "user.nope", b"x", os.XATTR_REPLACE)' "$1/xf"
}
both op_xattrs
[[ $BOTH_OUT == *" 00 ff 10 fe 00 01 02"* ]] || fail "binary xattr: $BOTH_OUT"
[[ $BOTH_OUT == *"user.plain: No such attribute"* ]] || fail "removed xattr still there: $BOTH_OUT"
[[ $BOTH_OUT == *$'\nEEXIST\nENODATA' ]] || fail "XATTR_CREATE/REPLACE: $BOTH_OUT"
same_state "xattrs"

# ---- fifos, device nodes, empty files -----------------------------------------------------
op_special() {
  mkfifo -m 0640 "$1/fifo" && mknod "$1/null" c 1 3 && mknod -m 0600 "$1/blk" b 8 17 &&
    stat -c '%F %t %T %a' "$1/fifo" "$1/null" "$1/blk" &&
    touch "$1/empty0" && stat -c '%s %F' "$1/empty0" && cat "$1/empty0" &&
    printf 'not empty' >"$1/emptied" && : >"$1/emptied" && stat -c '%s' "$1/emptied" && wc -c <"$1/emptied"
}
both op_special
[[ $BOTH_OUT == $'fifo 0 0 640\ncharacter special file 1 3 644\nblock special file 8 11 600\n0 regular empty file\n0\n0' ]] ||
  fail "fifos/devices/empty files: $(echo $BOTH_OUT)"
# a fifo in the head works as a fifo
( printf 'through the fifo\n' >"$H/fifo" ) &
w=$!
got=$(timeout 10 cat "$H/fifo")
wait "$w"
[[ $got == "through the fifo" ]] || fail "a fifo in the head does not pass data: '$got'"
same_state "special files"

# ---- sparse file; random pwrite workload ----------------------------------------------------
op_sparse() {
  truncate -s 50M "$1/sparse" && printf '0123456789' |
    dd of="$1/sparse" bs=10 seek=$((40 * 1024 * 1024)) oflag=seek_bytes conv=notrunc status=none &&
    stat -c %s "$1/sparse" && dd if="$1/sparse" bs=1 skip=$((40 * 1024 * 1024 - 2)) count=14 status=none | od -An -c
}
both op_sparse
[[ $BOTH_OUT == "52428800"* ]] || fail "sparse file size: $BOTH_OUT"
cmp "$L/sparse" "$H/sparse" || fail "sparse file reads back different"

cat >"$T/randwrite.py" <<'EOF'
import os, random, sys
seed, paths = int(sys.argv[1]), sys.argv[2:]
rnd = random.Random(seed)
size = 3 * 1024 * 1024
init = rnd.randbytes(size)
fds = []
for p in paths:
    with open(p, "wb") as f:
        f.write(init)
    fds.append(os.open(p, os.O_RDWR))
for i in range(200):
    off = rnd.randrange(0, size + 200000)
    n = rnd.choice([1, 7, 4096, 65536, 65537, rnd.randrange(1, 300000)])
    data = rnd.randbytes(n)
    for fd in fds:
        if os.pwrite(fd, data, off) != n:
            sys.exit("short pwrite")
    if i % 20 == 0:  # read back while the writes are not folded in yet
        roff, rn = rnd.randrange(0, size), rnd.randrange(1, 200000)
        got = [os.pread(fd, rn, roff) for fd in fds]
        if any(g != got[0] for g in got):
            sys.exit("pread at %d+%d differs after %d writes" % (roff, rn, i + 1))
sizes = [os.fstat(fd).st_size for fd in fds]
if len(set(sizes)) != 1:
    sys.exit("sizes differ: %s" % sizes)
for fd in fds:
    os.close(fd)
print("ok", sizes[0])
EOF
seed=$RANDOM
note "random pwrites, seed $seed"
out=$(python3 "$T/randwrite.py" "$seed" "$L/rand" "$H/rand" 2>&1) || fail "random pwrite workload (seed $seed): $out"
cmp "$L/rand" "$H/rand" || fail "random pwrite workload (seed $seed): the files differ after close"
same_state "sparse and random writes"

# ---- read-only places: a snapshot and /blobs ----------------------------------------------------
mkdir "$M/backups/px/snapshots/s1" || fail "mkdir snapshots/s1 did not snapshot the head"
S=$M/backups/px/snapshots/s1
cmp "$L/f1" "$S/f1" || fail "the snapshot's f1 differs from the head's"
hex=$(printf 'blob for erofs' | sha256sum | cut -d' ' -f1)
printf 'blob for erofs' >"$M/uploads/b" && mv "$M/uploads/b" "$M/blobs/sha256/$hex" || fail "could not publish a blob"
B=$M/blobs/sha256
for what in "touch $S/newfile" "touch $S/hello" "mkdir $S/newdir" "rm -f $S/hello" "rm -rf $S/d2" "chmod 777 $S/hello" \
  "ln -s x $S/newlink" "mv $S/hello $S/hello2" "setfattr -n user.x -v y $S/hello" "truncate -s 0 $S/hello" \
  "touch $B/newfile" "touch $B/$hex" "mkdir $B/newdir" "rm -f $B/$hex" "chmod 777 $B/$hex" \
  "mkdir $M/blobs/x" "touch $M/newfile" "mkdir $M/newdir"; do
  # shellcheck disable=SC2086
  expect_err "Read-only file system" "'$what'" $what
done
expect_errno EROFS "open O_WRONLY of a snapshot file" 'os.open(a[0], os.O_WRONLY)' "$S/hello"
expect_errno EROFS "O_CREAT in a snapshot" 'os.open(a[0], os.O_CREAT | os.O_WRONLY, 0o644)' "$S/new"
expect_errno EROFS "mkdir in a snapshot subdir" 'os.mkdir(a[0])' "$S/d2/sub/new"
expect_errno EROFS "unlink in a snapshot" 'os.unlink(a[0])' "$S/hello"
expect_errno EROFS "rmdir in a snapshot" 'os.rmdir(a[0])' "$S/d2/sub/deeper"
expect_errno EROFS "mknod in a snapshot" 'os.mkfifo(a[0])' "$S/ff"
expect_errno EROFS "link in a snapshot" 'os.link(a[0], a[1])' "$S/hello" "$S/hello-link"
expect_errno EROFS "open O_WRONLY of a blob" 'os.open(a[0], os.O_WRONLY)' "$B/$hex"
expect_errno EROFS "unlink of a blob" 'os.unlink(a[0])' "$B/$hex"
[[ -e $S/hello && -d $S/d2 && ! -e $S/newfile ]] || fail "the failed writes changed the snapshot"
[[ $(cat "$B/$hex") == "blob for erofs" ]] || fail "the failed writes changed the blob"
same_state "after the EROFS attempts"

# ---- all of it survives a clean unmount and remount ---------------------------------------------
state "$H" >"$T/state.before"
umount_clean "$M" "$DAEMON"
mount_fg "$R" "$M"
same_state "after unmount and remount"
mt2() { stat -c '%n %.9Y' "$1/at" "$1/atd" "$1/sl" | sed "s#$1#D#"; }
[[ $(mt2 "$L") == $(mt2 "$H") ]] || fail "ns mtimes after remount: $(mt2 "$H") vs $(mt2 "$L")"
cmp "$L/sparse" "$H/sparse" || fail "sparse file after remount"
cmp "$L/f1" "$M/backups/px/snapshots/s1/f1" || fail "snapshot s1 after remount"
umount_clean "$M" "$DAEMON"
expect_ok "check --read-data after the posix workload" cf "$R" check --read-data
pass
