#!/usr/bin/env bash
# kill -9 of `coffer serve` while a push is being published: the process must
# die, and the repository must be usable again at once (a new serve mounts and
# the pushed blobs that got 201 are there).
#
# Regression test of a bug found by tests/torture.py (B1 in docs/reliability.md):
# the registry ran in the daemon's process and published uploads by rename() on
# that process's own FUSE mount; a SIGKILL landing while that rename waited for
# the FUSE threads left a process that could never finish dying (the mount and
# the repository lock stayed held). The registry now runs in a child process
# (tools/registry_child.h): the kernel aborts its pending requests when the
# daemon dies, and PDEATHSIG ends it.
# shellcheck source=reg_lib.sh
source "$(dirname "$0")/reg_lib.sh"

R=$T/repo M=$T/mnt
new_repo "$R"
FAST=$T/data && mkdir -p "$FAST"
for i in 1 2 3 4; do rand_file "$FAST/blob$i" $((2 * 1024 * 1024)); done
rand_file "$FAST/small" 100000

# pusher N: pushes blob N again and again under a new name (monolithic POST),
# so that the registry is nearly always inside the rename() that publishes one.
pusher() {
  local n=$1 i=0 d
  while true; do
    i=$((i + 1))
    printf '%08d' "$i" | dd of="$FAST/blob$n" bs=8 count=1 conv=notrunc status=none
    d=sha256:$(sha_of "$FAST/blob$n")
    curl -s -o /dev/null -X POST -H 'Content-Type: application/octet-stream' \
      --data-binary "@$FAST/blob$n" "$URL/v2/kill9/r/blobs/uploads/?digest=$d" || true
  done
}

# dead PID: every thread of PID has exited (a zombie whose threads are all gone;
# fs_lib's wait_exit takes a zombie leader for a dead process and would then
# wait forever for one with a thread still stuck in the kernel).
dead() {
  local t
  for t in /proc/"$1"/task/*/stat; do
    [[ -r $t ]] || continue
    [[ $(awk '{print $3}' "$t" 2>/dev/null) == Z ]] || return 1
  done
  return 0
}

# wait_dead PID SECONDS
wait_dead() {
  local deadline=$((SECONDS + $2))
  until dead "$1"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
  wait "$1" 2>/dev/null
  return 0
}

stuck=0
for round in 1 2 3 4 5; do
  serve_start "$R" "$M" 0
  push_blob "kill9/r" "$FAST/small"
  small=$DIGEST
  pids=()
  for n in 1 2 3 4; do
    pusher "$n" &
    pids+=($!)
    _PIDS+=($!)
  done
  sleep 1.$((RANDOM % 10))
  kill -9 "$SERVE_PID"
  if ! wait_dead "$SERVE_PID" 20; then
    stuck=$((stuck + 1))
    note "round $round: coffer serve $SERVE_PID still not dead 20 s after SIGKILL: $(ps -o stat=,wchan:32= -L -p "$SERVE_PID" | sort | uniq -c | tr -s ' \n' ' ')"
    # Is the repository usable meanwhile? (a writer takes the lock)
    run "$COFFER" --repo "$R" --passphrase-file "$R.pass" -q put "$FAST/small"
    note "round $round: a writer beside the undying serve: exit $RC ${ERR:0:200}"
    _fuse_abort "$M"
    wait_dead "$SERVE_PID" 60 || fail "round $round: serve still alive after aborting its FUSE connection"
  fi
  kill "${pids[@]}" 2>/dev/null
  wait "${pids[@]}" 2>/dev/null
  umount -l "$M" 2>/dev/null
  wait_unmounted "$M" 10 || fail "round $round: the dead mount would not go away"
  serve_start "$R" "$M" 0
  http GET "/v2/kill9/r/blobs/$small"
  expect_status 200 "round $round: blob pushed (201) before the kill"
  serve_stop
done
((stuck == 0)) || fail "coffer serve could not finish dying after SIGKILL in $stuck of 5 rounds (a thread waits on its own dead FUSE mount; the FUSE connection had to be aborted by hand)"
expect_ok "check --read-data" cf "$R" check --read-data
pass
