#!/usr/bin/env bash
# --idle-timeout: the daemon unmounts and exits 0 once nothing has touched the
# mount for that long (an open file keeps it alive). --audit-log: unlock, mount,
# set-create, snapshot and unmount lines in a hash chain that `coffer audit
# verify` accepts, that a second mount continues, and that any edit in the
# middle breaks (verify exits non-zero naming the line).
source "$(dirname "$0")/fs_lib.sh"

R=$T/repo M=$T/mnt A=$T/audit.log
new_repo "$R"

mount_fg "$R" "$M" --idle-timeout 2s --audit-log "$A"
d1=$DAEMON
mkdir "$M/backups/s" || fail "mkdir backups/s"
printf 'some data\n' >"$M/backups/s/current/f" || fail "write into the head"
jq -e .snapshots "$M/.coffer/stats" >/dev/null || fail "read .coffer/stats"
expect_ok "coffer snapshot through the daemon" "$COFFER" --repo "$R" snapshot s --name first
[[ $OUT == "snapshot s@"*" saved" ]] || fail "coffer snapshot printed '$OUT'"

# an open file keeps the mount alive past the timeout
exec 3<"$M/backups/s/current/f"
sleep 3.5
mountpoint -q "$M" || fail "unmounted after 3.5 s although a file was open in it"
is_running "$d1" || fail "the daemon exited although a file was open"
read -r line <&3
exec 3<&-
[[ $line == "some data" ]] || fail "read through the held file: '$line'"
# the last access was the close just now
sleep 1
mountpoint -q "$M" || fail "unmounted 1 s after the last access (timeout 2 s)"
sleep 4.5
! mountpoint -q "$M" || fail "still mounted 5.5 s after the last access with --idle-timeout 2s"
wait_exit "$d1" 10 || fail "the daemon is still running after the idle unmount"
[[ $EXIT_STATUS == 0 ]] || fail "the daemon exited with status $EXIT_STATUS after the idle timeout: $(cat "$MOUNT_LOG")"
grep -q " $M " /proc/self/mounts && fail "the idle mount is still in /proc/self/mounts"

# ---- the audit log --------------------------------------------------------------------------
[[ $(stat -c %a "$A") == 600 ]] || fail "audit log mode $(stat -c %a "$A"), want 600"
events=$(jq -r .event "$A" | tr '\n' ' ')
[[ $events == "unlock mount set-create snapshot unmount " ]] || fail "audit events: '$events'"
[[ $(jq -r 'select(.event == "unmount") | .reason' "$A") == idle ]] || fail "unmount reason: $(tail -n1 "$A")"
[[ $(jq -r 'select(.event == "mount") | .mountpoint' "$A") == "$M" ]] || fail "mount line: $(sed -n 2p "$A")"
[[ $(jq -r 'select(.event == "unlock") | .repository' "$A") == "$R" ]] || fail "unlock line: $(head -n1 "$A")"
[[ $(jq -r 'select(.event == "snapshot") | "\(.set) \(.tag)"' "$A") == "s first" ]] || fail "snapshot line: $(grep snapshot "$A")"
[[ $(jq -r 'select(.event == "set-create") | .set' "$A") == s ]] || fail "set-create line: $(grep set-create "$A")"
[[ $(head -n1 "$A" | jq -r .prev) == "$(printf '%064d' 0)" ]] || fail "first line's prev: $(head -n1 "$A")"
[[ $(sed -n 2p "$A" | jq -r .prev) == "$(head -n1 "$A" | tr -d '\n' | sha256sum | cut -d' ' -f1)" ]] ||
  fail "the second line's prev is not the sha256 of the first line"
[[ $(jq -r .pid "$A" | sort -u) == "$d1" ]] || fail "audit pids: $(jq -r .pid "$A" | sort -u | tr '\n' ' '), want $d1"
expect_ok "coffer audit verify" "$COFFER" audit verify "$A"
[[ $OUT == *"5 lines, chain intact"* ]] || fail "audit verify printed '$OUT'"

# a second mount continues the chain; coffer umount logs reason request
mount_fg "$R" "$M" --audit-log "$A"
umount_clean "$M" "$DAEMON"
events=$(jq -r .event "$A" | tr '\n' ' ')
[[ $events == "unlock mount set-create snapshot unmount unlock mount unmount " ]] || fail "audit events after a second mount: '$events'"
[[ $(tail -n1 "$A" | jq -r .reason) == request ]] || fail "unmount by coffer umount: $(tail -n1 "$A")"
expect_ok "coffer audit verify after a second mount" "$COFFER" --json audit verify "$A"
[[ $(jq -r .lines <<<"$OUT") == 8 ]] || fail "audit verify --json: $OUT"

# ---- tampering -----------------------------------------------------------------------------------
# tamper FILE LINE FIELD: changes one character of FIELD's value on LINE.
tamper() {
  python3 - "$@" <<'EOF'
import sys
path, n, field = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = open(path, "rb").read().split(b"\n")
l = lines[n - 1]
i = l.index(b'"%s":' % field.encode()) + len(field) + 4   # inside the value
c = l[i:i + 1]
l = l[:i] + (b"1" if c != b"1" else b"2") + l[i + 1:]
lines[n - 1] = l
open(path, "wb").write(b"\n".join(lines))
EOF
}
cp "$A" "$T/a1" && tamper "$T/a1" 4 time
expect_rc 1 "audit verify of a log with line 4's time edited" "$COFFER" audit verify "$T/a1"
[[ $ERR == *"line 5"* ]] || fail "edited line 4 (its time): verify says '$ERR', want the break at line 5 (whose prev no longer matches)"
cp "$A" "$T/a2" && tamper "$T/a2" 4 prev
expect_rc 1 "audit verify of a log with line 4's prev edited" "$COFFER" audit verify "$T/a2"
[[ $ERR == *"line 4"* ]] || fail "edited line 4 (its prev): verify says '$ERR', want line 4"
cp "$A" "$T/a3" && tamper "$T/a3" 2 event
expect_rc 1 "audit verify of a log with line 2's event edited" "$COFFER" audit verify "$T/a3"
[[ $ERR == *"line 3"* ]] || fail "edited line 2 (its event): verify says '$ERR', want line 3"
sed '3d' "$A" >"$T/a4"
expect_rc 1 "audit verify of a log with line 3 removed" "$COFFER" audit verify "$T/a4"
[[ $ERR == *"line 3"* ]] || fail "removed line 3: verify says '$ERR', want line 3"
expect_ok "the untouched log still verifies" "$COFFER" audit verify "$A"
expect_rc 1 "audit verify of a missing file" "$COFFER" audit verify "$T/nonexistent"
pass
