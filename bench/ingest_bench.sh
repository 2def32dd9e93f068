#!/usr/bin/env bash
# ingest_bench.sh — what re-storing one layer costs: `coffer mount -f --dedup-layers`
# on a fresh repository, a real layer blob published through the mount
# (/uploads/u renamed to /blobs/sha256/<hex>), then: wall time from the publish
# until /.coffer/stats says layers_pending 0, the daemon's CPU (user + sys,
# /proc/PID/stat) over the same interval, how it was stored, and a read-back
# of the blob through the mount (its sha256 must be the name).
#
# The blobs are made once, with real clients, by pushing the corpus tars to
# Debian's docker-registry (distribution): `docker push` of a `docker import`
# (Go compress/gzip, as dockerd writes layers) and `skopeo copy --dest-compress`
# of a dir: image (pgzip, as podman/buildah/skopeo write them). They are kept in
# WORK/blobs for later runs.
#
# usage: ingest_bench.sh [-r N] [--work DIR] [IMAGE...]   (default: tools base2)
# Prints one line per repetition and a median per blob. Root, dockerd, skopeo,
# docker-registry, jq, the corpus (../shared/bench/make-corpus.sh).
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPS=3 WORK=/tmp/coffer-ingestbench CORPUS=/tmp/coffer-bench-corpus
COFFER=${COFFER:-/work/main/build/bin/coffer}
IMAGES=()
while (($#)); do
  case $1 in
    -r) REPS=${2:?}; shift 2 ;;
    --work) WORK=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "unknown option: $1" >&2; exit 64 ;;
    *) IMAGES+=("$1"); shift ;;
  esac
done
((${#IMAGES[@]})) || IMAGES=(tools base2)
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
[[ $(id -u) == 0 ]] || die "must run as root"
mkdir -p "$WORK/blobs"; LOG=$WORK/commands.log
# shellcheck source=reglib.sh
source "$SCRIPT_DIR/reglib.sh"
HZ=$(getconf CLK_TCK)

# newest_blob STORE MARK: the newest blob data file over 1 MB written after MARK
newest_blob() { find "$1" -name data -size +1M -newer "$2" -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2; }

make_blobs() {
  local n=$1 id d l c
  ensure_dockerd
  TD=$WORK/dist PORT=$(free_port); rm -rf "$TD"; mkdir -p "$TD"
  distribution_start; wait_http "http://127.0.0.1:$PORT/v2/" 60 || die "docker-registry did not start"
  id=$(docker import "$CORPUS/tars/$n.tar" "ingestbench/$n:src")
  docker tag "$id" "127.0.0.1:$PORT/ingestbench/$n:1"
  docker push -q "127.0.0.1:$PORT/ingestbench/$n:1" >>"$LOG"
  cp "$(newest_blob "$STORE" "$TD/config.yml")" "$WORK/blobs/$n.go.gz"; touch "$TD/config.yml"
  docker rmi -f "$id" >>"$LOG" 2>&1
  d=$TD/dir; mkdir -p "$d"; cp "$CORPUS/tars/$n.tar" "$d/layer"
  l=$(sha256sum "$d/layer" | cut -d' ' -f1); mv "$d/layer" "$d/$l"
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"config":{}}' "$l" >"$d/cfg"
  c=$(sha256sum "$d/cfg" | cut -d' ' -f1); mv "$d/cfg" "$d/$c"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%d}]}' \
    "$c" "$(stat -c %s "$d/$c")" "$l" "$(stat -c %s "$d/$l")" >"$d/manifest.json"
  echo "Directory Transport Version: 1.1" >"$d/version"
  skopeo copy -q --dest-compress --dest-tls-verify=false "dir:$d" "docker://127.0.0.1:$PORT/ingestbench/$n-pg:1"
  cp "$(newest_blob "$STORE" "$TD/config.yml")" "$WORK/blobs/$n.pg.gz"
  kill "$REG_PID"; wait "$REG_PID" 2>/dev/null || true
  rm -rf "$TD"
}

# ingest FILE REP: one fresh repository, one publish, one line of results
ingest() {
  local f=$1 hex W=$WORK/run P c0 c1 t0 t1 s got st
  hex=$(sha256sum "$f" | cut -d' ' -f1)
  umount -l "$W/mnt" 2>/dev/null || true; rm -rf "$W"; mkdir -p "$W/mnt"
  echo bench >"$W/pass"
  "$COFFER" init --repo "$W/repo" --passphrase-file "$W/pass" -q >>"$LOG"
  "$COFFER" mount --repo "$W/repo" --passphrase-file "$W/pass" --dedup-layers -f "$W/mnt" 2>>"$LOG" &
  P=$!
  for ((i = 0; i < 100; i++)); do [[ -f $W/mnt/.coffer/stats ]] && break; sleep 0.1; done
  cp "$f" "$W/mnt/uploads/u"
  read -r -a s <"/proc/$P/stat"; c0=$((s[13] + s[14])); t0=$(now)
  mv "$W/mnt/uploads/u" "$W/mnt/blobs/sha256/$hex"
  until [[ $(jq -r .layers_pending "$W/mnt/.coffer/stats") == 0 ]]; do sleep 0.05; done
  t1=$(now); read -r -a s <"/proc/$P/stat"; c1=$((s[13] + s[14]))
  st=$(jq -r '.layers_by_method | keys | join(",")' "$W/mnt/.coffer/stats")
  got=$(sha256sum "$W/mnt/blobs/sha256/$hex" | cut -d' ' -f1)
  [[ $got == "$hex" ]] || die "$(basename "$f"): reads back as sha256:$got"
  printf '%s\t%s\t%s\t%s\n' "$(basename "$f")" "$(fsub "$t1" "$t0")" \
    "$(awk -v a="$c1" -v b="$c0" -v h="$HZ" 'BEGIN { printf "%.2f", (a - b) / h }')" "${st:-kept as pushed}"
  umount "$W/mnt"; wait "$P" || true
}

med() { sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo "# ingest_bench -r $REPS ${IMAGES[*]} ($(date -u '+%F %H:%M') UTC, nproc $(nproc), $(git -C "$SCRIPT_DIR" rev-parse --short HEAD 2>/dev/null))"
printf 'blob\twall s\tdaemon CPU s\tstored as\n'
for n in "${IMAGES[@]}"; do
  [[ -f $WORK/blobs/$n.go.gz && -f $WORK/blobs/$n.pg.gz ]] || { log "making the $n blobs"; make_blobs "$n"; }
  for k in go pg; do
    : >"$WORK/$n.$k.tsv"
    for ((r = 1; r <= REPS; r++)); do ingest "$WORK/blobs/$n.$k.gz" | tee -a "$WORK/$n.$k.tsv"; done
    printf '%s median\t%s\t%s\n' "$n.$k.gz" "$(cut -f2 "$WORK/$n.$k.tsv" | med)" "$(cut -f3 "$WORK/$n.$k.tsv" | med)"
  done
done
