# shellcheck shell=bash
# Shared helpers for the coffer FUSE system tests (tests/fs_*_test.sh). Sourced,
# not run.
#
# Every fs test takes the coffer binary as $1, works in its own temporary
# directory $T under /tmp, mounts for real (needs root and /dev/fuse), and exits
# 0 on success or 1 after printing "FAIL [name]: reason" on stderr. Whatever the
# outcome, the exit trap unmounts every mount the test made, kills every daemon
# it started and only then removes $T (never descending into a live mount).
set -uo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 /path/to/coffer" >&2
  exit 64
fi
COFFER=$(realpath -e -- "$1" 2>/dev/null) || { echo "FAIL: no coffer binary at '$1'" >&2; exit 1; }
[[ -x $COFFER ]] || { echo "FAIL: '$COFFER' is not executable" >&2; exit 1; }
for tool in jq python3 sha256sum mountpoint fusermount3 cmp stat; do
  command -v "$tool" >/dev/null || { echo "FAIL: the fs tests need '$tool'" >&2; exit 1; }
done
[[ -c /dev/fuse ]] || { echo "FAIL: no /dev/fuse" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "FAIL: the fs tests need root (mount, mknod, chown)" >&2; exit 1; }
unset COFFER_REPO COFFER_PASSPHRASE COFFER_AUDIT_LOG

TEST_NAME=$(basename "$0" .sh)
TEST_NAME=${TEST_NAME%_test}
T=$(mktemp -d "/tmp/coffer-${TEST_NAME}.XXXXXX")
T=$(realpath "$T")
_MOUNTS=()   # mount points to unmount at exit (coffer mounts and tmpfs)
_PIDS=()     # processes to kill -9 at exit

_unmount() {  # _unmount DIR: unmount, lazily if it must; quiet
  local m=$1 i
  for i in 1 2 3; do
    mountpoint -q "$m" 2>/dev/null || return 0
    fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
}

_cleanup() {
  local p i
  for ((i = ${#_MOUNTS[@]} - 1; i >= 0; i--)); do _unmount "${_MOUNTS[i]}"; done
  for p in "${_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  for ((i = ${#_MOUNTS[@]} - 1; i >= 0; i--)); do _unmount "${_MOUNTS[i]}"; done
  # Never follow a mount that is somehow still there into its file system.
  if grep -q " $T" /proc/self/mounts; then
    echo "[$TEST_NAME] warning: mounts left under $T; not removing it" >&2
  else
    rm -rf --one-file-system "$T"
  fi
}
trap _cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# track_mount DIR: unmounted at exit (tmpfs and the like).
track_mount() { _MOUNTS+=("$1"); }

# wait_mounted DIR SECONDS [PID]: polls `mountpoint -q DIR` every 0.05 s; 1 on
# timeout or when PID (the daemon) exits first.
wait_mounted() {
  local m=$1 deadline=$((SECONDS + $2)) pid=${3:-}
  until mountpoint -q "$m"; do
    ((SECONDS < deadline)) || return 1
    [[ -z $pid ]] || is_running "$pid" || return 1
    sleep 0.05
  done
}

# wait_unmounted DIR SECONDS
wait_unmounted() {
  local deadline=$((SECONDS + $2))
  while mountpoint -q "$1"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

# wait_exit PID SECONDS: waits for PID (a child of this shell) to exit and sets
# EXIT_STATUS; 1 if it is still running after SECONDS.
wait_exit() {
  local pid=$1 deadline=$((SECONDS + $2))
  while is_running "$pid" && [[ $(ps -o stat= -p "$pid" 2>/dev/null) != Z* ]]; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
  wait "$pid"
  EXIT_STATUS=$?
  return 0
}

# mount_fg REPO MNT [mount options...]: `coffer mount -f` in the background;
# waits until MNT is a mount point. Sets DAEMON (its pid) and MOUNT_LOG.
_NMOUNT=0
mount_fg() {
  local r=$1 m=$2
  shift 2
  mkdir -p "$m"
  _NMOUNT=$((_NMOUNT + 1))
  MOUNT_LOG=$T/mount.$_NMOUNT.log
  "$COFFER" --repo "$r" --passphrase-file "$r.pass" mount "$m" -f "$@" >"$MOUNT_LOG" 2>&1 &
  DAEMON=$!
  _PIDS+=("$DAEMON")
  _MOUNTS+=("$m")
  wait_mounted "$m" 20 "$DAEMON" ||
    fail "coffer mount $m did not mount within 20 s (daemon $(is_running "$DAEMON" && echo running || echo exited)): $(tail -n 5 "$MOUNT_LOG")"
}

# umount_clean MNT PID: `coffer umount`, then the daemon must exit 0 within 30 s.
umount_clean() {
  local m=$1 pid=$2
  expect_ok "coffer umount $m" "$COFFER" umount "$m"
  wait_exit "$pid" 30 || fail "daemon $pid still running 30 s after coffer umount"
  [[ $EXIT_STATUS == 0 ]] || fail "daemon exited with status $EXIT_STATUS after coffer umount: $(tail -n 5 "$MOUNT_LOG")"
  ! mountpoint -q "$m" || fail "$m is still a mount point after coffer umount"
}

# crash MNT PID: kill -9 the daemon and clear the dead mount.
crash() {
  local m=$1 pid=$2
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  wait_unmounted "$m" 10 || fail "the dead mount $m would not go away"
}

# py CODE ARGS...: python3 -c with ARGS as sys.argv[1:].
py() {
  local code=$1
  shift
  python3 -c "$code" "$@"
}

# errno_of OP ARGS...: runs a python os call and prints the errno name it raised
# ("OK" if none). OP is a python expression over a = sys.argv[2:], e.g.
#   errno_of 'os.rename(a[0], a[1])' FROM TO
errno_of() {
  python3 - "$@" <<'EOF'
import errno, os, sys
a = sys.argv[2:]
try:
    exec(sys.argv[1])
    print("OK")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
EOF
}

# expect_errno NAME WHAT OP ARGS...: errno_of must print NAME (e.g. EROFS).
expect_errno() {
  local want=$1 what=$2 got
  shift 2
  got=$(errno_of "$@")
  [[ $got == "$want" ]] || fail "$what: got $got, want $want (python: $1; args: ${*:2})"
}

# meta_listing DIR: per path (relative, sorted): type+mode (hex), uid, gid,
# size (not for directories), link count, mtime in ns; then the xattrs
# (getfattr -d -m -, values hex-encoded) and the ACLs (getfacl) of every path.
# With MINDEPTH=1 in the environment the root directory itself is left out.
meta_listing() {
  (
    cd "$1" || exit 1
    local md=${MINDEPTH:-0}
    find . -mindepth "$md" -print0 | LC_ALL=C sort -z | xargs -0 -r stat -c '%n|%f|%u|%g|%s|%h|%.9Y|%F' |
      awk -F'|' 'BEGIN { OFS = "|" } { if ($8 == "directory") $5 = "-"; print }'
    echo "--- xattrs"
    find . -mindepth "$md" -print0 | LC_ALL=C sort -z | xargs -0 -r getfattr -h -d -m - -e hex --absolute-names 2>/dev/null
    echo "--- acls"
    find . -mindepth "$md" ! -type l -print0 | LC_ALL=C sort -z | xargs -0 -r getfacl -n -p 2>/dev/null
  )
}

# same_meta A B WHAT: meta_listing of both trees must be equal.
same_meta() {
  meta_listing "$1" >"$T/.meta.a"
  meta_listing "$2" >"$T/.meta.b"
  local d
  d=$(diff "$T/.meta.a" "$T/.meta.b")
  [[ -z $d ]] || fail "$3: metadata differs (< $1, > $2): ${d:0:3000}"
  [[ -s $T/.meta.a ]] || fail "$3: empty metadata listing of $1"
}

# same_tree A B WHAT: diff -r --no-dereference finds no difference.
same_tree() {
  local d
  d=$(diff -r --no-dereference "$1" "$2" 2>&1)
  [[ -z $d ]] || fail "$3: trees differ: ${d:0:3000}"
}
