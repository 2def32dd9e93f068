# shellcheck shell=bash
# Shared helpers for the registry system tests (tests/reg_*_test.sh). Sourced,
# not run. Builds on tests/fs_lib.sh (the binary as $1, $T, fail/note/pass,
# wait_exit, the exit trap that unmounts and kills what the test started).
#
# Every registry test runs the real `coffer serve` (unlock, FUSE mount, registry)
# over a fresh repository, drives it with real clients (docker, skopeo, podman,
# curl), and stops it with SIGTERM: it must exit 0 and leave no mount behind.
# Images are made locally (`docker import` of a busybox rootfs plus random
# files, so no two tests share a layer); nothing is ever pulled from the
# internet. The Docker engine is the default one (/var/run/docker.sock); when
# `docker info` fails it is started in the background and left running for the
# tests that follow.
# shellcheck source=fs_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/fs_lib.sh"

for tool in curl tar gzip; do
  command -v "$tool" >/dev/null || { echo "FAIL: the registry tests need '$tool'" >&2; exit 1; }
done

_SERVE_PIDS=()     # coffer serve daemons still running (stopped with SIGTERM at exit)
_DOCKER_IMAGES=()  # image references this test created in the shared Docker engine

# _dumping PID: PID is dying with a core dump. A daemon that crashes while one
# of its threads waits inside a FUSE request to its own mount never finishes
# dying: only aborting the FUSE connection frees it.
_dumping() { grep -qs vfs_coredump /proc/"$1"/task/*/wchan; }

# _fuse_abort MNT: aborts the FUSE connection of the mount at MNT (if any).
_fuse_abort() {
  local minor
  # mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE ...
  minor=$(awk -v m="$1" '$5 == m { for (i = 7; i < NF; i++) if ($i == "-") break; if ($(i + 1) ~ /^fuse/) { split($3, d, ":"); print d[2] } }' \
    /proc/self/mountinfo | tail -n 1)
  [[ -n $minor ]] || return 0
  [[ -d /sys/fs/fuse/connections/$minor ]] || mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null
  echo 1 >"/sys/fs/fuse/connections/$minor/abort" 2>/dev/null
}

_alive() { is_running "$1" && [[ $(ps -o stat= -p "$1" 2>/dev/null) != Z* ]]; }

_reg_cleanup() {
  local p m i stuck=0
  for p in "${_SERVE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${_SERVE_PIDS[@]}"; do
    for ((i = 0; i < 300; i++)); do
      _alive "$p" || break
      _dumping "$p" && break
      sleep 0.1
    done
    _alive "$p" && stuck=1
  done
  if ((stuck)); then
    echo "[$TEST_NAME] coffer serve did not exit after SIGTERM (or is stuck dumping core): aborting its FUSE connections" >&2
    for m in "${_MOUNTS[@]}"; do _fuse_abort "$m"; done
  fi
  if ((${#_DOCKER_IMAGES[@]} > 0)); then
    timeout 60 docker rmi -f "${_DOCKER_IMAGES[@]}" >/dev/null 2>&1
  fi
  _cleanup  # fs_lib: unmount, kill -9 what is left, remove $T
}
trap _reg_cleanup EXIT

# ---------------------------------------------------------------- coffer serve

# serve_start REPO MNT PORT [serve options...]: `coffer serve` over REPO (made by
# new_repo), mounted at MNT, registry on 127.0.0.1:PORT (0 = any free port,
# read back from the log). Waits until /v2/ answers. Sets SERVE_PID, SERVE_LOG,
# SERVE_MNT, PORT, REG (127.0.0.1:PORT) and URL (http://REG, or https://REG
# with --tls-cert: set CURL_EXTRA=(--cacert CA) first).
_NSERVE=0
serve_start() {
  local r=$1 m=$2 port=$3 line deadline
  shift 3
  mkdir -p "$m"
  _NSERVE=$((_NSERVE + 1))
  SERVE_LOG=$T/serve.$_NSERVE.log
  "$COFFER" --repo "$r" --passphrase-file "$r.pass" serve --mount "$m" --registry "127.0.0.1:$port" "$@" \
    >"$SERVE_LOG" 2>&1 </dev/null &
  SERVE_PID=$!
  _PIDS+=("$SERVE_PID")
  _SERVE_PIDS+=("$SERVE_PID")
  _MOUNTS+=("$m")
  deadline=$((SECONDS + 30))
  until line=$(grep -o 'registry on https\?://[^ ]*' "$SERVE_LOG" 2>/dev/null); do
    is_running "$SERVE_PID" && [[ $(ps -o stat= -p "$SERVE_PID" 2>/dev/null) != Z* ]] ||
      fail "coffer serve exited before serving (options: $*): $(tail -n 5 "$SERVE_LOG")"
    ((SECONDS < deadline)) || fail "coffer serve did not report its registry within 30 s: $(tail -n 5 "$SERVE_LOG")"
    sleep 0.05
  done
  SERVE_MNT=$m
  REG=${line#registry on http*://}
  PORT=${REG##*:}
  URL=${line#registry on }
  [[ $port == 0 || $port == "$PORT" ]] || fail "coffer serve --registry 127.0.0.1:$port listens on $REG"
  mountpoint -q "$m" || fail "coffer serve reports its registry but $m is not a mount point"
  deadline=$((SECONDS + 30))
  until [[ $(curl -s "${CURL_EXTRA[@]}" -o /dev/null -w '%{http_code}' "$URL/v2/") =~ ^(200|401)$ ]]; do
    ((SECONDS < deadline)) || fail "coffer serve on $REG: /v2/ did not answer 200 or 401 within 30 s"
    sleep 0.05
  done
  note "coffer serve $SERVE_PID: $r mounted at $m, registry on $REG"
}

# serve_alive: the last coffer serve is still running; if not, SERVE_DEATH says how it ended.
serve_alive() {
  if _alive "$SERVE_PID" && ! _dumping "$SERVE_PID"; then return 0; fi
  if _dumping "$SERVE_PID"; then
    SERVE_DEATH="coffer serve $SERVE_PID crashed (dumping core); log: $(tail -n 3 "$SERVE_LOG")"
  else
    local st
    wait "$SERVE_PID" 2>/dev/null
    st=$?
    ((st > 128)) && st="$st (signal $((st - 128)))"
    SERVE_DEATH="coffer serve $SERVE_PID exited with status $st; log: $(tail -n 3 "$SERVE_LOG")"
  fi
  return 1
}

# serve_stop: SIGTERM the last coffer serve; it must exit 0 within 60 s, say
# it stopped, and leave its mount point unmounted.
serve_stop() {
  local m=$SERVE_MNT p keep=()
  kill -TERM "$SERVE_PID" 2>/dev/null || fail "coffer serve $SERVE_PID is not running at stop: $(tail -n 5 "$SERVE_LOG")"
  wait_exit "$SERVE_PID" 60 || fail "coffer serve $SERVE_PID still running 60 s after SIGTERM: $(tail -n 5 "$SERVE_LOG")"
  for p in "${_SERVE_PIDS[@]}"; do [[ $p == "$SERVE_PID" ]] || keep+=("$p"); done
  _SERVE_PIDS=("${keep[@]}")
  [[ $EXIT_STATUS == 0 ]] || fail "coffer serve exited $EXIT_STATUS after SIGTERM, want 0: $(tail -n 5 "$SERVE_LOG")"
  ! mountpoint -q "$m" || fail "$m is still a mount point after coffer serve exited"
  grep -q 'stopped' "$SERVE_LOG" || fail "coffer serve exited 0 but did not say it stopped: $(tail -n 3 "$SERVE_LOG")"
  note "coffer serve $SERVE_PID stopped: exit 0, $m unmounted"
}

# ---------------------------------------------------------------- HTTP (curl)

CURL_EXTRA=()  # options every curl call of these helpers adds (e.g. --cacert)

# http METHOD PATH [curl options...]: one request to $URL$PATH (PATH may also be
# a full URL). Sets CODE; the headers are in $T/.h, the body in $T/.b. HEAD is
# sent with --head so curl does not wait for a body.
http() {
  local method=$1 path=$2 target
  shift 2
  [[ $path == http* ]] && target=$path || target=$URL$path
  local m=(-X "$method")
  [[ $method == HEAD ]] && m=(--head)
  CODE=$(curl -sS --max-time 120 "${CURL_EXTRA[@]}" -o "$T/.b" -D "$T/.h" -w '%{http_code}' "${m[@]}" "$@" "$target" 2>"$T/.curl.err") ||
    CODE=000
}

# hdr NAME: the value of response header NAME of the last http call (the last
# one sent, after any 100 Continue), without the CR.
hdr() {
  awk -v n="$(echo "$1" | tr 'A-Z' 'a-z')" 'BEGIN { FS = ": " }
    /^HTTP\// { v = "" }
    { k = tolower($1); if (k == n) { sub(/^[^:]*: */, ""); sub(/\r$/, ""); v = $0 } }
    END { print v }' "$T/.h"
}

body() { cat "$T/.b"; }

# err_code: errors[0].code of the last JSON error body ("" if none).
err_code() { jq -r '.errors[0].code // ""' "$T/.b" 2>/dev/null; }

# expect_status WANT WHAT: the last http call answered WANT.
expect_status() {
  [[ $CODE == "$1" ]] && return 0
  [[ $CODE != 000 ]] || serve_alive || fail "$2: no answer: $SERVE_DEATH"
  fail "$2: HTTP $CODE, want $1 (body: $(head -c 600 "$T/.b" 2>/dev/null); curl: $(head -c 300 "$T/.curl.err"))"
}

# expect_error STATUS CODE WHAT: the last http call answered STATUS with the
# spec's JSON error body whose errors[0].code is CODE (a "|"-separated list of
# acceptable codes is allowed), and every response carries the API version.
expect_error() {
  expect_status "$1" "$3"
  local got
  got=$(err_code)
  [[ "|$2|" == *"|$got|"* && -n $got ]] ||
    fail "$3: HTTP $1 with errors[0].code '$got', want $2 (body: $(head -c 600 "$T/.b"))"
  [[ $(hdr Docker-Distribution-API-Version) == registry/2.0 ]] ||
    fail "$3: no Docker-Distribution-API-Version: registry/2.0 header on the error"
}

# absolute LOCATION: a Location header made absolute against $URL.
absolute() { [[ $1 == http* ]] && echo "$1" || echo "$URL$1"; }

# with_query URL K=V: appends a query parameter.
with_query() { [[ $1 == *\?* ]] && echo "$1&$2" || echo "$1?$2"; }

# push_blob NAME FILE: POST + PUT ?digest= (monolithic); fails unless 201. Sets DIGEST.
push_blob() {
  local name=$1 f=$2 loc
  DIGEST=sha256:$(sha_of "$f")
  http POST "/v2/$name/blobs/uploads/"
  expect_status 202 "POST /v2/$name/blobs/uploads/"
  loc=$(absolute "$(hdr Location)")
  http PUT "$(with_query "$loc" "digest=$DIGEST")" -H 'Content-Type: application/octet-stream' -T "$f"
  expect_status 201 "PUT $DIGEST to /v2/$name"
  [[ $(hdr Docker-Content-Digest) == "$DIGEST" ]] || fail "PUT blob: Docker-Content-Digest '$(hdr Docker-Content-Digest)', want $DIGEST"
}

# push_manifest NAME REF FILE [MEDIATYPE]: PUT the manifest; sets CODE (no check).
push_manifest() {
  local mt=${4:-application/vnd.oci.image.manifest.v1+json}
  http PUT "/v2/$1/manifests/$2" -H "Content-Type: $mt" --data-binary "@$3"
}

# ---------------------------------------------------------------- docker

DOCKERD_LOG=/tmp/coffer-regtest-dockerd.log

# ensure_dockerd: the default Docker engine answers `docker info`; if it does
# not, dockerd is started in the background (its own session, detached from
# this test's output so ctest does not wait for it) and left running. Startup
# may take up to 60 s.
ensure_dockerd() {
  command -v docker >/dev/null || fail "the test needs docker (apt-get install docker.io)"
  timeout 20 docker info >/dev/null 2>&1 && return 0
  command -v dockerd >/dev/null || fail "docker info fails and dockerd is not installed (apt-get install docker.io)"
  note "docker info fails: starting dockerd in the background (log $DOCKERD_LOG)"
  (setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &)
  local deadline=$((SECONDS + 60))
  until timeout 20 docker info >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "dockerd did not answer docker info within 60 s: $(tail -n 5 "$DOCKERD_LOG")"
    sleep 0.5
  done
  note "dockerd is up"
}

# track_image REF...: removed from the Docker engine at exit.
track_image() { _DOCKER_IMAGES+=("$@"); }

# make_rootfs DIR: a busybox root file system with a random /base-id (64 KiB),
# so every test's base layer is its own.
make_rootfs() {
  local d=$1 a
  mkdir -p "$d/bin" "$d/etc" "$d/tmp"
  cp /bin/busybox "$d/bin/busybox" || fail "busybox-static missing (/bin/busybox)"
  for a in sh cat ls echo sha256sum wc; do ln -sf busybox "$d/bin/$a"; done
  head -c 65536 /dev/urandom >"$d/base-id"
}

# make_base_image TAG: `docker import` of a fresh make_rootfs (one layer).
make_base_image() {
  local d=$T/rootfs.$RANDOM$RANDOM
  make_rootfs "$d"
  run bash -c "tar -C '$d' --numeric-owner --owner=0 --group=0 -c . | docker import - '$1'"
  [[ $RC == 0 ]] || fail "docker import $1: $ERR"
  track_image "$1"
}

# make_image BASE TAG PAYLOAD [LABEL]: BASE plus a layer holding PAYLOAD as
# /payload (legacy builder, COPY only: no container runs). LABEL, if given,
# goes into the image config as the label coffer.marker.
make_image() {
  local base=$1 tag=$2 payload=$3 label=${4:-} ctx=$T/ctx.$RANDOM$RANDOM
  mkdir -p "$ctx"
  cp "$payload" "$ctx/payload"
  {
    echo "FROM $base"
    echo "COPY payload /payload"
    [[ -z $label ]] || echo "LABEL coffer.marker=\"$label\""
  } >"$ctx/Dockerfile"
  run env DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx"
  [[ $RC == 0 ]] || fail "docker build $tag (FROM $base, COPY payload): $ERR $OUT"
  track_image "$tag"
}

# make_payload_image SIZE: a base image and, on top of it, an image holding
# $T/payload (SIZE random bytes). Sets LOCAL (coffer-regtest/<test id>); the
# images are $LOCAL-base:1 and $LOCAL:1.
make_payload_image() {
  LOCAL=coffer-regtest/$(basename "$T" | tr 'A-Z' 'a-z' | tr -cd 'a-z0-9')
  make_base_image "$LOCAL-base:1"
  rand_file "$T/payload" "$1"
  make_image "$LOCAL-base:1" "$LOCAL:1" "$T/payload"
}

# docker_push REF LOG: docker push; fails unless it succeeds. Sets PUSHED (the
# manifest digest docker reports).
docker_push() {
  docker push "$1" >"$2" 2>&1 || fail "docker push $1 failed: $(tail -n 5 "$2")"
  PUSHED=$(grep -o 'digest: sha256:[0-9a-f]\{64\}' "$2" | tail -n 1 | cut -d' ' -f2)
  [[ -n $PUSHED ]] || fail "docker push $1: no 'digest: sha256:...' in its output: $(tail -n 5 "$2")"
}

# docker_forget REF...: removes the references from the engine; fails if one stays.
docker_forget() {
  local r
  docker rmi "$@" >/dev/null 2>&1
  for r in "$@"; do
    ! docker image inspect "$r" >/dev/null 2>&1 || fail "docker rmi $r: the image is still there"
  done
}

# layer_ids IMAGE: the image's layer diff ids, one a line.
layer_ids() { docker image inspect --format '{{range .RootFS.Layers}}{{println .}}{{end}}' "$1" | sed '/^$/d'; }

# docker_payload IMAGE OUT: /payload of IMAGE into OUT, by `docker run --rm IMAGE
# cat /payload`; when containers cannot run here, says why and reads the file
# from `docker save` instead (the layer tar that holds it).
docker_payload() {
  local img=$1 out=$2
  if docker run --rm "$img" cat /payload >"$out" 2>"$T/.run.err"; then
    return 0
  fi
  note "docker run --rm $img cat /payload failed ($(head -c 400 "$T/.run.err")); reading /payload from docker save instead"
  local d=$T/save.$RANDOM l
  mkdir -p "$d"
  docker save "$img" | tar -C "$d" -x || fail "docker save $img failed"
  for l in $(jq -r '.[0].Layers[]' "$d/manifest.json"); do
    if tar -tf "$d/$l" 2>/dev/null | grep -qx '\(\./\)\?payload'; then
      tar -xOf "$d/$l" payload 2>/dev/null >"$out" || tar -xOf "$d/$l" ./payload >"$out" || fail "extract /payload from $l"
      return 0
    fi
  done
  fail "docker save $img: no layer holds /payload"
}

# stat_of KEY: a field of the mount's /.coffer/stats ($M: the mount point).
stat_of() { jq -r ".$1" "$M/.coffer/stats"; }
# wait_ingested: every queued layer has been handled (120 s at most).
wait_ingested() {
  local deadline=$((SECONDS + 120))
  until [[ $(stat_of layers_pending) == 0 ]]; do
    ((SECONDS < deadline)) || fail "layers still pending after 120 s: $(cat "$M/.coffer/stats")"
    sleep 0.2
  done
}
