#!/usr/bin/env bash
# fs/mount.coffer, the mount(8) helper: run by hand with fstab-style options it
# mounts a repository (and returns only once the mount is live), the store is
# usable, options map to `coffer mount` flags (idle-timeout, errors such as a
# wrong key pass through), unknown options and `ro` are refused, -f only prints
# the command. Then, with the helper installed as /sbin/mount.coffer for the
# duration of the test, `mount -t coffer`, an fstab line (mount --fstab) and
# `umount` work through util-linux, with the binary given by $COFFER (mount(8)
# passes root's environment on) or by the coffer= option (a systemd mount unit
# has no $COFFER).
#
# Needs root and /dev/fuse. Leaves /sbin/mount.coffer alone if one is installed
# (the mount(8) part is then skipped).
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"

HELPER=$HERE/../fs/mount.coffer
[[ -f $HELPER ]] || fail "no helper at $HELPER"
((EUID == 0)) || fail "needs root (FUSE mounts, /sbin/mount.coffer)"
[[ -c /dev/fuse ]] || fail "needs /dev/fuse"

R=$T/repo
P=$R.pass
M=$T/mnt
mkdir -p "$M"

# is_mounted DIR: DIR is a mount point in /proc/self/mounts (read there, not with
# stat, which would count as an access for the idle timeout).
is_mounted() { awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/self/mounts; }
not_mounted() { ! is_mounted "$M"; }

# daemon_gone: no process holds the repository lock (the lock file names the
# holder while it is held).
daemon_gone() {
  local pid
  pid=$(cat "$R/lock" 2>/dev/null)
  [[ -z $pid ]] || ! is_running "$pid"
}

# unmounted WHAT: waits for the daemon to save and exit after an unmount.
unmounted() {
  wait_for 20 daemon_gone || fail "$1: the daemon still holds the repository 20 s after the unmount"
  ! is_mounted "$M" || fail "$1: $M is still mounted"
}

INSTALLED_HELPER=""
cleanup() {
  if is_mounted "$M"; then
    umount -l "$M" 2>/dev/null
    wait_for 10 daemon_gone
  fi
  if ! daemon_gone; then kill -9 "$(cat "$R/lock")" 2>/dev/null; fi
  [[ -z $INSTALLED_HELPER ]] || rm -f "$INSTALLED_HELPER"
  _cleanup
}
trap cleanup EXIT

new_repo "$R"

# ---- the helper by hand ------------------------------------------------------------

# -f: prints the command, mounts nothing.
expect_ok "mount.coffer -f" env COFFER="$COFFER" sh "$HELPER" "$R" "$M" -f \
  -o "passphrase-file=$P,idle-timeout=30s,nofail,x-systemd.automount,allow_other"
want="$COFFER --repo $R --passphrase-file $P mount --idle-timeout 30s --allow-other $M"
[[ $OUT == "$want" ]] || fail "mount.coffer -f printed '$OUT', want '$want'"
! is_mounted "$M" || fail "mount.coffer -f mounted $M"

# Unknown options and ro are refused, naming the problem.
expect_rc 1 "mount.coffer with an unknown option" env COFFER="$COFFER" sh "$HELPER" "$R" "$M" \
  -o "passphrase-file=$P,frobnicate=3"
[[ $ERR == *"unknown option 'frobnicate=3'"* ]] || fail "unknown option: stderr '$ERR' does not name it"
expect_rc 1 "mount.coffer -o ro" env COFFER="$COFFER" sh "$HELPER" "$R" "$M" -o "ro,passphrase-file=$P"
[[ $ERR == *read-only* ]] || fail "ro: stderr '$ERR' does not say read-only mounts are unsupported"
# -s (sloppy) turns an unknown option into a warning.
expect_ok "mount.coffer -s -f" env COFFER="$COFFER" sh "$HELPER" -sf "$R" "$M" -o "passphrase-file=$P,frobnicate=3"
[[ $ERR == *frobnicate* ]] || fail "-s: no warning about the ignored option (stderr '$ERR')"
! is_mounted "$M" || fail "a refused mount.coffer mounted $M"

# A wrong passphrase fails with coffer's exit code 2, after nothing was mounted.
echo "not the passphrase" >"$T/wrong.pass"
expect_rc 2 "mount.coffer with a wrong passphrase" env COFFER="$COFFER" sh "$HELPER" "$R" "$M" \
  -o "passphrase-file=$T/wrong.pass"
! is_mounted "$M" || fail "a mount with a wrong passphrase left $M mounted"

# The real thing: returns once the mount is live.
expect_ok "mount.coffer" env COFFER="$COFFER" sh "$HELPER" "$R" "$M" \
  -o "passphrase-file=$P,idle-timeout=30s,nofail,x-systemd.automount"
mountpoint -q "$M" || fail "mount.coffer returned 0 but $M is not a mount point"
mkdir "$M/backups/x" || fail "mkdir $M/backups/x"
echo "hello through mount.coffer" >"$M/backups/x/current/hello" || fail "write to the head"
rand_file "$T/big" $((3 * 1024 * 1024))
cp "$T/big" "$M/backups/x/current/big" || fail "copy 3 MiB into the head"
[[ $(cat "$M/backups/x/current/hello") == "hello through mount.coffer" ]] || fail "hello reads back wrong"
[[ $(sha_of "$M/backups/x/current/big") == $(sha_of "$T/big") ]] || fail "big reads back wrong"
expect_ok "coffer umount" "$COFFER" umount "$M"
unmounted "coffer umount"

# idle-timeout= reaches the daemon: with 1s it unmounts itself.
expect_ok "mount.coffer idle-timeout=1s" env COFFER="$COFFER" sh "$HELPER" "$R" "$M" \
  -o "passphrase-file=$P,idle-timeout=1s"
is_mounted "$M" || fail "mount.coffer idle-timeout=1s: not mounted"
wait_for 20 not_mounted || fail "idle-timeout=1s: still mounted after 20 s"
unmounted "idle timeout"

# ---- through util-linux mount(8) ----------------------------------------------------

if [[ -e /sbin/mount.coffer ]]; then
  note "/sbin/mount.coffer is installed already: skipping the mount(8) checks"
  pass
fi
cp "$HELPER" /sbin/mount.coffer || fail "install /sbin/mount.coffer"
INSTALLED_HELPER=/sbin/mount.coffer
chmod 0755 /sbin/mount.coffer

# mount -t coffer, coffer found through $COFFER. The files of the first mount were
# saved when it was unmounted.
expect_ok "mount -t coffer" env COFFER="$COFFER" mount -t coffer -o "passphrase-file=$P" "$R" "$M"
mountpoint -q "$M" || fail "mount -t coffer returned 0 but $M is not a mount point"
[[ $(cat "$M/backups/x/current/hello") == "hello through mount.coffer" ]] ||
  fail "after a remount, hello reads '$(cat "$M/backups/x/current/hello")'"
[[ $(sha_of "$M/backups/x/current/big") == $(sha_of "$T/big") ]] || fail "after a remount, big reads back wrong"
expect_ok "umount (util-linux)" umount "$M"
unmounted "umount"

# mount -f (fake) reaches the helper as -f: nothing is mounted.
expect_ok "mount -f -t coffer" env COFFER="$COFFER" mount -f -t coffer -o "passphrase-file=$P" "$R" "$M"
! is_mounted "$M" || fail "mount -f mounted $M"

# An fstab line, with the binary named by coffer= and no $COFFER (as in a
# systemd mount unit); mount(8) drops the x-systemd.* options itself.
printf '%s %s coffer passphrase-file=%s,coffer=%s,idle-timeout=10m,nofail,x-systemd.automount,x-systemd.idle-timeout=10min 0 0\n' \
  "$R" "$M" "$P" "$COFFER" >"$T/fstab"
expect_ok "mount --fstab" env -u COFFER mount --fstab "$T/fstab" "$M"
mountpoint -q "$M" || fail "mount --fstab returned 0 but $M is not a mount point"
echo "second" >"$M/backups/x/current/second" || fail "write after mount --fstab"
[[ $(cat "$M/backups/x/current/second") == second ]] || fail "second reads back wrong"
expect_ok "coffer umount after mount --fstab" "$COFFER" umount "$M"
unmounted "coffer umount after mount --fstab"

rm -f /sbin/mount.coffer
INSTALLED_HELPER=""
pass
