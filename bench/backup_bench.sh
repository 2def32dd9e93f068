#!/usr/bin/env bash
# backup_bench.sh — whole-system backup benchmark: coffer against restic, borg and casync.
#
# For every selected tool, with a fresh repository per tool and repetition (all on
# the same filesystem, under the work dir), and the page cache dropped before every
# timed command:
#
#   1. ingest       back up rootfs/{base,tools,ruby,cache} of the corpus, each as
#                   its own snapshot/archive, one after the other; the four command
#                   times are summed. ingest MB/s = sum(du -sb of the 4 trees) / s
#   2. repo bytes   du -sb of the repository directory after those four
#   3. incremental  back up rootfs/base2 (small "next version" of base) as a fifth
#                   snapshot; report the repository growth in bytes and the seconds
#   4. restore      restore the `tools` snapshot into an empty directory, timed;
#                   restore MB/s = du -sb of the source tree / s; then verify with
#                   `diff -r --no-dereference` against the source (content), plus an
#                   untimed metadata comparison (type, mode, owner, size, mtime,
#                   link count, symlink target, device numbers) reported separately
#
# MB = 10^6 bytes. Wall times come from `date +%s.%N` around each command.
# The whole thing is repeated -r N times; the report gives the MEDIAN of every
# metric per tool, and ratios coffer/peer for each metric.
#
# Output: a markdown report on stdout (machine line, settings, table, ratios,
# notes); progress and per-tool failures on stderr. Each tool's failure is reported
# and does not stop the other tools. Tool output goes to WORK/logs/.
#
# coffer runs from a copy of $COFFER taken at the start (WORK/bin/coffer), so a
# rebuild during the run cannot mix two builds. The load average at start and end is
# reported: other work on the machine skews every tool's timings.
#
# Needs root (drop_caches; restoring owners and device nodes; building the corpus).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  cat <<EOF
usage: $(basename "$0") [options]

Whole-system backup benchmark of coffer against restic, borg and casync.

options:
  -r N            repetitions (default 3); the report gives the median per metric
  --tools LIST    comma-separated subset of: coffer,restic,borg,casync (default all)
  --quick         smoke run: ingest only base and tools (incremental and restore
                  steps are unchanged)
  --corpus DIR    corpus directory (default /tmp/coffer-bench-corpus; built with
                  ../shared/bench/make-corpus.sh DIR if missing)
  --work DIR      work directory for repositories, caches, restores and logs
                  (default /tmp/coffer-bench-work); it is wiped per tool and rep
  --timeout S     per-command time limit in seconds (default 3600)
  --keep          keep the last repetition's repositories and restores
  -h, --help      this text

environment:
  COFFER          coffer binary (default /work/main/build/bin/coffer)

example:
  $(basename "$0") --quick -r 1                   # smoke run
  nohup $(basename "$0") -r 3 >results/backup-\$(date +%Y%m%d).md 2>bench.log &
EOF
}

# ---------------------------------------------------------------- options ----
REPS=3
TOOLS=coffer,restic,borg,casync
QUICK=0
CORPUS=/tmp/coffer-bench-corpus
WORK=/tmp/coffer-bench-work
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
  case $t in coffer|restic|borg|casync) ;; *) echo "unknown tool '$t'" >&2; exit 64 ;; esac
done

if ((QUICK)); then INGEST=(base tools); else INGEST=(base tools ruby cache); fi
INCR=base2          # the incremental step's tree
RESTORE=tools       # the snapshot restored and verified

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (drop_caches, restoring owners and device nodes)"

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
bytes() { du -sb "$1" | cut -f1; }

# children_cpu FILE: set CHILD_CPU to the CPU seconds (user + sys) used so far by this
# shell's waited-for children: the second line of the `times` builtin, e.g.
# "0m1.234s 0m0.567s". `times` must run in this shell (not in a pipe or $(...)),
# hence the file.
CHILD_CPU=0
children_cpu() {
  times >"$1"
  CHILD_CPU=$(awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] }
                           printf "%.3f", s }' "$1")
}

# timed LOG CMD...: drop caches, run CMD (with a time limit) appending its output to
# LOG, and set ELAPSED to the wall seconds and CPU to the CPU seconds (user + sys) of
# CMD and its children. Returns CMD's exit status. The CPU time does not depend on
# other work on the machine the way the wall time does.
ELAPSED=0 CPU=0
timed() {
  local logf=$1 t0 t1 c0 c1 rc=0; shift
  drop_caches
  printf '\n$ %s\n' "$*" >>"$logf"
  children_cpu "$logf.times"; c0=$CHILD_CPU
  t0=$(now)
  timeout "$TIMEOUT" "$@" >>"$logf" 2>&1 || rc=$?
  t1=$(now)
  children_cpu "$logf.times"; c1=$CHILD_CPU
  ELAPSED=$(fsub "$t1" "$t0")
  CPU=$(fsub "$c1" "$c0")
  printf '# exit %d after %s s wall, %s s CPU\n' "$rc" "$ELAPSED" "$CPU" >>"$logf"
  if ((rc != 0)); then
    ((rc == 124)) && log "  timed out after $TIMEOUT s: $*"
    return "$rc"
  fi
}

# Metadata listing of a tree, relative paths, sorted: name, type, mode, uid:gid,
# size (not for directories: their sizes depend on the filesystem's history), mtime
# in whole seconds, link count, device numbers, symlink target.
meta_list() {
  (cd "$1" && find . -printf '%p\t%y\t%m\t%U:%G\t%s\t%T@\t%n\t%l\n' |
    awk -F'\t' -v OFS='\t' '{ if ($2 == "d") $5 = "-"; sub(/\..*/, "", $6); print }' |
    sort) >"$2"
  # device numbers for character/block special files
  (cd "$1" && find . \( -type c -o -type b \) -exec stat -c '%n\tdev\t%t:%T' {} + | sort) >>"$2"
}

# Record one measurement: rep tool metric value
RESULTS=
record() { printf '%s\t%s\t%s\t%s\n' "$REP" "$1" "$2" "$3" >>"$RESULTS"; }

# ---------------------------------------------------- tool adapters ----
# Each tool provides: <tool>_init, <tool>_backup NAME PATH, <tool>_restore NAME DIR
# (DIR exists and is empty) and <tool>_restored_root NAME DIR SRC (prints where the
# restored tree of SRC lies under DIR). They run inside the tool's work dir $TD, with
# the repository at $R. The backup/restore commands are what get timed.

PASS=coffer-bench-passphrase

# coffer: encrypted (passphrase), zstd at its default level, defaults for chunking.
coffer_init()   { "$COFFER" init --repo "$R" --passphrase-file "$TD/pass"; }
coffer_backup() { timed "$LOG" "$COFFER" backup --repo "$R" --passphrase-file "$TD/pass" --set "$1" "$2" -q; }
coffer_restore() { timed "$LOG" "$COFFER" restore --repo "$R" --passphrase-file "$TD/pass" "$1@latest" "$2" -q; }
coffer_restored_root() { echo "$2$3"; }    # absolute source path nested under DIR

# restic: repository v2, --compression auto, encrypted; each snapshot tagged with its
# name. The cache lives in the work dir and is kept (that is how restic normally runs).
restic_init()   { restic init --repository-version 2; }
restic_backup() { timed "$LOG" restic backup --compression auto --tag "$1" "$2"; }
restic_restore() { timed "$LOG" restic restore latest --tag "$1" --target "$2"; }
restic_restored_root() { echo "$2$3"; }

# borg: repokey-blake2 encryption, zstd level 3, default chunker; archives named.
borg_init()   { borg init --encryption=repokey-blake2 "$R"; }
borg_backup() { timed "$LOG" borg create --compression zstd,3 "$R::$1" "$2"; }
borg_restore() { timed "$LOG" env -C "$2" borg extract "$R::$1"; }   # extract into the cwd
borg_restored_root() { echo "$2$3"; }        # borg strips the leading '/'

# casync: no encryption; chunk compression and chunk sizes at casync's defaults.
# Repository = the chunk store plus the .caidx index files.
casync_init()   { mkdir -p "$R/store"; }
casync_backup() { timed "$LOG" casync make --store="$R/store" "$R/$1.caidx" "$2"; }
casync_restore() { timed "$LOG" casync extract --store="$R/store" "$R/$1.caidx" "$2"; }
casync_restored_root() { echo "$2"; }         # the tree's contents go straight into DIR

tool_version() {
  case $1 in
    coffer) echo "$("$COFFER" --version 2>&1 | head -n1) (copy of $COFFER_ORIG, sha256 ${COFFER_SHA:0:12})" ;;
    restic) restic version 2>&1 | head -n1 ;;
    borg) borg --version 2>&1 | head -n1 ;;
    casync) casync --version 2>&1 | head -n1 ;;
  esac
}

tool_available() {
  case $1 in
    coffer) [[ -x $COFFER ]] ;;
    *) command -v "$1" >/dev/null ;;
  esac
}

# ------------------------------------------------------- one tool, one rep ----
# Runs in a subshell with errexit on; any failure ends this tool's repetition only.
run_tool() {
  local tool=$1
  TD=$WORK/$tool R=$WORK/$tool/repo LOG=$WORK/logs/$tool-rep$REP.log
  export RESTIC_REPOSITORY=$R RESTIC_PASSWORD=$PASS RESTIC_CACHE_DIR=$TD/restic-cache
  export BORG_PASSPHRASE=$PASS BORG_BASE_DIR=$TD/borg-base
  export BORG_RELOCATED_REPO_ACCESS_IS_OK=yes BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
  rm -rf "$TD"; mkdir -p "$TD"
  printf '%s\n' "$PASS" >"$TD/pass"; chmod 600 "$TD/pass"
  : >"$LOG"

  log "$tool rep $REP: init"
  "${tool}_init" >>"$LOG" 2>&1 || { log "$tool: init failed"; return 1; }

  # 1. ingest: the trees one after the other; sum of the command times
  local n total=0 cpu=0 src_bytes=0
  for n in "${INGEST[@]}"; do
    log "$tool rep $REP: backup $n"
    "${tool}_backup" "$n" "$CORPUS/rootfs/$n" || { log "$tool: backup $n failed"; return 1; }
    total=$(fadd "$total" "$ELAPSED"); cpu=$(fadd "$cpu" "$CPU")
    src_bytes=$((src_bytes + TREE_BYTES[$n]))
  done
  record "$tool" ingest_s "$total"
  record "$tool" ingest_cpu "$cpu"
  record "$tool" ingest_mbps "$(fdiv "$src_bytes" "$(awk -v s="$total" 'BEGIN { print s * 1e6 }')")"

  # 2. repository bytes after the ingest
  local before after
  before=$(bytes "$R")
  record "$tool" repo_bytes "$before"

  # 3. incremental: the small next version of base
  log "$tool rep $REP: backup $INCR (incremental)"
  "${tool}_backup" "$INCR" "$CORPUS/rootfs/$INCR" || { log "$tool: backup $INCR failed"; return 1; }
  after=$(bytes "$R")
  record "$tool" incr_s "$ELAPSED"
  record "$tool" incr_cpu "$CPU"
  record "$tool" incr_growth "$((after - before))"

  # 4. restore the tools snapshot into an empty dir, then verify (untimed)
  local out=$TD/restore src=$CORPUS/rootfs/$RESTORE root
  rm -rf "$out"; mkdir -p "$out"
  log "$tool rep $REP: restore $RESTORE"
  "${tool}_restore" "$RESTORE" "$out" || { log "$tool: restore $RESTORE failed"; return 1; }
  record "$tool" restore_s "$ELAPSED"
  record "$tool" restore_cpu "$CPU"
  record "$tool" restore_mbps "$(fdiv "${TREE_BYTES[$RESTORE]}" "$(awk -v s="$ELAPSED" 'BEGIN { print s * 1e6 }')")"

  root=$("${tool}_restored_root" "$RESTORE" "$out" "$src")
  log "$tool rep $REP: verify $root"
  local difflog=$WORK/logs/$tool-rep$REP.diff
  # GNU diff cannot compare special files and always reports "File A is a character
  # special file while file B is a character special file"; a same-type pair is not
  # a mismatch (the metadata check below compares their device numbers).
  diff -r --no-dereference "$src" "$root" 2>&1 |
    grep -Ev '^File .* is a (character|block) special file while file .* is a \1 special file$|^File .* is a fifo while file .* is a fifo$|^File .* is a socket while file .* is a socket$' \
    >"$difflog" || true
  if [[ -d $root && ! -s $difflog ]]; then
    record "$tool" restore_ok 1
  else
    record "$tool" restore_ok 0
    [[ -d $root ]] || echo "restored tree $root does not exist" >>"$difflog"
    log "!!!!!! $tool rep $REP: RESTORE MISMATCH: $(wc -l <"$difflog") diff lines, see $difflog:"
    head -n 20 "$difflog" | sed 's/^/!!!   /' >&2
  fi
  if [[ -d $root ]]; then
    meta_list "$src" "$TD/meta.src"; meta_list "$root" "$TD/meta.out"
    diff "$TD/meta.src" "$TD/meta.out" >"$WORK/logs/$tool-rep$REP.metadiff" || true
    # count entries (paths) whose metadata differ
    record "$tool" meta_diffs "$(grep '^[<>]' "$WORK/logs/$tool-rep$REP.metadiff" | cut -f1 | cut -c3- | sort -u | wc -l)"
  fi
  log "$tool rep $REP: done"
}

# ---------------------------------------------------------------- report ----
# median TOOL METRIC: median over the repetitions that produced the metric
median() {
  awk -F'\t' -v t="$1" -v m="$2" '$2 == t && $3 == m { print $4 }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2];
                              else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
count() { awk -F'\t' -v t="$1" -v m="$2" '$2 == t && $3 == m' "$RESULTS" | wc -l; }
fmt() {  # fmt FORMAT VALUE -> printf, or "—" for an empty value
  if [[ -z $2 ]]; then echo "—"; else printf "$1" "$2"; fi
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "—"; else printf "%.2fx", a / b }'; }

report() {
  local t cpu fs
  cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  fs=$(df --output=fstype "$WORK" | tail -n1 | tr -d ' ')
  echo "# Backup benchmark: $(IFS=,; echo "${TOOL_LIST[*]}" | sed "s/,/, /g")"
  echo
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC'): \`bench/backup_bench.sh $ARGS_ORIG\`"
  echo
  echo "**Machine:** nproc $(nproc), CPU $cpu, kernel $(uname -r), work dir $WORK on $fs," \
       "$(awk '/^MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo)," \
       "load average $LOAD_START at start, $LOAD_END at end"
  echo
  echo "**Versions:** $(for t in "${TOOL_LIST[@]}"; do printf '%s; ' "$(tool_version "$t")"; done | sed 's/; $//')"
  echo
  echo "**Corpus:** $CORPUS; ingest = rootfs/{$(IFS=,; echo "${INGEST[*]}")} one after the other" \
       "($INGEST_BYTES bytes, du -sb), incremental = rootfs/$INCR (${TREE_BYTES[$INCR]} bytes)," \
       "restore = rootfs/$RESTORE (${TREE_BYTES[$RESTORE]} bytes)."
  echo "Repetitions: $REPS, median per metric (fresh repositories per repetition)." \
       "Page cache dropped before every timed command: $CACHES_DROPPED. MB = 10^6 bytes."
  echo
  echo "**Settings:** coffer: encrypted (passphrase), defaults (\`coffer init\`);" \
       "restic: repository v2, \`--compression auto\`, encrypted, cache in the work dir (kept, not counted in repo bytes);" \
       "borg: \`repokey-blake2\`, \`--compression zstd,3\`, default chunker;" \
       "casync: **unencrypted**, default chunk sizes and default chunk compression ($CASYNC_COMPRESSION)."
  echo
  echo "| tool | ingest MB/s | repo bytes after ${#INGEST[@]} | incremental growth bytes | incremental s | restore MB/s | restore ok | metadata diffs |"
  echo "|---|---:|---:|---:|---:|---:|---|---:|"
  for t in "${TOOL_LIST[@]}"; do
    local ok n_ok n_all md
    n_all=$(count "$t" restore_ok)
    n_ok=$(awk -F'\t' -v t="$t" '$2 == t && $3 == "restore_ok" && $4 == 1' "$RESULTS" | wc -l)
    if ((n_all == 0)); then ok="— (no restore)"
    elif ((n_ok == n_all && n_all == REPS)); then ok="yes"
    elif ((n_ok == n_all)); then ok="yes ($n_ok/$REPS reps ran)"
    else ok="**NO** ($n_ok/$n_all ok)"; fi
    md=$(median "$t" meta_diffs)
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" \
      "$(fmt %.1f "$(median "$t" ingest_mbps)")" "$(fmt %.0f "$(median "$t" repo_bytes)")" \
      "$(fmt %.0f "$(median "$t" incr_growth)")" "$(fmt %.2f "$(median "$t" incr_s)")" \
      "$(fmt %.1f "$(median "$t" restore_mbps)")" "$ok" "$(fmt %.0f "$md")"
  done
  echo
  echo "Seconds, medians (wall / CPU user+sys of the tool's processes):"
  echo
  echo "| tool | ingest wall s | ingest CPU s | incremental wall s | incremental CPU s | restore wall s | restore CPU s |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for t in "${TOOL_LIST[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$t" \
      "$(fmt %.2f "$(median "$t" ingest_s)")" "$(fmt %.2f "$(median "$t" ingest_cpu)")" \
      "$(fmt %.2f "$(median "$t" incr_s)")" "$(fmt %.2f "$(median "$t" incr_cpu)")" \
      "$(fmt %.2f "$(median "$t" restore_s)")" "$(fmt %.2f "$(median "$t" restore_cpu)")"
  done
  echo
  if [[ " ${TOOL_LIST[*]} " == *" coffer "* ]] && ((${#TOOL_LIST[@]} > 1)); then
    echo "**Ratios, coffer / peer (medians):** throughput >1x = coffer faster; bytes and seconds <1x = coffer smaller/faster."
    echo
    local c_in c_rb c_ig c_is c_rs
    c_in=$(median coffer ingest_mbps); c_rb=$(median coffer repo_bytes)
    c_ig=$(median coffer incr_growth); c_is=$(median coffer incr_s); c_rs=$(median coffer restore_mbps)
    for t in "${TOOL_LIST[@]}"; do
      [[ $t == coffer ]] && continue
      echo "- vs $t: coffer ingest = $(ratio "$c_in" "$(median "$t" ingest_mbps)") $t;" \
           "repo bytes = $(ratio "$c_rb" "$(median "$t" repo_bytes)") $t;" \
           "incremental growth = $(ratio "$c_ig" "$(median "$t" incr_growth)") $t;" \
           "incremental time = $(ratio "$c_is" "$(median "$t" incr_s)") $t;" \
           "restore = $(ratio "$c_rs" "$(median "$t" restore_mbps)") $t"
    done
    echo
  fi
  echo "**Notes:**"
  echo
  echo "- restore ok = \`diff -r --no-dereference\` of the restored tree against rootfs/$RESTORE shows no" \
       "difference (same-type device-node pairs, which GNU diff cannot compare, are not counted)."
  echo "- metadata diffs = median number of paths whose type, mode, owner, size (not dirs), mtime (s)," \
       "link count, device numbers or symlink target differ from the source (informational)."
  if [[ -s $NOTES ]]; then cat "$NOTES"; else echo "- no tool failures."; fi
}

# ------------------------------------------------------------------ main ----
for t in restic borg casync; do
  if [[ " ${TOOL_LIST[*]} " == *" $t "* ]] && ! command -v "$t" >/dev/null; then
    log "warning: $t not found"
  fi
done

# the corpus: build it if missing
if [[ ! -f $CORPUS/MANIFEST ]]; then
  log "corpus $CORPUS missing: building it with make-corpus.sh"
  "$SCRIPT_DIR/../../shared/bench/make-corpus.sh" "$CORPUS" >&2
fi
declare -A TREE_BYTES
for n in "${INGEST[@]}" "$INCR"; do
  [[ -d $CORPUS/rootfs/$n ]] || die "missing $CORPUS/rootfs/$n"
  TREE_BYTES[$n]=$(bytes "$CORPUS/rootfs/$n")
done
INGEST_BYTES=0
for n in "${INGEST[@]}"; do INGEST_BYTES=$((INGEST_BYTES + TREE_BYTES[$n])); done

# refuse to run two benchmarks at once in the same work dir
mkdir -p "$WORK"
exec 9>"$WORK/.lock"
flock -n 9 || die "another benchmark is running in $WORK"

rm -rf "$WORK/logs"; mkdir -p "$WORK/logs"
RESULTS=$WORK/results.tsv; : >"$RESULTS"
NOTES=$WORK/notes.md; : >"$NOTES"
CASYNC_COMPRESSION="see casync --help"
# The coffer binary may be rebuilt by someone else during a long run: run a private
# copy of it, so every repetition measures the same build.
coffer_sha() { sha256sum "$1" 2>/dev/null | cut -c1-64; }
COFFER_ORIG=$COFFER
if [[ " ${TOOL_LIST[*]} " == *" coffer "* && -x $COFFER ]]; then
  mkdir -p "$WORK/bin"; cp "$COFFER" "$WORK/bin/coffer.tmp"; mv "$WORK/bin/coffer.tmp" "$WORK/bin/coffer"
  COFFER=$WORK/bin/coffer
fi
COFFER_SHA=$(coffer_sha "$COFFER")
# other work on the machine skews the timings: record the load average
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_START%% *}" 'BEGIN { exit !(l > 0.5) }'; then
  log "warning: load average at start is $LOAD_START; timings will be skewed by other work"
fi

for ((REP = 1; REP <= REPS; REP++)); do
  for t in "${TOOL_LIST[@]}"; do
    if ! tool_available "$t"; then
      ((REP == 1)) && echo "- **$t: not available** (binary not found); skipped." >>"$NOTES"
      continue
    fi
    log "=== rep $REP/$REPS: $t"
    set +e
    (set -e; run_tool "$t")
    rc=$?
    set -e
    if ((rc != 0)); then
      lf=$WORK/logs/$t-rep$REP.log
      log "!!!!!! $t rep $REP FAILED (exit $rc); last lines of $lf:"
      tail -n 15 "$lf" | sed 's/^/!!!   /' >&2
      {
        echo "- **$t rep $REP failed** (exit $rc). Last lines of its log:"
        echo '  ```'
        tail -n 8 "$lf" | sed 's/^/  /'
        echo '  ```'
      } >>"$NOTES"
    fi
    # casync: find which compression its chunks use (zstd/xz/gzip magic bytes)
    if [[ $t == casync && $CASYNC_COMPRESSION == "see casync --help" ]]; then
      c=$(find "$WORK/casync/repo/store" -name '*.cacnk' -print -quit 2>/dev/null || true)
      if [[ -n $c ]]; then
        case $(head -c 4 "$c" | od -An -tx1 | tr -d ' \n') in
          28b52ffd) CASYNC_COMPRESSION=zstd ;;
          fd377a58) CASYNC_COMPRESSION=xz ;;
          1f8b*) CASYNC_COMPRESSION=gzip ;;
          *) CASYNC_COMPRESSION="unknown" ;;
        esac
      fi
    fi
    # fail loudly on restore mismatch in the notes too
    if awk -F'\t' -v r="$REP" -v t="$t" '$1 == r && $2 == t && $3 == "restore_ok" && $4 == 0 { f = 1 } END { exit !f }' "$RESULTS"; then
      {
        echo "- **$t rep $REP: RESTORE MISMATCH** (\`diff -r --no-dereference\`), first lines:"
        echo '  ```'
        head -n 8 "$WORK/logs/$t-rep$REP.diff" | sed 's/^/  /'
        echo '  ```'
      } >>"$NOTES"
    fi
    # keep only the last repetition's data if --keep; otherwise free the space now
    if ((!KEEP || REP < REPS)); then rm -rf "${WORK:?}/$t"; fi
  done
done

if [[ " ${TOOL_LIST[*]} " == *" coffer "* && $(coffer_sha "$COFFER_ORIG") != "$COFFER_SHA" ]]; then
  echo "- $COFFER_ORIG was rebuilt during the run (now sha256 $(coffer_sha "$COFFER_ORIG" | cut -c1-12));" \
       "the numbers above are from the copy taken at the start (sha256 ${COFFER_SHA:0:12})." >>"$NOTES"
  log "note: $COFFER_ORIG changed during the run (the benchmark used its copy from the start)"
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
report
log "done; raw results in $RESULTS, logs in $WORK/logs"
