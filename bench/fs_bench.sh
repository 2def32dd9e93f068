#!/usr/bin/env bash
# fs_bench.sh — FUSE mount read/write benchmark: `coffer mount` against `restic mount`
# and `borg mount`.
#
# Setup (once per run, untimed): for every selected tool, one fresh repository holding
# backups of rootfs/base and rootfs/tools of the corpus, plus a backup of one large
# single file (BIGFILE, 1 GiB: the corpus tars/*.tar concatenated, topped up with
# random bytes; made once in WORK/data and kept between runs).
#
# Then, -r N times, for every tool in turn, each timed step on a FRESH mount (the tool
# is unmounted and mounted again before every step, so no FUSE daemon cache carries
# over) with the page cache, dentries and inodes dropped right before it:
#
#   1. tar          cd into the tools snapshot inside the mount; `tar -cf - . | wc -c`.
#                   tar MB/s = bytes counted by wc / s
#   2. largest      the largest regular file of rootfs/tools (found in the source tree):
#                   first `stat FILE` (timed: the cold path lookup, which includes
#                   whatever the daemon loads on first access to the snapshot), caches
#                   dropped again, then `cat FILE >/dev/null` (timed: the read).
#                   read MB/s = file size / cat seconds
#   3. bigfile      the same for BIGFILE in its own snapshot
#   4. cp -a        coffer only: a fresh repository, mounted; `mkdir backups/cpbench`,
#                   then `cp -a rootfs/tools MNT/backups/cpbench/current/` (timed), then
#                   `sync` + `coffer umount` + wait for the daemon to exit (timed
#                   separately: that is when the head is saved); against
#                   `coffer backup` of the same tree into another fresh repository
#
# CPU seconds are reported for the client side (tar, wc, cat, cp, coffer backup: the
# `times` of this shell's children) and for the FUSE daemon (utime + stime from
# /proc/PID/stat before and after the step; every daemon runs in the foreground as a
# child of this script so its pid is known). Other work on the machine skews the wall
# times much more than the CPU times.
#
# Correctness, in the first repetition (untimed, on the same mount right after the
# timed step): `cmp` of the largest file and of BIGFILE read through every tool's mount
# against the source; for coffer also `diff -r --no-dereference` of the mounted tools
# snapshot against the source tree (same-type device-node pairs ignored, as in
# backup_bench.sh) and, after a remount, of the cp -a copy in current/.
# The tar byte counts of every tool and of the source tree are reported side by side
# (they can differ by metadata: hardlinks, sparse files, directory sizes).
#
# MB = 10^6 bytes. Wall times come from `date +%s.%N` around each command. The report
# gives the MEDIAN of every metric per tool, and ratios coffer/peer.
#
# Output: a markdown report on stdout (machine line, versions, settings, tables, ratios,
# notes); progress and per-tool failures on stderr. Each tool's failure is reported and
# does not stop the other tools. Tool output goes to WORK/logs/.
#
# coffer runs from a copy of $COFFER taken at the start (WORK/bin/coffer).
#
# Needs root (drop_caches, FUSE mounts, reading every file of the corpus), /dev/fuse,
# jq, and for `borg mount` the Debian package python3-llfuse (or python3-pyfuse3).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  cat <<EOF
usage: $(basename "$0") [options]

FUSE mount benchmark of coffer against restic mount and borg mount.

options:
  -r N            repetitions (default 3); the report gives the median per metric
  --tools LIST    comma-separated subset of: coffer,restic,borg (default all)
  --quick         smoke run: the repositories hold only rootfs/tools (not base), and
                  the single large file is 256 MiB instead of 1 GiB
  --corpus DIR    corpus directory (default /tmp/coffer-bench-corpus; built with
                  ../shared/bench/make-corpus.sh DIR if missing)
  --work DIR      work directory for repositories, mount points, caches and logs
                  (default /tmp/coffer-fsbench-work); wiped at start except WORK/data
  --timeout S     per-command time limit in seconds (default 3600)
  --keep          keep the repositories at the end
  -h, --help      this text

environment:
  COFFER          coffer binary (default /work/main/build/bin/coffer)

example:
  $(basename "$0") --quick -r 1                   # smoke run
  nohup $(basename "$0") -r 3 >results/fs-\$(date +%Y%m%d).md 2>fsbench.log &
EOF
}

# ---------------------------------------------------------------- options ----
REPS=3
TOOLS=coffer,restic,borg
QUICK=0
CORPUS=/tmp/coffer-bench-corpus
WORK=/tmp/coffer-fsbench-work
TIMEOUT=3600
KEEP=0
COFFER=${COFFER:-/work/main/build/bin/coffer}
ARGS_ORIG="$*"

while (($#)); do
  case $1 in
    -r) REPS=${2:?-r needs a number}; shift 2 ;;
    -r*) REPS=${1#-r}; shift ;;
    --tools) TOOLS=${2:?--tools needs a list}; shift 2 ;;
    --tools=*) TOOLS=${1#*=}; shift ;;
    --quick) QUICK=1; shift ;;
    --corpus) CORPUS=${2:?}; shift 2 ;;
    --corpus=*) CORPUS=${1#*=}; shift ;;
    --work) WORK=${2:?}; shift 2 ;;
    --work=*) WORK=${1#*=}; shift ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --timeout=*) TIMEOUT=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 64 ;;
  esac
done
[[ $REPS =~ ^[1-9][0-9]*$ ]] || { echo "-r wants a positive integer, got '$REPS'" >&2; exit 64; }
IFS=, read -r -a TOOL_LIST <<<"$TOOLS"
for t in "${TOOL_LIST[@]}"; do
  case $t in coffer|restic|borg) ;; *) echo "unknown tool '$t'" >&2; exit 64 ;; esac
done

if ((QUICK)); then
  BACKUPS=(tools); BIG_SIZE=$((256 << 20)); BIG_LABEL="256 MiB"
else
  BACKUPS=(base tools); BIG_SIZE=$((1 << 30)); BIG_LABEL="1 GiB"
fi
TREE=tools          # the tree read through the mounts and copied with cp -a

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (drop_caches, FUSE mounts)"
[[ -c /dev/fuse ]] || die "no /dev/fuse"
command -v jq >/dev/null || die "needs jq (snapshot ids from --json output)"
[[ $WORK == /* && $WORK != / ]] || die "--work wants an absolute path other than /"

# --------------------------------------------------------------- helpers ----
# Drop the page cache, dentries and inodes so every timed step reads cold.
CACHES_DROPPED=yes
drop_caches() {
  sync
  if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
    CACHES_DROPPED="NO (cannot write /proc/sys/vm/drop_caches)"
  fi
}

now() { date +%s.%N; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
fadd() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; }
fdiv() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "nan"; else printf "%.6f", a / b }'; }
mbps() { fdiv "$1" "$(awk -v s="$2" 'BEGIN { print s * 1e6 }')"; }   # mbps BYTES SECONDS
bytes() { du -sb "$1" | cut -f1; }

# children_cpu FILE: set CHILD_CPU to the CPU seconds (user + sys) used so far by this
# shell's waited-for children (second line of the `times` builtin). `times` must run in
# this shell (not in a pipe or $(...)), hence the file.
CHILD_CPU=0
children_cpu() {
  times >"$1"
  CHILD_CPU=$(awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] }
                           printf "%.3f", s }' "$1")
}

# proc_cpu PID: CPU seconds (utime + stime, all threads) used so far by a live process;
# empty if it is gone. Fields after "pid (comm) ": state is 1, utime 12, stime 13.
CLK_TCK=$(getconf CLK_TCK)
proc_cpu() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  s=${s##*) }
  awk -v hz="$CLK_TCK" '{ printf "%.3f", ($12 + $13) / hz }' <<<"$s"
}

# timed LOG CMD...: drop caches, run CMD (with a time limit) appending its output to
# LOG, and set ELAPSED to the wall seconds, CPU to the CPU seconds (user + sys) of CMD
# and its children, and DCPU to the CPU seconds the mounted daemon ($DPID, if any) used
# meanwhile. Returns CMD's exit status.
ELAPSED=0 CPU=0 DCPU=
timed() {
  local logf=$1 t0 t1 c0 c1 d0 d1 rc=0; shift
  drop_caches
  printf '\n$ %s\n' "$*" >>"$logf"
  children_cpu "$logf.times"; c0=$CHILD_CPU
  d0=; [[ -n ${DPID:-} ]] && d0=$(proc_cpu "$DPID")
  t0=$(now)
  timeout "$TIMEOUT" "$@" >>"$logf" 2>&1 || rc=$?
  t1=$(now)
  d1=; [[ -n ${DPID:-} ]] && d1=$(proc_cpu "$DPID")
  children_cpu "$logf.times"; c1=$CHILD_CPU
  ELAPSED=$(fsub "$t1" "$t0")
  CPU=$(fsub "$c1" "$c0")
  DCPU=; [[ -n $d0 && -n $d1 ]] && DCPU=$(fsub "$d1" "$d0")
  printf '# exit %d after %s s wall, %s s CPU, daemon %s s CPU\n' "$rc" "$ELAPSED" "$CPU" "${DCPU:-?}" >>"$logf"
  if ((rc != 0)); then
    ((rc == 124)) && log "  timed out after $TIMEOUT s: $*"
    return "$rc"
  fi
}

# The commands the timed steps run, as programs (`timeout` cannot run shell functions;
# their stdout must not end up in the log):
# TAR_COUNT DIR OUT: tar the tree under DIR to stdout, count the bytes into OUT.
# shellcheck disable=SC2016  # $1, $2 are expanded by the inner bash
TAR_COUNT=(bash -c 'set -o pipefail; cd "$1" && tar -cf - . | wc -c >"$2"' tar_count)
# READ FILE: read FILE sequentially, discard the bytes.
# shellcheck disable=SC2016
READ=(bash -c 'cat "$1" >/dev/null' read)

# Record one measurement: rep tool metric value
RESULTS=
record() { printf '%s\t%s\t%s\t%s\n' "$REP" "$1" "$2" "$3" >>"$RESULTS"; }

# diff_tree SRC DST OUT: content comparison as in backup_bench.sh; returns 0 if equal.
diff_tree() {
  diff -r --no-dereference "$1" "$2" 2>&1 |
    grep -Ev '^File .* is a (character|block) special file while file .* is a \1 special file$|^File .* is a fifo while file .* is a fifo$|^File .* is a socket while file .* is a socket$' \
    >"$3" || true
  [[ -d $2 && ! -s $3 ]]
}

# ---------------------------------------------------- tool adapters ----
# Each tool provides <tool>_init, <tool>_backup NAME PATH (untimed, in setup),
# <tool>_snaproot NAME PATH (prints where PATH of backup NAME lies, relative to the
# mount point), <tool>_mount (starts the daemon in the foreground in the background of
# this shell, sets DPID) and <tool>_umount. They run with the repository at $R, the
# mount point at $M and the log in $LOG.

PASS=coffer-bench-passphrase

# coffer: encrypted (passphrase), defaults (`coffer init`). `mount -f` runs the same
# daemon code as the detaching `coffer mount` (it only skips the fork).
coffer_init()   { "$COFFER" init --repo "$R" --passphrase-file "$TD/pass"; }
coffer_backup() { "$COFFER" backup --repo "$R" --passphrase-file "$TD/pass" --set "$1" "$2" -q; }
coffer_snaproot() {
  local id
  id=$("$COFFER" snapshots --repo "$R" --passphrase-file "$TD/pass" --json |
       jq -r --arg s "$1" '[.[] | select(.set == $s)] | last | .id')
  [[ -n $id && $id != null ]] || return 1
  echo "backups/$1/snapshots/$id/${2#/}"
}
coffer_mount()  { "$COFFER" mount --repo "$R" --passphrase-file "$TD/pass" -f "$M" >>"$LOG" 2>&1 & DPID=$!; }
coffer_umount() { "$COFFER" umount "$M"; }

# restic: repository v2, --compression auto, encrypted; each snapshot tagged with its
# name; the cache lives in the work dir and is kept (as restic normally runs).
restic_init()   { restic init --repository-version 2; }
restic_backup() { restic backup --compression auto --tag "$1" "$2"; }
restic_snaproot() {
  local id
  id=$(restic snapshots --json --tag "$1" | jq -r 'last | .short_id')
  [[ -n $id && $id != null ]] || return 1
  echo "ids/$id/${2#/}"
}
restic_mount()  { restic mount "$M" >>"$LOG" 2>&1 & DPID=$!; }
restic_umount() { fusermount -u "$M"; }

# borg: repokey-blake2, zstd level 3, default chunker; archives named. `borg mount -f`
# (foreground) of the whole repository; borg strips the leading '/'.
borg_init()   { borg init --encryption=repokey-blake2 "$R"; }
borg_backup() { borg create --compression zstd,3 "$R::$1" "$2"; }
borg_snaproot() { echo "$1/${2#/}"; }
borg_mount()  { borg mount -f "$R" "$M" >>"$LOG" 2>&1 & DPID=$!; }
borg_umount() { borg umount "$M"; }

tool_version() {
  case $1 in
    coffer) echo "$("$COFFER" --version 2>&1 | head -n1) (copy of $COFFER_ORIG, sha256 ${COFFER_SHA:0:12})" ;;
    restic) restic version 2>&1 | head -n1 ;;
    borg) echo "$(borg --version 2>&1 | head -n1) ($(dpkg-query -W -f='python3-llfuse ${Version}' python3-llfuse 2>/dev/null || echo 'no python3-llfuse'))" ;;
  esac
}

tool_available() {
  case $1 in
    coffer) [[ -x $COFFER ]] ;;
    *) command -v "$1" >/dev/null ;;
  esac
}

# ------------------------------------------------------------- mounting ----
# mount_up NAME: mount the tool's repository at $M and wait (up to 120 s) until the
# snapshot NAME's top directory is visible. Sets DPID.
DPID=
mount_up() {
  local top i
  top=$(cut -d/ -f1-"$2" <<<"$(cat "$TD/snap.$1")")
  mountpoint -q "$M" && die "$M is already mounted"
  "${TOOL}_mount"
  printf '# %s mount: daemon pid %s\n' "$TOOL" "$DPID" >>"$LOG"
  for ((i = 0; i < 1200; i++)); do
    if mountpoint -q "$M" && [[ -d $M/$top ]]; then return 0; fi
    if ! kill -0 "$DPID" 2>/dev/null; then
      wait "$DPID" || true
      DPID=
      log "$TOOL: the mount daemon exited before $M/$top appeared"; return 1
    fi
    sleep 0.1
  done
  log "$TOOL: $M/$top did not appear within 120 s"; return 1
}

# mount_down: unmount $M and wait (up to 120 s) for the daemon to exit; sets
# DOWN_S to the seconds that took. A daemon still running after that is reported and
# sent SIGTERM (only the pid this script started).
DOWN_S=0
mount_down() {
  local t0 i rc=0
  [[ -n $DPID ]] || return 0
  t0=$(now)
  if mountpoint -q "$M"; then
    "${TOOL}_umount" >>"$LOG" 2>&1 || { log "$TOOL: unmount of $M failed"; rc=1; }
  fi
  for ((i = 0; i < 1200; i++)); do
    kill -0 "$DPID" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$DPID" 2>/dev/null; then
    log "$TOOL: daemon $DPID still running 60 s after unmounting $M; sending SIGTERM"
    kill -TERM "$DPID" 2>/dev/null || true
    rc=1
  fi
  wait "$DPID" 2>/dev/null || true   # restic exits non-zero after an external unmount
  DOWN_S=$(fsub "$(now)" "$t0")
  DPID=
  return "$rc"
}

# On any exit of a tool's subshell: leave nothing mounted.
cleanup_mount() {
  if [[ -n ${DPID:-} ]]; then mount_down || true; fi
  if [[ -n ${M:-} ]] && mountpoint -q "$M" 2>/dev/null; then umount "$M" 2>/dev/null || umount -l "$M" || true; fi
}

# tool_env TOOL: the per-tool variables
tool_env() {
  TOOL=$1 TD=$WORK/$1 R=$WORK/$1/repo M=$WORK/$1/mnt
  export RESTIC_REPOSITORY=$R RESTIC_PASSWORD=$PASS RESTIC_CACHE_DIR=$TD/restic-cache
  export BORG_PASSPHRASE=$PASS BORG_BASE_DIR=$TD/borg-base
  export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
}

# --------------------------------------------------------------- setup ----
# setup_tool TOOL: fresh repository with the backups, snapshot paths in $TD/snap.NAME.
setup_tool() {
  tool_env "$1"
  LOG=$WORK/logs/$TOOL-setup.log
  rm -rf --one-file-system "$TD"; mkdir -p "$TD" "$M"
  printf '%s\n' "$PASS" >"$TD/pass"; chmod 600 "$TD/pass"
  : >"$LOG"
  log "$TOOL setup: init"
  "${TOOL}_init" >>"$LOG" 2>&1 || { log "$TOOL: init failed"; return 1; }
  local n p t0
  for n in "${BACKUPS[@]}" big; do
    if [[ $n == big ]]; then p=$BIG_DIR; else p=$CORPUS/rootfs/$n; fi
    log "$TOOL setup: backup $n ($p)"
    printf '\n$ %s backup %s %s\n' "$TOOL" "$n" "$p" >>"$LOG"
    t0=$(now)
    "${TOOL}_backup" "$n" "$p" >>"$LOG" 2>&1 || { log "$TOOL: backup $n failed"; return 1; }
    printf '# backup %s took %s s\n' "$n" "$(fsub "$(now)" "$t0")" >>"$LOG"
    "${TOOL}_snaproot" "$n" "$p" >"$TD/snap.$n" || { log "$TOOL: no snapshot found for $n"; return 1; }
  done
  REP=0 record "$TOOL" repo_bytes "$(bytes "$R")"
  log "$TOOL setup: done ($(cat "$TD/snap.$TREE"))"
}

# ------------------------------------------------------- one tool, one rep ----
# Runs in a subshell with errexit on; any failure ends this tool's repetition only.
run_tool() {
  tool_env "$1"
  LOG=$WORK/logs/$TOOL-rep$REP.log
  : >"$LOG"
  trap cleanup_mount EXIT
  local top_depth
  case $TOOL in coffer) top_depth=4 ;; restic) top_depth=2 ;; borg) top_depth=1 ;; esac

  # 1. tar of the whole tools tree through the mount
  local root out=$TD/tar.bytes
  root=$M/$(cat "$TD/snap.$TREE")
  mount_up "$TREE" "$top_depth"
  log "$TOOL rep $REP: tar of $TREE"
  timed "$LOG" "${TAR_COUNT[@]}" "$root" "$out" || { log "$TOOL: tar through the mount failed"; return 1; }
  local tb; tb=$(tr -d ' ' <"$out")
  record "$TOOL" tar_s "$ELAPSED"; record "$TOOL" tar_cpu "$CPU"; record "$TOOL" tar_dcpu "$DCPU"
  record "$TOOL" tar_bytes "$tb"; record "$TOOL" tar_mbps "$(mbps "$tb" "$ELAPSED")"
  if ((REP == 1)) && [[ $TOOL == coffer ]]; then
    log "$TOOL rep $REP: verify: diff -r of the mounted $TREE snapshot"
    local difflog=$WORK/logs/$TOOL-snapshot.diff
    if diff_tree "$SRC" "$root" "$difflog"; then record "$TOOL" snap_diff_ok 1
    else
      record "$TOOL" snap_diff_ok 0
      log "!!!!!! $TOOL: MOUNTED SNAPSHOT DIFFERS from $SRC: $(wc -l <"$difflog") diff lines, see $difflog:"
      head -n 20 "$difflog" | sed 's/^/!!!   /' >&2
    fi
  fi
  mount_down

  # 2./3. the largest file of the tree, and the single large file
  local what snap file size rel
  for what in largest big; do
    if [[ $what == largest ]]; then
      snap=$TREE file=$LARGEST size=$LARGEST_SIZE
      rel=$(cat "$TD/snap.$snap")/${LARGEST#"$SRC"/}
    else
      snap=big file=$BIG_DIR/$BIG_NAME size=$BIG_SIZE
      rel=$(cat "$TD/snap.$snap")/$BIG_NAME
    fi
    mount_up "$snap" "$top_depth"
    log "$TOOL rep $REP: read $what file"
    timed "$LOG" stat -c '%s %n' "$M/$rel" || { log "$TOOL: stat of the $what file failed"; return 1; }
    record "$TOOL" "${what}_stat_s" "$ELAPSED"
    timed "$LOG" "${READ[@]}" "$M/$rel" || { log "$TOOL: reading the $what file failed"; return 1; }
    record "$TOOL" "${what}_s" "$ELAPSED"; record "$TOOL" "${what}_cpu" "$CPU"
    record "$TOOL" "${what}_dcpu" "$DCPU"; record "$TOOL" "${what}_mbps" "$(mbps "$size" "$ELAPSED")"
    if ((REP == 1)); then
      if cmp "$file" "$M/$rel" >>"$LOG" 2>&1; then record "$TOOL" "${what}_cmp_ok" 1
      else
        record "$TOOL" "${what}_cmp_ok" 0
        log "!!!!!! $TOOL: the $what file read through the mount DIFFERS from $file (see $LOG)"
      fi
    fi
    mount_down
  done

  # 4. coffer only: cp -a into current/ vs coffer backup
  if [[ $TOOL == coffer ]]; then
    local R0=$R
    R=$TD/cp-repo M=$TD/cp-mnt
    rm -rf --one-file-system "$R" "$TD/bk-repo"; mkdir -p "$M"
    coffer_init >>"$LOG" 2>&1
    printf 'backups\n' >"$TD/snap.cp-repo"
    mount_up cp-repo 1
    mkdir "$M/backups/cpbench"
    log "$TOOL rep $REP: cp -a $TREE into current/"
    timed "$LOG" cp -a "$SRC" "$M/backups/cpbench/current/" || { log "$TOOL: cp -a into current/ failed"; return 1; }
    record "$TOOL" cp_s "$ELAPSED"; record "$TOOL" cp_cpu "$CPU"; record "$TOOL" cp_dcpu "$DCPU"
    record "$TOOL" cp_mbps "$(mbps "$SRC_BYTES" "$ELAPSED")"
    local d0 t0 t1
    d0=$(proc_cpu "$DPID")
    t0=$(now)
    sync
    t1=$(now)
    local dsync; dsync=$(fsub "$(proc_cpu "$DPID")" "$d0")
    mount_down || { log "$TOOL: unmount after cp -a failed"; return 1; }
    record "$TOOL" cp_sync_s "$(fsub "$t1" "$t0")"
    record "$TOOL" cp_umount_s "$DOWN_S"
    record "$TOOL" cp_sync_dcpu "$dsync"
    if ((REP == 1)); then
      log "$TOOL rep $REP: verify: remount, diff -r of current/$TREE"
      mount_up cp-repo 1
      local difflog=$WORK/logs/$TOOL-cp.diff
      if diff_tree "$SRC" "$M/backups/cpbench/current/$TREE" "$difflog"; then record "$TOOL" cp_diff_ok 1
      else
        record "$TOOL" cp_diff_ok 0
        log "!!!!!! $TOOL: current/$TREE AFTER cp -a AND REMOUNT DIFFERS: $(wc -l <"$difflog") diff lines, see $difflog:"
        head -n 20 "$difflog" | sed 's/^/!!!   /' >&2
      fi
      mount_down
    fi
    record "$TOOL" cp_repo_bytes "$(bytes "$R")"
    R=$TD/bk-repo
    coffer_init >>"$LOG" 2>&1
    log "$TOOL rep $REP: coffer backup of $TREE into a fresh repository"
    timed "$LOG" "$COFFER" backup --repo "$R" --passphrase-file "$TD/pass" --set cpbench "$SRC" -q ||
      { log "$TOOL: coffer backup failed"; return 1; }
    record "$TOOL" bk_s "$ELAPSED"; record "$TOOL" bk_cpu "$CPU"
    record "$TOOL" bk_mbps "$(mbps "$SRC_BYTES" "$ELAPSED")"
    record "$TOOL" bk_repo_bytes "$(bytes "$R")"
    rm -rf --one-file-system "$TD/cp-repo" "$TD/bk-repo"
    R=$R0 M=$TD/mnt
  fi
  log "$TOOL rep $REP: done"
}

# ---------------------------------------------------------------- report ----
# median TOOL METRIC: median over the repetitions that produced the metric
median() {
  awk -F'\t' -v t="$1" -v m="$2" '$2 == t && $3 == m && $4 != "" { print $4 }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2];
                              else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
count() { awk -F'\t' -v t="$1" -v m="$2" '$2 == t && $3 == m' "$RESULTS" | wc -l; }
fmt() {  # fmt FORMAT VALUE -> printf, or "—" for an empty value
  # shellcheck disable=SC2059  # the format is the argument
  if [[ -z $2 ]]; then echo "—"; else printf "$1" "$2"; fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "—"; else printf "%.2fx", a / b }'; }
# okcell TOOL METRIC: yes / NO / — for a 0/1 check
okcell() {
  local v; v=$(awk -F'\t' -v t="$1" -v m="$2" '$2 == t && $3 == m { print $4 }' "$RESULTS" | tail -n1)
  case $v in 1) echo yes ;; 0) echo "**NO**" ;; *) echo "—" ;; esac
}
# cpu_cell TOOL PREFIX: "client + daemon" CPU seconds
cpu_cell() {
  local c d; c=$(median "$1" "$2_cpu"); d=$(median "$1" "$2_dcpu")
  echo "$(fmt %.2f "$c") + $(fmt %.2f "$d")"
}
# target LABEL VALUE GOAL: "met"/"NOT met"
target() {
  awk -v v="$2" -v g="$3" -v l="$1" 'BEGIN { if (v == "") printf "%s: — (no result)", l;
    else if (v + 0 >= g + 0) printf "%s: met (%.2f >= %s)", l, v, g; else printf "%s: **NOT met** (%.2f < %s)", l, v, g }'
}

# shellcheck disable=SC2016  # backticks in single quotes are markdown
report() {
  local t cpu fs
  cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  fs=$(df --output=fstype "$WORK" | tail -n1 | tr -d ' ')
  local names; names=$(IFS=,; echo "${TOOL_LIST[*]}")
  echo "# FUSE mount benchmark: ${names//,/, }"
  echo
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC'): \`bench/fs_bench.sh $ARGS_ORIG\`"
  echo
  echo "**Machine:** nproc $(nproc), CPU $cpu, kernel $(uname -r), work dir $WORK on $fs," \
       "$(awk '/^MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo)," \
       "load average $LOAD_START at start, $LOAD_END at end"
  echo
  echo "**Versions:** $(for t in "${TOOL_LIST[@]}"; do printf '%s; ' "$(tool_version "$t")"; done | sed 's/; $//'); $(fusermount3 -V 2>&1 | head -n1)"
  echo
  echo "**Corpus:** $CORPUS. Each tool's repository holds rootfs/{$(IFS=,; echo "${BACKUPS[*]}")} and the single file" \
       "\`$BIG_NAME\` ($BIG_SIZE bytes: corpus tars/*.tar concatenated, $BIG_RANDOM bytes of random data at the end)," \
       "each as its own snapshot/archive. Tree read: rootfs/$TREE ($SRC_BYTES bytes du -sb, $SRC_FILES files;" \
       "\`tar -cf - . | wc -c\` of the source: $SRC_TAR_BYTES bytes). Largest file of it:" \
       "\`${LARGEST#"$SRC"/}\` ($LARGEST_SIZE bytes)."
  echo "Repetitions: $REPS, median per metric. Every timed step runs on a fresh mount (unmounted and" \
       "mounted again before it), with the page cache dropped right before it: $CACHES_DROPPED. MB = 10^6 bytes."
  echo
  echo "**Settings:** coffer: encrypted (passphrase), defaults (\`coffer init\`), \`coffer mount -f\`;" \
       "restic: repository v2, \`--compression auto\`, encrypted, cache in the work dir (kept), \`restic mount\`;" \
       "borg: \`repokey-blake2\`, \`--compression zstd,3\`, default chunker, \`borg mount -f\` of the whole repository."
  echo
  echo "### Reading through the mount"
  echo
  echo "| tool | tar MB/s | largest file MB/s | $BIG_LABEL file MB/s | largest: first stat s | $BIG_LABEL: first stat s | tar bytes | cmp largest | cmp $BIG_LABEL | diff -r snapshot |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|---|---|"
  for t in "${TOOL_LIST[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" \
      "$(fmt %.1f "$(median "$t" tar_mbps)")" "$(fmt %.1f "$(median "$t" largest_mbps)")" \
      "$(fmt %.1f "$(median "$t" big_mbps)")" "$(fmt %.3f "$(median "$t" largest_stat_s)")" \
      "$(fmt %.3f "$(median "$t" big_stat_s)")" "$(fmt %.0f "$(median "$t" tar_bytes)")" \
      "$(okcell "$t" largest_cmp_ok)" "$(okcell "$t" big_cmp_ok)" \
      "$( [[ $t == coffer ]] && okcell "$t" snap_diff_ok || echo "not run")"
  done
  echo
  echo "Seconds, medians: wall / CPU as client (tar+wc, cat) + FUSE daemon:"
  echo
  echo "| tool | tar wall s | tar CPU s | largest wall s | largest CPU s | $BIG_LABEL wall s | $BIG_LABEL CPU s |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for t in "${TOOL_LIST[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$t" \
      "$(fmt %.2f "$(median "$t" tar_s)")" "$(cpu_cell "$t" tar)" \
      "$(fmt %.3f "$(median "$t" largest_s)")" "$(cpu_cell "$t" largest)" \
      "$(fmt %.2f "$(median "$t" big_s)")" "$(cpu_cell "$t" big)"
  done
  echo
  if [[ " ${TOOL_LIST[*]} " == *" coffer "* ]]; then
    local c_tar c_lf c_big
    c_tar=$(median coffer tar_mbps); c_lf=$(median coffer largest_mbps); c_big=$(median coffer big_mbps)
    if ((${#TOOL_LIST[@]} > 1)); then
      echo "**Ratios, coffer / peer (medians of MB/s; >1x = coffer faster):**"
      echo
      for t in "${TOOL_LIST[@]}"; do
        [[ $t == coffer ]] && continue
        echo "- vs $t: tar = $(ratio "$c_tar" "$(median "$t" tar_mbps)");" \
             "largest file = $(ratio "$c_lf" "$(median "$t" largest_mbps)");" \
             "$BIG_LABEL file = $(ratio "$c_big" "$(median "$t" big_mbps)");" \
             "tar CPU (client+daemon) = $(ratio "$(fadd "$(median coffer tar_cpu)" "$(median coffer tar_dcpu)")" \
                                              "$(fadd "$(median "$t" tar_cpu)" "$(median "$t" tar_dcpu)")") $t's"
      done
      echo
    fi
    echo "**Targets (issue 3):**"
    echo
    if [[ " ${TOOL_LIST[*]} " == *" borg "* ]]; then
      echo "- $(target "tar >= 3x borg mount" "$(awk -v a="$c_tar" -v b="$(median borg tar_mbps)" 'BEGIN { if (a != "" && b + 0 > 0) print a / b }')" 3)"
      echo "- $(target "largest-file read >= 3x borg mount" "$(awk -v a="$c_lf" -v b="$(median borg largest_mbps)" 'BEGIN { if (a != "" && b + 0 > 0) print a / b }')" 3)"
      echo "- $(target "$BIG_LABEL file read >= 3x borg mount" "$(awk -v a="$c_big" -v b="$(median borg big_mbps)" 'BEGIN { if (a != "" && b + 0 > 0) print a / b }')" 3)"
    fi
    echo "- $(target "large-file read >= 1 GB/s ($BIG_LABEL file, MB/s)" "$c_big" 1000)"
    echo
    echo "### Writing: \`cp -a\` into current/ vs \`coffer backup\` (coffer)"
    echo
    echo "| step | wall s | MB/s | CPU s (client + daemon) | repository bytes |"
    echo "|---|---:|---:|---:|---:|"
    local cps cpsync cpum total
    cps=$(median coffer cp_s); cpsync=$(median coffer cp_sync_s); cpum=$(median coffer cp_umount_s)
    total=$(awk -v a="$cps" -v b="$cpsync" -v c="$cpum" 'BEGIN { if (a != "") printf "%.3f", a + b + c }')
    printf '| `cp -a` into current/ | %s | %s | %s | — |\n' "$(fmt %.2f "$cps")" \
      "$(fmt %.1f "$(median coffer cp_mbps)")" "$(cpu_cell coffer cp)"
    printf '| then `sync` | %s | — | — + %s | — |\n' "$(fmt %.2f "$cpsync")" "$(fmt %.2f "$(median coffer cp_sync_dcpu)")"
    printf '| then `coffer umount` until the daemon exits | %s | — | — | %s |\n' "$(fmt %.2f "$cpum")" \
      "$(fmt %.0f "$(median coffer cp_repo_bytes)")"
    printf '| cp -a + sync + umount | %s | %s | — | — |\n' "$(fmt %.2f "$total")" \
      "$( [[ -n $total ]] && fmt %.1f "$(mbps "$SRC_BYTES" "$total")" || echo —)"
    printf '| `coffer backup` into a fresh repository | %s | %s | %s | %s |\n' \
      "$(fmt %.2f "$(median coffer bk_s)")" "$(fmt %.1f "$(median coffer bk_mbps)")" \
      "$(fmt %.2f "$(median coffer bk_cpu)")" "$(fmt %.0f "$(median coffer bk_repo_bytes)")"
    echo
    echo "cp -a + sync + umount takes $(ratio "$total" "$(median coffer bk_s)") the time of \`coffer backup\`." \
         "diff -r of current/$TREE after cp -a and a remount: $(okcell coffer cp_diff_ok)."
    echo
  fi
  echo "**Repository bytes after setup** (du -sb):" \
       "$(for t in "${TOOL_LIST[@]}"; do printf '%s %s; ' "$t" "$(fmt %.0f "$(median "$t" repo_bytes)")"; done | sed 's/; $//')."
  echo
  echo "**Notes:**"
  echo
  echo "- MB/s: tar = bytes counted by wc / wall s; file reads = file size / wall s of \`cat FILE >/dev/null\`."
  echo "- first stat s = \`stat FILE\` on the fresh mount (cold path lookup; borg loads an archive's whole" \
       "item metadata on first access inside it, restic and coffer load the directories on the path)." \
       "The \`cat\` timed after it re-does the lookups from the daemon's memory; the stat is not part of the read MB/s." \
       "The tar step starts from a fresh mount and includes that first access."
  echo "- CPU s: client = user+sys of tar/wc/cat/cp/coffer backup (\`times\`); daemon = utime+stime of" \
       "the FUSE daemon process over the step (/proc/PID/stat)."
  echo "- cmp / diff -r: first repetition only, untimed, on the mount of the timed step. diff -r ignores" \
       "same-type device-node pairs (GNU diff cannot compare them)."
  echo "- the $BIG_LABEL file's tars overlap (the corpus trees share the Debian base), so part of it" \
       "deduplicates inside each repository."
  for t in "${TOOL_LIST[@]}"; do
    local tb; tb=$(median "$t" tar_bytes)
    if [[ -n $tb ]] && awk -v a="$tb" -v b="$SRC_TAR_BYTES" 'BEGIN { exit !(a + 0 != b + 0) }'; then
      echo "- $t's tar stream is $(awk -v a="$tb" -v b="$SRC_TAR_BYTES" 'BEGIN { printf "%+.0f", a - b }') bytes" \
           "against the source's. The source tree has $HARDLINK_EXTRA bytes in additional hard links to" \
           "files; a mount that does not present hard links as such (one inode per path) makes tar store them again."
    fi
  done
  if [[ -s $NOTES ]]; then cat "$NOTES"; else echo "- no tool failures."; fi
}

# ------------------------------------------------------------------ main ----
for t in restic borg; do
  if [[ " ${TOOL_LIST[*]} " == *" $t "* ]] && ! command -v "$t" >/dev/null; then
    log "warning: $t not found"
  fi
done

# the corpus: build it if missing
if [[ ! -f $CORPUS/MANIFEST ]]; then
  log "corpus $CORPUS missing: building it with make-corpus.sh"
  "$SCRIPT_DIR/../../shared/bench/make-corpus.sh" "$CORPUS" >&2
fi
for n in "${BACKUPS[@]}"; do [[ -d $CORPUS/rootfs/$n ]] || die "missing $CORPUS/rootfs/$n"; done
SRC=$CORPUS/rootfs/$TREE
SRC_BYTES=$(bytes "$SRC")
SRC_FILES=$(find "$SRC" -type f | wc -l)
read -r LARGEST_SIZE LARGEST < <(find "$SRC" -type f -printf '%s %p\n' | sort -n | tail -n1)
SRC_TAR_BYTES=$(cd "$SRC" && tar -cf - . | wc -c)
# bytes in the 2nd, 3rd... links of hard-linked files (tar stores each file once)
HARDLINK_EXTRA=$(find "$SRC" -type f -links +1 -printf '%i %s\n' |
                 awk '{ n[$1]++; s[$1] = $2 } END { t = 0; for (i in n) t += (n[i] - 1) * s[i]; print t }')

# refuse to run two benchmarks at once in the same work dir
mkdir -p "$WORK"
exec 9>"$WORK/.lock"
flock -n 9 || die "another benchmark is running in $WORK"
grep -q " $WORK/" /proc/mounts && die "something is mounted under $WORK: $(grep " $WORK/" /proc/mounts | cut -d' ' -f2 | tr '\n' ' ')"

# the single large file: made once, kept in WORK/data between runs
BIG_NAME=big.bin
BIG_DIR=$WORK/data/big-$BIG_SIZE
shopt -s nullglob; TARS=("$CORPUS"/tars/*.tar); shopt -u nullglob
((${#TARS[@]})) || die "no $CORPUS/tars/*.tar"
TAR_SUM=$(cat "${TARS[@]}" | wc -c)
BIG_TARS=$(( TAR_SUM < BIG_SIZE * 3 / 4 ? TAR_SUM : BIG_SIZE * 3 / 4 ))
BIG_RANDOM=$((BIG_SIZE - BIG_TARS))
if [[ ! -f $BIG_DIR/$BIG_NAME || $(stat -c %s "$BIG_DIR/$BIG_NAME") != "$BIG_SIZE" ]]; then
  log "making $BIG_DIR/$BIG_NAME ($BIG_TARS bytes of tars, $BIG_RANDOM random)"
  mkdir -p "$BIG_DIR"
  { cat "${TARS[@]}" | head -c "$BIG_TARS" || true; head -c "$BIG_RANDOM" /dev/urandom; } >"$BIG_DIR/$BIG_NAME.tmp"
  [[ $(stat -c %s "$BIG_DIR/$BIG_NAME.tmp") == "$BIG_SIZE" ]] || die "made a $BIG_NAME of the wrong size"
  mv "$BIG_DIR/$BIG_NAME.tmp" "$BIG_DIR/$BIG_NAME"
fi

for t in coffer restic borg; do rm -rf --one-file-system "${WORK:?}/$t"; done
rm -rf "$WORK/logs"; mkdir -p "$WORK/logs"
RESULTS=$WORK/results.tsv; : >"$RESULTS"
NOTES=$WORK/notes.md; : >"$NOTES"
# The coffer binary may be rebuilt by someone else during a long run: run a private
# copy of it, so every repetition measures the same build.
coffer_sha() { sha256sum "$1" 2>/dev/null | cut -c1-64; }
COFFER_ORIG=$COFFER
if [[ " ${TOOL_LIST[*]} " == *" coffer "* && -x $COFFER ]]; then
  mkdir -p "$WORK/bin"; cp "$COFFER" "$WORK/bin/coffer.tmp"; mv "$WORK/bin/coffer.tmp" "$WORK/bin/coffer"
  COFFER=$WORK/bin/coffer
fi
COFFER_SHA=$(coffer_sha "$COFFER")
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_START%% *}" 'BEGIN { exit !(l > 0.5) }'; then
  log "warning: load average at start is $LOAD_START; timings will be skewed by other work"
fi

# note_failure TOOL WHAT LOGFILE RC
note_failure() {
  log "!!!!!! $1 $2 FAILED (exit $4); last lines of $3:"
  tail -n 15 "$3" | sed 's/^/!!!   /' >&2
  {
    echo "- **$1 $2 failed** (exit $4). Last lines of its log ($3):"
    echo '  ```'
    tail -n 8 "$3" | sed 's/^/  /'
    echo '  ```'
  } >>"$NOTES"
}

# setup: one repository per tool
READY=()
for t in "${TOOL_LIST[@]}"; do
  if ! tool_available "$t"; then
    echo "- **$t: not available** (binary not found); skipped." >>"$NOTES"
    continue
  fi
  set +e
  (set -e; setup_tool "$t")
  rc=$?
  set -e
  if ((rc == 0)); then READY+=("$t"); else note_failure "$t" setup "$WORK/logs/$t-setup.log" "$rc"; fi
done

for ((REP = 1; REP <= REPS; REP++)); do
  for t in "${READY[@]}"; do
    log "=== rep $REP/$REPS: $t"
    set +e
    (set -e; run_tool "$t")
    rc=$?
    set -e
    ((rc == 0)) || note_failure "$t" "rep $REP" "$WORK/logs/$t-rep$REP.log" "$rc"
    for w in snap cp; do
      if awk -F'\t' -v r="$REP" -v t="$t" -v m="${w}_diff_ok" '$1 == r && $2 == t && $3 == m && $4 == 0 { f = 1 } END { exit !f }' "$RESULTS"; then
        {
          echo "- **$t rep $REP: $([[ $w == snap ]] && echo "MOUNTED SNAPSHOT" || echo "current/ AFTER cp -a") DIFFERS** (\`diff -r --no-dereference\`), first lines:"
          echo '  ```'
          head -n 8 "$WORK/logs/$t-$([[ $w == snap ]] && echo snapshot || echo cp).diff" | sed 's/^/  /'
          echo '  ```'
        } >>"$NOTES"
      fi
    done
    for w in largest big; do
      if awk -F'\t' -v r="$REP" -v t="$t" -v m="${w}_cmp_ok" '$1 == r && $2 == t && $3 == m && $4 == 0 { f = 1 } END { exit !f }' "$RESULTS"; then
        echo "- **$t rep $REP: the $w file read through the mount DIFFERS from the source** (cmp; see $WORK/logs/$t-rep$REP.log)." >>"$NOTES"
      fi
    done
  done
done

if [[ " ${TOOL_LIST[*]} " == *" coffer "* && $(coffer_sha "$COFFER_ORIG") != "$COFFER_SHA" ]]; then
  echo "- $COFFER_ORIG was rebuilt during the run (now sha256 $(coffer_sha "$COFFER_ORIG" | cut -c1-12));" \
       "the numbers above are from the copy taken at the start (sha256 ${COFFER_SHA:0:12})." >>"$NOTES"
  log "note: $COFFER_ORIG changed during the run (the benchmark used its copy from the start)"
fi
if grep -q " $WORK/" /proc/mounts; then
  log "warning: still mounted under $WORK: $(grep " $WORK/" /proc/mounts | cut -d' ' -f2 | tr '\n' ' ')"
elif ((!KEEP)); then
  for t in coffer restic borg; do rm -rf --one-file-system "${WORK:?}/$t"; done
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
report
log "done; raw results in $RESULTS, logs in $WORK/logs"
