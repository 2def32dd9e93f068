#!/usr/bin/env bash
# `coffer mount` without -f: returns 0 only once the mount is live (mountpoint
# is true the moment it returns), detached (own session, stdout/stderr let go);
# with a wrong passphrase it returns 2 and nothing is mounted or left running;
# `coffer umount` returns 0, the daemon saves, exits and releases the
# repository; SIGTERM does the same.
source "$(dirname "$0")/fs_lib.sh"

R=$T/repo M=$T/mnt
new_repo "$R"
mkdir -p "$M" "$T/mnt-bad"
_MOUNTS+=("$M" "$T/mnt-bad")

# lock_pid: the pid in the repository's lock file (the daemon, while mounted)
lock_pid() { cat "$R/lock" 2>/dev/null; }
# daemon_gone PID: the process has exited
daemon_gone() { ! kill -0 "$1" 2>/dev/null; }

# ---- a wrong passphrase: exit 2, nothing mounted, nothing left running ---------------------------
printf 'not the passphrase\n' >"$T/wrong.pass"
expect_rc 2 "mount with a wrong passphrase" "$COFFER" --repo "$R" --passphrase-file "$T/wrong.pass" mount "$T/mnt-bad"
[[ $ERR == *"wrong passphrase"* ]] || fail "mount with a wrong passphrase: stderr '$ERR'"
! mountpoint -q "$T/mnt-bad" || fail "a mount with a wrong passphrase mounted"
sleep 0.3
left=$(ps -eo pid=,args= | grep -F -- "$T/mnt-bad" | grep -v grep)
[[ -z $left ]] || fail "a process is left after the failed mount: $left"
[[ ! -s $R/lock ]] || fail "the failed mount left a pid in the lock file: $(cat "$R/lock")"
expect_rc 1 "mount on a missing directory" cf "$R" mount "$T/no-such-dir"
[[ $ERR == *"not a directory"* ]] || fail "mount on a missing directory: '$ERR'"
! mountpoint -q "$T/no-such-dir" 2>/dev/null || fail "mounted on a missing directory?"

# ---- without -f: returns once mounted, detached ----------------------------------------------------
mkfifo "$T/out"
"$COFFER" --repo "$R" --passphrase-file "$R.pass" mount "$M" >"$T/out" 2>&1 &
mp=$!
# the output pipe must reach EOF when `coffer mount` returns: the daemon must not
# keep the caller's stdout/stderr open
out=$(timeout 30 cat "$T/out")
crc=$?
wait_exit "$mp" 10 || fail "coffer mount did not return"
mounted_now=$(mountpoint -q "$M" && echo yes || echo no)
pid=$(lock_pid)
[[ -n $pid ]] && _PIDS+=("$pid")
[[ $crc == 0 ]] || fail "the daemon kept coffer mount's stdout/stderr open (reading it timed out)"
[[ $EXIT_STATUS == 0 ]] || fail "coffer mount (no -f) exited $EXIT_STATUS: $out"
[[ $mounted_now == yes ]] || fail "coffer mount (no -f) returned before the mount was live"
[[ -n $pid ]] && is_running "$pid" || fail "no daemon holds the repository after coffer mount: lock '$(lock_pid)'"
[[ $pid != "$mp" ]] || fail "the daemon is the process that returned?"
[[ $(ps -o sid= -p "$pid" | tr -d ' ') != $(ps -o sid= -p $$ | tr -d ' ') ]] || fail "the daemon did not leave the caller's session"
[[ -S $R/daemon.sock ]] || fail "no control socket at $R/daemon.sock"
mkdir "$M/backups/d" && printf 'written via a daemonized mount\n' >"$M/backups/d/current/f" || fail "writing through the mount"

# ---- coffer umount: 0, the daemon saves and exits ------------------------------------------------------
expect_ok "coffer umount" "$COFFER" umount "$M"
! mountpoint -q "$M" || fail "still mounted after coffer umount returned"
wait_for() { local d=$((SECONDS + $1)); shift; until "$@"; do ((SECONDS < d)) || return 1; sleep 0.05; done; }
wait_for 20 daemon_gone "$pid" || fail "daemon $pid still running 20 s after coffer umount"
[[ ! -s $R/lock ]] || fail "the lock file still names '$(cat "$R/lock")' after the daemon exited"
[[ ! -e $R/daemon.sock ]] || fail "the control socket is left after the daemon exited"
expect_ok "offline snapshot of the saved head" cf "$R" snapshot d --name after-umount
expect_ok "restore after umount" cf "$R" restore d@after-umount "$T/restored"
[[ $(cat "$T/restored/f" 2>&1) == "written via a daemonized mount" ]] || fail "the head after umount: $(ls -R "$T/restored" 2>&1)"
expect_rc 1 "coffer umount of something not mounted" "$COFFER" umount "$M"

# ---- SIGTERM: saves, unmounts, exits ----------------------------------------------------------------------
# Files closed just before the signal must be saved too: close(2) has returned,
# so the writer is entitled to them (the kernel sends FUSE_RELEASE after close
# returns, so this is where a daemon that stops reading requests at once loses
# data). Many rounds, as the window is short (COFFER_TERM_ROUNDS=N to change).
lost=()
ROUNDS=${COFFER_TERM_ROUNDS:-40}
lock_free() { [[ ! -s $R/lock ]]; }
for ((round = 1; round <= ROUNDS + 1; round++)); do
  expect_ok "coffer mount (round $round)" cf "$R" mount "$M"
  mountpoint -q "$M" || fail "not mounted after coffer mount returned (round $round)"
  pid=$(lock_pid)
  _PIDS+=("$pid")
  if ((round > 1)); then  # what the previous round wrote before its SIGTERM
    p=$((round - 1))
    for j in 1 2 3 4 5 6 7 8; do
      f=$M/backups/d/current/t$p.$j
      got=$(cat "$f" 2>&1)
      [[ $got == "round $p file $j" ]] || lost+=("t$p.$j: '$got' ($(stat -c %s "$f" 2>&1) bytes)")
    done
  fi
  ((round <= ROUNDS)) || { umount_pid=$pid; break; }
  for j in 1 2 3 4 5 6 7 8; do printf 'round %d file %d\n' "$round" "$j" >"$M/backups/d/current/t$round.$j" || fail "write before SIGTERM"; done
  kill -TERM "$pid"
  wait_unmounted "$M" 20 || fail "still mounted 20 s after SIGTERM (round $round)"
  wait_for 20 lock_free || fail "the lock still names '$(cat "$R/lock")' 20 s after SIGTERM"
done
expect_ok "coffer umount after the SIGTERM rounds" "$COFFER" umount "$M"
wait_for 20 daemon_gone "$umount_pid" || fail "the last daemon still runs 20 s after coffer umount"
((${#lost[@]} == 0)) || fail_later "files closed just before SIGTERM were not saved: ${lost[*]}"
expect_ok "check after the daemons" cf "$R" check --read-data
pass
