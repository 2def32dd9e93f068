#!/usr/bin/env bash
# cold_read.sh — the registry's read path in isolation: one blob, pushed with a
# single PUT to `coffer serve` and to Debian's docker-registry, then fetched with
# curl N times from each with the page cache dropped before every GET (cold),
# and once more without dropping it (warm). Prints the times and the medians.
# With --dedup-layers coffer re-stores the blob (a layer) before the GETs.
#
# usage: bench/cold_read.sh [-n N] [--blob FILE] [--range BYTES] [--dedup-layers]
#                           [--layer-cache SIZE]
#   -n N         GETs per registry (default 7)
#   --blob FILE  the blob (default the corpus' tars/tools.tar.gz, 90 MB)
#   --range B    GET only the last B bytes (a Range request), checked against the blob
#   --dedup-layers, --layer-cache SIZE   passed to coffer serve
# environment: COFFER (default /work/main/build/bin/coffer)
# Needs root (drop_caches, FUSE), docker-registry, curl. Installs nothing.
set -euo pipefail
N=7 RANGE=
BLOB=/tmp/coffer-bench-corpus/tars/tools.tar.gz
while (($#)); do
  case $1 in
    -n) N=$2; shift 2 ;;
    --range) RANGE=$2; shift 2 ;;
    --dedup-layers) COFFER_SERVE_FLAGS="${COFFER_SERVE_FLAGS:-} --dedup-layers"; shift ;;
    --layer-cache) COFFER_SERVE_FLAGS="${COFFER_SERVE_FLAGS:-} --layer-cache $2"; shift 2 ;;
    --blob) BLOB=$2; shift 2 ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cold_read.sh: unknown option $1" >&2; exit 64 ;;
  esac
done
[[ -f $BLOB ]] || { echo "cold_read.sh: no blob $BLOB (build the corpus: ../shared/bench/make-corpus.sh)" >&2; exit 1; }
COFFER=${COFFER:-/work/main/build/bin/coffer}
WORK=$(mktemp -d /tmp/coffer-coldread.XXXXXX) LOG=$WORK/log
log() { echo "$*" >&2; }
die() { log "cold_read.sh: $*"; exit 1; }
# shellcheck source=reglib.sh
source "$(dirname "$0")/reglib.sh"
DIG=sha256:$(sha256sum "$BLOB" | cut -d' ' -f1)
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
for REG in coffer distribution; do
  TD=$WORK/$REG PORT=$((5300 + RANDOM % 500))
  mkdir -p "$TD"
  "${REG}_start"
  wait_http "http://127.0.0.1:$PORT/v2/" 60 || die "$REG did not start"
  loc=$(curl -s -D - -o /dev/null -X POST "http://127.0.0.1:$PORT/v2/c/b/blobs/uploads/" |
    tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
  [[ $loc == http* ]] || loc=http://127.0.0.1:$PORT$loc
  sep='?'; [[ $loc == *\?* ]] && sep='&'
  curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$BLOB" \
    "$loc${sep}digest=$DIG" -o /dev/null || die "push to $REG"
  if [[ $REG == coffer && ${COFFER_SERVE_FLAGS:-} == *--dedup-layers* ]]; then
    sleep 1  # the publish queues it
    until [[ $(jq -r .layers_pending "$M/.coffer/stats") == 0 ]]; do sleep 0.5; done
    log "coffer: $(jq -c '{layers_stored, layers_kept_as_pushed, layers_failed}' "$M/.coffer/stats")"
  fi
  get=(curl -s -o "$WORK/got" -w '%{time_total}')
  [[ -n $RANGE ]] && get+=(-r "$(($(stat -c %s "$BLOB") - RANGE))-")
  ts=()
  for ((i = 0; i < N; i++)); do
    drop_caches
    ts+=("$("${get[@]}" "http://127.0.0.1:$PORT/v2/c/b/blobs/$DIG")")
    if [[ -n $RANGE ]]; then
      cmp -s "$WORK/got" <(tail -c "$RANGE" "$BLOB") || die "$REG: the range GET gave other bytes"
    else
      [[ sha256:$(sha256sum "$WORK/got" | cut -d' ' -f1) == "$DIG" ]] || die "$REG: GET gave other bytes"
    fi
  done
  warm=$("${get[@]}" "http://127.0.0.1:$PORT/v2/c/b/blobs/$DIG")
  echo "$REG: cold ${ts[*]} median $(median "${ts[@]}") s; warm $warm s"
  stop_registry || true
done
rm -rf "$WORK"
