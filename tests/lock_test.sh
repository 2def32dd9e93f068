#!/usr/bin/env bash
# One writer at a time: a second writer gets exit 3 and "busy (held by pid N)";
# with --lock-wait it waits and then succeeds; readers run alongside a writer; a
# lock left by a killed writer does not block the next one.
#
# The first writer is `put -` reading from a fifo that this script holds open, so
# it holds the lock exactly as long as the test wants, without timing guesses.
source "$(dirname "$0")/lib.sh"
# (Background writers run "$COFFER" directly, not through the cf function, so
# that $! is the pid of coffer itself.)

R=$T/repo
new_repo "$R"
rand_file "$T/one" 3000000
rand_file "$T/two" 2000000
rand_file "$T/three" 1000000
mkdir -p "$T/tree" && cp "$T/three" "$T/tree/f"
expect_ok "first put" cf "$R" put "$T/three"
d3=$OUT
expect_ok "first backup" cf "$R" backup --set s "$T/tree"

mkfifo "$T/fifo"
"$COFFER" --repo "$R" --passphrase-file "$R.pass" -q --json put - <"$T/fifo" >"$T/w1.out" 2>"$T/w1.err" &
w1=$!
bg_track "$w1"
exec 7>"$T/fifo"  # lets the writer's open return; it now waits for data
wait_for 20 lock_held_by "$R" "$w1" || fail "the first writer (pid $w1) did not take the lock within 20 s: $(cat "$T/w1.err")"

# A second writer: busy, at once, naming the holder.
start=$SECONDS
expect_rc 3 "a second writer (put) while the lock is held" cf "$R" put "$T/two"
((SECONDS - start < 10)) || fail "the busy writer took $((SECONDS - start)) s to give up without --lock-wait"
[[ $ERR == *"busy (held by pid $w1)"* ]] || fail "busy message '$ERR' does not contain 'busy (held by pid $w1)'"
[[ $(wc -l <"$T/.run.err") == 1 ]] || fail "busy: want one line on stderr, got: $ERR"
expect_rc 3 "backup while the lock is held" cf "$R" backup --set s "$T/tree"
[[ $ERR == *"busy (held by pid $w1)"* ]] || fail "backup busy message: '$ERR'"
expect_rc 3 "gc while the lock is held" cf "$R" gc
expect_rc 3 "forget while the lock is held" cf "$R" forget s@latest
expect_rc 3 "--json put while the lock is held" cf "$R" --json put "$T/two"
[[ $(jq -r .exit_code <<<"$OUT") == 3 ]] || fail "--json busy error: '$OUT'"
# a short --lock-wait gives up after about that long
start=$(date +%s%N)
expect_rc 3 "put --lock-wait 1 while the lock is held" cf "$R" --lock-wait 1 put "$T/two"
el=$(( ($(date +%s%N) - start) / 1000000 ))
((el >= 900)) || fail "--lock-wait 1 gave up after $el ms"

# Readers work while the writer holds the lock.
expect_ok "cat while a writer runs" cf "$R" cat "$d3"
cf "$R" cat "$d3" | cmp -s - "$T/three" || fail "cat during a write gave other bytes"
expect_ok "snapshots while a writer runs" cf "$R" --json snapshots
[[ $(jq length <<<"$OUT") == 1 ]] || fail "snapshots during a write lists $(jq length <<<"$OUT")"
expect_ok "blobs while a writer runs" cf "$R" --json blobs
expect_ok "restore while a writer runs" cf "$R" restore s "$T/r1"
same_tree "$T/tree" "$(restored_root "$T/r1" "$T/tree")" "restore during a write"
expect_ok "check while a writer runs" cf "$R" check

# A waiting writer: starts now, succeeds once the first one is done. (7>&-: it
# must not inherit the fifo's write end, or the first writer never sees EOF.)
"$COFFER" --repo "$R" --passphrase-file "$R.pass" -q --lock-wait 20 put "$T/two" >"$T/w2.out" 2>"$T/w2.err" 7>&- &
w2=$!
bg_track "$w2"
sleep 1
is_running "$w2" || fail "the --lock-wait writer did not wait (exit: $(wait "$w2"; echo $?); $(cat "$T/w2.err"))"
lock_held_by "$R" "$w1" || fail "the lock changed hands while the first writer still ran"
cat "$T/one" >&7
exec 7>&-
wait "$w1" || fail "the first writer failed: $(cat "$T/w1.err")"
[[ $(jq -r .digest "$T/w1.out") == "sha256:$(sha_of "$T/one")" ]] || fail "the first writer stored $(cat "$T/w1.out")"
wait "$w2" || fail "the --lock-wait 20 writer failed after the first ended: $(cat "$T/w2.err")"
[[ $(cat "$T/w2.out") == "sha256:$(sha_of "$T/two")" ]] || fail "the waiting writer printed $(cat "$T/w2.out")"
[[ ! -s $T/w2.err ]] || fail "the waiting writer complained: $(cat "$T/w2.err")"
cf "$R" cat "sha256:$(sha_of "$T/one")" | cmp -s - "$T/one" || fail "the first writer's blob does not read back"
cf "$R" cat "sha256:$(sha_of "$T/two")" | cmp -s - "$T/two" || fail "the waiting writer's blob does not read back"
# A clean exit leaves no pid in the lock file (so no stale-lock report next time).
[[ ! -s $R/lock ]] || fail "lock file still holds '$(cat "$R/lock")' after every writer exited cleanly"

# Stale lock: a writer killed with SIGKILL while holding it.
mkfifo "$T/fifo2"
"$COFFER" --repo "$R" --passphrase-file "$R.pass" -q put - <"$T/fifo2" >/dev/null 2>"$T/w3.err" &
w3=$!
bg_track "$w3"
exec 8>"$T/fifo2"
printf 'some bytes that never make a blob' >&8
wait_for 20 lock_held_by "$R" "$w3" || fail "the writer to be killed never took the lock: $(cat "$T/w3.err")"
kill -9 "$w3"
wait "$w3" 2>/dev/null
exec 8>&-
[[ $(cat "$R/lock") == "$w3" ]] || fail "setup: the killed writer's pid is not in the lock file"
expect_ok "a writer after a writer was killed holding the lock" cf "$R" --json put "$T/three"
[[ $(jq -r .digest <<<"$OUT") == "$d3" ]] || fail "put after a stale lock printed '$OUT'"
[[ $ERR == *"stale lock"* && $ERR == *"pid $w3"* ]] || fail "stderr '$ERR' does not report the stale lock of pid $w3"
expect_ok "check after the stale lock" cf "$R" check --read-data
# The killed writer's half-written pack is gone from tmp/.
[[ -z $(ls -A "$R/tmp") ]] || fail "tmp/ still holds $(ls -A "$R/tmp") after the next writer opened"
pass
