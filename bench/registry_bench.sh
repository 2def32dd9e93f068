#!/usr/bin/env bash
# registry_bench.sh — OCI registry benchmark: `coffer serve` against Debian's
# docker-registry (distribution 2.8), same image, same machine, one run.
#
# The image is built locally, never pulled: `docker import` of a corpus tar
# (rootfs/tools as tars/tools.tar, ~237 MB; --quick: tars/base.tar, ~121 MB) plus
# one small marker file (/.regbench-id, random per run) so that its layer is unique
# to this run: no other image on the machine's dockerd can share it, so a pull after
# `docker rmi` really fetches the layer again. The image is `docker save`d once and
# `docker load`ed back whenever a step left it missing.
#
# For every registry and repetition, with fresh storage (coffer: `coffer init` of a
# new repository, then `coffer serve`; distribution: a new filesystem root), the
# registry started as a child of this script and stopped with SIGTERM at the end:
#
#   1. push         `docker push 127.0.0.1:PORT/regbench/img:1`
#   2. stored bytes du -sb of coffer's repository dir / distribution's storage root
#   3. pull         `docker rmi -f IMAGE_ID` (every tag, so the image and its layer are
#                   gone), then `docker pull`; checks: the pulled image ID equals the
#                   pushed one and dockerd downloaded the layer ("Pull complete", no
#                   "Already exists")
#   4. skopeo copy  `skopeo copy --src-tls-verify=false docker://REG/regbench/img:1
#                   oci:FRESH_DIR:1`; check (untimed): every blob file in the layout
#                   hashes to its name
#   5. 32 pulls     32 concurrent clients, each: curl GET of the manifest by tag, then
#                   of the config blob and every layer blob, each response piped to
#                   sha256sum and compared with its digest; wall time until all 32
#                   have finished
#
# Every timed step starts with the page cache dropped (as bench/backup_bench.sh).
# Wall times come from `date +%s.%N`. CPU seconds (user + sys) are taken from
# /proc/PID/stat (utime+stime+cutime+cstime) of the registry's process tree before
# and after each step: "registry CPU". For push and pull also dockerd's (the client
# that gzips on push and gunzips/unpacks on pull; any other use of the same dockerd
# counts too), for skopeo and the 32 pulls the client processes' own CPU (children
# of this shell, from `times`).
#
# Which registry goes first alternates between repetitions. The report gives the
# MEDIAN of every metric per registry over -r N repetitions and ratios
# coffer/distribution (< 1 = coffer faster / smaller).
#
# Output: a markdown report on stdout; also saved, with the progress log, to
# bench/results/registry-YYYYMMDD.md (not for --quick unless -o is given).
# Progress and failures go to stderr; tool output to WORK/logs/.
#
# Needs root (dockerd, drop_caches, FUSE), dockerd (started if not running, as
# shared/acceptance/lib.sh does), skopeo, curl, jq, and the Debian package
# docker-registry (`COFFER_WITH_BENCH=1 scripts/install-deps.sh`). Installs nothing.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  cat <<EOF
usage: $(basename "$0") [options]

OCI registry benchmark: coffer serve against docker-registry (distribution 2.8):
docker push, docker pull, skopeo copy, 32 concurrent pulls.

options:
  -r N            repetitions (default 5); the report gives the median per metric
  --quick         smoke run: the image is made from tars/base.tar instead of tools.tar;
                  the report is not saved unless -o is given
  --corpus DIR    corpus directory (default /tmp/coffer-bench-corpus; built with
                  ../shared/bench/make-corpus.sh DIR if missing)
  --work DIR      work directory for repositories, storage, copies and logs
                  (default /tmp/coffer-regbench-work); wiped per registry and rep
  --clients N     concurrent pulls (default 32)
  --timeout S     per-command time limit in seconds (default 1800)
  -o FILE         also save the report (plus the progress log) to FILE; "-" = don't
                  (default bench/results/registry-YYYYMMDD.md; none with --quick)
  --keep          keep the last repetition's storage and the image tars
  -h, --help      this text

environment:
  COFFER          coffer binary (default /work/main/build/bin/coffer)

example:
  $(basename "$0") --quick -r 1                           # smoke run
  nohup $(basename "$0") -r 5 >/tmp/regbench.md 2>/tmp/regbench.log &
EOF
}

# ---------------------------------------------------------------- options ----
REPS=5
QUICK=0
CORPUS=/tmp/coffer-bench-corpus
WORK=/tmp/coffer-regbench-work
CLIENTS=32
TIMEOUT=1800
KEEP=0
OUT=
COFFER=${COFFER:-/work/main/build/bin/coffer}
ARGS_ORIG="$*"

while (($#)); do
  case $1 in
    -r) REPS=${2:?-r needs a number}; shift 2 ;;
    -r*) REPS=${1#-r}; shift ;;
    --quick) QUICK=1; shift ;;
    --corpus) CORPUS=${2:?}; shift 2 ;;
    --corpus=*) CORPUS=${1#*=}; shift ;;
    --work) WORK=${2:?}; shift 2 ;;
    --work=*) WORK=${1#*=}; shift ;;
    --clients) CLIENTS=${2:?}; shift 2 ;;
    --clients=*) CLIENTS=${1#*=}; shift ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --timeout=*) TIMEOUT=${1#*=}; shift ;;
    -o) OUT=${2:?-o needs a file}; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 64 ;;
  esac
done
[[ $REPS =~ ^[1-9][0-9]*$ ]] || { echo "-r wants a positive integer, got '$REPS'" >&2; exit 64; }
[[ $CLIENTS =~ ^[1-9][0-9]*$ ]] || { echo "--clients wants a positive integer" >&2; exit 64; }
if [[ -z $OUT ]]; then
  if ((QUICK)); then OUT=-; else OUT=$SCRIPT_DIR/results/registry-$(date +%Y%m%d).md; fi
fi
if ((QUICK)); then IMAGE_TAR=base.tar; else IMAGE_TAR=tools.tar; fi
REGISTRIES=(coffer distribution)
REPO_NAME=regbench/img     # repository name in both registries
REPO_TAG=1

mkdir -p "$WORK"
PROGRESS=$WORK/progress.log
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" | tee -a "$PROGRESS" >&2; }
die() { log "error: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "must run as root (dockerd, drop_caches, FUSE)"

# Helpers and registry adapters shared with bench/layers_bench.sh.
# shellcheck source=reglib.sh
source "$SCRIPT_DIR/reglib.sh"

# ------------------------------------------------- concurrent pull client ----
# pull_client I: GET the manifest by tag and every blob it names, each piped to
# sha256sum and compared with its digest. Writes "I ok verified" to $CDIR/I.
MANIFEST_ACCEPT="application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
pull_client() {
  local i=$1 ok=1 n=0 got d
  got=$(curl -sSf --max-time "$TIMEOUT" -H "Accept: $MANIFEST_ACCEPT" \
          "$BASE/manifests/$REPO_TAG" 2>>"$CDIR/$i.err" | sha256sum | cut -d' ' -f1) || ok=0
  if [[ sha256:$got == "$MANIFEST_DIGEST" ]]; then n=$((n + 1)); else ok=0; echo "manifest: got sha256:$got" >>"$CDIR/$i.err"; fi
  for d in "${BLOB_DIGESTS[@]}"; do
    got=$(curl -sSf --max-time "$TIMEOUT" "$BASE/blobs/$d" 2>>"$CDIR/$i.err" | sha256sum | cut -d' ' -f1) || ok=0
    if [[ sha256:$got == "$d" ]]; then n=$((n + 1)); else ok=0; echo "$d: got sha256:$got" >>"$CDIR/$i.err"; fi
  done
  echo "$i $ok $n" >"$CDIR/$i"
}

concurrent_pulls() {
  local i pids=()
  for ((i = 1; i <= CLIENTS; i++)); do pull_client "$i" & pids+=($!); done
  wait "${pids[@]}"    # not a bare `wait`: the registry is a child of this shell too
}

# ---------------------------------------------------- one registry, one rep ----
# Runs in a subshell with errexit on; any failure ends this registry's repetition.
run_registry() {
  REG=$1
  TD=$WORK/$REG LOG=$WORK/logs/$REG-rep$REP.log
  PORT=${PORTS[$REG]} REG_PID=
  local ref=127.0.0.1:$PORT/$REPO_NAME:$REPO_TAG
  rm -rf "$TD"; mkdir -p "$TD"; : >"$LOG"
  trap 'stop_registry || log "$REG rep $REP: stop: $STOP_NOTE"' EXIT

  log "$REG rep $REP: start on 127.0.0.1:$PORT"
  "${REG}_start"
  if ! wait_http "http://127.0.0.1:$PORT/v2/" 60; then
    log "$REG: no answer on /v2/ within 60 s: $(tail -n 2 "$TD/serve.log" | tr '\n' ' ')"
    return 1
  fi
  ensure_image || { log "$REG: cannot restore the local image"; return 1; }

  # 1. push
  docker tag "$IMAGE_ID" "$ref"
  log "$REG rep $REP: docker push"
  timed "$LOG" docker push "$ref" || { log "$REG: docker push failed"; return 1; }
  record "$REG" push_s "$ELAPSED"; record "$REG" push_rcpu "$RCPU"; record "$REG" push_dcpu "$DCPU"

  # 2. stored bytes
  record "$REG" stored_bytes "$(bytes "$STORE")"

  # the manifest as the registry serves it: digest and blobs (untimed)
  BASE=http://127.0.0.1:$PORT/v2/$REPO_NAME
  curl -sSf -H "Accept: $MANIFEST_ACCEPT" "$BASE/manifests/$REPO_TAG" -o "$TD/manifest.json" 2>>"$LOG" ||
    { log "$REG: GET manifest failed"; return 1; }
  MANIFEST_DIGEST=sha256:$(sha256sum "$TD/manifest.json" | cut -d' ' -f1)
  mapfile -t BLOB_DIGESTS < <(jq -r '.config.digest, .layers[].digest' "$TD/manifest.json")
  record "$REG" layer_bytes "$(jq '[.layers[].size] | add' "$TD/manifest.json")"
  echo "$MANIFEST_DIGEST" >"$WORK/logs/$REG-rep$REP.manifest-digest"

  # 3. pull: the image removed entirely first, so the layer is fetched again
  docker rmi -f "$IMAGE_ID" >>"$LOG" 2>&1 || { log "$REG: docker rmi -f $IMAGE_ID failed"; return 1; }
  if docker image inspect "$IMAGE_ID" >/dev/null 2>&1; then log "$REG: image still present after rmi"; return 1; fi
  log "$REG rep $REP: docker pull"
  local mark; mark=$(wc -l <"$LOG")
  timed "$LOG" docker pull "$ref" || { log "$REG: docker pull failed"; return 1; }
  record "$REG" pull_s "$ELAPSED"; record "$REG" pull_rcpu "$RCPU"; record "$REG" pull_dcpu "$DCPU"
  local pulled_id; pulled_id=$(docker image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)
  if [[ $pulled_id == "$IMAGE_ID" ]]; then record "$REG" pull_id_ok 1
  else record "$REG" pull_id_ok 0; log "!!!!!! $REG rep $REP: pulled image ID '$pulled_id' != pushed $IMAGE_ID"; fi
  if tail -n +"$((mark + 1))" "$LOG" | grep -q 'Pull complete' && ! tail -n +"$((mark + 1))" "$LOG" | grep -q 'Already exists'; then
    record "$REG" pull_xfer_ok 1
  else record "$REG" pull_xfer_ok 0; log "!!!!!! $REG rep $REP: docker pull did not download the layer"; fi

  # 4. skopeo copy to a fresh OCI layout
  local oci=$TD/oci
  rm -rf "$oci"
  log "$REG rep $REP: skopeo copy"
  timed "$LOG" skopeo --insecure-policy copy -q --src-tls-verify=false \
    "docker://$ref" "oci:$oci:$REPO_TAG" || { log "$REG: skopeo copy failed"; return 1; }
  record "$REG" skopeo_s "$ELAPSED"; record "$REG" skopeo_rcpu "$RCPU"; record "$REG" skopeo_ccpu "$CPU"
  local f bad=0 nb=0
  for f in "$oci"/blobs/sha256/*; do
    nb=$((nb + 1))
    [[ $(sha256sum "$f" | cut -d' ' -f1) == "$(basename "$f")" ]] || { bad=$((bad + 1)); log "!!!!!! $REG: skopeo blob $f mismatch"; }
  done
  # the layout must hold every layer of the registry's manifest (not its config: skopeo
  # rewrites the config when it converts the Docker manifest to OCI)
  for d in "${BLOB_DIGESTS[@]:1}"; do [[ -f $oci/blobs/sha256/${d#sha256:} ]] || { bad=$((bad + 1)); log "!!!!!! $REG: skopeo layout lacks $d"; }; done
  record "$REG" skopeo_ok "$(((bad == 0 && nb > 0) ? 1 : 0))"
  rm -rf "$oci"

  # 5. concurrent pulls
  CDIR=$TD/clients; rm -rf "$CDIR"; mkdir -p "$CDIR"
  log "$REG rep $REP: $CLIENTS concurrent pulls"
  timed "$LOG" concurrent_pulls || true   # failures are counted below
  record "$REG" conc_s "$ELAPSED"; record "$REG" conc_rcpu "$RCPU"; record "$REG" conc_ccpu "$CPU"
  local want=$(((1 + ${#BLOB_DIGESTS[@]}) * CLIENTS)) verified
  verified=$(cat "$CDIR"/[0-9]* 2>/dev/null | awk '{ s += $3 } END { print s + 0 }')
  record "$REG" conc_verified "$verified"; record "$REG" conc_want "$want"
  if ((verified != want)); then
    log "!!!!!! $REG rep $REP: concurrent pulls verified $verified of $want digests; errors:"
    cat "$CDIR"/*.err 2>/dev/null | sort | uniq -c | head -n 10 | sed 's/^/!!!   /' | tee -a "$PROGRESS" >&2
  fi

  # 6. stop; coffer must exit 0 and unmount
  log "$REG rep $REP: stop"
  trap - EXIT
  if stop_registry; then record "$REG" stop_ok 1
  else record "$REG" stop_ok 0; log "!!!!!! $REG rep $REP: stop: $STOP_NOTE"; fi
  log "$REG rep $REP: done"
}

# ---------------------------------------------------------------- report ----
median() {
  awk -F'\t' -v t="$1" -v m="$2" '$2 == t && $3 == m { print $4 }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2];
                              else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
count() { awk -F'\t' -v t="$1" -v m="$2" '$2 == t && $3 == m' "$RESULTS" | wc -l; }
sum() { awk -F'\t' -v t="$1" -v m="$2" '$2 == t && $3 == m { s += $4 } END { print s + 0 }' "$RESULTS"; }
fmt() { if [[ -z $2 ]]; then echo "—"; else printf "$1" "$2"; fi; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "—"; else printf "%.2f", a / b }'; }
# rep_ratios METRIC: "median (k/n)": the median over repetitions of coffer/distribution
# within the same repetition, and in how many of the n repetitions coffer was faster
rep_ratios() {
  awk -F'\t' -v m="$1" '$3 == m { v[$1 "\t" $2] = $4; r[$1] = 1 }
    END { for (x in r) if ((x "\tcoffer") in v && (x "\tdistribution") in v && v[x "\tdistribution"] > 0)
            print v[x "\tcoffer"] / v[x "\tdistribution"] }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1; if ($1 < 1) k++ }
      END { if (NR == 0) { print "—"; exit }
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.2f (%d/%d)\n", m, k, NR }'
}
# okcol REG METRIC: "yes" when every recorded rep has 1, else "NO (k/n)"
okcol() {
  local n k
  n=$(count "$1" "$2"); k=$(awk -F'\t' -v t="$1" -v m="$2" '$2 == t && $3 == m && $4 == 1' "$RESULTS" | wc -l)
  if ((n == 0)); then echo "—"; elif ((k == n && n == REPS)); then echo yes
  elif ((k == n)); then echo "yes ($n/$REPS reps ran)"; else echo "**NO** ($k/$n)"; fi
}

reg_version() {
  case $1 in
    coffer) echo "$("$COFFER" --version 2>&1 | head -n1) (copy of $COFFER_ORIG, sha256 ${COFFER_SHA:0:12})" ;;
    distribution) echo "$(docker-registry --version 2>&1 | head -n1) (Debian $(dpkg-query -W -f='${Version}' docker-registry 2>/dev/null))" ;;
  esac
}

report() {
  local r cpu fs m
  cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
  fs=$(df --output=fstype "$WORK" | tail -n1 | tr -d ' ')
  echo "# Registry benchmark: coffer serve vs distribution (docker-registry)"
  echo
  echo "Run $(date -u '+%Y-%m-%d %H:%M UTC'): \`bench/registry_bench.sh $ARGS_ORIG\`"
  echo
  echo "**Machine:** nproc $(nproc), CPU $cpu, kernel $(uname -r), work dir $WORK on $fs," \
       "$(awk '/^MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo)," \
       "load average $LOAD_START at start, $LOAD_END at end"
  echo
  echo "**Versions:** $(reg_version coffer); $(reg_version distribution); dockerd $DOCKERD_VERSION;" \
       "$(skopeo --version 2>&1 | head -n1); $(curl --version | head -n1 | cut -d' ' -f1-2)"
  echo
  echo "**Image:** \`docker import\` of $CORPUS/tars/$IMAGE_TAR ($(bytes "$CORPUS/tars/$IMAGE_TAR") bytes) plus a" \
       "marker file (unique layer per run): image $IMAGE_ID, one layer of $IMAGE_SIZE bytes" \
       "uncompressed, $(fmt %.0f "$(median coffer layer_bytes)") bytes gzipped as pushed by dockerd."
  echo "Repetitions: $REPS, median per metric, fresh storage per registry and repetition, the" \
       "registry that goes first alternates. Page cache dropped before every timed step: $CACHES_DROPPED."
  echo
  echo "**Settings:** coffer: \`coffer init\` defaults (encrypted), \`coffer serve\` defaults (4 registry" \
       "threads), no auth; distribution: Debian's config.yml minus auth and health check: filesystem" \
       "storage, inmemory blob descriptor cache, log level warn, access log off, no auth. Both plain HTTP on 127.0.0.1."
  echo
  echo "| registry | docker push s | docker pull s | skopeo copy s | $CLIENTS concurrent pulls s | stored bytes after push | pulled ID = pushed | layer re-downloaded | skopeo blobs ok | concurrent digests verified | clean stop |"
  echo "|---|---:|---:|---:|---:|---:|---|---|---|---|---|"
  for r in "${REGISTRIES[@]}"; do
    local v w
    v=$(sum "$r" conc_verified); w=$(sum "$r" conc_want)
    if (($(count "$r" conc_want) == 0)); then m="—"
    elif ((v == w)); then m="$v/$w"; else m="**$v/$w**"; fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$r" \
      "$(fmt %.2f "$(median "$r" push_s)")" "$(fmt %.2f "$(median "$r" pull_s)")" \
      "$(fmt %.2f "$(median "$r" skopeo_s)")" "$(fmt %.2f "$(median "$r" conc_s)")" \
      "$(fmt %.0f "$(median "$r" stored_bytes)")" "$(okcol "$r" pull_id_ok)" "$(okcol "$r" pull_xfer_ok)" \
      "$(okcol "$r" skopeo_ok)" "$m" "$(okcol "$r" stop_ok)"
  done
  echo
  echo "CPU seconds (user+sys), medians. *registry* = the registry's process tree (/proc/PID/stat);" \
       "*dockerd* = the docker engine (gzip on push, gunzip + unpack on pull; includes any other use of" \
       "this dockerd meanwhile); *client* = skopeo / the $CLIENTS curl+sha256sum clients:"
  echo
  echo "| registry | push: registry | push: dockerd | pull: registry | pull: dockerd | skopeo: registry | skopeo: client | concurrent: registry | concurrent: clients |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for r in "${REGISTRIES[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$r" \
      "$(fmt %.2f "$(median "$r" push_rcpu)")" "$(fmt %.2f "$(median "$r" push_dcpu)")" \
      "$(fmt %.2f "$(median "$r" pull_rcpu)")" "$(fmt %.2f "$(median "$r" pull_dcpu)")" \
      "$(fmt %.2f "$(median "$r" skopeo_rcpu)")" "$(fmt %.2f "$(median "$r" skopeo_ccpu)")" \
      "$(fmt %.2f "$(median "$r" conc_rcpu)")" "$(fmt %.2f "$(median "$r" conc_ccpu)")"
  done
  echo
  echo "**Ratios coffer / distribution (medians; < 1 = coffer faster / smaller / cheaper):**"
  echo
  echo "| metric | wall time | registry CPU | per-rep wall ratios: median (reps coffer faster) |"
  echo "|---|---:|---:|---:|"
  local k met target=yes rt
  for k in push:"docker push" pull:"docker pull" skopeo:"skopeo copy" conc:"$CLIENTS concurrent pulls"; do
    met=${k%%:*}
    rt=$(ratio "$(median coffer "${met}_s")" "$(median distribution "${met}_s")")
    if [[ $rt == "—" ]] || awk -v x="$rt" 'BEGIN { exit !(x > 1.0) }'; then target=no; fi
    printf '| %s | %s | %s | %s |\n' "${k#*:}" "$rt" \
      "$(ratio "$(median coffer "${met}_rcpu")" "$(median distribution "${met}_rcpu")")" \
      "$(rep_ratios "${met}_s")"
  done
  printf '| stored bytes after push | %s (bytes) | | |\n' \
    "$(ratio "$(median coffer stored_bytes)" "$(median distribution stored_bytes)")"
  echo
  echo "**Target (issue 4: coffer no slower than distribution on any of the four, median wall time):** $target."
  echo
  echo "<details><summary>Every repetition (wall s; registry CPU s in parentheses)</summary>"
  echo
  echo "| rep | registry | push | pull | skopeo | concurrent | stored bytes |"
  echo "|---:|---|---:|---:|---:|---:|---:|"
  awk -F'\t' '{ v[$1 "\t" $2 "\t" $3] = $4; k[$1 "\t" $2] = 1 }
    END { for (x in k) print x }' "$RESULTS" | sort -k1,1n -k2,2 | while IFS=$'\t' read -r rp r; do
      g() { awk -F'\t' -v a="$rp" -v b="$r" -v m="$1" '$1 == a && $2 == b && $3 == m { print $4 }' "$RESULTS"; }
      printf '| %s | %s | %s (%s) | %s (%s) | %s (%s) | %s (%s) | %s |\n' "$rp" "$r" \
        "$(g push_s)" "$(g push_rcpu)" "$(g pull_s)" "$(g pull_rcpu)" "$(g skopeo_s)" "$(g skopeo_rcpu)" \
        "$(g conc_s)" "$(g conc_rcpu)" "$(g stored_bytes)"
    done
  echo
  echo "</details>"
  echo
  echo "**Notes:**"
  echo
  echo "- pulled ID = pushed: \`docker image inspect\` ID after the pull equals the imported image's ID." \
       "layer re-downloaded: the pull printed \"Pull complete\" and no \"Already exists\" (the image was" \
       "removed with \`docker rmi -f ID\` first; no global prune, other images on this dockerd are left alone)."
  echo "- concurrent digests verified: per client the manifest (sha256 of the bytes = the digest of the" \
       "manifest fetched before) plus config and layer blobs, summed over clients and repetitions."
  echo "- skopeo blobs ok: every blob file of the OCI layout hashes to its name and the layout holds the" \
       "registry manifest's layers (skopeo rewrites the config blob when converting to OCI)."
  echo "- stored bytes: coffer's repository directory (encrypted packs, index, keys) vs distribution's" \
       "storage root, right after the push."
  echo "- The machine has $(nproc) cores and other work runs on it: wall times are noisy; CPU seconds are steadier."
  if [[ -s $NOTES ]]; then cat "$NOTES"; else echo "- no failures."; fi
}

# ------------------------------------------------------------------ main ----
command -v docker-registry >/dev/null ||
  die "docker-registry missing: COFFER_WITH_BENCH=1 scripts/install-deps.sh (Debian package docker-registry)"
for c in docker skopeo curl jq sha256sum python3; do command -v "$c" >/dev/null || die "$c missing"; done
[[ -x $COFFER ]] || die "no coffer binary at $COFFER"

# refuse to run two benchmarks at once in the same work dir
exec 9>"$WORK/.lock"
flock -n 9 || die "another benchmark is running in $WORK"
: >"$PROGRESS"

if [[ ! -f $CORPUS/tars/$IMAGE_TAR ]]; then
  log "corpus $CORPUS missing: building it with make-corpus.sh"
  "$SCRIPT_DIR/../../shared/bench/make-corpus.sh" "$CORPUS" >&2
fi
[[ -f $CORPUS/tars/$IMAGE_TAR ]] || die "missing $CORPUS/tars/$IMAGE_TAR"

rm -rf "$WORK/logs" "$WORK/image"; mkdir -p "$WORK/logs" "$WORK/image"
RESULTS=$WORK/results.tsv; : >"$RESULTS"
NOTES=$WORK/notes.md; : >"$NOTES"
LOG=$WORK/logs/setup.log; : >"$LOG"

# a private copy of coffer: a rebuild during the run cannot mix two builds
coffer_sha() { sha256sum "$1" 2>/dev/null | cut -c1-64; }
COFFER_ORIG=$COFFER
mkdir -p "$WORK/bin"; cp "$COFFER" "$WORK/bin/coffer.tmp"; mv "$WORK/bin/coffer.tmp" "$WORK/bin/coffer"
COFFER=$WORK/bin/coffer
COFFER_SHA=$(coffer_sha "$COFFER")

ensure_dockerd
DOCKERD_PID=$(pidof dockerd | awk '{ print $1 }' || true)
[[ -n $DOCKERD_PID ]] || { log "warning: no dockerd process visible: dockerd CPU not measured"; DOCKERD_PID=0; }
DOCKERD_VERSION=$(docker version --format '{{.Server.Version}}' 2>/dev/null || echo "?")

# the image: the corpus tar plus a marker, imported, saved for restoring
log "building the image from $IMAGE_TAR (docker import)"
RUN_ID=$(date +%Y%m%d%H%M%S)-$$-$RANDOM
cp "$CORPUS/tars/$IMAGE_TAR" "$WORK/image/src.tar"
mkdir -p "$WORK/image/marker"; echo "coffer registry_bench $RUN_ID" >"$WORK/image/marker/.regbench-id"
tar --append -f "$WORK/image/src.tar" -C "$WORK/image/marker" ./.regbench-id
LOCAL_REF=coffer-regbench/img:$RUN_ID
docker import "$WORK/image/src.tar" "$LOCAL_REF" >>"$LOG" 2>&1 || die "docker import failed (see $LOG)"
rm -f "$WORK/image/src.tar"
IMAGE_ID=$(docker image inspect --format '{{.Id}}' "$LOCAL_REF")
IMAGE_SIZE=$(docker image inspect --format '{{.Size}}' "$LOCAL_REF")
docker save -o "$WORK/image/saved.tar" "$LOCAL_REF" 2>>"$LOG" || die "docker save failed"
log "image $IMAGE_ID ($IMAGE_SIZE bytes)"

declare -A PORTS
PORTS[coffer]=$(free_port); PORTS[distribution]=$(free_port)
while [[ ${PORTS[distribution]} == "${PORTS[coffer]}" ]]; do PORTS[distribution]=$(free_port); done

cleanup() {
  docker rmi -f "$IMAGE_ID" >/dev/null 2>&1 || true
  if ((!KEEP)); then rm -rf "$WORK/image"; fi
}
trap cleanup EXIT

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_START%% *}" 'BEGIN { exit !(l > 0.5) }'; then
  log "warning: load average at start is $LOAD_START; timings will be skewed by other work"
fi

for ((REP = 1; REP <= REPS; REP++)); do
  if ((REP % 2)); then order=(coffer distribution); else order=(distribution coffer); fi
  for r in "${order[@]}"; do
    log "=== rep $REP/$REPS: $r"
    set +e
    (set -e; run_registry "$r")
    rc=$?
    set -e
    if ((rc != 0)); then
      lf=$WORK/logs/$r-rep$REP.log
      log "!!!!!! $r rep $REP FAILED (exit $rc); last lines of $lf and of the registry's log:"
      tail -n 15 "$lf" | sed 's/^/!!!   /' | tee -a "$PROGRESS" >&2
      tail -n 10 "$WORK/$r/serve.log" 2>/dev/null | sed 's/^/!!!   serve: /' | tee -a "$PROGRESS" >&2
      {
        echo "- **$r rep $REP failed** (exit $rc). Last lines of its log and of the registry's output:"
        echo '  ```'
        tail -n 8 "$lf" | sed 's/^/  /'
        tail -n 6 "$WORK/$r/serve.log" 2>/dev/null | sed 's/^/  serve: /'
        echo '  ```'
      } >>"$NOTES"
    fi
    # a registry that printed errors: keep them in the notes (not distribution's
    # "blob unknown": the 404 answers to dockerd's HEAD checks before each upload)
    errs=$(grep -iE 'error|fatal|panic|abort' "$WORK/$r/serve.log" 2>/dev/null |
             grep -v 'err.code="blob unknown"' || true)
    if [[ -n $errs ]]; then
      {
        echo "- $r rep $REP: its output has $(wc -l <<<"$errs") error lines (first 5):"
        echo '  ```'
        head -n 5 <<<"$errs" | cut -c1-300 | sed 's/^/  /'
        echo '  ```'
      } >>"$NOTES"
    fi
    cp "$WORK/$r/serve.log" "$WORK/logs/$r-rep$REP.serve.log" 2>/dev/null || true
    if ((!KEEP || REP < REPS)); then rm -rf "${WORK:?}/$r"; fi
  done
done

if [[ $(coffer_sha "$COFFER_ORIG") != "$COFFER_SHA" ]]; then
  echo "- $COFFER_ORIG was rebuilt during the run (now sha256 $(coffer_sha "$COFFER_ORIG" | cut -c1-12));" \
       "the numbers above are from the copy taken at the start (sha256 ${COFFER_SHA:0:12})." >>"$NOTES"
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
log "done; raw results in $RESULTS, logs in $WORK/logs"
report >"$WORK/report.md"
cat "$WORK/report.md"
if [[ $OUT != - ]]; then
  mkdir -p "$(dirname "$OUT")"
  {
    cat "$WORK/report.md"
    echo
    echo "<details><summary>Progress log (stderr of the run)</summary>"
    echo
    echo '```'
    cat "$PROGRESS"
    echo '```'
    echo
    echo "</details>"
  } >"$OUT"
  log "report saved to $OUT"
fi
