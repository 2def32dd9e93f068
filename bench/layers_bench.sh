#!/usr/bin/env bash
# layers_bench.sh — bytes stored and pull times for the corpus images: `coffer serve
# --dedup-layers` (layers re-stored as tar + recipe) against Debian's docker-registry
# (distribution 2.8, every layer stored whole), same images, one run.
#
# Images: `docker import` of the four corpus rootfs tars that extend the Debian
# base (tars/{tools,ruby,cache,base2}.tar, each with a random marker file appended
# so its layer is new to dockerd), one layer each, pushed by dockerd
# (Go compress/gzip). Both registries start empty and get the same four pushes.
# coffer then finishes re-storing the layers (/.coffer/stats layers_pending = 0)
# and runs `coffer gc --grace 1h` (drops the pushed forms it replaced; frees no
# registry blob). Stored bytes: du -sb of coffer's repository / distribution's root.
# Pulls: -r N rounds; each round, per registry (order alternating), per image:
# `docker rmi -f ID`, caches dropped, `docker pull` timed; the pulled image ID must
# equal the pushed one (docker verifies every layer digest while pulling).
#
# --client skopeo: the same tars as skopeo dir: images (uncompressed layer),
# pushed with `skopeo copy --dest-compress` (containers/image compresses with
# pgzip, as podman and buildah do: coffer re-stores these as deflate tokens);
# pulls are still `docker pull`, the image ID being the config's digest.
#
# --layer-cache SIZE: passed to coffer serve (default: serve's, 256M). The cache
# is filled by the verification at ingestion, so with it the pulls below are of
# segments still in memory; --layer-cache 0 measures re-creation from the
# stored form (docs/layers.md, "Segment cache").
#
# Output: markdown on stdout, saved to bench/results/layers-YYYYMMDD.md unless
# -o - ; progress on stderr. Root, dockerd, docker-registry (COFFER_WITH_BENCH=1
# scripts/install-deps.sh), the corpus (../shared/bench/make-corpus.sh).
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

REPS=3
CORPUS=/tmp/coffer-bench-corpus
WORK=/tmp/coffer-layerbench-work
TIMEOUT=1800
OUT=$SCRIPT_DIR/results/layers-$(date +%Y%m%d).md
COFFER=${COFFER:-/work/main/build/bin/coffer}
IMAGES=(tools ruby cache base2)
CLIENT=docker
LAYER_CACHE=
while (($#)); do
  case $1 in
    --client) CLIENT=${2:?}; shift 2 ;;
    --layer-cache) LAYER_CACHE=${2:?}; shift 2 ;;
    -r) REPS=${2:?}; shift 2 ;;
    --corpus) CORPUS=${2:?}; shift 2 ;;
    --work) WORK=${2:?}; shift 2 ;;
    -o) OUT=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 64 ;;
  esac
done
[[ $REPS =~ ^[1-9][0-9]*$ ]] || { echo "-r wants a positive integer" >&2; exit 64; }
[[ $CLIENT == docker || $CLIENT == skopeo ]] || { echo "--client wants docker or skopeo" >&2; exit 64; }

rm -rf "$WORK"; mkdir -p "$WORK"
PROGRESS=$WORK/progress.log LOG=$WORK/commands.log RESULTS=$WORK/results.tsv REP=0
: >"$RESULTS"
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" | tee -a "$PROGRESS" >&2; }
die() { log "error: $*"; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root"
# shellcheck source=reglib.sh
source "$SCRIPT_DIR/reglib.sh"
COFFER_SERVE_FLAGS="--dedup-layers${LAYER_CACHE:+ --layer-cache $LAYER_CACHE}"
for n in "${IMAGES[@]}"; do [[ -f $CORPUS/tars/$n.tar ]] || die "missing $CORPUS/tars/$n.tar (make-corpus.sh)"; done
command -v docker-registry >/dev/null || die "docker-registry missing (COFFER_WITH_BENCH=1 scripts/install-deps.sh)"
ensure_dockerd
DOCKERD_PID=$(pgrep -xo dockerd || echo 0)

declare -A ID PORTS PIDS STORES
# Each tar gets a random /.layerbench-id appended, so no image already on this
# dockerd shares its layer: a pull after `docker rmi` really downloads it.
mkdir -p "$WORK/marker"
# dir_image DIR TAR: a skopeo dir: image of TAR as its one uncompressed layer
# (TAR moves into it); prints the config digest, the image ID docker will see.
dir_image() {
  local dir=$1 tar=$2 l c
  mkdir -p "$dir"
  l=$(sha256sum "$tar" | cut -d' ' -f1)
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"config":{}}' "$l" >"$dir/cfg"
  c=$(sha256sum "$dir/cfg" | cut -d' ' -f1)
  mv "$dir/cfg" "$dir/$c"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
    "$c" "$(stat -c %s "$dir/$c")" "$l" "$(stat -c %s "$tar")" >"$dir/manifest.json"
  echo "Directory Transport Version: 1.1" >"$dir/version"
  mv "$tar" "$dir/$l"
  echo "sha256:$c"
}
for n in "${IMAGES[@]}"; do
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/marker/.layerbench-id"
  cp "$CORPUS/tars/$n.tar" "$WORK/$n.tar"
  tar --append -f "$WORK/$n.tar" -C "$WORK/marker" ./.layerbench-id
  if [[ $CLIENT == skopeo ]]; then
    ID[$n]=$(dir_image "$WORK/src-$n" "$WORK/$n.tar")
  else
    ID[$n]=$(docker import "$WORK/$n.tar" "layerbench/$n:src" 2>>"$LOG")
  fi
  rm -f "$WORK/$n.tar"
  log "imported $n.tar (+ marker): ${ID[$n]}"
done
cleanup() {
  for r in coffer distribution; do
    [[ -n ${PIDS[$r]:-} ]] && { REG=$r REG_PID=${PIDS[$r]} M=$WORK/coffer/mnt; stop_registry || true; }
  done
}
trap 'cleanup; for n in "${IMAGES[@]}"; do docker rmi -f "${ID[$n]:-none}" >/dev/null 2>&1 || true; done' EXIT

for REG in coffer distribution; do
  TD=$WORK/$REG; mkdir -p "$TD"; PORT=$(free_port)
  "${REG}_start"
  wait_http "http://127.0.0.1:$PORT/v2/" 60 || die "$REG did not answer on $PORT: $(tail -n 3 "$TD/serve.log")"
  PORTS[$REG]=$PORT PIDS[$REG]=$REG_PID STORES[$REG]=$STORE
  for n in "${IMAGES[@]}"; do
    ref=127.0.0.1:$PORT/layerbench/$n:1
    if [[ $CLIENT == skopeo ]]; then
      timed "$LOG" skopeo copy -q --dest-compress --dest-tls-verify=false "dir:$WORK/src-$n" "docker://$ref" ||
        die "skopeo copy to $ref failed (see $LOG)"
    else
      docker tag "${ID[$n]}" "$ref"
      timed "$LOG" docker push "$ref" || die "docker push $ref failed (see $LOG)"
    fi
    record "$REG" "push_$n" "$ELAPSED"
    log "$REG: pushed $n in $ELAPSED s"
  done
done

# coffer: let the layers be re-stored, then drop the replaced pushed forms.
M=$WORK/coffer/mnt
t0=$(now); c0=$(tree_cpu "${PIDS[coffer]}")
until [[ $(jq -r .layers_pending "$M/.coffer/stats") == 0 ]]; do sleep 0.5; done
INGEST_S=$(fsub "$(now)" "$t0"); INGEST_CPU=$(fsub "$(tree_cpu "${PIDS[coffer]}")" "$c0")
"$COFFER" --repo "$WORK/coffer/repo" --passphrase-file "$WORK/coffer/pass" -q gc --grace 1h >>"$LOG" 2>&1 || die "coffer gc failed"
STATS=$(cat "$M/.coffer/stats")
for REG in coffer distribution; do record "$REG" stored "$(bytes "${STORES[$REG]}")"; done
log "coffer: layers re-stored $(jq -r .layers_stored <<<"$STATS") of ${#IMAGES[@]} (waited $INGEST_S s after the pushes)"

for ((REP = 1; REP <= REPS; REP++)); do
  order=(coffer distribution); ((REP % 2)) || order=(distribution coffer)
  for REG in "${order[@]}"; do
    REG_PID=${PIDS[$REG]}
    for n in "${IMAGES[@]}"; do
      ref=127.0.0.1:${PORTS[$REG]}/layerbench/$n:1
      docker rmi -f "${ID[$n]}" >>"$LOG" 2>&1 || true
      timed "$LOG" docker pull "$ref" || die "docker pull $ref failed (see $LOG)"
      got=$(docker image inspect --format '{{.Id}}' "$ref")
      [[ $got == "${ID[$n]}" ]] || die "pulled $ref is $got, pushed ${ID[$n]}"
      record "$REG" "pull_$n" "$ELAPSED"
      record "$REG" pull_cpu "$RCPU"
      record "$REG" pull_dcpu "$DCPU"
      log "round $REP $REG: pulled $n in $ELAPSED s (registry CPU $RCPU s)"
    done
  done
done

med() { awk -F'\t' -v r="$1" -v m="$2" '$2 == r && $3 == m { print $4 }' "$RESULTS" | sort -g |
  awk '{ a[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "—"; else printf "%.2f", a / b }'; }
{
  echo "# Layers benchmark: coffer serve (layers re-stored) vs distribution"
  echo
  echo "Run $(date -u '+%Y-%m-%d %H:%M') UTC: \`bench/layers_bench.sh -r $REPS --client $CLIENT${LAYER_CACHE:+ --layer-cache $LAYER_CACHE}\`"
  echo
  echo "**coffer serve flags:** \`$COFFER_SERVE_FLAGS\` (segment cache: ${LAYER_CACHE:-256M, the default})."
  echo
  echo "**Machine:** nproc $(nproc), $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
  if [[ $CLIENT == skopeo ]]; then
    echo "**Images:** skopeo dir: images of $CORPUS/tars/{${IMAGES[*]}}.tar, pushed by \`skopeo copy --dest-compress\` (one layer each, pgzip by containers/image); pulled by \`docker pull\`."
  else
    echo "**Images:** \`docker import\` of $CORPUS/tars/{${IMAGES[*]}}.tar (one layer each, gzip by dockerd)."
  fi
  echo
  echo "| | coffer | distribution | coffer / distribution |"
  echo "|---|---:|---:|---:|"
  c=$(med coffer stored) d=$(med distribution stored)
  echo "| bytes stored after the four pushes | $c | $d | **$(ratio "$c" "$d")** |"
  pc=0 pd=0
  for n in "${IMAGES[@]}"; do
    a=$(med coffer "pull_$n") b=$(med distribution "pull_$n")
    pc=$(awk -v x="$pc" -v y="$a" 'BEGIN { print x + y }') pd=$(awk -v x="$pd" -v y="$b" 'BEGIN { print x + y }')
    echo "| docker pull $n, median s | $a | $b | $(ratio "$a" "$b") |"
  done
  echo "| docker pull, sum of the medians s | $pc | $pd | **$(ratio "$pc" "$pd")** |"
  for n in "${IMAGES[@]}"; do
    echo "| $CLIENT push $n s | $(med coffer "push_$n") | $(med distribution "push_$n") | $(ratio "$(med coffer "push_$n")" "$(med distribution "push_$n")") |"
  done
  echo "| registry CPU per pull, median s | $(med coffer pull_cpu) | $(med distribution pull_cpu) | |"
  echo "| dockerd CPU per pull, median s | $(med coffer pull_dcpu) | $(med distribution pull_dcpu) | |"
  echo
  echo "coffer: $(jq -r .layers_stored <<<"$STATS") of ${#IMAGES[@]} layers stored as tar + recipe" \
       "($(jq -r .layers_kept_as_pushed <<<"$STATS") kept as pushed, $(jq -r .layers_failed <<<"$STATS") failed);" \
       "re-storing finished $INGEST_S s after the last push ($INGEST_CPU CPU s of the daemon meanwhile)." \
       "Every pulled image ID equals the pushed one."
} | tee "${OUT/#-/\/dev\/null}"
