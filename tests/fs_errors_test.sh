#!/usr/bin/env bash
# Errors the mount must get right:
# - permissions (--allow-other; default_permissions): an unprivileged user gets
#   EACCES on a root 0600 file, reads a 0644 one, cannot write where the modes
#   say no; without --allow-other it cannot enter the mount at all;
# - ENOSPC: with the repository on a full tmpfs, write(2) fails with "No space
#   left on device"; once the file is deleted the mount keeps working (a small
#   file written, fsync'd, read back, still there after a remount) and the
#   repository checks clean;
# - busy: while mounted, writer commands (backup, put, forget, a second mount)
#   fail with exit 3 "busy"; gc goes through the daemon; stats and snapshots
#   (read-only) work beside it.
source "$(dirname "$0")/fs_lib.sh"
command -v setpriv >/dev/null || fail "the test needs setpriv (util-linux)"
chmod 0755 "$T"   # the unprivileged user must reach the mount point
NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups)

R=$T/repo M=$T/mnt
new_repo "$R"

# ---- permissions ----------------------------------------------------------------------------
mount_fg "$R" "$M" --allow-other
mkdir "$M/backups/e" || fail "mkdir backups/e"
H=$M/backups/e/current
printf 'root only\n' >"$H/secret" && chmod 0600 "$H/secret"
printf 'for everyone\n' >"$H/public" && chmod 0644 "$H/public"
mkdir "$H/nobodys" && chown 65534:65534 "$H/nobodys"
mkdir "$H/closed" && chmod 0700 "$H/closed" && printf 'x\n' >"$H/closed/inner"
expect_err "Permission denied" "nobody reads a root 0600 file" "${NOBODY[@]}" cat "$H/secret"
# ("Permission denied" is strerror(EACCES); EPERM would read "Operation not permitted")
expect_ok "nobody reads a 0644 file" "${NOBODY[@]}" cat "$H/public"
[[ $OUT == "for everyone" ]] || fail "nobody read '$OUT' from the 0644 file"
expect_err "Permission denied" "nobody writes a root 0644 file" "${NOBODY[@]}" sh -c "echo x >>'$H/public'"
expect_err "Permission denied" "nobody creates a file in a root 0755 dir" "${NOBODY[@]}" touch "$H/new-by-nobody"
expect_err "Permission denied" "nobody lists a root 0700 dir" "${NOBODY[@]}" ls "$H/closed"
expect_err "Operation not permitted" "nobody chmods a root file (EPERM, as on ext4)" "${NOBODY[@]}" chmod 777 "$H/public"
expect_ok "nobody creates a file in its own dir" "${NOBODY[@]}" sh -c "echo mine >'$H/nobodys/f'"
[[ $(stat -c '%u %g %a' "$H/nobodys/f") == "65534 65534 644" ]] || fail "a file created by nobody: $(stat -c '%u %g %a' "$H/nobodys/f")"
[[ $(cat "$H/public") == "for everyone" && ! -e $H/new-by-nobody ]] || fail "a refused write changed the head"
umount_clean "$M" "$DAEMON"
# without --allow-other, only the user who mounted gets in
mount_fg "$R" "$M"
expect_err "Permission denied" "nobody enters a mount without --allow-other" "${NOBODY[@]}" ls "$M/backups"
[[ $(cat "$M/backups/e/current/public") == "for everyone" ]] || fail "root cannot read its own mount"
umount_clean "$M" "$DAEMON"
note "permissions: ok"

# ---- busy: writer commands while mounted -------------------------------------------------------
mount_fg "$R" "$M"
mkdir -p "$T/src" && printf 'to back up\n' >"$T/src/f"
expect_rc 3 "coffer backup while mounted" cf "$R" backup --set b "$T/src"
[[ $ERR == *busy* ]] || fail "coffer backup while mounted: stderr '$ERR' does not say busy"
expect_rc 3 "coffer put while mounted" cf "$R" put "$T/src/f"
[[ $ERR == *busy* ]] || fail "coffer put while mounted: '$ERR'"
expect_ok "coffer snapshot (through the daemon)" cf "$R" snapshot e --name s1
expect_rc 3 "coffer forget while mounted" cf "$R" forget e@s1
mkdir -p "$T/mnt2"
"$COFFER" --repo "$R" --passphrase-file "$R.pass" mount "$T/mnt2" >"$T/m2.out" 2>&1 </dev/null &
m2=$!
_MOUNTS+=("$T/mnt2")
_PIDS+=("$m2")
wait_exit "$m2" 30 || fail "a second coffer mount of the same repository did not return"
[[ $EXIT_STATUS == 3 ]] || fail "a second mount of the same repository: exit $EXIT_STATUS, want 3: $(cat "$T/m2.out")"
grep -q busy "$T/m2.out" || fail "a second mount: '$(cat "$T/m2.out")' does not say busy"
! mountpoint -q "$T/mnt2" || fail "the second mount of a busy repository mounted"
printf 'garbage\n' >"$M/backups/e/current/garbage" && rm "$M/backups/e/current/garbage"
expect_ok "coffer gc while mounted (through the daemon)" cf "$R" --json gc
jq -e '.ok == true and (.live_chunks | type == "number") and (.packs_deleted | type == "number")' <<<"$OUT" >/dev/null ||
  fail "gc --json through the daemon: $OUT"
expect_ok "coffer stats while mounted" cf "$R" --json stats
jq -e '.snapshots == 1 and .chunks > 0' <<<"$OUT" >/dev/null || fail "stats while mounted: $OUT"
expect_ok "coffer snapshots while mounted" cf "$R" --json snapshots --set e
[[ $(jq -r '.[].tag' <<<"$OUT") == s1 ]] || fail "snapshots while mounted: $OUT"
expect_ok "coffer check while mounted" cf "$R" check
[[ $(cat "$M/backups/e/current/public") == "for everyone" ]] || fail "the head after gc"
[[ $(cat "$M/backups/e/snapshots/s1/public") == "for everyone" ]] || fail "the snapshot after gc"
umount_clean "$M" "$DAEMON"
expect_ok "backup after the unmount" cf "$R" backup --set b "$T/src"
note "busy: ok"

# ---- ENOSPC ---------------------------------------------------------------------------------------
SMALL=$T/small
mkdir -p "$SMALL"
mount -t tmpfs -o size=24m tmpfs "$SMALL" || fail "mount a 24 MiB tmpfs"
track_mount "$SMALL"
R2=$SMALL/repo M2=$T/mnt3
new_repo "$R2"
mount_fg "$R2" "$M2"
mkdir "$M2/backups/full" || fail "mkdir backups/full on the small repository"
H2=$M2/backups/full/current
printf 'before the disk filled\n' >"$H2/early" &&
  python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$H2/early" || fail "write + fsync of a first file"
run dd if=/dev/urandom of="$H2/big" bs=1M count=100
[[ $RC != 0 ]] || fail "dd of 100 MiB into a head on a 24 MiB tmpfs succeeded"
[[ $ERR == *"No space left on device"* ]] || fail "the write into a full repository failed with '$ERR', want 'No space left on device'"
note "ENOSPC after $(stat -c %s "$H2/big") bytes"
rm "$H2/big" || fail "rm of the file that filled the disk"
sync
sleep 0.5
run sh -c "printf 'after the disk filled\n' >'$H2/small' && cat '$H2/small'"
[[ $RC == 0 && $OUT == "after the disk filled" ]] || fail "write+read of a small file after ENOSPC and rm: exit $RC, '$OUT' ($ERR)"
fs=$(errno_of 'fd = os.open(a[0], os.O_RDONLY); os.fsync(fd)' "$H2/small")
[[ $fs == OK ]] || fail_later "fsync of a small file after the big one was deleted: $fs, want OK ($(df -h "$SMALL" | tail -n1 | awk '{print $4 " free"}'); daemon: $(tail -n1 "$MOUNT_LOG"))"
[[ $(cat "$H2/early") == "before the disk filled" ]] || fail "the first file after ENOSPC"
expect_ok "coffer umount after ENOSPC" "$COFFER" umount "$M2"
wait_exit "$DAEMON" 30 || fail "the daemon still runs 30 s after coffer umount (after ENOSPC)"
[[ $EXIT_STATUS == 0 ]] || fail_later "the daemon exited $EXIT_STATUS at unmount after ENOSPC and rm (its last save failed): $(tail -n1 "$MOUNT_LOG")"
expect_ok "check --read-data after ENOSPC" cf "$R2" check --read-data
mount_fg "$R2" "$M2"
[[ $(cat "$H2/early" 2>&1) == "before the disk filled" ]] || fail "the file fsync'd before ENOSPC is gone after remount"
[[ $(cat "$H2/small" 2>&1) == "after the disk filled" ]] ||
  fail_later "the small file written (and fsync'd) after ENOSPC and rm of the big file is lost at remount: $(cat "$H2/small" 2>&1)"
[[ ! -e $H2/big ]] || fail_later "the big file deleted after ENOSPC is back after remount ($(stat -c %s "$H2/big") bytes): the rm was never saved"
umount_clean "$M2" "$DAEMON"
pass
