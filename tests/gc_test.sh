#!/usr/bin/env bash
# gc: with every snapshot and blob alive it deletes nothing; after forgetting a
# snapshot whose data was half replaced it frees that data (packs deleted or
# repacked, bytes freed, stored bytes down), and everything still alive reads
# back: blobs, the remaining snapshot, check --read-data. gc and a backup started
# together both finish (one waits for the other) and leave a clean repository.
source "$(dirname "$0")/lib.sh"

R=$T/repo
# Small packs, so the replaced files' data sits in packs of its own.
new_repo "$R" --pack-size $((1024 * 1024))
rand_file "$T/A" $((2 * 1024 * 1024))
rand_file "$T/B" $((3 * 1024 * 1024 + 12345))
expect_ok "put A" cf "$R" put "$T/A"
dA=$OUT
expect_ok "put B" cf "$R" put "$T/B"
dB=$OUT
S=$T/src
mkdir -p "$S"
# Half the files are replaced later: those hold most of the bytes, so the packs
# of the first backup (where the files' chunks interleave, read in parallel)
# become mostly dead whatever the interleaving.
for i in 1 2 3 4; do rand_file "$S/f$i" $((1024 * 1024)); done
for i in 5 6 7 8; do rand_file "$S/f$i" $((64 * 1024)); done
echo "small" >"$S/small"
expect_ok "backup 1" cf "$R" --json backup --set g "$S"
id1=$(jq -r .id <<<"$OUT")
cp -a "$S" "$T/v1"
for i in 1 2 3 4; do rand_file "$S/f$i" $((1024 * 1024)); done   # half the data replaced
expect_ok "backup 2" cf "$R" --json backup --set g "$S"
id2=$(jq -r .id <<<"$OUT")
cp -a "$S" "$T/v2"

stored() { cf "$R" --json stats | jq -r .stored_bytes; }

# Nothing is garbage yet.
expect_ok "gc with everything alive" cf "$R" --json gc
[[ $(jq -r .dead_chunks <<<"$OUT") == 0 ]] || fail "gc found $(jq -r .dead_chunks <<<"$OUT") dead chunks while every snapshot is alive"
[[ $(jq -r .packs_deleted <<<"$OUT") == 0 && $(jq -r .bytes_freed <<<"$OUT") == 0 ]] || fail "gc with everything alive freed something: $OUT"
(( $(jq -r .live_chunks <<<"$OUT") > 0 )) || fail "gc counted no live chunks: $OUT"
expect_ok "check --read-data after a no-op gc" cf "$R" check --read-data
before=$(stored)

# Forget the first snapshot: its 4 MiB of replaced data becomes garbage.
expect_ok "forget g@$id1" cf "$R" --json forget "g@$id1"
[[ $(jq -r .forgotten <<<"$OUT") == "g@$id1" ]] || fail "forget --json said '$OUT'"
[[ $(snapshot_ids "$R" g) == "$id2" ]] || fail "after forget, snapshots lists: $(snapshot_ids "$R" g | tr '\n' ' ')"
expect_rc 1 "restore of the forgotten snapshot" cf "$R" restore "g@$id1" "$T/gone"
[[ $ERR == *"not found"* ]] || fail "restore of a forgotten snapshot: stderr '$ERR'"
expect_rc 1 "forget of it again" cf "$R" forget "g@$id1"
expect_ok "gc after forget" cf "$R" --json gc
gc=$OUT
note "gc after forget: $gc"
(( $(jq -r .dead_chunks <<<"$gc") > 0 )) || fail "gc after forget found no dead chunks: $gc"
(( $(jq -r .packs_deleted <<<"$gc") > 0 )) || fail "gc after forget deleted no pack: $gc"
(( $(jq -r .bytes_freed <<<"$gc") >= 3 * 1024 * 1024 )) || fail "gc after forget freed $(jq -r .bytes_freed <<<"$gc") bytes, want >= 3 MiB of the 4 MiB replaced"
after=$(stored)
(( before - after >= 3 * 1024 * 1024 )) || fail "stored bytes went from $before to $after: want at least 3 MiB less"
# Its packs are really gone from disk, the repository still checks clean.
packs_on_disk=$(find "$R/packs" -type f | wc -l)
[[ $(cf "$R" --json stats | jq -r .packs) == "$packs_on_disk" ]] || fail "stats counts $(cf "$R" --json stats | jq -r .packs) packs, $packs_on_disk on disk"
expect_ok "check after gc" cf "$R" check
expect_ok "check --read-data after gc" cf "$R" check --read-data
cmp -s <(cf "$R" cat "$dA") "$T/A" || fail "blob A does not read back after gc"
cmp -s <(cf "$R" cat "$dB") "$T/B" || fail "blob B does not read back after gc"
expect_ok "restore of the remaining snapshot" cf "$R" restore "g@$id2" "$T/r2"
same_tree "$T/v2" "$(restored_root "$T/r2" "$S")" "remaining snapshot after gc"
# A second gc finds nothing more to do: it deletes, repacks and frees nothing.
# (Dead chunks may remain, in packs that are mostly alive: by design those are
# not repacked, e.g. the forgotten snapshot's tree next to live file data.)
expect_ok "second gc" cf "$R" --json gc
[[ $(jq -r .packs_deleted <<<"$OUT") == 0 && $(jq -r .packs_repacked <<<"$OUT") == 0 && $(jq -r .bytes_freed <<<"$OUT") == 0 ]] ||
  fail "a second gc still deleted or repacked something: $OUT (first: $gc)"
[[ $(jq -r .live_chunks <<<"$OUT") == $(jq -r .live_chunks <<<"$gc") ]] || fail "live chunks changed between two gcs: $gc then $OUT"
(( $(jq -r .dead_chunks <<<"$OUT") < $(jq -r .dead_chunks <<<"$gc") )) || fail "the second gc found as many dead chunks as the first: $OUT (first: $gc)"
# A backup after gc dedups against what survived and restores.
expect_ok "backup after gc" cf "$R" --json backup --set g "$S"
[[ $(jq -r .files_read <<<"$OUT") == 0 ]] || fail "backup after gc re-read $(jq -r .files_read <<<"$OUT") files"

# gc and a backup at the same time. A third writer holds the lock first (put from
# a fifo), so both are started while it is held and must queue.
for i in $(seq 1 6); do rand_file "$S/new$i" $((1024 * 1024)); done
expect_ok "forget the latest" cf "$R" forget "g@$id2"   # some garbage for this gc
mkfifo "$T/fifo"
CF=("$COFFER" --repo "$R" --passphrase-file "$R.pass" -q)
"${CF[@]}" put - <"$T/fifo" >"$T/p.out" 2>"$T/p.err" &
pp=$!
bg_track "$pp"
exec 7>"$T/fifo"
wait_for 20 lock_held_by "$R" "$pp" || fail "the lock-holding put never took the lock"
"${CF[@]}" --lock-wait 60 --json backup --set g "$S" >"$T/b.out" 2>"$T/b.err" 7>&- &
bp=$!
bg_track "$bp"
"${CF[@]}" --lock-wait 60 --json gc >"$T/g.out" 2>"$T/g.err" 7>&- &
gp=$!
bg_track "$gp"
sleep 1
is_running "$bp" || fail "the backup did not wait for the lock: $(cat "$T/b.err")"
is_running "$gp" || fail "gc did not wait for the lock: $(cat "$T/g.err")"
echo "lock holder's blob" >&7
exec 7>&-
wait "$pp" || fail "the lock-holding put failed: $(cat "$T/p.err")"
wait "$bp" || fail "the backup queued behind gc failed: $(cat "$T/b.err")"
wait "$gp" || fail "gc queued with a backup failed: $(cat "$T/g.err")"
jq -e .id "$T/b.out" >/dev/null || fail "the concurrent backup printed: $(cat "$T/b.out")"
jq -e .live_chunks "$T/g.out" >/dev/null || fail "the concurrent gc printed: $(cat "$T/g.out")"
expect_ok "check --read-data after the concurrent gc and backup" cf "$R" check --read-data
id3=$(jq -r .id "$T/b.out")
expect_ok "restore of the concurrent backup" cf "$R" restore "g@$id3" "$T/r3"
same_tree "$S" "$(restored_root "$T/r3" "$S")" "backup made next to gc"
cmp -s <(cf "$R" cat "$(cat "$T/p.out")") <(echo "lock holder's blob") || fail "the lock holder's blob does not read back"
cmp -s <(cf "$R" cat "$dA") "$T/A" || fail "blob A does not read back at the end"
pass
