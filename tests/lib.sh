# shellcheck shell=bash
# Shared helpers for the coffer system tests (tests/*_test.sh). Sourced, not run.
#
# Every test script takes the coffer binary as $1, works in its own temporary
# directory $T under /tmp (removed on exit, whatever the outcome), and exits 0
# on success or 1 after printing "FAIL [name]: reason" on stderr.
set -uo pipefail

if [[ $# -lt 1 ]]; then
  echo "usage: $0 /path/to/coffer" >&2
  exit 64
fi
COFFER=$(realpath -e -- "$1" 2>/dev/null) || { echo "FAIL: no coffer binary at '$1'" >&2; exit 1; }
[[ -x $COFFER ]] || { echo "FAIL: '$COFFER' is not executable" >&2; exit 1; }
for tool in jq python3 sha256sum; do
  command -v "$tool" >/dev/null || { echo "FAIL: the tests need '$tool'" >&2; exit 1; }
done
# No ambient configuration may leak into a test.
unset COFFER_REPO COFFER_PASSPHRASE COFFER_AUDIT_LOG

TEST_NAME=$(basename "$0" .sh)
TEST_NAME=${TEST_NAME%_test}
T=$(mktemp -d "/tmp/coffer-systest-${TEST_NAME}.XXXXXX")
T=$(realpath "$T")
_BG_PIDS=()
_SCRATCH=""

_cleanup() {
  local p
  for p in "${_BG_PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$T"
  [[ -z $_SCRATCH ]] || rm -rf "$_SCRATCH"
}
trap _cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=tests/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# fast_scratch: sets FAST to a directory for large throwaway outputs (restores
# that are only compared, then deleted): on tmpfs (/dev/shm) when it has room,
# else under $T. Removed at exit like $T. (Not to be called in $(...): the
# directory must be known to the exit trap.)
fast_scratch() {
  if [[ -z $_SCRATCH ]]; then
    local avail
    avail=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
    if [[ -n $avail && -w /dev/shm ]] && ((avail > 2 * 1024 * 1024)); then
      _SCRATCH=$(mktemp -d "/dev/shm/coffer-systest-${TEST_NAME}.XXXXXX")
    else
      _SCRATCH=$T/scratch
      mkdir -p "$_SCRATCH"
    fi
  fi
  # shellcheck disable=SC2034  # FAST is for the tests
  FAST=$_SCRATCH
}

# bg_track PID: killed (-9) at exit if still running.
bg_track() { _BG_PIDS+=("$1"); }

# repo_fingerprint DIR: a sha256 of every file under DIR (names, contents),
# plus every directory name; equal output = byte-identical repository.
repo_fingerprint() {
  (cd "$1" && find . -type f -print0 | sort -z | xargs -0r sha256sum && find . -type d | sort)
}

# wait_for SECONDS CMD...: polls CMD every 0.05 s until it succeeds; 1 on timeout.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.05
  done
}

# lock_held_by DIR PID: the repository's lock file names PID.
lock_held_by() { [[ -f $1/lock && $(cat "$1/lock" 2>/dev/null) == "$2" ]]; }

# restored_root OUT SRC: where `coffer restore` put SRC (an absolute path) under OUT.
restored_root() { echo "$1$2"; }

# tree_diff A B: diff -r that treats two fifos (or two devices) at the same path
# as equal (GNU diff reports them as different whatever they are); the types,
# modes and device numbers are compared by tree_manifest. Prints the differences.
tree_diff() {
  diff -r --no-dereference "$1" "$2" 2>&1 |
    grep -v -E '^File .* is a (fifo|character special file|block special file|socket) while file .* is a (fifo|character special file|block special file|socket)$'
  return 0
}

# same_tree A B WHAT: fails unless the trees have the same names and contents.
same_tree() {
  local d
  [[ -d $2 ]] || fail "$3: restored tree $2 does not exist"
  d=$(tree_diff "$1" "$2")
  [[ -z $d ]] || fail "$3: restored tree differs from the source: ${d:0:2000}"
}

# tree_manifest DIR: one line per path (relative, sorted): type and mode (raw
# hex), owner, group, mtime with nanoseconds, link count, device numbers, size
# (not for directories, whose size is the file system's business) and, for a
# symlink, its target.
tree_manifest() {
  (cd "$1" && find . -print0 | sort -z |
    xargs -0 stat -c '%n|%f|%u|%g|%.9Y|%h|%t:%T|%s|%F' |
    awk -F'|' 'BEGIN { OFS = "|" } { if ($9 == "directory") $8 = "-"; print }' &&
    find . -type l -print0 | sort -z | xargs -0r -I{} sh -c 'printf "%s -> %s\n" "$1" "$(readlink "$1")"' _ {})
}

# snapshot_ids DIR [SET]: the ids `snapshots --json` lists, one a line, oldest first.
snapshot_ids() {
  if [[ $# -ge 2 ]]; then
    cf "$1" --json snapshots --set "$2" | jq -r '.[].id'
  else
    cf "$1" --json snapshots | jq -r '.[].id'
  fi
}
