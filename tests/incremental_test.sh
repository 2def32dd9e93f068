#!/usr/bin/env bash
# Incremental backups: an unchanged tree is not read again (files_read == 0) and
# adds almost nothing; changing one file reads exactly that file; every snapshot
# restores its own version of the tree.
source "$(dirname "$0")/lib.sh"

R=$T/repo
new_repo "$R"
S=$T/src
mkdir -p "$S/small/a" "$S/small/b" "$S/big"
for i in $(seq 1 1000); do printf 'small file %d in a, %s\n' "$i" "$RANDOM" >"$S/small/a/f$i"; done
for i in $(seq 1 1000); do printf 'small file %d in b, %s\n' "$i" "$RANDOM" >"$S/small/b/f$i"; done
for i in 1 2 3; do rand_file "$S/big/r$i" $((4 * 1024 * 1024)); done
nfiles=$(find "$S" -type f | wc -l)
# Copies of each version are taken before its backup: reading a file or listing a
# directory updates its atime once after a change (relatime), and atimes are part
# of the tree stream, so reading the source after a backup would (rightly) make
# the next backup store a new tree.
cp -a "$S" "$T/v1"

backup() {  # backup: sets SNAP (the --json report)
  expect_ok "backup" cf "$R" --json backup --set inc "$S"
  SNAP=$OUT
}
field() { jq -r ".$1" <<<"$SNAP"; }

backup
id1=$(field id)
[[ $(field files) == "$nfiles" ]] || fail "first backup: files = $(field files), want $nfiles"
[[ $(field files_read) == "$nfiles" ]] || fail "first backup: files_read = $(field files_read), want $nfiles (all)"
(( $(field new_bytes) >= 12 * 1024 * 1024 )) || fail "first backup stored only $(field new_bytes) new bytes for 12 MiB of random data"

# Unchanged: nothing read, almost nothing new (one tree chunk at most: the entries
# of the directories above the tree, whose times change as /tmp changes).
backup
id2=$(field id)
[[ $id2 != "$id1" ]] || fail "second backup reused id $id1"
[[ $(field files) == "$nfiles" ]] || fail "unchanged backup: files = $(field files), want $nfiles"
[[ $(field files_read) == 0 ]] || fail "unchanged backup read $(field files_read) files, want 0"
note "unchanged backup: $(field new_bytes) new bytes"
(( $(field new_bytes) <= 64 * 1024 )) || fail "unchanged backup stored $(field new_bytes) new bytes, want <= 64 KiB"

# Change one small file's content in place (same inode and size: only the mtime
# and ctime tell).
f=$S/small/b/f500
printf SMALL | dd of="$f" conv=notrunc status=none
cp -a "$S" "$T/v3"
backup
id3=$(field id)
[[ $(field files_read) == 1 ]] || fail "after changing one file, the backup read $(field files_read) files, want 1"
(( $(field new_bytes) <= 128 * 1024 )) || fail "after changing one small file, the backup stored $(field new_bytes) new bytes"

# Change a big file in its middle: one file read, only a few chunks new.
printf 'XXXXXXXXXXXXXXXX' | dd of="$S/big/r2" bs=1 seek=2000000 conv=notrunc status=none
backup
id4=$(field id)
[[ $(field files_read) == 1 ]] || fail "after changing one big file, the backup read $(field files_read) files, want 1"
(( $(field new_bytes) <= 256 * 1024 )) || fail "a 16-byte change in a 4 MiB file stored $(field new_bytes) new bytes (dedup broken?)"

# Only the mtime changes (content the same): read again, nothing new but the tree.
touch -d '2001-01-01 00:00:00' "$S/small/a/f1"
backup
[[ $(field files_read) == 1 ]] || fail "after touching one file, the backup read $(field files_read) files, want 1"

# Each snapshot restores its own version.
[[ $(snapshot_ids "$R" inc | wc -l) == 5 ]] || fail "snapshots lists $(snapshot_ids "$R" inc | wc -l) snapshots, want 5"
for v in "1 $id1 $T/v1" "2 $id2 $T/v1" "3 $id3 $T/v3"; do
  read -r n id want <<<"$v"
  expect_ok "restore inc@$id" cf "$R" restore "inc@$id" "$T/out$n"
  same_tree "$want" "$(restored_root "$T/out$n" "$S")" "snapshot $n (inc@$id)"
done
grep -q SMALL "$(restored_root "$T/out1" "$S")/small/b/f500" && fail "snapshot 1 restored the changed version of f500"
grep -q SMALL "$(restored_root "$T/out3" "$S")/small/b/f500" || fail "snapshot 3 restored the old version of f500"
# a unique id prefix works too
expect_ok "restore inc@<prefix of id4>" cf "$R" restore "inc@${id4:0:6}" "$T/out4"
cmp -s "$S/big/r2" "$(restored_root "$T/out4" "$S")/big/r2" || fail "snapshot 4 has the wrong big/r2"
cmp -s "$T/v1/big/r2" "$(restored_root "$T/out3" "$S")/big/r2" || fail "snapshot 3 has the changed big/r2"
# latest = the last one
expect_ok "restore inc@latest" cf "$R" restore inc@latest "$T/out5"
same_tree "$S" "$(restored_root "$T/out5" "$S")" "inc@latest"
pass
