#!/usr/bin/env bash
# Durability of heads and blobs: a clean unmount keeps everything (contents and
# metadata, the head's own root directory too); after kill -9 of the daemon,
# everything fsync'd (file or directory), every file closed more than ~200 ms
# before, and every published blob is intact, and the repository checks clean.
# Then 5 rounds of kill -9 at a random moment during a cp -a of a 30 MiB tree:
# the repository checks clean and the head is a consistent tree (every file
# readable and either complete or empty, never torn; earlier data intact).
# COFFER_TEST_SEED=N replays the same kill delays.
source "$(dirname "$0")/fs_lib.sh"
export LC_ALL=C
SEED=${COFFER_TEST_SEED:-$$}
RANDOM=$SEED
note "seed $SEED (COFFER_TEST_SEED=$SEED to replay)"

R=$T/repo M=$T/mnt S=$T/src
new_repo "$R" --pack-size $((8 * 1024 * 1024))
H=$M/backups/p/current

# ---- a tree, a clean unmount, a remount -----------------------------------------------
mkdir -p "$S/a/b" "$S/c"
rand_file "$S/a/r5m" $((5 * 1024 * 1024))
rand_file "$S/a/b/small" 1000
for i in $(seq 1 30); do printf 'n%d\n' "$i" >"$S/c/f$i"; done
ln -s ../a/r5m "$S/c/link"
ln "$S/a/b/small" "$S/c/hard"
setfattr -n user.k -v v "$S/a/b/small"
chmod 0640 "$S/c/f1" && chown 5:6 "$S/c/f2" && touch -d '2002-02-02 02:02:02.202020202' "$S/c/f3"
touch -d '2003-03-03 03:03:03.3' "$S/a/b" "$S/c"

mount_fg "$R" "$M"
mkdir "$M/backups/p" || fail "mkdir backups/p"
# (tar, not cp -a: cp -a sets modes through POSIX ACLs, which fs_roundtrip covers)
tar --format=posix --xattrs --xattrs-include='user.*' -C "$S" -cf - . | tar --xattrs --xattrs-include='user.*' -C "$H" -xpf - ||
  fail "tar into the head"
# the head's own root directory, as cp -a or tar would set it
chmod 0750 "$H" && chown 12:34 "$H" && setfattr -n user.root -v here "$H" &&
  touch -d '2004-04-04 04:04:04.404040404' "$H" || fail "setting the attributes of the head's root"
root_attrs() { stat -c '%a %u %g %.9Y' "$1"; getfattr --absolute-names --only-values -n user.root "$1" 2>&1; }
want_root=$(root_attrs "$H")
[[ $want_root == $'750 12 34 1081051444.404040404\nhere' ]] || fail "root attributes in the mount: $want_root"
umount_clean "$M" "$DAEMON"
mount_fg "$R" "$M"
same_tree "$S" "$H" "after a clean unmount and remount"
MINDEPTH=1 meta_listing "$S" >"$T/meta.src"
MINDEPTH=1 meta_listing "$H" >"$T/meta.head"
d=$(diff "$T/meta.src" "$T/meta.head")
[[ -z $d ]] || fail "metadata after remount (< source, > head): ${d:0:3000}"
got_root=$(root_attrs "$H")
[[ $got_root == "$want_root" ]] ||
  fail_later "the head's root directory lost its attributes at remount: got '$(echo $got_root)', want '$(echo $want_root)' (stat -c '%a %u %g %.9Y', user.root)"
note "clean unmount: tree intact"

# ---- kill -9: what was fsync'd, closed earlier or published survives --------------------------
rand_file "$T/closed" $((2 * 1024 * 1024 + 7))
cp "$T/closed" "$H/closed-early" || fail "write closed-early"
printf 'edit' | dd of="$H/a/r5m" bs=1 seek=1000000 conv=notrunc status=none || fail "edit of a/r5m"
printf 'edit' | dd of="$S/a/r5m" bs=1 seek=1000000 conv=notrunc status=none
rm "$H/c/f30" && rm "$S/c/f30"
mv "$H/c/f29" "$H/c/f29-moved" && mv "$S/c/f29" "$S/c/f29-moved"
rand_file "$T/blob" 777777
hex=$(sha_of "$T/blob")
cp "$T/blob" "$M/uploads/b" && mv "$M/uploads/b" "$M/blobs/sha256/$hex" || fail "publish a blob"
sleep 1.2   # > 1 s since those closes: the commit thread has saved them
rand_file "$T/fsynced" $((3 * 1024 * 1024))
mkfifo "$T/go"
# writes, fsyncs, says so, then keeps the file open (and writes more, unsynced)
python3 - "$T/fsynced" "$H/fsynced" "$T/go" <<'EOF' &
import os, sys, time
data = open(sys.argv[1], "rb").read()
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, data)
os.fsync(fd)
open(sys.argv[3], "w").write("synced\n")
os.write(fd, b"after the fsync")
time.sleep(60)
EOF
writer=$!
_PIDS+=("$writer")
[[ $(timeout 30 cat "$T/go") == synced ]] || fail "the fsync writer did not report"
# a file closed just now, made durable by fsync of its directory
printf 'dir fsync\n' >"$H/c/dirsynced" && python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$H/c" ||
  fail "fsync of the head directory"
# a file closed just before the kill: absent, empty or complete, never torn
cp "$T/closed" "$H/racy"
sync
crash "$M" "$DAEMON"
kill -9 "$writer" 2>/dev/null; wait "$writer" 2>/dev/null
expect_ok "check --read-data after kill -9" cf "$R" check --read-data
mount_fg "$R" "$M"
[[ $(head -c $((3 * 1024 * 1024)) "$H/fsynced" | sha256sum | cut -d' ' -f1) == $(sha_of "$T/fsynced") ]] ||
  fail "the fsync'd file (still open at the kill) is not intact after kill -9 (size $(stat -c %s "$H/fsynced" 2>&1))"
sz=$(stat -c %s "$H/fsynced")
((sz == 3 * 1024 * 1024 || sz == 3 * 1024 * 1024 + 15)) || fail "the fsync'd file has size $sz"
cmp "$T/closed" "$H/closed-early" || fail "a file closed >1 s before kill -9 is not intact"
[[ $(cat "$H/c/dirsynced" 2>&1) == "dir fsync" ]] || fail "a file made durable by fsync of its directory: $(cat "$H/c/dirsynced" 2>&1)"
if [[ -e $H/racy ]]; then
  s=$(stat -c %s "$H/racy")
  ((s == 0)) || cmp -s "$T/closed" "$H/racy" || fail "a file closed just before kill -9 is torn (size $s)"
fi
rm -f "$H/racy" "$H/fsynced" "$H/closed-early" "$H/c/dirsynced"
same_tree "$S" "$H" "the older tree after kill -9"
cmp "$T/blob" "$M/blobs/sha256/$hex" || fail "a blob published before kill -9 is not intact"
cp "$T/closed" "$H/closed-early" && cp "$T/fsynced" "$H/fsynced" && cp "$T/closed" "$S/closed-early" &&
  cp "$T/fsynced" "$S/fsynced" || fail "rewriting after the kill"
python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$H/fsynced" || fail "fsync"
umount_clean "$M" "$DAEMON"
expect_ok "check --read-data after unmount" cf "$R" check --read-data
note "kill -9: fsync'd, closed and published data intact"

# ---- kill -9 during cp -a of a 30 MiB tree, 5 times ----------------------------------------------
# Each round copies fresh random data (dedup would make a repeated copy too fast
# to hit), and the kill lands at a random moment within the time an
# uninterrupted copy takes (measured first).
make_src() {  # make_src DIR: 3 x 8 MiB + 60 x 100 kB random, a symlink, a hardlink
  mkdir -p "$1/big" "$1/small"
  for i in 1 2 3; do rand_file "$1/big/b$i" $((8 * 1024 * 1024)); done
  for i in $(seq 1 60); do rand_file "$1/small/s$i" 100000; done
  ln -s big/b1 "$1/link"
  ln "$1/big/b2" "$1/small/hard-b2"
}

# consistent DIR SRC: every regular file under DIR reads back, and is the file of
# the same path in SRC, complete, or empty (still open at the last save).
consistent() {
  local f rel s
  while IFS= read -r -d '' f; do
    rel=${f#"$1"/}
    [[ -e $2/$rel ]] || { echo "unexpected file $rel"; return 1; }
    s=$(stat -c %s "$f") || { echo "stat $rel failed"; return 1; }
    cat "$f" >/dev/null || { echo "reading $rel failed"; return 1; }
    ((s == 0)) || cmp -s "$f" "$2/$rel" || { echo "$rel is torn: $s bytes, not equal to the source"; return 1; }
  done < <(find "$1" -type f -print0)
  if [[ -L $1/link && $(readlink "$1/link") != big/b1 ]]; then echo "link -> $(readlink "$1/link")"; return 1; fi
  return 0
}

make_src "$T/calib"
mount_fg "$R" "$M"
t0=$(date +%s%N)
cp -a "$T/calib" "$H/calib" || fail "calibration cp -a"
span=$((($(date +%s%N) - t0) / 1000000))
umount_clean "$M" "$DAEMON"
note "an uninterrupted cp -a of 30 MiB takes $span ms"
interrupted=0
for it in 1 2 3 4 5; do
  make_src "$T/c$it"
  mount_fg "$R" "$M"
  cp -a "$T/c$it" "$H/iter$it" 2>"$T/cp.err" &
  cpp=$!
  ms=$((5 + RANDOM % (span * 9 / 10 + 1)))
  sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
  crash "$M" "$DAEMON"
  wait "$cpp"
  cprc=$?
  ((cprc == 0)) || interrupted=$((interrupted + 1))
  note "round $it: killed after $ms ms (cp exit $cprc)"
  expect_ok "round $it: check --read-data after kill -9" cf "$R" check --read-data
  mount_fg "$R" "$M"
  out=$(find "$H" -print0 | xargs -0 stat -c %n 2>&1 >/dev/null)
  [[ -z $out ]] || fail "round $it: stat of the head: $out"
  for j in $(seq 1 "$it"); do
    [[ -d $H/iter$j ]] || continue
    why=$(consistent "$H/iter$j" "$T/c$j") || fail "round $it: the copy iter$j is not consistent: $why"
  done
  d=$(diff -r --no-dereference -x 'iter*' -x calib "$S" "$H" 2>&1)
  [[ -z $d ]] || fail "round $it: the tree written before the kills differs: ${d:0:2000}"
  # finish this round's copy, so that later rounds also check complete ones
  rm -rf "$H/iter$it" && cp -a "$T/c$it" "$H/iter$it" || fail "round $it: cp -a after the remount failed"
  same_tree "$T/c$it" "$H/iter$it" "round $it: the copy redone after the remount"
  umount_clean "$M" "$DAEMON"
done
((interrupted > 0)) || fail "no kill landed during a copy (every cp -a finished first): the rounds tested nothing"
expect_ok "check --read-data at the end" cf "$R" check --read-data
mount_fg "$R" "$M"
for j in 1 2 3 4 5; do same_tree "$T/c$j" "$H/iter$j" "final: iter$j"; done
same_tree "$T/calib" "$H/calib" "final: the calibration copy"
d=$(diff -r --no-dereference -x 'iter*' -x calib "$S" "$H" 2>&1)
[[ -z $d ]] || fail "final: the first tree differs: ${d:0:2000}"
umount_clean "$M" "$DAEMON"
pass
